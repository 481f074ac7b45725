"""Lp pooling and its backward hold no temporaries bigger than their result (issue 12), and
still give the values of the whole-array formula they replaced.

The forward pools the (n, c) planes in groups whose ``x ** p`` fits in the output's bytes;
the backward runs its whole chain group by group. Peak memory is read with ``tracemalloc``
(NumPy reports its allocations to it) after a warm-up call, so Numba's compiler is not
measured. The reference (``old_*``) is the former whole-array formula, written with plain
NumPy and poolkit's public average/max pooling and their backward passes: every value
must match bit for bit (signed zeros included; NaN only as NaN: which NaN a NumPy ufunc
returns for two NaN operands depends on where the cell falls in its array, so the NaN
sign bit is no property of either version -- the former one already changed it between
serial and parallel runs).
"""
from __future__ import annotations

import math
import tracemalloc

import numba
import numpy as np
import pytest

import poolkit
from poolkit import config

LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
P_VALUES = [1.0, 2.0, 3.0, 1.5, math.inf, -math.inf]
#: Bytes a call may hold beyond its bound: NumPy's ufunc buffers (8192 cells per operand) on
#: strided channels-last slices, geometry tables, views.
SLACK = 64 << 10


@pytest.fixture(autouse=True)
def two_threads():
    """The group sizes take one plane per thread at least (parallel channels-first kernels): pin
    the thread count so that the budget, not the machine, sets the groups measured here."""
    before = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    yield
    numba.set_num_threads(before)


