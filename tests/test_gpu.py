"""poolkit.gpu (naive and optimized CUDA kernels) against the reference and the CPU backend.

Run in their own process: with ``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator,
no GPU needed; ``python3 tasks.py test`` does this) or on a real GPU with
``POOLKIT_REAL_GPU=1``. The launch configuration is patched tiny so that the
small inputs here span several blocks and every block of the tiled kernels loops
over several tiles (the simulator costs ~0.2 ms per simulated thread).
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from poolkit import config

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
if not SIM and config.detect_gpu() is None:
    pytest.skip("no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numba import cuda  # noqa: E402

import poolkit  # noqa: E402
from poolkit import cpu, gpu, reference  # noqa: E402
from poolkit.gpu import device as gpu_device  # noqa: E402
from poolkit import geometry as G  # noqa: E402
from strategies import assert_avg_close, pool2d_problem  # noqa: E402

pytestmark = pytest.mark.gpu
simulator_only = pytest.mark.skipif(not SIM, reason="simulator-specific (NUMBA_ENABLE_CUDASIM=1)")
real_gpu_only = pytest.mark.skipif(SIM, reason="needs a real GPU (too slow on the simulator)")

EXAMPLES = 60 if SIM else 200
HSETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KERNELS = ["naive", "optimized"]
MAX_DTYPES = gpu.SUPPORTED_DTYPES["max_pool2d"]


@pytest.fixture(autouse=True)
def tiny_launch_config(monkeypatch):
    """Small blocks and few of them: tiny inputs span several blocks and tiles."""
    monkeypatch.setattr(config, "GPU_THREADS_PER_BLOCK", 16)
    monkeypatch.setattr(config, "GPU_TILE_THREADS", 32)
    monkeypatch.setattr(config, "GPU_TILE_WIDTH", 4)
    monkeypatch.setattr(config, "GPU_TILE_CHANNELS", 2)
    monkeypatch.setattr(config, "GPU_OUTPUTS_PER_THREAD", 2)
    monkeypatch.setattr(config, "GPU_MAX_BLOCKS", 3)


def _is_device(a):
    return type(a).__module__.startswith("numba.cuda")


def _host(a):
    return a.copy_to_host() if _is_device(a) else a


def _check_max(x, kw, layout, kernel):
    want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    got = gpu.max_pool2d(x, layout=layout, kernel=kernel, **kw)
    got2, idx = gpu.max_pool2d(x, return_indices=True, layout=layout, kernel=kernel, **kw)
    for g in (got, got2):
        assert isinstance(g, np.ndarray) and g.dtype == want.dtype and g.shape == want.shape
        np.testing.assert_array_equal(g, want)  # NaN == NaN here
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, want_idx)


# ------------------------------------------------------------------ property tests
@HSETTINGS
@given(pool2d_problem(op="max", dtypes=MAX_DTYPES, max_hw=8, max_c=3), st.sampled_from(KERNELS))
def test_max_pool2d_matches_reference(problem, kernel):
    x, kw, layout = problem
    _check_max(x, kw, layout, kernel)


@HSETTINGS
@given(pool2d_problem(op="avg", max_hw=8, max_c=3), st.sampled_from(KERNELS))
def test_avg_pool2d_matches_reference_bitwise(problem, kernel):
    x, kw, layout = problem
    want = reference.avg_pool2d(x, layout=layout, **kw)
    got = gpu.avg_pool2d(x, layout=layout, kernel=kernel, **kw)
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
    # same summation order and divisor dtype as the reference: bit for bit
    np.testing.assert_array_equal(got, want)
    # the CPU backend may sum in another order: equal up to rounding
    assert_avg_close(got, cpu.avg_pool2d(x, layout=layout, **kw), x, kw["kernel_size"])


def test_naive_and_optimized_agree_on_a_larger_problem():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 13, 11)).astype(np.float32)
    kw = dict(kernel_size=3, stride=2, padding=1)
    a, ia = gpu.max_pool2d(x, return_indices=True, kernel="naive", **kw)
    b, ib = gpu.max_pool2d(x, return_indices=True, kernel="optimized", **kw)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(gpu.avg_pool2d(x, 3, 1, 1, kernel="naive"),
                                  gpu.avg_pool2d(x, 3, 1, 1, kernel="optimized"))


# ------------------------------------------------------------------ edges
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_nan_ties_and_all_minus_inf(kernel, layout):
    def lay(a):
        return a if layout == "NCHW" else np.ascontiguousarray(a.transpose(0, 2, 3, 1))

    x = lay(np.array([[[[1.0, np.nan, 3.0, np.nan],
                        [5.0, 5.0, -np.inf, -np.inf],
                        [2.0, 2.0, -np.inf, -np.inf]]]], dtype=np.float32))
    out, idx = gpu.max_pool2d(x, (1, 4), return_indices=True, layout=layout, kernel=kernel)
    col = (lambda a: a[0, 0, :, 0]) if layout == "NCHW" else (lambda a: a[0, :, 0, 0])
    assert np.isnan(col(out)[0]) and col(idx)[0] == 3            # last NaN's index
    assert col(out)[1] == 5 and col(idx)[1] == 4                 # ties: first max
    out, idx = gpu.max_pool2d(x, 2, 1, return_indices=True, layout=layout, kernel=kernel)
    out, idx = _host(out), _host(idx)
    if layout == "NHWC":
        out, idx = out.transpose(0, 3, 1, 2), idx.transpose(0, 3, 1, 2)
    assert np.isnan(out[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 1   # [nan, 3; 5, -inf]
    assert out[0, 0, 1, 0] == 5 and idx[0, 0, 1, 0] == 4        # [5, 5; 2, 2]: first max
    assert out[0, 0, 1, 2] == -np.inf and idx[0, 0, 1, 2] == 6  # all -inf: first cell
    # an all -inf window still names its first real cell, never padding
    y = lay(np.full((1, 1, 3, 3), -np.inf, dtype=np.float64))
    out, idx = gpu.max_pool2d(y, 3, 2, 1, return_indices=True, layout=layout, kernel=kernel)
    np.testing.assert_array_equal(_host(idx).ravel(), [0, 1, 3, 4])  # window starts, clipped
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("kernel", KERNELS)
def test_integer_min_values_and_uint8(kernel):
    x = np.full((1, 2, 3, 3), np.iinfo(np.int32).min, dtype=np.int32)
    out, idx = gpu.max_pool2d(x, 2, 1, return_indices=True, kernel=kernel)
    np.testing.assert_array_equal(idx[0, 1], [[0, 1], [3, 4]])
    assert out.dtype == np.int32
    img = (np.arange(3 * 8 * 8) % 251).astype(np.uint8).reshape(8, 8, 3)
    _check_max(img, dict(kernel_size=3, stride=2, padding=1), "NHWC", kernel)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=(2, 3)),
    dict(kernel_size=4, stride=3, padding=2, dilation=2, ceil_mode=True),
    dict(kernel_size=2, padding="same"),
    dict(kernel_size=3, stride=2, padding="valid"),
], ids=["ceil", "ceil_rect", "dilation", "dilation_ceil", "same", "valid"])
def test_padding_ceil_mode_dilation(kernel, layout, kw):
    rng = np.random.default_rng(7)
    shape = (2, 3, 7, 6) if layout == "NCHW" else (2, 7, 6, 3)
    x = rng.integers(-4, 5, size=shape).astype(np.float64)
    _check_max(x, kw, layout, kernel)
    akw = {k: v for k, v in kw.items() if k != "dilation"}
    for cip in (True, False):
        want = reference.avg_pool2d(x, layout=layout, count_include_pad=cip, **akw)
        got = gpu.avg_pool2d(x, layout=layout, count_include_pad=cip, kernel=kernel, **akw)
        np.testing.assert_array_equal(got, want)
    want = reference.avg_pool2d(x, layout=layout, divisor_override=5, **akw)
    np.testing.assert_array_equal(gpu.avg_pool2d(x, layout=layout, divisor_override=5, kernel=kernel,
                                                 **akw), want)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_device_input_stays_on_device(kernel, layout):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 5, 6, 3) if layout == "NHWC" else (2, 3, 5, 6)).astype(np.float32)
    d = cuda.to_device(x)
    out = gpu.max_pool2d(d, 2, layout=layout, kernel=kernel)
    out2, idx = gpu.max_pool2d(d, 3, 1, 1, return_indices=True, layout=layout, kernel=kernel)
    avg = gpu.avg_pool2d(d, 3, 2, 1, layout=layout, kernel=kernel)
    for o in (out, out2, idx, avg):
        assert _is_device(o), type(o)
    np.testing.assert_array_equal(out.copy_to_host(), reference.max_pool2d(x, 2, layout=layout))
    want, want_idx = reference.max_pool2d(x, 3, 1, 1, return_indices=True, layout=layout)
    np.testing.assert_array_equal(out2.copy_to_host(), want)
    np.testing.assert_array_equal(idx.copy_to_host(), want_idx)
    np.testing.assert_array_equal(avg.copy_to_host(), reference.avg_pool2d(x, 3, 2, 1, layout=layout))
    # the input was not modified
    np.testing.assert_array_equal(d.copy_to_host(), x)


@pytest.mark.parametrize("kernel", KERNELS)
def test_unbatched_and_non_contiguous_device_arrays(kernel):
    rng = np.random.default_rng(5)
    big = rng.standard_normal((2, 4, 7, 10)).astype(np.float32)
    d = cuda.to_device(big)
    views = {
        "unbatched": (d[1], big[1], "NCHW"),
        "strided W": (d[:, :, :, ::2], big[:, :, :, ::2], "NCHW"),
        "channel slice": (d[:, 1:3], big[:, 1:3], "NCHW"),
        "unbatched strided": (d[0, :, :, 1::3], big[0, :, :, 1::3], "NHWC"),
    }
    for name, (dv, hv, layout) in views.items():
        want, want_idx = reference.max_pool2d(hv, 2, 1, 1, return_indices=True, layout=layout)
        out, idx = gpu.max_pool2d(dv, 2, 1, 1, return_indices=True, layout=layout, kernel=kernel)
        assert _is_device(out) and tuple(out.shape) == want.shape, name
        np.testing.assert_array_equal(out.copy_to_host(), want, err_msg=name)
        np.testing.assert_array_equal(idx.copy_to_host(), want_idx, err_msg=name)
        np.testing.assert_array_equal(gpu.avg_pool2d(dv, 3, 2, 1, layout=layout, kernel=kernel).copy_to_host(),
                                      reference.avg_pool2d(hv, 3, 2, 1, layout=layout), err_msg=name)
    np.testing.assert_array_equal(d.copy_to_host(), big)


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_batch(kernel):
    x = np.zeros((0, 3, 6, 5), dtype=np.float32)
    assert gpu.max_pool2d(x, 2, kernel=kernel).shape == (0, 3, 3, 2)
    out, idx = gpu.max_pool2d(cuda.to_device(x), 2, return_indices=True, kernel=kernel)
    assert _is_device(out) and tuple(out.shape) == (0, 3, 3, 2) and idx.dtype == np.int64
    a = gpu.avg_pool2d(cuda.to_device(np.zeros((0, 6, 5, 3), np.float64)), 2, layout="NHWC", kernel=kernel)
    assert _is_device(a) and tuple(a.shape) == (0, 3, 2, 3) and a.dtype == np.float64


def test_big_endian_and_read_only_numpy_input():
    x = (np.arange(2 * 8 * 8, dtype=">u2") % 200).astype(">f4").reshape(2, 8, 8)
    ro = np.asarray(x, dtype=np.float32)
    ro.flags.writeable = False
    for a in (x, ro):
        np.testing.assert_array_equal(gpu.max_pool2d(a, 3, 2, 1), reference.max_pool2d(ro, 3, 2, 1))
        np.testing.assert_array_equal(gpu.avg_pool2d(a, 2), reference.avg_pool2d(ro, 2))


def test_dispatch_through_poolkit_with_device_arrays():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    d = cuda.to_device(x)
    assert poolkit.functional.backend_for(d) == "gpu"
    out = poolkit.max_pool2d(d, 2)
    assert _is_device(out)
    np.testing.assert_array_equal(out.copy_to_host(), reference.max_pool2d(x, 2))
    out, idx = poolkit.max_pool2d(d, 3, 1, 1, return_indices=True)
    assert _is_device(out) and _is_device(idx)
    np.testing.assert_array_equal(idx.copy_to_host(), reference.max_pool2d(x, 3, 1, 1, return_indices=True)[1])
    avg = poolkit.avg_pool2d(d, 2, count_include_pad=False)
    assert _is_device(avg)
    np.testing.assert_array_equal(avg.copy_to_host(), reference.avg_pool2d(x, 2))


# ------------------------------------------------------------------ launch configuration
def test_several_planes_or_channels_per_block_and_one_block_for_all_tiles(monkeypatch):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 5, 3, 3)).astype(np.float32)
    g = G.make_geometry("t", (3, 3), 3)
    plan = gpu.plan_tiles("NCHW", x.shape, g, 4)
    assert plan.block[1] > 1 and plan.tile_in == (3, 3)  # whole planes, several per block
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    plan = gpu.plan_tiles("NHWC", xl.shape, g, 4)
    assert plan.block[0] > config.GPU_TILE_CHANNELS  # tiny output: wider channel tile
    monkeypatch.setattr(config, "GPU_MAX_BLOCKS", 1)  # one block walks every tile
    for arr, layout in ((x, "NCHW"), (xl, "NHWC")):
        _check_max(arr, dict(kernel_size=3), layout, "optimized")
        _check_max(arr, dict(kernel_size=2, stride=1, padding=1), layout, "optimized")
        np.testing.assert_array_equal(gpu.avg_pool2d(arr, 3, layout=layout),
                                      reference.avg_pool2d(arr, 3, layout=layout))


def test_shared_memory_budget_shrinks_tiles_then_falls_back_to_naive(monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float64)
    g = G.make_geometry("t", (9, 9), 3, 1, 1)
    full = gpu.plan_tiles("NCHW", x.shape, g, 8)
    monkeypatch.setattr(config, "GPU_SHARED_BYTES", 9 * 8 * 3)
    small = gpu.plan_tiles("NCHW", x.shape, g, 8)
    assert small.shared_bytes <= 9 * 8 * 3 < full.shared_bytes
    _check_max(x, dict(kernel_size=3, stride=1, padding=1), "NCHW", "optimized")
    monkeypatch.setattr(config, "GPU_SHARED_BYTES", 8)  # not even one 3x3 window fits
    assert gpu.plan_tiles("NCHW", x.shape, g, 8) is None
    launch = gpu.prepare_max_pool2d(x, 3, 1, 1)
    assert launch.plan is None and launch.name.endswith("naive")
    np.testing.assert_array_equal(launch.run()[0].copy_to_host(), reference.max_pool2d(x, 3, 1, 1))


@pytest.mark.parametrize("defaults", [True, False], ids=["default_config", "tiny_config"])
def test_tile_plans_respect_cuda_launch_limits(defaults):
    """The simulator does not enforce CUDA's limits; check every plan against them."""
    if defaults:
        config.reset()
    rng = np.random.default_rng(0)
    shapes = [(32, 64, 224, 224), (8, 64, 112, 112), (8, 128, 112, 112), (8, 192, 28, 28),
              (32, 2048, 7, 7), (1, 1, 1000, 1), (1, 1, 1, 1000), (3, 1, 300, 2), (1, 3, 2, 300)]
    shapes += [tuple(int(v) for v in rng.integers(1, 40, size=4)) for _ in range(40)]
    for shape in shapes:
        for k, s, p, d in [(1, 1, 0, 1), (2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2), (7, 7, 0, 1), (5, 3, 2, 1)]:
            for itemsize in (1, 4, 8):
                for layout in ("NCHW", "NHWC"):
                    spatial = shape[2:]
                    try:
                        g = G.make_geometry("t", spatial, k, s, p, d, False)
                    except ValueError:
                        continue
                    xs = shape if layout == "NCHW" else (shape[0], shape[2], shape[3], shape[1])
                    plan = gpu.plan_tiles(layout, xs, g, itemsize, grid_cap=100)
                    if plan is None:
                        continue
                    bx, by, bz = plan.block
                    assert min(bx, by, bz) >= 1 and bz <= 64 and bx * by * bz <= 1024, plan
                    assert plan.threads <= max(config.GPU_TILE_THREADS, 1), plan
                    assert plan.shared_bytes <= config.GPU_SHARED_BYTES, plan
                    assert 1 <= plan.grid <= 100 and plan.grid <= plan.items, plan
                    # the tiles cover the output
                    (toh, tow), (th, tw, _) = plan.tile_out, plan.tiles
                    assert th * toh >= g.out_size[0] and tw * tow >= g.out_size[1], plan


