"""2-d max and average pooling on every backend against the plain-loop reference.

The 2-d ops have the most kernels: the tuned CPU kernels (serial and ``prange``,
NCHW and NHWC, a flat path for global windows) and the two GPU stages, naive and
optimized (:data:`backends.BACKENDS_2D`). Property tests draw the widest arguments
(:func:`strategies.pool2d_problem`); the targeted tests pin NaN, ties, signed zeros,
integer extremes, ceil_mode, dilation, string padding and unusual arrays.

Max pooling and its indices equal the reference bit for bit; so do averages (summed
in the input dtype in scan order, divided in the input dtype).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import (BACKENDS_2D, CPU_BACKENDS, GPU_EXAMPLES_2D, dtypes_for, example_float, examples, float_dtypes,
                      is_gpu, run, with_dtypes)
from poolkit import reference
from strategies import assert_avg_close, pool2d_problem

#: Every integer dtype a backend may run (the GPU: int32 and uint8) and the floats.
MAX_DTYPES = ("float32", "float64", "int8", "int32", "uint8", "uint16", "int64")


def assert_same(got, want):
    """Same shape, dtype and values (NaN where NaN)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def check_max(backend, x, kw, layout, device=False):
    """max_pool2d with and without indices equals the reference (values, dtype, shape, int64 indices)."""
    want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    got = run(backend, "max_pool2d", x, layout=layout, device=device, **kw)
    got2, idx = run(backend, "max_pool2d", x, return_indices=True, layout=layout, device=device, **kw)
    assert_same(got, want)
    assert_same(got2, want)
    assert idx.dtype == np.int64
    assert_same(idx, want_idx)


def _bits(a):
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


def _max_hw(backend):
    return 8 if is_gpu(backend) else 9  # the simulator runs a thread per output, ~0.2 ms each


# ------------------------------------------------------------------ property tests
@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_max_pool2d_matches_reference(backend):
    @examples(backend, on_cpu=150, on_gpu=GPU_EXAMPLES_2D)
    @given(pool2d_problem(op="max", dtypes=dtypes_for(backend, MAX_DTYPES), max_hw=_max_hw(backend)),
           st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        check_max(backend, x, kw, layout, device)

    check()


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_avg_pool2d_matches_reference(backend):
    @examples(backend, on_cpu=150, on_gpu=GPU_EXAMPLES_2D)
    @given(pool2d_problem(op="avg", dtypes=float_dtypes(backend), max_hw=_max_hw(backend)), st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        want = reference.avg_pool2d(x, layout=layout, **kw)
        got = run(backend, "avg_pool2d", x, layout=layout, device=device, **kw)
        # summed in the reference's (PyTorch's) order, divided in the input dtype: bit for bit
        assert_same(got, want)
        if is_gpu(backend):  # and the rung below, the CPU backend: equal up to rounding
            assert_avg_close(got, run("cpu-serial", "avg_pool2d", x, layout=layout, **kw), x, kw["kernel_size"])

    check()


# ------------------------------------------------------------------ layouts, small examples
@pytest.mark.parametrize("backend", BACKENDS_2D)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_layouts_agree(layout, backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 11, 7)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for name, kw in [("max_pool2d", dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2))),
                     ("avg_pool2d", dict(kernel_size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True))]:
        a = run(backend, name, x, **kw)
        b = run(backend, name, xl, layout="NHWC", **kw)
        np.testing.assert_array_equal(a, b.transpose(0, 3, 1, 2))
        assert_same(a, getattr(reference, name)(x, **kw))


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_seed_example(backend):
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(run(backend, "max_pool2d", x, 2, 2)[0, 0], [[6, 8], [14, 16]])
    np.testing.assert_array_equal(run(backend, "avg_pool2d", x, 2, 2)[0, 0], [[3.5, 5.5], [11.5, 13.5]])


