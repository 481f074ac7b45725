"""The Numba CPU kernels (serial and parallel, NCHW and NHWC) against the plain-loop reference."""
import numpy as np
import pytest
from hypothesis import given, settings

import poolkit
from poolkit import cpu, reference
from strategies import pool2d_problem

SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(pool2d_problem(op="max", dtypes=("float32", "float64", "int8", "int32", "uint16", "int64")))
def test_max_pool2d_matches_reference(problem):
    x, kw, layout = problem
    want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    for parallel in (False, True):
        got = cpu.max_pool2d(x, layout=layout, parallel=parallel, **kw)
        got2, idx = cpu.max_pool2d(x, return_indices=True, layout=layout, parallel=parallel, **kw)
        assert got.dtype == x.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got2, want)
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(idx, want_idx)


@SETTINGS
@given(pool2d_problem(op="avg"))
def test_avg_pool2d_matches_reference(problem):
    x, kw, layout = problem
    want = reference.avg_pool2d(x, layout=layout, **kw)
    for parallel in (False, True):
        got = cpu.avg_pool2d(x, layout=layout, parallel=parallel, **kw)
        assert got.dtype == x.dtype and got.shape == want.shape
        # summed in the reference's (PyTorch's) order, divided in the input dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_layouts_agree(layout):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 11, 7)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for fn, kw in [(poolkit.max_pool2d, dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2))),
                   (poolkit.avg_pool2d, dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True))]:
        a = fn(x, **kw)
        b = fn(xl, layout="NHWC", **kw)
        np.testing.assert_array_equal(a, b.transpose(0, 3, 1, 2))


def test_seed_example():
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(poolkit.max_pool2d(x, 2, 2)[0, 0], [[6, 8], [14, 16]])
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, 2)[0, 0], [[3.5, 5.5], [11.5, 13.5]])


def test_nan_propagates_and_last_nan_index():
    x = np.array([[[[1.0, np.nan, 3.0, np.nan]]]], dtype=np.float32)
    out, idx = poolkit.max_pool2d(x, (1, 4), return_indices=True)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 3


def test_ties_first_max():
    x = np.array([[[[5, 5], [5, 5]]]], dtype=np.int32)
    out, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    assert out[0, 0, 0, 0] == 5 and idx[0, 0, 0, 0] == 0


def test_int_min_values_get_real_indices():
    x = np.full((1, 1, 3, 3), np.iinfo(np.int16).min, dtype=np.int16)
    out, idx = poolkit.max_pool2d(x, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])


def test_unusual_but_valid_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5))
    ref = reference.max_pool2d(x, 2)
    # N = 0
    assert poolkit.max_pool2d(x[:0], 2).shape == (0, 3, 3, 2)
    assert poolkit.avg_pool2d(x[:0], 2, layout="NHWC").shape == (0, 1, 3, 5)  # H=3, W=6, C=5
    # read-only
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(poolkit.max_pool2d(ro, 2), ref)
    # big-endian
    be = x.astype(">f8")
    np.testing.assert_array_equal(poolkit.max_pool2d(be, 2), ref)
    assert poolkit.max_pool2d(be, 2).dtype == np.float64
    np.testing.assert_array_equal(poolkit.avg_pool2d(be, 2), reference.avg_pool2d(x, 2))
    # non-contiguous: transposed and reversed views
    xt = x.transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(poolkit.max_pool2d(xt, 2), reference.max_pool2d(np.ascontiguousarray(xt), 2))
    xr = x[:, ::-1, ::-1]
    np.testing.assert_array_equal(poolkit.avg_pool2d(xr, 3, 1, 1), reference.avg_pool2d(xr.copy(), 3, 1, 1))
    # 1-pixel output, unbatched
    assert poolkit.max_pool2d(x[0], (6, 5)).shape == (3, 1, 1)
    np.testing.assert_array_equal(poolkit.max_pool2d(x[0], (6, 5))[:, 0, 0], x[0].max(axis=(1, 2)))