def test_count_global_loads_matches_brute_force():
    for shape, kw in [((1, 2, 9, 8), dict(kernel_size=3, stride=1, padding=1)),
                      ((2, 1, 10, 7), dict(kernel_size=2, stride=2, ceil_mode=True)),
                      ((1, 3, 8, 8), dict(kernel_size=3, stride=2, padding=1, dilation=2))]:
        g = G.make_geometry("t", shape[2:], **kw)
        taps = 0
        for oh in range(g.out_size[0]):
            rows = G.window_range(oh, shape[2], g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])[1]
            for ow in range(g.out_size[1]):
                cols = G.window_range(ow, shape[3], g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])[1]
                taps += len(rows) * len(cols)
        assert gpu.count_global_loads(shape, g, "NCHW", "naive") == shape[0] * shape[1] * taps
        tiled = gpu.count_global_loads(shape, g, "NCHW", "optimized")
        # every input cell some window reads is loaded at least once, and never more
        # often than the naive kernel reads it
        read = set()
        for oh in range(g.out_size[0]):
            for ow in range(g.out_size[1]):
                for r in G.window_range(oh, shape[2], g.kernel[0], g.stride[0], g.padding[0], g.dilation[0])[1]:
                    for c in G.window_range(ow, shape[3], g.kernel[1], g.stride[1], g.padding[1], g.dilation[1])[1]:
                        read.add((r, c))
        assert shape[0] * shape[1] * len(read) <= tiled <= gpu.count_global_loads(shape, g, "NCHW", "naive")


