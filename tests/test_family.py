"""The pooling family (1-d, 3-d, adaptive, global, Lp, unpooling, padding="same"/"valid") forward.

Against the plain-loop reference (property-based: both layouts, NaN, ties, ceil and
padding edges, N = 0, unbatched, non-contiguous), against PyTorch when installed,
against TensorFlow's "same"/"valid" formula written out by hand, and bad input.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from strategies import assert_avg_close
from strategies_nd import adaptive_problem, window_problem

SETTINGS = settings(max_examples=30, deadline=None)
TORCH_SETTINGS = settings(max_examples=25, deadline=None)


def assert_same(got, want):
    """Same shape, dtype and values (NaN where NaN) -- bitwise up to the sign of zero."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def assert_close(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype
    rtol = 2e-6 if got.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def public(name):
    return getattr(poolkit, name)


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_max_pool_matches_reference(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=("float32", "float64", "int32")))
    name = f"max_pool{nd}d"
    want, want_idx = getattr(R, name)(x, return_indices=True, layout=layout, **kw)
    got, idx = public(name)(x, return_indices=True, layout=layout, **kw)
    assert_same(got, want)
    assert_same(idx, want_idx)
    assert_same(public(name)(x, layout=layout, **kw), want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_avg_pool_matches_reference(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="avg"))
    name = f"avg_pool{nd}d"
    got, want = public(name)(x, layout=layout, **kw), getattr(R, name)(x, layout=layout, **kw)
    if nd == 3:  # poolkit's own 3-d kernels sum in scan order, as the reference: bitwise equal
        assert_same(got, want)
    else:  # the tuned 2-d kernels (1-d runs on them) may sum in another order
        assert_avg_close(got, want, x, kw["kernel_size"])


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_lp_pool_matches_reference(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="lp"))
    name = f"lp_pool{nd}d"
    norm_type = kw.pop("norm_type")
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        want = getattr(R, name)(x, norm_type, layout=layout, **kw)
    got = public(name)(x, norm_type, layout=layout, **kw)
    assert_close(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("kind", ["max", "avg"])
@SETTINGS
@given(data=st.data())
def test_adaptive_matches_reference(nd, kind, data):
    dtypes = ("float32", "float64", "int16") if kind == "max" else ("float32", "float64")
    x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=dtypes))
    name = f"adaptive_{kind}_pool{nd}d"
    if kind == "max":
        want, want_idx = getattr(R, name)(x, out_size, True, layout=layout)
        got, idx = public(name)(x, out_size, True, layout=layout)
        assert_same(idx, want_idx)
        assert_same(public(name)(x, out_size, layout=layout), want)
    else:
        want = getattr(R, name)(x, out_size, layout=layout)
        got = public(name)(x, out_size, layout=layout)
    assert_same(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_max_unpool_matches_reference(nd, data):
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False, dtypes=("float32", "int32")))
    kw.update(dilation=1, ceil_mode=False)  # unpooling knows kernel, stride and padding only
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=True)[2]
    try:
        G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"])
    except ValueError:
        return
    pooled, idx = getattr(R, f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    args = (kw["kernel_size"], kw["stride"], kw["padding"], tuple(spatial))
    want = getattr(R, f"max_unpool{nd}d")(pooled, idx, *args, layout=layout)
    got = public(f"max_unpool{nd}d")(pooled, idx, *args, layout=layout)
    assert_same(got, want)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(layout, keepdims):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3) if layout == "NHWC" else (2, 3, 5, 4)).astype(np.float32)
    x[0, 1, 1, 1] = np.nan
    for kind, npfun in (("max", np.max), ("avg", np.mean)):
        got = public(f"global_{kind}_pool2d")(x, keepdims, layout=layout)
        assert_same(got, getattr(R, f"global_{kind}_pool2d")(x, keepdims, layout=layout))
        axes = (1, 2) if layout == "NHWC" else (2, 3)
        np.testing.assert_allclose(got, npfun(x, axis=axes, keepdims=keepdims), rtol=1e-6)
        unbatched = public(f"global_{kind}_pool2d")(x[1], keepdims, layout=layout)
        assert_same(unbatched, got[1])


def test_unpool_repeated_indices_last_write_wins():
    x = np.array([[[1.0, 2.0, 3.0]]], dtype=np.float32)
    idx = np.array([[[1, 1, 0]]])
    for impl in (R.max_unpool1d, poolkit.max_unpool1d):
        np.testing.assert_array_equal(impl(x, idx, 2, 1), [[[3.0, 2.0, 0.0, 0.0]]])