# ------------------------------------------------------------------ NaN, ties, signed zeros, integers
@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_nan_propagates_and_last_nan_index(backend):
    x = np.array([[[[1.0, np.nan, 3.0, np.nan]]]], dtype=np.float32)
    out, idx = run(backend, "max_pool2d", x, (1, 4), return_indices=True)
    assert np.isnan(out[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 3


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_ties_first_max(backend):
    x = np.array([[[[5, 5], [5, 5]]]], dtype=np.int32)
    out, idx = run(backend, "max_pool2d", x, 2, return_indices=True)
    assert out[0, 0, 0, 0] == 5 and idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("backend", BACKENDS_2D)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_nan_ties_and_all_minus_inf(layout, backend):
    def lay(a):
        return a if layout == "NCHW" else np.ascontiguousarray(a.transpose(0, 2, 3, 1))

    x = lay(np.array([[[[1.0, np.nan, 3.0, np.nan],
                        [5.0, 5.0, -np.inf, -np.inf],
                        [2.0, 2.0, -np.inf, -np.inf]]]], dtype=np.float32))
    out, idx = run(backend, "max_pool2d", x, (1, 4), return_indices=True, layout=layout)
    col = (lambda a: a[0, 0, :, 0]) if layout == "NCHW" else (lambda a: a[0, :, 0, 0])
    assert np.isnan(col(out)[0]) and col(idx)[0] == 3            # last NaN's index
    assert col(out)[1] == 5 and col(idx)[1] == 4                 # ties: first max
    out, idx = run(backend, "max_pool2d", x, 2, 1, return_indices=True, layout=layout)
    if layout == "NHWC":
        out, idx = out.transpose(0, 3, 1, 2), idx.transpose(0, 3, 1, 2)
    assert np.isnan(out[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 1   # [nan, 3; 5, -inf]
    assert out[0, 0, 1, 0] == 5 and idx[0, 0, 1, 0] == 4        # [5, 5; 2, 2]: first max
    assert out[0, 0, 1, 2] == -np.inf and idx[0, 0, 1, 2] == 6  # all -inf: first cell
    # an all -inf window still names its first real cell, never padding
    y = lay(np.full((1, 1, 3, 3), -np.inf, dtype=np.float64))
    out, idx = run(backend, "max_pool2d", y, 3, 2, 1, return_indices=True, layout=layout)
    np.testing.assert_array_equal(idx.ravel(), [0, 1, 3, 4])  # window starts, clipped
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("backend, dtype", with_dtypes(["int16", "int32"], BACKENDS_2D))
def test_int_min_values_get_real_indices(backend, dtype):
    x = np.full((1, 1, 3, 3), np.iinfo(dtype).min, dtype=dtype)
    out, idx = run(backend, "max_pool2d", x, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])
    assert out.dtype == dtype and np.all(out == np.iinfo(dtype).min)


@pytest.mark.parametrize("backend, dtype", with_dtypes(["float32", "uint8", "int8"], BACKENDS_2D))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_identity_windows_name_a_real_cell(layout, backend, dtype):
    """Windows whose every cell is the max's identity (-inf; an integer type's minimum) name
    their first cell inside the input, never a padding cell: also when dilation puts a window's
    first real tap past column 0 (a padding tap taken for column 0 would name that instead),
    and in rows past the first."""
    ident = -np.inf if dtype == "float32" else np.iinfo(dtype).min
    x = np.full((1, 2, 5, 6), ident, dtype=dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for kw in (dict(kernel_size=3, stride=2, padding=1, dilation=2),
               dict(kernel_size=(2, 3), stride=1, padding=1, dilation=(1, 2)),
               dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)):
        check_max(backend, x, kw, layout)


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_integer_min_values_and_uint8(backend):
    x = np.full((1, 2, 3, 3), np.iinfo(np.int32).min, dtype=np.int32)
    out, idx = run(backend, "max_pool2d", x, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 1], [[0, 1], [3, 4]])
    assert out.dtype == np.int32
    img = (np.arange(3 * 8 * 8) % 251).astype(np.uint8).reshape(8, 8, 3)
    check_max(backend, img, dict(kernel_size=3, stride=2, padding=1), "NHWC")


def _signed_zeros(x):
    """Overwrite ``x`` in place (keeping its layout and strides) with -1.0, -0.0 and +0.0
    only, so that most windows hold a tie between zeros of both signs."""
    if x.size:
        code = np.nan_to_num(x).astype(np.int64) % 3
        x[...] = np.where(code == 0, -1.0, np.where(code == 1, -0.0, 0.0))
    return x


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


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_max_signed_zero_ties_follow_scan_order(backend):
    """+0.0 and -0.0 compare equal; the result is the first of them in PyTorch's
    row-by-row scan, bit for bit, whatever order a kernel reduces in."""
    @examples(backend, on_cpu=80, on_gpu=GPU_EXAMPLES_2D)
    @given(pool2d_problem(op="max", dtypes=float_dtypes(backend), allow_nan=False,
                          max_hw=_max_hw(backend)))
    def check(problem):
        x, kw, layout = problem
        x = _signed_zeros(x)
        want = reference.max_pool2d(x, layout=layout, **kw)
        got = run(backend, "max_pool2d", x, layout=layout, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))

    check()


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_avg_signed_zeros_sum_from_positive_zero(backend):
    """A window of -0.0 averages to +0.0, as in PyTorch (sums start from +0.0)."""
    @examples(backend, on_cpu=80, on_gpu=GPU_EXAMPLES_2D)
    @given(pool2d_problem(op="avg", dtypes=float_dtypes(backend), allow_nan=False,
                          max_hw=_max_hw(backend)))
    def check(problem):
        x, kw, layout = problem
        x = _signed_zeros(x)
        want = reference.avg_pool2d(x, layout=layout, **kw)
        got = run(backend, "avg_pool2d", x, layout=layout, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))

    check()


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_max_keeps_the_last_nan_bit_for_bit(backend):
    """Of several NaNs in a window, the value is the last one in scan order, bits
    included, and the index names it (PyTorch's ``v > max or isnan(v)``)."""
    @examples(backend, on_cpu=60, on_gpu=GPU_EXAMPLES_2D)
    @given(pool2d_problem(op="max", dtypes=float_dtypes(backend), allow_nan=False,
                          max_hw=_max_hw(backend)))
    def check(problem):
        x, kw, layout = problem
        x = _mixed_nans(x)
        want, want_idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
        got = run(backend, "max_pool2d", x, layout=layout, **kw)
        got2, idx = run(backend, "max_pool2d", x, return_indices=True, layout=layout, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(_bits(got2), _bits(want))
        np.testing.assert_array_equal(idx, want_idx)

    check()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_signed_zero_ties_on_large_inputs(layout, backend):
    """Inputs above config.CPU_PARALLEL_MIN_SIZE (the size that takes the parallel kernels by default), global windows included."""
    from poolkit import config

    rng = np.random.default_rng(5)
    x = rng.choice(np.array([-1.0, -0.0, 0.0], np.float32), size=(2, 16, 40, 36))
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert x.size >= config.CPU_PARALLEL_MIN_SIZE
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2),
               dict(kernel_size=(40, 36)), dict(kernel_size=3, stride=1, dilation=2)):
        got = run(backend, "max_pool2d", x, layout=layout, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(reference.max_pool2d(x, layout=layout, **kw)))
    # and the last of several NaNs
    x = _mixed_nans(rng.integers(0, 5, size=x.shape).astype(np.float32))
    for kw in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=x.shape[1:3] if layout == "NHWC"
                                                               else x.shape[2:])):
        want, want_idx = reference.max_pool2d(x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(run(backend, "max_pool2d", x, layout=layout, **kw)), _bits(want))
        got, idx = run(backend, "max_pool2d", x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(idx, want_idx)


#: The windows the CPU max kernels unroll with literal tap offsets (k x k at stride 2
#: for k = 2, 3; at stride k for k = 3, 4), as k x k squares (the ring of row maxima)
#: and one row high (the row kernel), with the padding and ceil_mode edges next to them.
_UNROLLED = [dict(kernel_size=k, stride=s) for k, s in ((2, 2), (3, 2), (3, 3), (4, 4))] + \
            [dict(kernel_size=(1, k), stride=(1, s)) for k, s in ((2, 2), (3, 2), (3, 3), (4, 4))] + \
            [dict(kernel_size=4, stride=4, padding=2, ceil_mode=True), dict(kernel_size=(1, 4), stride=4, padding=(0, 1))]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kw", _UNROLLED, ids=repr)
def test_unrolled_windows_keep_scan_order(kw, layout, backend):
    """The unrolled tap chains take their taps in PyTorch's order: each window full of
    signed-zero ties (the first zero wins) and of NaNs of three bit patterns (the last
    wins), on planes wide enough for many interior windows per row. Random property
    inputs (at most 9 wide) seldom hold a 4 x 4 window with such a tie."""
    rng = np.random.default_rng(11)
    shape = (2, 3, 24, 40) if layout == "NCHW" else (2, 24, 40, 3)
    zeros = rng.choice(np.array([-1.0, -0.0, 0.0], np.float32), size=shape)
    nans = _mixed_nans(rng.integers(0, 5, size=shape).astype(np.float32))
    for x in (zeros, nans):
        want, want_idx = reference.max_pool2d(x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(run(backend, "max_pool2d", x, layout=layout, **kw)), _bits(want))
        got, idx = run(backend, "max_pool2d", x, layout=layout, return_indices=True, **kw)
        np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(idx, want_idx)


# ------------------------------------------------------------------ padding, ceil_mode, dilation, windows
@pytest.mark.parametrize("backend", BACKENDS_2D)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(3, 1), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=(2, 3)),
    dict(kernel_size=4, stride=3, padding=2, dilation=2, ceil_mode=True),
    dict(kernel_size=2, padding="same"),
    dict(kernel_size=3, stride=2, padding="valid"),
], ids=["ceil", "ceil_rect", "dilation", "dilation_ceil", "same", "valid"])
def test_padding_ceil_mode_dilation(kw, layout, backend):
    rng = np.random.default_rng(7)
    shape = (2, 3, 7, 6) if layout == "NCHW" else (2, 7, 6, 3)
    x = rng.integers(-4, 5, size=shape).astype(example_float(backend))
    check_max(backend, x, kw, layout)
    akw = {k: v for k, v in kw.items() if k != "dilation"}
    for cip in (True, False):
        want = reference.avg_pool2d(x, layout=layout, count_include_pad=cip, **akw)
        got = run(backend, "avg_pool2d", x, layout=layout, count_include_pad=cip, **akw)
        np.testing.assert_array_equal(got, want)
    want = reference.avg_pool2d(x, layout=layout, divisor_override=5, **akw)
    np.testing.assert_array_equal(run(backend, "avg_pool2d", x, layout=layout, divisor_override=5, **akw), want)


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_string_padding_reaches_the_2d_backends(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 5)).astype(np.float32)
    for layout, xx in (("NCHW", x), ("NHWC", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))):
        assert_same(run(backend, "max_pool2d", xx, 3, 2, "same", layout=layout),
                    reference.max_pool2d(xx, 3, 2, "same", layout=layout))
        assert_same(run(backend, "avg_pool2d", xx, (2, 3), 2, "same", layout=layout),
                    reference.avg_pool2d(xx, (2, 3), 2, "same", layout=layout))


