"""What is specific to poolkit.gpu: device and zero-copy inputs, dispatch of device
arrays, the naive and optimized kernels side by side, tiling plans and launch
configuration, the launches' argument types (the specializations test_ptx.py
compiles), running without a GPU, and the GPU benchmark's plumbing.

Every op's results on the GPU are tested with the other backends (test_forward_*.py,
test_backward.py). These tests run in their own process: with ``NUMBA_ENABLE_CUDASIM=1``
(Numba's CUDA simulator, no GPU needed; ``python3 tasks.py test`` does this) or on a
real GPU with ``POOLKIT_REAL_GPU=1``; the launch configuration is patched tiny
(tests/conftest.py) so that small inputs span several blocks and every block of the
tiled kernels loops over several tiles.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import cuda

import poolkit
from backends import GPU_MARKS, SIM, host, is_device
from poolkit import config, cpu, gpu, reference
from poolkit import geometry as G
from poolkit.gpu import device as gpu_device
from strategies import assert_avg_close

pytestmark = list(GPU_MARKS)
simulator_only = pytest.mark.skipif(not SIM, reason="simulator-specific (NUMBA_ENABLE_CUDASIM=1)")
real_gpu_only = pytest.mark.skipif(SIM, reason="needs a real GPU (too slow on the simulator)")

KERNELS = ["naive", "optimized"]


def _check_max(x, kw, layout, kernel):
    want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    got = gpu.max_pool2d(x, layout=layout, kernel=kernel, **kw)
    got2, idx = gpu.max_pool2d(x, return_indices=True, layout=layout, kernel=kernel, **kw)
    for g in (got, got2):
        assert isinstance(g, np.ndarray) and g.dtype == want.dtype and g.shape == want.shape
        np.testing.assert_array_equal(g, want)  # NaN == NaN here
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, want_idx)


def _same(got, want):
    """Same shape, dtype and bits (NaN where NaN)."""
    got = host(got)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def _grad_like(out, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, size=out.shape).astype(out.dtype) + rng.random(out.shape).astype(out.dtype)


# ------------------------------------------------------------------ naive and optimized kernels
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


# ------------------------------------------------------------------ device arrays stay on the device
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
        assert is_device(o), type(o)
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
        assert is_device(out) and tuple(out.shape) == want.shape, name
        np.testing.assert_array_equal(out.copy_to_host(), want, err_msg=name)
        np.testing.assert_array_equal(idx.copy_to_host(), want_idx, err_msg=name)
        np.testing.assert_array_equal(gpu.avg_pool2d(dv, 3, 2, 1, layout=layout, kernel=kernel).copy_to_host(),
                                      reference.avg_pool2d(hv, 3, 2, 1, layout=layout), err_msg=name)
    np.testing.assert_array_equal(d.copy_to_host(), big)


def test_strided_device_input_and_unbatched():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 6, 5, 4, 6)).astype(np.float64)
    d = cuda.to_device(base)[:, ::2, :, :, ::2]  # non-contiguous channels-first view
    x = base[:, ::2, :, :, ::2]
    _same(gpu.max_pool3d(d, 2, 1, 1), cpu.max_pool3d(x, 2, 1, 1))
    _same(gpu.adaptive_avg_pool3d(d, (2, None, 3)), cpu.adaptive_avg_pool3d(x, (2, None, 3)))
    x1 = np.ascontiguousarray(base[0, :, 0, 0, :])  # (C, L) unbatched 1-d
    _same(gpu.avg_pool1d(x1, 3, 2, 1, ceil_mode=True), cpu.avg_pool1d(x1, 3, 2, 1, ceil_mode=True))
    xu = np.ascontiguousarray(base[0, :, :3])  # (C, D, H, W) unbatched 3-d
    g = _grad_like(cpu.avg_pool3d(xu, 2, 1, 1, True), 2)
    _same(gpu.avg_pool3d_backward(g, cuda.to_device(xu), 2, 1, 1, True),
          cpu.avg_pool3d_backward(g, xu, 2, 1, 1, True))


@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_batch(kernel):
    x = np.zeros((0, 3, 6, 5), dtype=np.float32)
    assert gpu.max_pool2d(x, 2, kernel=kernel).shape == (0, 3, 3, 2)
    out, idx = gpu.max_pool2d(cuda.to_device(x), 2, return_indices=True, kernel=kernel)
    assert is_device(out) and tuple(out.shape) == (0, 3, 3, 2) and idx.dtype == np.int64
    a = gpu.avg_pool2d(cuda.to_device(np.zeros((0, 6, 5, 3), np.float64)), 2, layout="NHWC", kernel=kernel)
    assert is_device(a) and tuple(a.shape) == (0, 3, 2, 3) and a.dtype == np.float64


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_zero_channels_where_the_cpu_takes_them(nd, batched):
    """Adaptive pooling and unpooling take C = 0 (geometry.takes_zero_channels): the CPU's
    shapes, nothing launched; max/avg/Lp pooling refuse it, as on the CPU."""
    x = np.zeros((2,) * batched + (0,) + (4,) * nd, np.float32)
    idx = np.zeros(x.shape, np.int64)
    dx = cuda.to_device(x)
    calls = [(f"adaptive_max_pool{nd}d", (2,)), (f"adaptive_avg_pool{nd}d", (3,)),
             (f"max_unpool{nd}d", (idx, 2))] + ([("global_max_pool2d", ()), ("global_avg_pool2d", ())]
                                              if nd == 2 else [])
    for name, args in calls:
        want = getattr(cpu, name)(x, *args)
        _same(getattr(gpu, name)(dx, *args), want)
        g = np.zeros(want.shape, np.float32)
        _same(getattr(gpu, f"{name}_backward")(g, dx, *args), getattr(cpu, f"{name}_backward")(g, x, *args))
    for name, args in [(f"max_pool{nd}d", (2,)), (f"avg_pool{nd}d", (2,)), (f"lp_pool{nd}d", (2, 2))]:
        with pytest.raises(ValueError, match="only adaptive pooling and unpooling take zero channels"):
            getattr(gpu, name)(dx, *args)
    x1 = np.ones(x.shape[:-nd - 1] + (2,) + x.shape[-nd:], np.float32)  # an empty output, unbatched too
    _same(gpu.adaptive_avg_pool1d(x1, 0) if nd == 1 else getattr(gpu, f"adaptive_max_pool{nd}d")(x1, 0),
          cpu.adaptive_avg_pool1d(x1, 0) if nd == 1 else getattr(cpu, f"adaptive_max_pool{nd}d")(x1, 0))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_unpool_full_output_size_in_the_layouts_order(layout):
    """``output_size=x.shape`` is read in the layout's order (geometry.unpool_output_size), as on the CPU."""
    x = np.random.default_rng(8).standard_normal((1, 2, 5, 3)).astype(np.float32)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    y, i = cpu.max_pool2d(x, 2, return_indices=True, layout=layout)
    want = cpu.max_unpool2d(y, i, 2, output_size=x.shape, layout=layout)
    assert want.shape == x.shape
    _same(gpu.max_unpool2d(cuda.to_device(y), i, 2, output_size=x.shape, layout=layout), want)
    g = _grad_like(want, 9)
    _same(gpu.max_unpool2d_backward(g, y, i, 2, output_size=x.shape, layout=layout),
          cpu.max_unpool2d_backward(g, y, i, 2, output_size=x.shape, layout=layout))