def test_launch_argument_types_are_the_ptx_tested_ones(monkeypatch):
    """Every launch the public API makes uses a specialization test_ptx.py compiles."""
    import numba

    shipped = {(name, sig) for name, _, sig in gpu.kernel_specializations()}
    seen = set()
    real = gpu_device.launch

    def spy(name, kernel, griddim, blockdim, shared_bytes, args):
        seen.add((name, tuple(numba.typeof(a) for a in args)))
        return real(name, kernel, griddim, blockdim, shared_bytes, args)

    monkeypatch.setattr(gpu_device, "launch", spy)
    rng = np.random.default_rng(1)
    for dt in sorted(set(gpu.SUPPORTED_DTYPES["max_pool2d"])):
        for layout in ("NCHW", "NHWC"):
            x = (rng.integers(0, 9, size=(1, 4, 4, 2) if layout == "NHWC" else (1, 2, 4, 4))).astype(dt)
            d = cuda.to_device(np.concatenate([x, x], axis=-1))
            for kernel in KERNELS:
                gpu.max_pool2d(x, 2, layout=layout, kernel=kernel)
                gpu.max_pool2d(d[:, :, :, ::2], 2, return_indices=True, layout=layout, kernel=kernel)
                if dt in gpu.SUPPORTED_DTYPES["avg_pool2d"]:
                    gpu.avg_pool2d(x, 2, layout=layout, kernel=kernel)
    assert {name for name, _ in seen} >= {"copy_4d", "max_nchw_tiled", "avg_nhwc_naive"}
    assert seen <= shipped, sorted(map(str, seen - shipped))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("call,exc,msg", [
    (lambda d: gpu.max_pool2d(d, 2, kernel="fast"), ValueError, "kernel must be 'optimized' or 'naive'"),
    (lambda d: gpu.max_pool2d(d, 0), ValueError, "kernel_size must be positive"),
    (lambda d: gpu.max_pool2d(d, 2, padding=2), ValueError, "padding must be at most half"),
    (lambda d: gpu.max_pool2d(d, 2, layout="NWHC"), ValueError, "layout"),
    (lambda d: gpu.max_pool2d(d, 2, return_indices=1), TypeError, "return_indices must be a bool"),
    (lambda d: gpu.avg_pool2d(d, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda d: gpu.max_pool2d(d[0, 0], 2), ValueError, "x must be 4-d NCHW"),
    (lambda d: gpu.max_pool2d([[1.0]], 2), TypeError, "x must be a NumPy array or a GPU array"),
    (lambda d: gpu.max_pool2d(np.zeros((1, 1, 4, 4), np.int16), 2), TypeError, "GPU kernels support dtypes"),
    (lambda d: gpu.avg_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2), TypeError, "float32 or float64"),
])
def test_bad_arguments_raise_before_any_launch(monkeypatch, call, exc, msg):
    seen = []
    monkeypatch.setattr(gpu_device, "launch", lambda *a: seen.append(a))
    d = cuda.to_device(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(exc, match=msg) as info:
        call(d)
    assert "pool2d" in str(info.value)
    assert not seen


def _subprocess(code, **env_extra):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # hide any real GPU too
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=180)


