"""poolkit.gpu (the pooling family and every backward on the GPU) against poolkit.cpu.

Run in their own process: with ``NUMBA_ENABLE_CUDASIM=1`` (Numba's CUDA simulator,
no GPU needed) or on a real GPU. The launch configuration is patched tiny so the
small inputs span several blocks; the simulator costs ~0.2 ms per simulated
thread, so inputs stay at a few hundred cells and hypothesis budgets are small.

Forward ops and max-type/average/unpooling gradients must equal the CPU bit for
bit (NaN where NaN). Lp pooling goes through ``pow``, which neither libm nor
libdevice rounds correctly, so it is compared with a tight relative tolerance.
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
from poolkit import cpu, gpu  # noqa: E402
from poolkit.gpu import device as gpu_device  # noqa: E402
from strategies_nd import adaptive_problem, window_problem  # noqa: E402

pytestmark = pytest.mark.gpu
simulator_only = pytest.mark.skipif(not SIM, reason="simulator-specific (NUMBA_ENABLE_CUDASIM=1)")

# small on the simulator (~0.2 ms per thread); POOLKIT_GPU_FAMILY_EXAMPLES raises it for a deeper run
EXAMPLES = int(os.environ.get("POOLKIT_GPU_FAMILY_EXAMPLES", 6 if SIM else 60))
HSETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.filter_too_much])
MAX_DTYPES = gpu.ND_SUPPORTED_DTYPES["max"]
ND = [1, 2, 3]


@pytest.fixture(autouse=True)
def tiny_launch_config(monkeypatch):
    """Small blocks: tiny inputs span several blocks (and tiles, on the 2-D path)."""
    monkeypatch.setattr(config, "GPU_THREADS_PER_BLOCK", 16)
    monkeypatch.setattr(config, "GPU_TILE_THREADS", 32)
    monkeypatch.setattr(config, "GPU_TILE_WIDTH", 4)
    monkeypatch.setattr(config, "GPU_TILE_CHANNELS", 2)
    monkeypatch.setattr(config, "GPU_OUTPUTS_PER_THREAD", 2)
    monkeypatch.setattr(config, "GPU_MAX_BLOCKS", 3)


cpu_nd = cpu  # the CPU twins (poolkit.cpu has the whole family since the cpu/ package)


def _is_device(a):
    return type(a).__module__.startswith("numba.cuda")


def _host(a):
    return a.copy_to_host() if _is_device(a) else a


def _same(got, want):
    """Same shape, dtype and bits (NaN where NaN)."""
    got = _host(got)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def _close(got, want):
    got = _host(got)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def _maybe_device(draw, x):
    """Half the time the input lives on the device (result must stay there)."""
    if draw(st.booleans()):
        return cuda.to_device(np.ascontiguousarray(x)), True
    return x, False


def _grad_like(out, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, size=out.shape).astype(out.dtype) + rng.random(out.shape).astype(out.dtype)


def _tuple(r):
    return r if isinstance(r, tuple) else (r,)


# ------------------------------------------------------------------ forward + backward vs cpu_nd
@pytest.mark.parametrize("nd", ND)
@HSETTINGS
@given(data=st.data())
def test_max_pool_and_backward_match_cpu(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=MAX_DTYPES))
    name = f"max_pool{nd}d"
    xin, on_dev = _maybe_device(data.draw, x)
    want, want_idx = getattr(cpu_nd, name)(x, return_indices=True, layout=layout, **kw)
    if nd < 3:  # the 2-D kernels of poolkit.gpu, both stages
        kw_gpu = dict(kw, kernel=data.draw(st.sampled_from(["optimized", "naive"]))) if nd == 1 else kw
        got, idx = getattr(gpu, name)(xin, return_indices=True, layout=layout, **kw_gpu)
    else:
        got, idx = getattr(gpu, name)(xin, return_indices=True, layout=layout, **kw)
    assert _is_device(got) == on_dev and _is_device(idx) == on_dev
    _same(got, want)
    _same(idx, want_idx)
    _same(getattr(gpu, name)(xin, layout=layout, **kw), want)
    if x.dtype.kind != "f":
        return
    g = _grad_like(want, data.draw(st.integers(0, 99)))
    bwd = getattr(gpu, name + "_backward")
    want_gx = getattr(cpu_nd, name + "_backward")(g, x, layout=layout, **kw)
    gx = bwd(g, xin, layout=layout, **kw)
    assert _is_device(gx) == on_dev
    _same(gx, want_gx)
    # indices from the forward call (on the device or not) skip the search: same result
    _same(bwd(g, xin, layout=layout, indices=idx, **kw), want_gx)


@pytest.mark.parametrize("nd", ND)
@HSETTINGS
@given(data=st.data())
def test_avg_pool_and_backward_match_cpu(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="avg"))
    name = f"avg_pool{nd}d"
    xin, on_dev = _maybe_device(data.draw, x)
    want = getattr(cpu_nd, name)(x, layout=layout, **kw)
    got = getattr(gpu, name)(xin, layout=layout, **kw)
    assert _is_device(got) == on_dev
    _same(got, want)
    g = _grad_like(want, data.draw(st.integers(0, 99)))
    gin = cuda.to_device(g) if data.draw(st.booleans()) else g
    _same(getattr(gpu, name + "_backward")(gin, xin, layout=layout, **kw),
          getattr(cpu_nd, name + "_backward")(g, x, layout=layout, **kw))


@pytest.mark.parametrize("nd", ND)
@pytest.mark.parametrize("kind", ["max", "avg"])
@HSETTINGS
@given(data=st.data())
def test_adaptive_and_backward_match_cpu(nd, kind, data):
    x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=MAX_DTYPES if kind == "max" else
                                                     ("float32", "float64")))
    name = f"adaptive_{kind}_pool{nd}d"
    xin, on_dev = _maybe_device(data.draw, x)
    extra = dict(return_indices=True) if kind == "max" else {}
    want = _tuple(getattr(cpu_nd, name)(x, out_size, layout=layout, **extra))
    got = _tuple(getattr(gpu, name)(xin, out_size, layout=layout, **extra))
    for a, b in zip(got, want):
        assert _is_device(a) == on_dev
        _same(a, b)
    if x.dtype.kind != "f":
        return
    g = _grad_like(want[0], data.draw(st.integers(0, 99)))
    _same(getattr(gpu, name + "_backward")(g, xin, out_size, layout=layout),
          getattr(cpu_nd, name + "_backward")(g, x, out_size, layout=layout))


@pytest.mark.parametrize("nd", ND)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # simulator threads: np.errstate is per thread
@HSETTINGS
@given(data=st.data())
def test_lp_pool_and_backward_match_cpu(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="lp", allow_nan=False,
                                             positive=data.draw(st.booleans())))
    name = f"lp_pool{nd}d"
    p = kw.pop("norm_type")
    xin, _ = _maybe_device(data.draw, x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        want = getattr(cpu_nd, name)(x, p, layout=layout, **kw)
        _close(getattr(gpu, name)(xin, p, layout=layout, **kw), want)
        g = _grad_like(want, data.draw(st.integers(0, 99)))
        _close(getattr(gpu, name + "_backward")(g, xin, p, layout=layout, **kw),
               getattr(cpu_nd, name + "_backward")(g, x, p, layout=layout, **kw))


@pytest.mark.parametrize("nd", ND)
@HSETTINGS
@given(data=st.data())
def test_max_unpool_and_backward_match_cpu(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=MAX_DTYPES, strings=False))
    pooled, idx = getattr(cpu_nd, f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    kw = {k: kw[k] for k in ("kernel_size", "stride", "padding")}
    name = f"max_unpool{nd}d"
    pin, on_dev = _maybe_device(data.draw, pooled)
    iin = cuda.to_device(np.ascontiguousarray(idx)) if on_dev else idx
    try:
        want = getattr(cpu_nd, name)(pooled, idx, layout=layout, **kw)
    except ValueError as exc:  # e.g. the default output size is empty: same error on the GPU
        with pytest.raises(ValueError) as info:
            getattr(gpu, name)(pin, iin, layout=layout, **kw)
        assert str(info.value) == str(exc)
        return
    got = getattr(gpu, name)(pin, iin, layout=layout, **kw)
    assert _is_device(got) == on_dev
    _same(got, want)
    g = want if x.dtype.kind != "f" else _grad_like(want, data.draw(st.integers(0, 99)))
    _same(getattr(gpu, name + "_backward")(g, pin, iin, layout=layout, **kw),
          getattr(cpu_nd, name + "_backward")(g, pooled, idx, layout=layout, **kw))


# ------------------------------------------------------------------ targeted edges
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_and_backward(layout, keepdims):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4) if layout == "NCHW" else (2, 5, 4, 3)).astype(np.float32)
    x.flat[7] = np.nan
    for kind in ("max", "avg"):
        f = f"global_{kind}_pool2d"
        want = getattr(cpu_nd, f)(x, keepdims, layout=layout)
        got = getattr(gpu, f)(cuda.to_device(x), keepdims, layout=layout)
        assert _is_device(got)
        _same(got, want)
        g = _grad_like(want, 1)
        _same(getattr(gpu, f + "_backward")(cuda.to_device(g), x, keepdims, layout=layout),
              getattr(cpu_nd, f + "_backward")(g, x, keepdims, layout=layout))


def test_public_api_dispatches_device_arrays_to_gpu():
    x = np.arange(2 * 3 * 4 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4, 4) % 7
    d = cuda.to_device(x)
    got = poolkit.max_pool3d(d, 2)
    assert _is_device(got)
    _same(got, poolkit.max_pool3d(x, 2))
    g = np.ones((2, 3, 2, 2, 2), np.float32)
    gx = poolkit.avg_pool3d_backward(cuda.to_device(g), d, 2)
    assert _is_device(gx)
    _same(gx, poolkit.avg_pool3d_backward(g, x, 2))


def test_strided_device_input_and_unbatched():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 6, 5, 4, 6)).astype(np.float64)
    d = cuda.to_device(base)[:, ::2, :, :, ::2]  # non-contiguous channels-first view
    x = base[:, ::2, :, :, ::2]
    _same(gpu.max_pool3d(d, 2, 1, 1), cpu_nd.max_pool3d(x, 2, 1, 1))
    _same(gpu.adaptive_avg_pool3d(d, (2, None, 3)), cpu_nd.adaptive_avg_pool3d(x, (2, None, 3)))
    x1 = np.ascontiguousarray(base[0, :, 0, 0, :])  # (C, L) unbatched 1-d
    _same(gpu.avg_pool1d(x1, 3, 2, 1, ceil_mode=True), cpu_nd.avg_pool1d(x1, 3, 2, 1, ceil_mode=True))
    xu = np.ascontiguousarray(base[0, :, :3])  # (C, D, H, W) unbatched 3-d
    g = _grad_like(cpu_nd.avg_pool3d(xu, 2, 1, 1, True), 2)
    _same(gpu.avg_pool3d_backward(g, cuda.to_device(xu), 2, 1, 1, True),
          cpu_nd.avg_pool3d_backward(g, xu, 2, 1, 1, True))


def test_string_padding_3d_and_ties_route_to_the_first_max():
    x = np.zeros((1, 2, 3, 5, 4), np.float32)  # all ties: every gradient goes to a window's first cell
    for padding in ("same", "valid"):
        for op in ("max_pool3d", "avg_pool3d"):
            _same(getattr(gpu, op)(x + 1, 2, padding=padding), getattr(cpu_nd, op)(x + 1, 2, padding=padding))
        out = cpu_nd.max_pool3d(x, 2, 1, padding=padding)
        g = _grad_like(out, 4)
        _same(gpu.max_pool3d_backward(g, x, 2, 1, padding=padding),
              cpu_nd.max_pool3d_backward(g, x, 2, 1, padding=padding))


def test_unpool_repeated_indices_last_write_wins():
    x = np.array([[[1.0, 2.0, 3.0]]], np.float32)
    idx = np.array([[[1, 1, 0]]], np.int64)
    _same(gpu.max_unpool1d(x, idx, 2, 1), cpu_nd.max_unpool1d(x, idx, 2, 1))
    assert gpu.max_unpool1d(x, idx, 2, 1).tolist() == [[[3.0, 2.0, 0.0, 0.0]]]


@pytest.mark.parametrize("nd", ND)
def test_empty_batch(nd):
    lay = poolkit.geometry.LAYOUTS[nd][0]
    x = np.zeros((0, 2) + (4,) * nd, np.float32)
    for name, args in ((f"max_pool{nd}d", (2,)), (f"adaptive_avg_pool{nd}d", (3,)), (f"lp_pool{nd}d", (2, 2))):
        _same(getattr(gpu, name)(x, *args, layout=lay), getattr(cpu_nd, name)(x, *args, layout=lay))
        want = getattr(cpu_nd, name)(x, *args, layout=lay)
        _same(getattr(gpu, name + "_backward")(want, x, *args, layout=lay),
              getattr(cpu_nd, name + "_backward")(want, x, *args, layout=lay))


def test_backward_is_bitwise_deterministic():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(1, 2, 5, 5, 4)).astype(np.float32)  # many ties
    calls = [
        lambda g: gpu.max_pool3d_backward(g, x, 3, 1, 1),
        lambda g: gpu.avg_pool3d_backward(g, x, 3, 1, 1, True, False),
        lambda g: gpu.adaptive_avg_pool3d_backward(g[:, :, :3, :3, :3], x, 3),
    ]
    g = rng.standard_normal((1, 2, 5, 5, 4)).astype(np.float32)
    for call in calls:
        a, b = call(g), call(g)
        assert a.tobytes() == b.tobytes()


def test_launch_argument_types_are_the_ptx_tested_ones(monkeypatch):
    """Every kernel launch the functions make uses a specialization test_ptx_family compiles."""
    import numba

    shipped = {(name, sig) for name, _, sig in gpu.nd_kernel_specializations()}
    seen = set()
    real = gpu_device.launch

    def spy(name, kernel, griddim, blockdim, shared_bytes, args):
        if name in gpu.ND_KERNELS:  # (the 2-D kernels are test_gpu.py's)
            seen.add((name, tuple(numba.typeof(a) for a in args)))
        return real(name, kernel, griddim, blockdim, shared_bytes, args)

    monkeypatch.setattr(gpu_device, "launch", spy)
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) % 5
    out, idx = gpu.max_pool2d(x, 2, return_indices=True, layout="NHWC")
    d = cuda.to_device(x.reshape(2, 1, 4, 4, 3))
    gpu.max_pool3d(d, (1, 2, 2), layout="NDHWC")
    gpu.adaptive_max_pool2d(x.astype(np.uint8), 3, True, layout="NHWC")
    gpu.lp_pool2d_backward(gpu.lp_pool2d(x, 3.0, 2, layout="NHWC"), x, 3.0, 2, layout="NHWC")
    gpu.max_unpool2d_backward(x, out, idx, 2, layout="NHWC")
    gpu.max_pool2d_backward(out, cuda.to_device(x), 2, layout="NHWC")
    assert {n for n, _ in seen} >= {"max3d", "adaptive_max", "ewise", "avg_gather", "index_gather",
                                    "max_gather"}
    assert seen <= shipped, sorted(map(str, seen - shipped))


# ------------------------------------------------------------------ errors before any launch
BAD = [
    ("max_pool3d", (np.zeros((1, 1, 4, 4, 4), np.float32), 2), dict(padding=2), ValueError, "padding"),
    ("max_pool1d", (np.zeros((1, 1, 4), np.float32), 0), {}, ValueError, "kernel_size"),
    ("avg_pool3d", (np.zeros((1, 1, 4, 4, 4), np.int32), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool3d", (np.zeros((1, 1, 4, 4, 4), np.float32), 2), dict(divisor_override=0), ValueError,
     "divisor_override"),
    ("adaptive_max_pool2d", (np.zeros((1, 1, 4, 4), np.float32), (2, 2, 2)), {}, ValueError, "output_size"),
    ("lp_pool1d", (np.zeros((1, 1, 4), np.float32), 0, 2), {}, ValueError, "norm_type"),
    ("max_unpool1d", (np.zeros((1, 1, 2), np.float32), np.full((1, 1, 2), 9)), dict(kernel_size=2), ValueError,
     "indices must lie in"),
    ("max_unpool1d", (np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 3), np.int64), 2), {}, ValueError,
     "indices must have shape"),
    ("max_pool3d_backward", (np.zeros((1, 1, 1, 1, 1), np.float64), np.zeros((1, 1, 2, 2, 2), np.float32), 2),
     {}, TypeError, "grad_output must have x's dtype"),
    ("avg_pool1d_backward", (np.zeros((1, 1, 3), np.float32), np.zeros((1, 1, 4), np.float32), 2), {},
     ValueError, "grad_output must have the forward output's shape"),
    ("global_avg_pool2d", (np.zeros((1, 1, 4, 4), np.float32),), dict(layout="NDHWC"), ValueError, "layout"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,msg", BAD, ids=[b[0] + "-" + b[4][:12] for b in BAD])
def test_bad_input_raises_like_the_cpu_before_any_launch(monkeypatch, name, args, kwargs, exc, msg):
    launched = []
    monkeypatch.setattr(gpu_device, "launch", lambda *a: launched.append(a))
    with pytest.raises(exc, match=msg) as cpu_info:
        getattr(cpu_nd, name)(*args, **kwargs)
    with pytest.raises(exc, match=msg) as gpu_info:
        getattr(gpu, name)(*args, **kwargs)
    assert str(gpu_info.value) == str(cpu_info.value)
    assert not launched


def test_gpu_only_dtype_limits_name_the_supported_dtypes():
    with pytest.raises(TypeError, match="GPU kernels support dtypes"):
        gpu.max_pool3d(np.zeros((1, 1, 2, 2, 2), np.int16), 2)


@simulator_only
def test_without_gpu_or_simulator_fails_at_once_with_a_clear_message():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    code = textwrap.dedent("""
        import numpy as np
        from poolkit import gpu
        try:
            gpu.max_pool3d(np.zeros((1, 1, 2, 2, 2), np.float32), 2)
        except gpu.CudaUnavailableError as exc:
            print("ERROR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR max_pool3d: no CUDA device was found")