def test_big_endian_uint16_like_dicom():
    x = (np.arange(64, dtype=">u2") * 1000).reshape(1, 8, 8)
    out = poolkit.max_pool2d(x, 4)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out[0], [[27000, 31000], [59000, 63000]])


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_global_window_fast_path(layout, dtype):
    """A window covering the whole plane takes a flat-reduction path: same answers."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 4, 7, 5)) * 100).astype(dtype)
    x[0, 1, 2, 3] = np.nan if dtype != np.int16 else x[0, 1, 2, 3]
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for parallel in (False, True):
        got = cpu.max_pool2d(x, (7, 5), layout=layout, parallel=parallel)
        np.testing.assert_array_equal(got, reference.max_pool2d(x, (7, 5), layout=layout))
        if dtype != np.int16:
            for d in (None, 3):
                got = cpu.avg_pool2d(x, (7, 5), divisor_override=d, layout=layout, parallel=parallel)
                want = reference.avg_pool2d(x, (7, 5), divisor_override=d, layout=layout)
                np.testing.assert_array_equal(got, want)


def _signed_zeros(x):
    """Overwrite ``x`` in place (keeping its layout and strides) with -1.0, -0.0 and +0.0
    only, so that most windows hold a tie between zeros of both signs."""
    if x.size:
        code = np.nan_to_num(x).astype(np.int64) % 3
        x[...] = np.where(code == 0, -1.0, np.where(code == 1, -0.0, 0.0))
    return x


def _bits(a):
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


@settings(max_examples=80, deadline=None)
@given(pool2d_problem(op="max", allow_nan=False))
def test_max_signed_zero_ties_follow_scan_order(problem):
    """+0.0 and -0.0 compare equal; the result is the first of them in PyTorch's
    row-by-row scan, bit for bit, whatever order a kernel reduces in."""
    x, kw, layout = problem
    x = _signed_zeros(x)
    want = reference.max_pool2d(x, layout=layout, **kw)
    for parallel in (False, True):
        got = cpu.max_pool2d(x, layout=layout, parallel=parallel, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))


@settings(max_examples=80, deadline=None)
@given(pool2d_problem(op="avg", allow_nan=False))
def test_avg_signed_zeros_sum_from_positive_zero(problem):
    """A window of -0.0 averages to +0.0, as in PyTorch (sums start from +0.0)."""
    x, kw, layout = problem
    x = _signed_zeros(x)
    want = reference.avg_pool2d(x, layout=layout, **kw)
    for parallel in (False, True):
        got = cpu.avg_pool2d(x, layout=layout, parallel=parallel, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))


def _mixed_nans(x):
    """Overwrite float ``x`` in place with -1, 2 and NaNs of three bit patterns (quiet +NaN,
    the sign-bit NaN that x86 produces for inf - inf, and one with a payload)."""
    if x.size:
        bits = np.uint64 if x.dtype == np.float64 else np.uint32
        nans = np.array([np.nan, -np.nan, np.nan], x.dtype)
        nans.view(bits)[1] |= bits(1) << bits(8 * x.itemsize - 1)  # sign bit
        nans.view(bits)[2] |= bits(5)                              # payload
        code = np.nan_to_num(x).astype(np.int64) % 5
        x[...] = np.where(code < 2, np.where(code == 0, -1.0, 2.0), nans[np.clip(code - 2, 0, 2)])
    return x


@settings(max_examples=60, deadline=None)
@given(pool2d_problem(op="max", dtypes=("float32", "float64"), allow_nan=False))
def test_max_keeps_the_last_nan_bit_for_bit(problem):
    """Of several NaNs in a window, the value is the last one in scan order, bits
    included, and the index names it (PyTorch's ``v > max or isnan(v)``)."""
    x, kw, layout = problem
    x = _mixed_nans(x)
    want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    for parallel in (False, True):
        got = cpu.max_pool2d(x, layout=layout, parallel=parallel, **kw)
        got2, idx = cpu.max_pool2d(x, return_indices=True, layout=layout, parallel=parallel, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(_bits(got2), _bits(want))
        np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_signed_zero_ties_on_large_inputs(layout):
    """The parallel kernels (inputs above PARALLEL_MIN_SIZE), global windows included."""
    rng = np.random.default_rng(5)
    x = rng.choice(np.array([-1.0, -0.0, 0.0], np.float32), size=(2, 16, 40, 36))
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert x.size >= cpu.PARALLEL_MIN_SIZE
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
               dict(kernel_size=(40, 36)), dict(kernel_size=3, stride=1, dilation=2)):
        got = cpu.max_pool2d(x, layout=layout, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(reference.max_pool2d(x, layout=layout, **kw)))
    # and the last of several NaNs, with the parallel kernels too
    x = _mixed_nans(rng.integers(0, 5, size=x.shape).astype(np.float32))
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=x.shape[1:3] if layout == "NHWC"
                                                               else x.shape[2:])):
        want, want_idx = reference.max_pool2d(x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(cpu.max_pool2d(x, layout=layout, **kw)), _bits(want))
        got, idx = cpu.max_pool2d(x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(idx, want_idx)
