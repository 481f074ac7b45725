"""Gradients of every pooling op: ``poolkit.F_backward(grad_output, x, <F's arguments>)``.

Against the plain-loop reference (property-based), PyTorch's autograd, central finite
differences on float64; determinism (two runs and serial vs parallel bitwise equal);
the ``indices=`` shortcut; bad input.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from strategies_nd import adaptive_problem, window_problem

SETTINGS = settings(max_examples=30, deadline=None)
TORCH_SETTINGS = settings(max_examples=20, deadline=None)


def public(name):
    return getattr(poolkit, name)


def assert_same(got, want):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def assert_close(got, want, rtol=None):
    assert got.shape == want.shape and got.dtype == want.dtype
    rtol = rtol or (1e-5 if got.dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def random_grad(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_max_backward_matches_reference(nd, data, seed):
    x, kw, layout = data.draw(window_problem(nd, op="max"))
    out, idx = public(f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    g = random_grad(out.shape, x.dtype, seed)
    want = getattr(R, f"max_pool{nd}d_backward")(g, x, layout=layout, **kw)
    assert_same(public(f"max_pool{nd}d_backward")(g, x, layout=layout, **kw), want)
    # the indices shortcut routes the same way
    assert_same(public(f"max_pool{nd}d_backward")(g, x, indices=idx, layout=layout, **kw), want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_avg_backward_matches_reference(nd, data, seed):
    x, kw, layout = data.draw(window_problem(nd, op="avg"))
    out = getattr(R, f"avg_pool{nd}d")(x, layout=layout, **kw)
    g = random_grad(out.shape, x.dtype, seed)
    # gather in increasing output order == scatter in output scan order: bitwise equal
    assert_same(public(f"avg_pool{nd}d_backward")(g, x, layout=layout, **kw),
                getattr(R, f"avg_pool{nd}d_backward")(g, x, layout=layout, **kw))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("kind", ["max", "avg"])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_adaptive_backward_matches_reference(nd, kind, data, seed):
    x, out_size, layout = data.draw(adaptive_problem(nd))
    out = getattr(R, f"adaptive_{kind}_pool{nd}d")(x, out_size, layout=layout)
    g = random_grad(out.shape, x.dtype, seed)
    name = f"adaptive_{kind}_pool{nd}d_backward"
    assert_same(public(name)(g, x, out_size, layout=layout), getattr(R, name)(g, x, out_size, layout=layout))


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_lp_backward_matches_reference(nd, data, seed):
    # 1-d and 2-d forward sums run on the tuned 2-d kernels, whose summation order differs
    # from the reference; with mixed signs a sum that is exactly 0 in one order (zero
    # gradient) can be 1e-7 in the other, so those use positive inputs.
    x, kw, layout = data.draw(window_problem(nd, op="lp", positive=nd < 3, allow_nan=nd == 3))
    norm_type = kw.pop("norm_type")
    with np.errstate(all="ignore"):
        out = getattr(R, f"lp_pool{nd}d")(x, norm_type, layout=layout, **kw)
        g = random_grad(out.shape, x.dtype, seed)
        want = getattr(R, f"lp_pool{nd}d_backward")(g, x, norm_type, layout=layout, **kw)
    got = public(f"lp_pool{nd}d_backward")(g, x, norm_type, layout=layout, **kw)
    if nd == 3:
        np.testing.assert_allclose(got, want, rtol=2e-5 if x.dtype == np.float32 else 1e-12, atol=1e-6)
    else:
        assert_close(got, want, rtol=1e-4 if x.dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("nd", [1, 2, 3])
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_unpool_backward_matches_reference(nd, data, seed):
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False))
    kw.update(dilation=1, ceil_mode=False)
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
    try:
        G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"])
    except ValueError:
        return
    pooled, idx = public(f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    args = (idx, kw["kernel_size"], kw["stride"], kw["padding"], tuple(spatial))
    g = random_grad(x.shape, x.dtype, seed)
    name = f"max_unpool{nd}d_backward"
    assert_same(public(name)(g, pooled, *args, layout=layout), getattr(R, name)(g, pooled, *args, layout=layout))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_backward(kind, keepdims):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    g = rng.standard_normal((2, 3, 1, 1) if keepdims else (2, 3))
    got = public(f"global_{kind}_pool2d_backward")(g, x, keepdims)
    assert_same(got, getattr(R, f"global_{kind}_pool2d_backward")(g, x, keepdims))
    g4 = g if keepdims else g[..., None, None]
    if kind == "avg":
        np.testing.assert_allclose(got, np.broadcast_to(g4 / 20, x.shape), rtol=1e-15)
    else:  # one cell per plane, the argmax, receives the whole gradient
        flat = got.reshape(2, 3, -1)
        np.testing.assert_array_equal(np.count_nonzero(flat, axis=-1), np.ones((2, 3)))
        np.testing.assert_array_equal(flat.sum(axis=-1), g4[..., 0, 0])
        np.testing.assert_array_equal(np.argmax(np.abs(flat), axis=-1), np.argmax(x.reshape(2, 3, -1), axis=-1))


# ------------------------------------------------------------------ against PyTorch autograd
def torch_grad(fn, x, nd, layout, g, *args, **kwargs):
    """Gradient w.r.t. x of sum(fn(x) * g) from PyTorch's autograd, in poolkit's layout."""
    torch = pytest.importorskip("torch")
    batched = x.ndim == nd + 2
    cl = layout == G.LAYOUTS[nd][1]

    def to_t(a):
        t = torch.from_numpy(np.ascontiguousarray(a))
        t = t if batched else t[None]
        return t.movedim(-1, 1) if cl else t

    t = to_t(x).detach().requires_grad_(True)
    try:
        y = fn(t, *args, **kwargs)
    except RuntimeError as exc:  # torch's 3-d pooling: "input image smaller than kernel size"
        assert "smaller than kernel size" in str(exc)
        return None
    y = y[0] if isinstance(y, tuple) else y
    y.backward(to_t(g))
    out = t.grad.movedim(1, -1) if cl else t.grad
    out = out.numpy()
    return out if batched else out[0]


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_max_and_avg_backward_match_torch(nd, data, seed):
    F = pytest.importorskip("torch").nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False))
    out = public(f"max_pool{nd}d")(x, layout=layout, **kw)
    g = random_grad(out.shape, x.dtype, seed)
    want = torch_grad(getattr(F, f"max_pool{nd}d"), x, nd, layout, g, **kw)
    if want is not None:  # routed exactly as PyTorch's indices, summed in the same order
        assert_same(public(f"max_pool{nd}d_backward")(g, x, layout=layout, **kw), want)
    x, kw, layout = data.draw(window_problem(nd, op="avg", strings=False))
    out = public(f"avg_pool{nd}d")(x, layout=layout, **kw)
    g = random_grad(out.shape, x.dtype, seed)
    want = torch_grad(getattr(F, f"avg_pool{nd}d"), x, nd, layout, g, **kw)
    if want is not None:  # grad / divisor, summed in PyTorch's order: bitwise
        assert_same(public(f"avg_pool{nd}d_backward")(g, x, layout=layout, **kw), want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_adaptive_backward_matches_torch(nd, data, seed):
    F = pytest.importorskip("torch").nn.functional
    x, out_size, layout = data.draw(adaptive_problem(nd))
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
    t_size = out_size if isinstance(out_size, int) else tuple(
        spatial[i] if v is None else v for i, v in enumerate(out_size))
    for kind in ("max", "avg"):
        out = public(f"adaptive_{kind}_pool{nd}d")(x, out_size, layout=layout)
        g = random_grad(out.shape, x.dtype, seed)
        want = torch_grad(getattr(F, f"adaptive_{kind}_pool{nd}d"), x, nd, layout, g, t_size)
        got = public(f"adaptive_{kind}_pool{nd}d_backward")(g, x, out_size, layout=layout)
        if kind == "avg" and G.make_adaptive_geometry("t", spatial, out_size).out_size == (1,) * nd:
            # a 1 x 1 output: PyTorch calls mean(), whose gradient is grad / (H*W) in one division
            assert_close(got, want, rtol=1e-6 if x.dtype == np.float32 else 1e-15)
        else:
            assert_same(got, want)


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_lp_backward_matches_torch(nd, data, seed):
    F = pytest.importorskip("torch").nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="lp", positive=nd < 3, allow_nan=nd == 3))
    norm_type = kw.pop("norm_type")
    if nd == 1:
        kw["kernel_size"] = kw["kernel_size"][0]
    out = public(f"lp_pool{nd}d")(x, norm_type, layout=layout, **kw)
    g = random_grad(out.shape, x.dtype, seed)
    want = torch_grad(getattr(F, f"lp_pool{nd}d"), x, nd, layout, g, norm_type, **kw)
    if want is None:
        return
    got = public(f"lp_pool{nd}d_backward")(g, x, norm_type, layout=layout, **kw)
    if nd == 3:
        np.testing.assert_allclose(got, want, rtol=2e-5 if x.dtype == np.float32 else 1e-12, atol=1e-6)
    else:
        assert_close(got, want, rtol=1e-4 if x.dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("nd", [1, 2, 3])
@TORCH_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_unpool_backward_matches_torch(nd, data, seed):
    F = pytest.importorskip("torch").nn.functional
    x, kw, layout = data.draw(window_problem(nd, op="max", strings=False, allow_nan=False))
    kw.update(dilation=1, ceil_mode=False)
    spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
    try:
        G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"])
        G.unpool_output_size("t", G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"],
                                                  kw["padding"]).out_size,
                             kw["kernel_size"], kw["stride"], kw["padding"], spatial)
    except ValueError:
        return
    pooled, idx = public(f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
    args = (kw["kernel_size"], kw["stride"], kw["padding"], tuple(spatial))
    g = random_grad(x.shape, x.dtype, seed)
    torch = pytest.importorskip("torch")
    cl = layout == G.LAYOUTS[nd][1]
    ti = torch.from_numpy(np.ascontiguousarray(idx if x.ndim == nd + 2 else idx[None]))
    ti = ti.movedim(-1, 1) if cl else ti
    want = torch_grad(lambda t, *a: getattr(F, f"max_unpool{nd}d")(t, ti, *a), pooled, nd, layout, g, *args)
    assert_same(public(f"max_unpool{nd}d_backward")(g, pooled, idx, *args, layout=layout), want)


# ------------------------------------------------------------------ finite differences (float64)
def distinct_values(shape, seed):
    """Values at least 0.01 apart, so a 1e-6 step never changes which cell is the maximum."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.05 + 0.3 + rng.random(n) * 0.01).reshape(shape)