def test_unpool_inverts_pool_where_the_max_was():
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
    y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    u = poolkit.max_unpool2d(y, idx, 2)
    want = np.zeros_like(x)
    want[0, 0, 1::2, 1::2] = [[6, 8], [14, 16]]
    np.testing.assert_array_equal(u, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_empty_batch_everywhere(nd):
    spatial = (4,) * nd
    x = np.zeros((0, 2) + spatial, dtype=np.float32)
    k = (2,) * nd
    cases = [
        (f"max_pool{nd}d", (k,), (0, 2) + (2,) * nd),
        (f"avg_pool{nd}d", (k,), (0, 2) + (2,) * nd),
        (f"lp_pool{nd}d", (2, k), (0, 2) + (2,) * nd),
        (f"adaptive_max_pool{nd}d", (3,), (0, 2) + (3,) * nd),
        (f"adaptive_avg_pool{nd}d", (3,), (0, 2) + (3,) * nd),
    ]
    for name, args, shape in cases:
        out = public(name)(x, *args)
        assert out.shape == shape and out.dtype == x.dtype, name
    idx = np.zeros((0, 2) + (2,) * nd, dtype=np.int64)
    assert public(f"max_unpool{nd}d")(idx.astype(np.float32), idx, k).shape == (0, 2) + spatial


def test_serial_and_parallel_forward_agree(monkeypatch):
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)  # small inputs would run the serial twin
    rng = np.random.default_rng(5)
    x3 = rng.integers(-3, 4, (2, 3, 5, 6, 7)).astype(np.float32)
    x3l = np.ascontiguousarray(np.moveaxis(x3, 1, -1))
    for x, layout in ((x3, "NCDHW"), (x3l, "NDHWC")):
        for fn, args in ((cpu.max_pool3d, (3, 2, 1, 1, True, True)), (cpu.avg_pool3d, (3, 2, 1, True)),
                         (cpu.adaptive_max_pool3d, ((2, 4, 3), True)), (cpu.adaptive_avg_pool3d, (4,))):
            a = fn(x, *args, layout=layout, parallel=False)
            b = fn(x, *args, layout=layout, parallel=True)
            for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
                assert_same(u, v)


def test_layouts_agree_3d():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 7, 6))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for name, args in (("max_pool3d", (3, 2, 1, (1, 2, 1))), ("avg_pool3d", ((3, 2, 3), 2, 1, True, False)),
                       ("lp_pool3d", (2.0, 2)), ("adaptive_avg_pool3d", ((3, None, 4),))):
        a = public(name)(x, *args)
        b = public(name)(xl, *args, layout="NDHWC")
        assert_same(np.moveaxis(b, -1, 1), a)


# ------------------------------------------------------------------ padding="same" / "valid"
def tf_pool_1d(x, k, s, d, padding, reduce):
    """TensorFlow's pooling along the last axis, written out from its documented formula."""
    L = x.shape[-1]
    eff = d * (k - 1) + 1
    if padding == "same":
        out = math.ceil(L / s)
        pad_before = max((out - 1) * s + eff - L, 0) // 2
    else:
        out = math.ceil((L - eff + 1) / s)
        pad_before = 0
    cols = []
    for o in range(out):
        taps = [o * s - pad_before + j * d for j in range(k)]
        taps = [t for t in taps if 0 <= t < L]  # padded cells take no part
        cols.append(reduce(x[..., taps], axis=-1))
    return np.stack(cols, axis=-1)


def tf_pool(x, nd, k, s, d, padding, reduce):
    """Separable: max (and a mean over the valid cells of a box) factor over the axes."""
    for axis in range(nd):
        ax = x.ndim - nd + axis
        x = np.moveaxis(tf_pool_1d(np.moveaxis(x, ax, -1), k[axis], s[axis], d[axis], padding, reduce), -1, ax)
    return x


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("padding", ["same", "valid"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_string_padding_matches_tensorflow_formula(nd, padding, data):
    k = tuple(data.draw(st.integers(1, 4)) for _ in range(nd))
    s = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    spatial = tuple(data.draw(st.integers(1, 7 if nd < 3 else 5)) for _ in range(nd))
    eff = [d[i] * (k[i] - 1) + 1 for i in range(nd)]
    try:
        G.make_geometry("t", spatial, k, s, padding, d)
    except ValueError:
        return  # "valid" with a window larger than the input, or a dilated window reading nothing
    assert all(padding == "same" or spatial[i] >= eff[i] for i in range(nd))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, 2) + spatial)
    got = public(f"max_pool{nd}d")(x, k, s, padding, d)
    np.testing.assert_array_equal(got, tf_pool(x, nd, k, s, d, padding, np.max))
    got = public(f"avg_pool{nd}d")(x, k, s, padding)
    # different summation orders: a bound on the rounding error, absolute (a mean near 0
    # has no meaningful relative error), not a relative tolerance
    np.testing.assert_allclose(got, tf_pool(x, nd, k, s, (1,) * nd, padding, np.mean), rtol=1e-12, atol=1e-12)
    # count_include_pad is ignored for "same": padded cells are never counted
    assert_same(public(f"avg_pool{nd}d")(x, k, s, padding, False, False), got)