@pytest.mark.parametrize("backend, dtype", with_dtypes(["float32", "float64", "int16"], BACKENDS_2D))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_global_window_fast_path(layout, backend, dtype):
    """A window covering the whole plane takes a flat-reduction path on the CPU: same answers."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 4, 7, 5)) * 100).astype(dtype)
    x[0, 1, 2, 3] = np.nan if dtype != np.int16 else x[0, 1, 2, 3]
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    got = run(backend, "max_pool2d", x, (7, 5), layout=layout)
    np.testing.assert_array_equal(got, reference.max_pool2d(x, (7, 5), layout=layout))
    if dtype != np.int16:
        for d in (None, 3):
            got = run(backend, "avg_pool2d", x, (7, 5), divisor_override=d, layout=layout)
            want = reference.avg_pool2d(x, (7, 5), divisor_override=d, layout=layout)
            np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ unusual but valid arrays
@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_unusual_but_valid_inputs(backend):
    rng = np.random.default_rng(1)
    dt = example_float(backend)
    x = rng.standard_normal((2, 3, 6, 5)).astype(dt)
    ref = reference.max_pool2d(x, 2)
    # N = 0
    assert run(backend, "max_pool2d", x[:0], 2).shape == (0, 3, 3, 2)
    assert run(backend, "avg_pool2d", x[:0], 2, layout="NHWC").shape == (0, 1, 3, 5)  # H=3, W=6, C=5
    # read-only
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(run(backend, "max_pool2d", ro, 2), ref)
    # big-endian
    be = x.astype(dt.newbyteorder(">"))
    np.testing.assert_array_equal(run(backend, "max_pool2d", be, 2), ref)
    assert run(backend, "max_pool2d", be, 2).dtype == dt
    np.testing.assert_array_equal(run(backend, "avg_pool2d", be, 2), reference.avg_pool2d(x, 2))
    # non-contiguous: transposed and reversed views
    xt = x.transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(run(backend, "max_pool2d", xt, 2),
                                  reference.max_pool2d(np.ascontiguousarray(xt), 2))
    xr = x[:, ::-1, ::-1]
    np.testing.assert_array_equal(run(backend, "avg_pool2d", xr, 3, 1, 1), reference.avg_pool2d(xr.copy(), 3, 1, 1))
    # 1-pixel output, unbatched
    assert run(backend, "max_pool2d", x[0], (6, 5)).shape == (3, 1, 1)
    np.testing.assert_array_equal(run(backend, "max_pool2d", x[0], (6, 5))[:, 0, 0], x[0].max(axis=(1, 2)))


@pytest.mark.parametrize("backend", BACKENDS_2D)
def test_big_endian_and_read_only_numpy_input(backend):
    x = (np.arange(2 * 8 * 8, dtype=">u2") % 200).astype(">f4").reshape(2, 8, 8)
    ro = np.asarray(x, dtype=np.float32)
    ro.flags.writeable = False
    for a in (x, ro):
        np.testing.assert_array_equal(run(backend, "max_pool2d", a, 3, 2, 1), reference.max_pool2d(ro, 3, 2, 1))
        np.testing.assert_array_equal(run(backend, "avg_pool2d", a, 2), reference.avg_pool2d(ro, 2))


@pytest.mark.parametrize("backend", CPU_BACKENDS)  # the GPU kernels have no uint16
def test_big_endian_uint16_like_dicom(backend):
    x = (np.arange(64, dtype=">u2") * 1000).reshape(1, 8, 8)
    out = run(backend, "max_pool2d", x, 4)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out[0], [[27000, 31000], [59000, 63000]])