def test_without_gpu_or_simulator_a_gpu_call_fails_at_once_with_a_clear_message():
    out = _subprocess("""
        import numpy as np, poolkit
        from poolkit import gpu
        x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        print(poolkit.max_pool2d(x, 2)[0, 0].tolist())   # the CPU path still works
        try:
            gpu.max_pool2d(x, 2)
        except gpu.CudaUnavailableError as exc:
            print("ERROR", exc)
    """)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == "[[5.0, 7.0], [13.0, 15.0]]"
    assert second.startswith("ERROR max_pool2d: no CUDA device was found")
    assert "NUMBA_ENABLE_CUDASIM=1" in second and "use_simulator_if_no_gpu" in second


def test_use_simulator_if_no_gpu():
    out = _subprocess("""
        import os, sys
        from poolkit import config
        print(config.use_simulator_if_no_gpu())
        print(os.environ.get("NUMBA_ENABLE_CUDASIM"), "numba" in sys.modules)
        from numba import cuda
        import numpy as np
        from poolkit import gpu
        print(gpu.simulator_enabled(), gpu.max_pool2d(np.ones((1, 1, 2, 2), np.float32), 2).ravel().tolist())
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("CUDA simulator") and "NUMBA_ENABLE_CUDASIM=1" in lines[0]
    assert lines[1:] == ["1 False", "True [1.0]"]
    late = _subprocess("""
        import numba
        from poolkit import config
        try:
            config.use_simulator_if_no_gpu()
        except RuntimeError as exc:
            print("ERROR", exc)
    """)
    assert late.returncode == 0, late.stderr
    assert late.stdout.startswith("ERROR use_simulator_if_no_gpu(): no NVIDIA GPU was found, and numba is already imported")
    assert "Restart the Python kernel" in late.stdout


# ------------------------------------------------------------------ benchmark
def test_gpu_benchmark_smoke(tmp_path):
    from poolkit.bench.__main__ import main

    out = tmp_path / "gpu.md"
    rc = main(["--gpu", "--smoke", "--repeat", "2", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    for label in ("max 2x2 s2", "max 3x3 s2 p1", "avg 2x2 s2", "avg 7x7"):
        assert label in text
    assert "NCHW" in text and "NHWC" in text and "copy" in text


# ------------------------------------------------------------------ simulator / real GPU only
@pytest.mark.cudasim
@simulator_only
def test_simulator_arrays_are_recognised_as_gpu_arrays():
    d = cuda.to_device(np.zeros((1, 1, 2, 2), np.float32))
    assert type(d).__name__ == "FakeCUDAArray" and not hasattr(d, "__cuda_array_interface__")
    assert poolkit.functional.backend_for(d) == "gpu" and gpu.simulator_enabled()


@real_gpu_only
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_default_launch_config_on_realistic_shapes(monkeypatch, layout):
    config.reset()
    rng = np.random.default_rng(0)
    for shape, kw in [((4, 16, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
                      ((4, 64, 7, 7), dict(kernel_size=7)),
                      ((2, 8, 33, 65), dict(kernel_size=2, stride=2, ceil_mode=True))]:
        x = rng.standard_normal(shape).astype(np.float32)
        if layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        for kernel in KERNELS:
            want, want_idx = cpu.max_pool2d(x, return_indices=True, layout=layout, **kw)
            got, idx = gpu.max_pool2d(x, return_indices=True, layout=layout, kernel=kernel, **kw)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(idx, want_idx)
            assert_avg_close(gpu.avg_pool2d(x, layout=layout, kernel=kernel, **kw),
                             cpu.avg_pool2d(x, layout=layout, **kw), x, kw["kernel_size"])


@real_gpu_only
def test_cupy_and_torch_arrays_zero_copy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = reference.max_pool2d(x, 2)
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        out = poolkit.max_pool2d(cupy.asarray(x), 2)
        np.testing.assert_array_equal(cupy.asnumpy(cupy.asarray(out)), want)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        t = torch.as_tensor(x, device="cuda")
        out = poolkit.max_pool2d(t, 2)
        np.testing.assert_array_equal(torch.as_tensor(out, device="cuda").cpu().numpy(), want)
        tl = t.to(memory_format=torch.channels_last).permute(0, 2, 3, 1)  # NHWC view
        out = poolkit.avg_pool2d(tl, 2, layout="NHWC")
        np.testing.assert_allclose(torch.as_tensor(out, device="cuda").cpu().numpy(),
                                   reference.avg_pool2d(x, 2).transpose(0, 2, 3, 1), rtol=1e-6)
    if cupy is None and (torch is None or not torch.cuda.is_available()):
        pytest.skip("neither CuPy nor PyTorch with CUDA is installed")


# ------------------------------------------------------------------ lesson 05/06 exercise checkers
@cuda.jit
def _good_max_kernel(x, out, kernel_size, stride):
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    if i >= out.size:
        return
    ow = i % OW
    oh = (i // OW) % OH
    c = (i // (OW * OH)) % C
    n = i // (OW * OH * C)
    m = x[n, c, oh * stride, ow * stride]
    for kh in range(kernel_size):
        for kw in range(kernel_size):
            v = x[n, c, oh * stride + kh, ow * stride + kw]
            if v > m:
                m = v
    out[n, c, oh, ow] = m


@cuda.jit
def _zero_init_max_kernel(x, out, kernel_size, stride):
    # a learner's mistake: the running max starts at 0, so all-negative windows give 0
    i = cuda.grid(1)
    OH, OW = out.shape[2], out.shape[3]
    if i < out.size:
        ow = i % OW
        oh = (i // OW) % OH
        c = (i // (OW * OH)) % out.shape[1]
        n = i // (OW * OH * out.shape[1])
        m = 0.0
        for kh in range(kernel_size):
            for kw in range(kernel_size):
                v = x[n, c, oh * stride + kh, ow * stride + kw]
                if v > m:
                    m = v
        out[n, c, oh, ow] = m


@cuda.jit
def _no_guard_max_kernel(x, out, kernel_size, stride):
    i = cuda.grid(1)
    OW = out.shape[3]
    OH = out.shape[2]
    ow = i % OW
    oh = (i // OW) % OH
    c = (i // (OW * OH)) % out.shape[1]
    n = i // (OW * OH * out.shape[1])
    out[n, c, oh, ow] = x[n, c, oh * stride, ow * stride]


@cuda.jit
def _good_avg_nhwc_kernel(x, out, kernel_size, stride, padding):
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    if i >= out.size:
        return
    c = i % C
    ow = (i // C) % OW
    oh = (i // (C * OW)) % OH
    n = i // (C * OW * OH)
    s = 0.0
    for kh in range(kernel_size):
        for kw in range(kernel_size):
            ih = oh * stride - padding + kh
            iw = ow * stride - padding + kw
            if 0 <= ih < H and 0 <= iw < W:
                s += x[n, ih, iw, c]
    out[n, oh, ow, c] = s / (kernel_size * kernel_size)


@cuda.jit
def _mixed_up_avg_kernel(x, out, kernel_size, stride, padding):
    # a learner's mistake: OH where OW belongs while unravelling (right for square outputs only)
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    if i < out.size:
        c = i % C
        ow = (i // C) % OH
        oh = (i // (C * OW)) % OH
        n = i // (C * OW * OH)
        s = 0.0
        for kh in range(kernel_size):
            for kw in range(kernel_size):
                ih = oh * stride - padding + kh
                iw = ow * stride - padding + kw
                if 0 <= ih < H and 0 <= iw < W:
                    s += x[n, ih, iw, c]
        out[n, oh, ow, c] = s / (kernel_size * kernel_size)


def test_lesson05_checkers_accept_right_and_explain_wrong_kernels(capsys):
    from poolkit.exercises import lesson05

    assert lesson05.check_naive_max_kernel(_good_max_kernel)
    assert "all cases pass" in capsys.readouterr().out
    assert not lesson05.check_naive_max_kernel(_zero_init_max_kernel)
    out = capsys.readouterr().out
    assert "FAIL" in out and "all negative" in out and "-inf" in out
    assert not lesson05.check_naive_max_kernel(_good_max_kernel.py_func)  # forgot @cuda.jit
    assert "put @cuda.jit on the line above" in capsys.readouterr().out
    assert lesson05.check_naive_avg_nhwc_kernel(_good_avg_nhwc_kernel)
    assert not lesson05.check_naive_avg_nhwc_kernel(_mixed_up_avg_kernel)
    out = capsys.readouterr().out
    assert "FAIL" in out and "1x6x5x3" in out and "c = i % C, then ow" in out


@pytest.mark.cudasim
@simulator_only
def test_lesson05_missing_guard_is_reported_on_the_simulator(capsys):
    from poolkit.exercises import lesson05

    # On a GPU an out-of-bounds write is undefined behaviour; the simulator raises.
    assert not lesson05.check_naive_max_kernel(_no_guard_max_kernel)
    out = capsys.readouterr().out
    assert "raised" in out and "must return" in out


def test_lesson06_checkers_accept_right_and_explain_wrong_answers(capsys):
    from poolkit.exercises import lesson06

    def tile(tr, tc, k, s, d):
        span = (k - 1) * d + 1
        return ((tr - 1) * s + span, (tc - 1) * s + span)

    assert lesson06.check_tile_with_halo(tile)
    assert not lesson06.check_tile_with_halo(lambda tr, tc, k, s, d: (tr * s + k - 1, tc * s + k - 1))
    out = capsys.readouterr().out
    assert "FAIL" in out and "dilation" in out

    def loads(H, W, k, s, p):
        def taps(L):
            return sum(min(o * s - p + k, L) - max(o * s - p, 0) for o in range((L + 2 * p - k) // s + 1))
        return taps(H) * taps(W)

    def loads_with_padding(H, W, k, s, p):  # counts padding taps as loads
        return ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1) * k * k

    assert lesson06.check_naive_loads(loads)
    assert not lesson06.check_naive_loads(loads_with_padding)
    out = capsys.readouterr().out
    assert "FAIL" in out and "padding taps are skipped" in out


def test_gpu_benchmark_fails_clearly_without_a_gpu():
    out = _subprocess("import sys; from poolkit.bench.__main__ import main; sys.exit(main([\"--gpu\"]))")
    assert out.returncode == 2
    assert "no CUDA device was found" in out.stderr and "--smoke" in out.stderr
    sim = _subprocess("import sys; from poolkit.bench.__main__ import main; sys.exit(main([\"--gpu\"]))",
                      NUMBA_ENABLE_CUDASIM="1")
    assert sim.returncode == 2 and "the simulator cannot time kernels" in sim.stderr