def _data(shape, seed, dtype=np.float32):
    """Normal values (half negative: ``x ** 1.5`` is NaN there) with zeros, -0.0, NaN and inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.1] = 0
    x[rng.random(shape) < 0.02] = -0.0
    x[rng.random(shape) < 0.002] = np.nan
    x[rng.random(shape) < 0.002] = -np.inf
    return x


def _shape(N, C, spatial, layout):
    cl = not layout.startswith("NC")
    return (N,) + tuple(spatial) + (C,) if cl else (N, C) + tuple(spatial)


def _sign(a):
    return np.where(np.isnan(a), a.dtype.type(0), np.sign(a))


def old_lp(nd, x, p, k, s, ceil, layout):
    """The former forward: ``(avg_pool(x ** p) * K) ** (1/p)``; ``s * max_pool(s * |x|)`` for p = +-inf."""
    avg, mx = getattr(poolkit, f"avg_pool{nd}d"), getattr(poolkit, f"max_pool{nd}d")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isinf(p):
            sg = 1 if p > 0 else -1
            return sg * mx(sg * np.abs(x), k, s, 0, 1, ceil, layout=layout)
        a = avg(x ** p, k, s, 0, ceil, True, layout=layout)
        return (a * k ** nd) ** (1.0 / p)


def old_lp_backward(nd, grad, x, p, k, s, ceil, layout):
    """The former backward, on whole arrays."""
    avg = getattr(poolkit, f"avg_pool{nd}d")
    avg_b, max_b = getattr(poolkit, f"avg_pool{nd}d_backward"), getattr(poolkit, f"max_pool{nd}d_backward")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isinf(p):
            sg = 1 if p > 0 else -1
            return max_b(grad, sg * np.abs(x), k, s, 0, 1, ceil, layout=layout) * _sign(x)
        K = k ** nd
        a = avg(x ** p, k, s, 0, ceil, True, layout=layout)
        gt = grad * ((1.0 / p) * (a * K) ** (1.0 / p - 1.0)) * K
        sa = _sign(a)
        ga = np.where(a == 0, x.dtype.type(0), gt * sa * sa)
        return avg_b(ga, x, k, s, 0, ceil, True, layout=layout) * (p * x ** (p - 1.0))


def assert_same_values(got, want):
    """Same shape and dtype, NaN at the same cells, every other cell bit for bit (so -0.0 != 0.0)."""
    assert got.shape == want.shape and got.dtype == want.dtype
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bits = np.uint32 if got.dtype == np.float32 else np.uint64
    assert np.array_equal(got.view(bits)[~nan], want.view(bits)[~nan])
    assert np.array_equal(got, want, equal_nan=True)


def _traced(call):
    """``(result, bytes held beyond the result at the peak)`` of ``call()``, after a warm-up call."""
    call()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak - result.nbytes


#: (nd, (N, C), spatial sizes) of the memory cases: 4 MiB of float32 each, 64 planes (the budget,
#: not the parallel kernels' minimum group of ``config.CPU_PARALLEL_MIN_SIZE`` cells, sets the groups).
MEMORY_CASES = [(2, (4, 16), (128, 128)), (1, (4, 16), (16384,)), (3, (4, 16), (16, 32, 32))]
GEOMETRIES = [(2, 2, False), (3, 1, True)]  # (kernel, stride, ceil_mode)


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("k,s,ceil", GEOMETRIES)
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("nd,nc,spatial", MEMORY_CASES, ids=["2d", "1d", "3d"])
def test_lp_temporaries_fit_in_the_result(nd, nc, spatial, cl, k, s, ceil, p):
    layout = LAYOUTS[nd][cl]
    x = _data(_shape(*nc, spatial, layout), seed=nd * 10 + cl)
    lp, lp_b = getattr(poolkit, f"lp_pool{nd}d"), getattr(poolkit, f"lp_pool{nd}d_backward")
    out, extra = _traced(lambda: lp(x, p, k, s, ceil, layout=layout))
    assert extra <= out.nbytes + SLACK, f"forward: {extra / out.nbytes:.2f}x the output in temporaries"
    assert_same_values(out, old_lp(nd, x, p, k, s, ceil, layout))

    grad = _data(out.shape, seed=99)
    gx, extra = _traced(lambda: lp_b(grad, x, p, k, s, ceil, layout=layout))
    assert extra <= gx.nbytes + SLACK, f"backward: {extra / gx.nbytes:.2f}x grad_input in temporaries"
    assert_same_values(gx, old_lp_backward(nd, grad, x, p, k, s, ceil, layout))


@pytest.mark.parametrize("p", P_VALUES + [0.5, -1.0, -2.5, 7.0])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_values_unchanged(nd, p, monkeypatch):
    """Odd sizes, both dtypes and layouts, ceil_mode windows, unbatched, non-contiguous and empty
    (N = 0) inputs, serial kernels only and parallel ones down to the smallest group: the former
    formula's values."""
    min_size = config.CPU_PARALLEL_MIN_SIZE
    spatial = {1: (301,), 2: (23, 30), 3: (7, 9, 11)}[nd]
    lp, lp_b = getattr(poolkit, f"lp_pool{nd}d"), getattr(poolkit, f"lp_pool{nd}d_backward")
    cases = 0
    for dtype in (np.float32, np.float64):
        for cl in (False, True):
            layout = LAYOUTS[nd][cl]
            for k, s, ceil in [(2, 2, False), (3, 1, True), (3, 2, True)]:
                for N, C, variant in [(3, 20, "contiguous"), (3, 20, "fortran"), (1, 5, "unbatched"),
                                      (0, 4, "empty"), (3, 20, "serial"), (3, 20, "parallel")]:
                    threshold = {"serial": 1 << 62, "parallel": 1}.get(variant, min_size)
                    monkeypatch.setattr(config, "CPU_PARALLEL_MIN_SIZE", threshold)
                    x = _data(_shape(N, C, spatial, layout), seed=cases, dtype=dtype)
                    if variant == "fortran":
                        x = np.asfortranarray(x)
                    if variant == "unbatched":
                        x = x[0]
                    kw = dict(layout=layout)
                    out = lp(x, p, k, s, ceil, **kw)
                    assert_same_values(out, old_lp(nd, x, p, k, s, ceil, layout))
                    grad = _data(out.shape, seed=1000 + cases, dtype=dtype)
                    assert_same_values(lp_b(grad, x, p, k, s, ceil, **kw),
                                       old_lp_backward(nd, grad, x, p, k, s, ceil, layout))
                    cases += 1
    assert cases == 72