def test_keras_documentation_examples():
    """Keras' MaxPooling2D / AveragePooling2D docs: 3x3 input, pool 2, stride 1."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(poolkit.max_pool2d(x, 2, 1, "same")[0, 0], [[5, 6, 6], [8, 9, 9], [8, 9, 9]])
    np.testing.assert_array_equal(poolkit.max_pool2d(x, 2, 1, "valid")[0, 0], [[5, 6], [8, 9]])
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, 1, "same")[0, 0],
                                  [[3, 4, 4.5], [6, 7, 7.5], [7.5, 8.5, 9]])


def test_same_padding_puts_the_odd_cell_at_the_end():
    g = G.make_geometry("t", (5, 6), 2, 1, "same")
    assert g.out_size == (5, 6) and g.padding == (0, 0) and g.padding_end == (1, 1)
    g = G.make_geometry("t", (7,), 3, 2, "same", 2)  # effective kernel 5: total 4, 2 + 2
    assert g.out_size == (4,) and g.padding == (2,) and g.padding_end == (2,)
    g = G.make_geometry("t", (6,), 4, 1, "same")  # total 3: 1 before, 2 after
    assert g.padding == (1,) and g.padding_end == (2,)
    assert [t.tolist() for t in G.avg_divisor_table(g, True)] == [[3, 4, 4, 4, 3, 2]]


# ------------------------------------------------------------------ against PyTorch
def _torch():
    return pytest.importorskip("torch")


def to_torch(x, nd, layout):
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(x))
    if x.ndim == nd + 1:
        t = t[None]
    if layout == G.LAYOUTS[nd][1]:
        t = t.movedim(-1, 1)
    return t


def torch_or_none(fn, *args, **kwargs):
    """Call a torch function; None where torch's 3-d pooling refuses an input smaller than the
    kernel even though padding or ceil_mode make the output non-empty (poolkit computes those)."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as exc:
        assert "smaller than kernel size" in str(exc)
        return None


def from_torch(t, nd, layout, batched):
    if layout == G.LAYOUTS[nd][1]:
        t = t.movedim(1, -1)
    a = t.numpy()
    return a if batched else a[0]


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data())
def test_max_avg_match_torch(nd, data):
    F = _torch().nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False))
    batched = x.ndim == nd + 2
    t = to_torch(x, nd, layout)
    name = f"max_pool{nd}d"
    want, want_idx = getattr(F, name)(t, return_indices=True, **kw)
    got, idx = public(name)(x, return_indices=True, layout=layout, **kw)
    assert_same(got, from_torch(want, nd, layout, batched))
    assert_same(idx, from_torch(want_idx, nd, layout, batched))
    assert_same(public(name)(x, layout=layout, **kw), from_torch(getattr(F, name)(t, **kw), nd, layout, batched))
    x, kw, layout = data.draw(window_problem(nd, op="avg", strings=False))
    batched = x.ndim == nd + 2
    name = f"avg_pool{nd}d"
    want = torch_or_none(getattr(F, name), to_torch(x, nd, layout), **kw)
    if want is None:
        return
    np.testing.assert_allclose(public(name)(x, layout=layout, **kw), from_torch(want, nd, layout, batched),
                               rtol=1e-6 if x.dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data())
def test_lp_matches_torch(nd, data):
    F = _torch().nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="lp"))
    norm_type = kw.pop("norm_type")
    if nd == 1:
        kw["kernel_size"] = kw["kernel_size"][0]  # torch's lp_pool1d multiplies by an int kernel_size
    want = torch_or_none(getattr(F, f"lp_pool{nd}d"), to_torch(x, nd, layout), norm_type, **kw)
    if want is None:
        return
    want = from_torch(want, nd, layout, x.ndim == nd + 2)
    got = public(f"lp_pool{nd}d")(x, norm_type, layout=layout, **kw)
    assert_close(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data())