# ------------------------------------------------------------------ poolkit.<op> dispatches device arrays here
def test_dispatch_through_poolkit_with_device_arrays():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    d = cuda.to_device(x)
    assert poolkit.functional.backend_for(d) == "gpu"
    out = poolkit.max_pool2d(d, 2)
    assert is_device(out)
    np.testing.assert_array_equal(out.copy_to_host(), reference.max_pool2d(x, 2))
    out, idx = poolkit.max_pool2d(d, 3, 1, 1, return_indices=True)
    assert is_device(out) and is_device(idx)
    np.testing.assert_array_equal(idx.copy_to_host(), reference.max_pool2d(x, 3, 1, 1, return_indices=True)[1])
    avg = poolkit.avg_pool2d(d, 2, count_include_pad=False)
    assert is_device(avg)
    np.testing.assert_array_equal(avg.copy_to_host(), reference.avg_pool2d(x, 2))


def test_public_api_dispatches_device_arrays_to_gpu():
    x = np.arange(2 * 3 * 4 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4, 4) % 7
    d = cuda.to_device(x)
    got = poolkit.max_pool3d(d, 2)
    assert is_device(got)
    _same(got, poolkit.max_pool3d(x, 2))
    g = np.ones((2, 3, 2, 2, 2), np.float32)
    gx = poolkit.avg_pool3d_backward(cuda.to_device(g), d, 2)
    assert is_device(gx)
    _same(gx, poolkit.avg_pool3d_backward(g, x, 2))