def finite_difference(f, x, h=1e-6):
    grad = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    return grad


FD_CASES = [
    ("max_pool1d", (3, 2, 1, 1, True), {}),
    ("max_pool2d", ((2, 3), 1, (1, 1), (2, 1)), {}),
    ("max_pool2d", (3, 2, "same"), dict(layout="NHWC")),
    ("max_pool3d", (2, 1, 1), {}),
    ("avg_pool1d", (3, 2, 1, True, False), {}),
    ("avg_pool2d", (3, 1, 1, False, True, 5), {}),
    ("avg_pool2d", ((3, 2), 2, "same"), {}),
    ("avg_pool3d", ((2, 3, 2), 1, (1, 1, 0), True), dict(layout="NDHWC")),
    ("adaptive_max_pool1d", (3,), {}),
    ("adaptive_max_pool2d", ((3, None),), {}),
    ("adaptive_max_pool3d", (2,), {}),
    ("adaptive_avg_pool1d", (4,), {}),
    ("adaptive_avg_pool2d", ((3, 2),), dict(layout="NHWC")),
    ("adaptive_avg_pool3d", ((2, 3, 2),), {}),
    ("global_max_pool2d", (), {}),
    ("global_avg_pool2d", (True,), {}),
    ("lp_pool1d", (2, 3, 2, True), {}),
    ("lp_pool2d", (1.5, 2, 1), {}),
    ("lp_pool2d", (float("inf"), 2), {}),
    ("lp_pool3d", (3, 2, 1), {}),
]
FD_SHAPES = {1: (1, 2, 7), 2: (1, 2, 4, 5), 3: (1, 1, 3, 4, 3)}