def test_adaptive_match_torch(nd, data):
    F = _torch().nn.functional
    x, out_size, layout = data.draw(adaptive_problem(nd))
    batched = x.ndim == nd + 2
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
    t_size = out_size if isinstance(out_size, int) else tuple(
        spatial[i] if v is None else v for i, v in enumerate(out_size))
    t = to_torch(x, nd, layout)
    want, want_idx = getattr(F, f"adaptive_max_pool{nd}d")(t, t_size, True)
    got, idx = public(f"adaptive_max_pool{nd}d")(x, out_size, True, layout=layout)
    assert_same(got, from_torch(want, nd, layout, batched))
    assert_same(idx, from_torch(want_idx, nd, layout, batched))
    want = getattr(F, f"adaptive_avg_pool{nd}d")(t, t_size)
    got = public(f"adaptive_avg_pool{nd}d")(x, out_size, layout=layout)
    # PyTorch sums in scan order and divides by the bin sizes one after the other, as poolkit
    # does, except for a 1 x 1 output, where it calls mean() (another summation order)
    assert_avg_close(got, from_torch(want, nd, layout, batched), x, spatial)
    if math.prod(got.shape[-nd - 1:-1] if layout == G.LAYOUTS[nd][1] else got.shape[-nd:]) > 1:
        assert_same(got, from_torch(want, nd, layout, batched))


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data())
def test_unpool_matches_torch(nd, data):
    torch = _torch()
    F = torch.nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False, allow_nan=False))
    kw.update(dilation=1)
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
    try:
        G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"], 1, kw["ceil_mode"])
        size = G.unpool_output_size("t", G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"],
                                                         kw["padding"], 1, kw["ceil_mode"]).out_size,
                                    kw["kernel_size"], kw["stride"], kw["padding"], spatial)
    except ValueError:
        return  # torch would refuse this output_size too
    batched = x.ndim == nd + 2
    pooled, idx = public(f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    args = (kw["kernel_size"], kw["stride"], kw["padding"], size)
    want = getattr(F, f"max_unpool{nd}d")(to_torch(pooled, nd, layout), to_torch(idx, nd, layout), *args)
    got = public(f"max_unpool{nd}d")(pooled, idx, *args, layout=layout)
    # overlapping windows may name one cell twice; both write the same value (its max)
    assert_same(got, from_torch(want, nd, layout, batched))


# ------------------------------------------------------------------ bad input
X1 = np.zeros((1, 2, 8), np.float32)
X2 = np.zeros((1, 2, 6, 6), np.float32)
X3 = np.zeros((1, 2, 4, 4, 4), np.float32)
I1 = np.zeros((1, 2, 4), np.int64)

ERROR_CASES = [
    ("max_pool1d", ([[1.0]], 2), {}, TypeError, "x must be a NumPy array"),
    ("max_pool1d", (X2, 2), {}, ValueError, "x must be 3-d NCL"),
    ("max_pool1d", (X1, 0), {}, ValueError, "kernel_size must be positive"),
    ("max_pool1d", (X1, (2, 2)), {}, ValueError, "kernel_size must be an int or a sequence of 1 ints"),
    ("max_pool1d", (X1, 2), dict(layout="NHWC"), ValueError, "layout must be 'NCL' or 'NLC'"),
    ("max_pool1d", (X1, 2), dict(padding="full"), ValueError, "padding must be an int, a sequence of 1 ints, 'same' or 'valid'"),
    ("max_pool1d", (X1, 2), dict(padding="same", ceil_mode=True), ValueError, "ceil_mode=True cannot be combined with padding='same'"),
    ("max_pool3d", (X3, 2), dict(dilation=0), ValueError, "dilation must be positive"),
    ("max_pool3d", (X3, 5), {}, ValueError, "larger than the padded input"),
    ("max_pool3d", (X3, 2), dict(return_indices="yes"), TypeError, "return_indices must be a bool"),
    ("max_pool3d", (X3.astype(np.float16), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool1d", (X1.astype(np.int32), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool1d", (X1, 2), dict(padding=2), ValueError, "padding must be at most half of kernel_size"),
    ("avg_pool3d", (X3, 2), dict(divisor_override=0), ValueError, "divisor_override must be a positive int"),
    ("avg_pool3d", (X3, 2), dict(count_include_pad=None), TypeError, "count_include_pad must be a bool"),
    ("avg_pool3d", (X3, 2), dict(layout="NCHW"), ValueError, "layout must be 'NCDHW' or 'NDHWC'"),
    ("adaptive_max_pool2d", (X2, -1), {}, ValueError, "output_size must be >= 0"),
    ("adaptive_max_pool2d", (X2, (2, 2, 2)), {}, ValueError, "output_size must be an int or a sequence of 2 ints"),
    ("adaptive_avg_pool2d", (X2, 2.5), {}, TypeError, "output_size must be an int"),
    ("adaptive_avg_pool3d", (X3, None), {}, TypeError, "output_size"),
    ("adaptive_avg_pool1d", (X1, ("a",)), {}, TypeError, "output_size must contain ints or None"),
    ("adaptive_max_pool1d", (X1, 2), dict(return_indices=None), TypeError, "return_indices must be a bool"),
    ("global_max_pool2d", (X2,), dict(keepdims=1), TypeError, "keepdims must be a bool"),
    ("global_avg_pool2d", (X1[0],), {}, ValueError, "x must be 4-d NCHW"),
    ("lp_pool2d", (X2, 0, 2), {}, ValueError, "norm_type must be non-zero"),
    ("lp_pool2d", (X2, "2", 2), {}, TypeError, "norm_type must be a real number"),
    ("lp_pool2d", (X2, True, 2), {}, TypeError, "norm_type must be a real number"),
    ("lp_pool1d", (X1, 2, 9), {}, ValueError, "larger than the padded input"),
    ("lp_pool3d", (X3.astype(np.int64), 2, 2), {}, TypeError, "float32 or float64"),
    ("max_unpool1d", (X1[..., :4], I1.astype(np.float32), 2), {}, TypeError, "indices must have an integer dtype"),
    ("max_unpool1d", (X1[..., :4], I1[..., :3], 2), {}, ValueError, "indices must have shape (1, 2, 4)"),
    ("max_unpool1d", (X1[..., :4], I1 + 8, 2), {}, ValueError, "indices must lie in [0, 8)"),
    ("max_unpool1d", (X1[..., :4], I1 - 1, 2), {}, ValueError, "indices must lie in [0, 8)"),
    ("max_unpool1d", (X1[..., :4], I1.tolist(), 2), {}, TypeError, "indices must be a NumPy array"),
    ("max_unpool1d", (X1[..., :4], I1, 2), dict(output_size=(10,)), ValueError, "invalid output_size"),
    ("max_unpool1d", (X1[..., :4], I1, 2), dict(output_size=(8, 8)), ValueError, "output_size must contain 1 or 3 elements"),
    ("max_unpool2d", (X2, np.zeros(X2.shape, np.int64), 2), dict(output_size="big"), TypeError, "output_size must be None or a sequence"),
    ("max_unpool3d", (X3, np.zeros(X3.shape, np.int64), 0), {}, ValueError, "kernel_size must be positive"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,msg", ERROR_CASES)
@pytest.mark.parametrize("impl", ["poolkit", "reference"])
def test_bad_input_names_the_argument(name, args, kwargs, exc, msg, impl):
    fn = public(name) if impl == "poolkit" else getattr(R, name)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert msg in str(info.value)
    assert name in str(info.value)


def test_unpool_output_size_accepts_torch_forms():
    y = np.ones((1, 1, 2, 2), np.float32)
    idx = np.array([[[[0, 3], [10, 15]]]])
    a = poolkit.max_unpool2d(y, idx, 2, output_size=(4, 4))
    b = poolkit.max_unpool2d(y, idx, 2, output_size=(1, 1, 4, 4))
    c = poolkit.max_unpool2d(y, idx, 2, output_size=(5, 5))  # default 4 +- stride 2: 3..5 allowed
    assert_same(a, b)
    assert c.shape == (1, 1, 5, 5) and c.sum() == 4


def test_gpu_or_dask_inputs_without_a_backend_function_get_a_clear_type_error():
    da = pytest.importorskip("dask.array")
    import poolkit.dask as pdask

    x = da.zeros((1, 2, 8), chunks=4, dtype=np.float32)
    for name in ("max_pool1d", "adaptive_avg_pool1d"):
        if hasattr(pdask, name):
            continue
        with pytest.raises(TypeError, match=f"{name}: x is a Dask array, but {name} runs on NumPy arrays only"):
            public(name)(x, 2)


def test_string_padding_reaches_the_2d_backends():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 5)).astype(np.float32)
    for layout, xx in (("NCHW", x), ("NHWC", np.ascontiguousarray(x.transpose(0, 2, 3, 1)))):
        for parallel in (False, True):
            assert_same(cpu.max_pool2d(xx, 3, 2, "same", layout=layout, parallel=parallel),
                        R.max_pool2d(xx, 3, 2, "same", layout=layout))
            assert_avg_close(cpu.avg_pool2d(xx, (2, 3), 2, "same", layout=layout, parallel=parallel),
                             R.avg_pool2d(xx, (2, 3), 2, "same", layout=layout), xx, (2, 3))