@pytest.mark.cudasim
@simulator_only
def test_simulator_arrays_are_recognised_as_gpu_arrays():
    d = cuda.to_device(np.zeros((1, 1, 2, 2), np.float32))
    assert type(d).__name__ == "FakeCUDAArray" and not hasattr(d, "__cuda_array_interface__")
    assert poolkit.functional.backend_for(d) == "gpu" and gpu.simulator_enabled()


# ------------------------------------------------------------------ tiling plans and launch configuration
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


@real_gpu_only
def test_device_inputs_stay_on_the_device(monkeypatch):
    """Zero-copy, checked by pointers: a PyTorch CUDA tensor and a CuPy array go into the kernels
    as they are (a launch argument points into the caller's memory), nothing is copied to the
    host during the call, the results are device arrays, and they equal poolkit.cpu's (max
    values and indices bit for bit)."""
    from numba.cuda.cudadrv import devicearray

    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA here")
    pointers, to_host = [], []
    real_launch, real_to_host = gpu_device.launch, devicearray.DeviceNDArrayBase.copy_to_host

    def spy(name, kernel, griddim, blockdim, shared_bytes, args):
        pointers.extend(a.__cuda_array_interface__["data"][0] for a in args
                        if hasattr(a, "__cuda_array_interface__"))
        return real_launch(name, kernel, griddim, blockdim, shared_bytes, args)

    def counted(self, *a, **k):
        to_host.append(self.shape)
        return real_to_host(self, *a, **k)

    monkeypatch.setattr(gpu_device, "launch", spy)
    monkeypatch.setattr(devicearray.DeviceNDArrayBase, "copy_to_host", counted)

    def inside(arr):
        cai = arr.__cuda_array_interface__
        lo = cai["data"][0]
        hi = lo + int(np.prod(cai["shape"])) * np.dtype(cai["typestr"]).itemsize
        return any(lo <= p < hi for p in pointers)

    def host_of(out):
        return np.asarray(torch.as_tensor(out, device="cuda").cpu())

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    x3 = rng.standard_normal((2, 3, 6, 8, 10)).astype(np.float32)
    t, t3 = torch.as_tensor(x, device="cuda"), torch.as_tensor(x3, device="cuda")
    nhwc = t.to(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    calls = [
        ("max_pool2d +indices", t, lambda: poolkit.max_pool2d(t, 3, 2, 1, return_indices=True),
         cpu.max_pool2d(x, 3, 2, 1, return_indices=True)),
        ("avg_pool2d NHWC", nhwc, lambda: poolkit.avg_pool2d(nhwc, 2, layout="NHWC"),
         cpu.avg_pool2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), 2, layout="NHWC")),
        ("max_pool3d", t3, lambda: poolkit.max_pool3d(t3, 2), cpu.max_pool3d(x3, 2)),
        ("adaptive_avg_pool2d", t, lambda: poolkit.adaptive_avg_pool2d(t, 3), cpu.adaptive_avg_pool2d(x, 3)),
    ]
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        c = cupy.asarray(x)
        calls.append(("max_pool2d CuPy", c, lambda: poolkit.max_pool2d(c, 2), cpu.max_pool2d(x, 2)))
    for label, arr, call, want in calls:
        pointers.clear()
        to_host.clear()
        got = call()
        torch.cuda.synchronize()
        assert not to_host, (label, to_host)
        assert inside(arr), label
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert hasattr(g, "__cuda_array_interface__") and not isinstance(g, np.ndarray), label
            h = host_of(g)
            assert h.shape == w.shape, label
            if label.startswith("max"):  # bit for bit; averages within float32 rounding
                assert np.array_equal(h.view(np.uint8), w.view(np.uint8)), label
            else:
                np.testing.assert_allclose(h, w, rtol=1e-5, atol=1e-6, err_msg=label)