@pytest.mark.parametrize("name,args,kwargs", FD_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(FD_CASES)])
def test_backward_matches_finite_differences(name, args, kwargs):
    nd = 2 if name.startswith("global") else int(name[-2])
    shape = FD_SHAPES[nd]
    if kwargs.get("layout") in ("NLC", "NHWC", "NDHWC"):
        shape = (shape[0],) + shape[2:] + (shape[1],)
    x = distinct_values(shape, seed=len(name))
    fwd = public(name)
    g = random_grad(fwd(x, *args, **kwargs).shape, np.float64, seed=1)
    grad = public(f"{name}_backward")(g, x, *args, **kwargs)
    want = finite_difference(lambda v: float(np.sum(fwd(v, *args, **kwargs) * g)), x)
    np.testing.assert_allclose(grad, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_unpool_backward_matches_finite_differences(nd):
    x = distinct_values(FD_SHAPES[nd], seed=nd)
    # Non-overlapping windows: with repeated indices only the last write reaches the output,
    # yet PyTorch's backward (a gather) hands every duplicate the gradient; see the next test.
    pooled, idx = public(f"max_pool{nd}d")(x, 2, return_indices=True)
    args = (idx, 2, 2, 0, x.shape[2:])
    g = random_grad(x.shape, np.float64, seed=2)
    grad = public(f"max_unpool{nd}d_backward")(g, pooled, *args)
    # max_unpool is linear in its input, so central differences are exact up to rounding
    want = finite_difference(lambda v: float(np.sum(public(f"max_unpool{nd}d")(v, *args) * g)), pooled)
    np.testing.assert_allclose(grad, want, rtol=1e-7, atol=1e-9)


def test_unpool_backward_with_repeated_indices_follows_torch_not_the_last_write():
    x = np.array([[[1.0, 2.0]]])
    idx = np.array([[[1, 1]]])
    g = np.array([[[10.0, 20.0, 30.0]]])
    np.testing.assert_array_equal(poolkit.max_unpool1d(x, idx, 2, 1), [[[0.0, 2.0, 0.0]]])
    np.testing.assert_array_equal(poolkit.max_unpool1d_backward(g, x, idx, 2, 1), [[[20.0, 20.0]]])


# ------------------------------------------------------------------ routing vs spreading, ties
def test_max_routes_and_avg_spreads():
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    g = np.ones((1, 1, 1, 1))
    np.testing.assert_array_equal(poolkit.max_pool2d_backward(g, x, 2)[0, 0], [[0, 1], [0, 0]])
    np.testing.assert_array_equal(poolkit.avg_pool2d_backward(g, x, 2)[0, 0], [[0.25, 0.25], [0.25, 0.25]])


def test_ties_route_to_the_first_maximum_and_nan_to_the_last_nan():
    x = np.array([[[2.0, 7.0, 7.0, np.nan, 1.0, np.nan]]])
    g = np.array([[[10.0, 100.0]]])
    got = poolkit.max_pool1d_backward(g, x, 3)
    np.testing.assert_array_equal(got, [[[0, 10, 0, 0, 0, 100]]])


def test_overlapping_windows_add_up():
    x = np.array([[[0.0, 9.0, 0.0, 0.0]]])
    g = np.array([[[1.0, 2.0, 4.0]]])
    np.testing.assert_array_equal(poolkit.max_pool1d_backward(g, x, 2, 1), [[[0, 3, 4, 0]]])


def test_lp_zero_sum_gives_zero_gradient():
    x = np.zeros((1, 1, 4))
    np.testing.assert_array_equal(poolkit.lp_pool1d_backward(np.ones((1, 1, 2)), x, 2, 2), np.zeros_like(x))


# ------------------------------------------------------------------ determinism
def _determinism_cases(rng):
    x1 = rng.standard_normal((3, 4, 40))
    x2 = rng.standard_normal((2, 3, 17, 19)).astype(np.float32)
    x3 = rng.standard_normal((2, 2, 7, 8, 9)).astype(np.float32)
    yield "max_pool1d", x1, (5, 1, 2)
    yield "avg_pool1d", x1, (5, 1, 2)
    yield "max_pool2d", x2, (3, 1, 1)
    yield "avg_pool2d", x2, (3, 1, 1, True, False)
    yield "max_pool3d", x3, (3, 1, 1)
    yield "avg_pool3d", x3, (3, 1, 1)
    yield "adaptive_max_pool2d", x2, ((13, 11),)
    yield "adaptive_avg_pool2d", x2, ((13, 11),)
    yield "adaptive_avg_pool3d", x3, (5,)
    yield "lp_pool2d", np.abs(x2), (2, 3, 1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_backward_is_deterministic(channels_last, monkeypatch):
    monkeypatch.setattr(cpu, "PARALLEL_MIN_SIZE", 0)  # small inputs would run the serial twin
    rng = np.random.default_rng(11)
    for name, x, args in _determinism_cases(rng):
        nd = x.ndim - 2
        layout = G.LAYOUTS[nd][channels_last]
        if channels_last:
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        out = public(name)(x, *args, layout=layout)
        g = rng.standard_normal(out.shape).astype(x.dtype)
        bw = getattr(cpu, f"{name}_backward")
        first = bw(g, x, *args, layout=layout)
        assert_same(bw(g, x, *args, layout=layout), first)  # run to run
        assert_same(bw(g, x, *args, layout=layout, parallel=False), first)  # serial == parallel


# ------------------------------------------------------------------ bad input
XB = np.zeros((1, 2, 6, 6))
GB = np.zeros((1, 2, 3, 3))

BACKWARD_ERRORS = [
    ("max_pool2d_backward", (GB[..., :2], XB, 2), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 3, 3)"),
    ("max_pool2d_backward", (GB.astype(np.float32), XB, 2), {}, TypeError, "grad_output must have x's dtype float64"),
    ("max_pool2d_backward", (GB.tolist(), XB, 2), {}, TypeError, "grad_output must be a NumPy array"),
    ("max_pool2d_backward", (GB, XB.astype(np.int32), 2), {}, TypeError, "x must have dtype float32 or float64"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=np.zeros((1, 2, 3), np.int64)), ValueError, "indices must have shape (1, 2, 3, 3)"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=np.full((1, 2, 3, 3), 36)), ValueError, "indices must lie in [0, 36)"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=GB), TypeError, "indices must have an integer dtype"),
    ("max_pool2d_backward", (GB, XB, 2), dict(return_indices=2), TypeError, "return_indices must be a bool"),
    ("avg_pool2d_backward", (GB, XB, 2), dict(padding=3), ValueError, "padding must be at most half of kernel_size"),
    ("avg_pool1d_backward", (GB[0], XB[0], 2), dict(count_include_pad="no"), TypeError, "count_include_pad must be a bool"),
    ("adaptive_avg_pool2d_backward", (GB, XB, (3, 4)), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 3, 4)"),
    ("adaptive_max_pool3d_backward", (GB, XB[0, 0], 3), {}, ValueError, "x must be 5-d NCDHW"),
    ("lp_pool2d_backward", (GB, XB, float("nan"), 2), {}, ValueError, "norm_type must be non-zero and not NaN"),
    ("global_avg_pool2d_backward", (GB, XB), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 1, 1)"),
    ("max_unpool2d_backward", (GB, GB, np.zeros((1, 2, 3, 3), np.int64), 2), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 6, 6)"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,msg", BACKWARD_ERRORS)
@pytest.mark.parametrize("impl", ["poolkit", "reference"])
def test_backward_bad_input_names_the_argument(name, args, kwargs, exc, msg, impl):
    fn = public(name) if impl == "poolkit" else getattr(R, name)
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert msg in str(info.value) and name in str(info.value)