# ------------------------------------------------------------------ launches use the PTX-tested specializations
def test_2d_launch_argument_types_are_the_ptx_tested_ones(monkeypatch):
    """Every launch the 2-d functions make uses a specialization test_ptx.py compiles."""
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


def test_nd_launch_argument_types_are_the_ptx_tested_ones(monkeypatch):
    """Every family kernel launch the functions make uses a specialization test_ptx.py compiles."""
    import numba

    shipped = {(name, sig) for name, _, sig in gpu.nd_kernel_specializations()}
    seen = set()
    real = gpu_device.launch

    def spy(name, kernel, griddim, blockdim, shared_bytes, args):
        if name in gpu.ND_KERNELS:  # (the 2-D kernels are the test above's)
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
    # nan_policy="omit": NumPy and device inputs, forward and backward
    xn = x.copy()
    xn[0, 1] = np.nan
    gpu.max_pool1d(xn.reshape(2, 16, 3), 3, 2, 1, return_indices=True, layout="NLC", nan_policy="omit")
    gpu.adaptive_max_pool3d(cuda.to_device(xn.reshape(2, 3, 4, 4, 1)), 2, True, nan_policy="omit")
    ap = gpu.avg_pool2d(cuda.to_device(xn), 3, 1, 1, layout="NHWC", divisor_override=2, nan_policy="omit")
    gpu.avg_pool2d_backward(ap, cuda.to_device(xn), 3, 1, 1, layout="NHWC", divisor_override=2,
                            nan_policy="omit")
    aa = gpu.adaptive_avg_pool2d(xn, (3, 2), layout="NHWC", nan_policy="omit")
    gpu.adaptive_avg_pool2d_backward(aa, xn, (3, 2), layout="NHWC", nan_policy="omit")
    assert {n for n, _ in seen} >= {"max3d", "adaptive_max", "ewise", "avg_gather", "index_gather",
                                    "max_gather", "max3d_omit", "adaptive_max_omit", "avg_omit",
                                    "avg_gather_omit"}
    assert seen <= shipped, sorted(map(str, seen - shipped))


# ------------------------------------------------------------------ without a GPU or the simulator
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


@simulator_only
def test_without_gpu_or_simulator_the_family_fails_at_once_with_a_clear_message():
    out = _subprocess("""
        import numpy as np
        from poolkit import gpu
        try:
            gpu.max_pool3d(np.zeros((1, 1, 2, 2, 2), np.float32), 2)
        except gpu.CudaUnavailableError as exc:
            print("ERROR", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ERROR max_pool3d: no CUDA device was found")


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


def test_gpu_benchmark_fails_clearly_without_a_gpu():
    out = _subprocess("import sys; from poolkit.bench.__main__ import main; sys.exit(main([\"--gpu\"]))")
    assert out.returncode == 2
    assert "no CUDA device was found" in out.stderr and "--smoke" in out.stderr
    sim = _subprocess("import sys; from poolkit.bench.__main__ import main; sys.exit(main([\"--gpu\"]))",
                      NUMBA_ENABLE_CUDASIM="1")
    assert sim.returncode == 2 and "the simulator cannot time kernels" in sim.stderr
