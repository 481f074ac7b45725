"""PyTorch parity: the reference, the CPU backend and the public functions against
``torch.nn.functional`` and its autograd, when torch is importable (skipped otherwise).

Every backend is tested against the reference (test_forward_*.py, test_backward.py);
here the reference and the public functions meet PyTorch itself: values, indices and
gradients bit for bit, except where PyTorch sums in another order (a 1 x 1 adaptive
average calls ``mean()``) or goes through ``pow`` (Lp pooling).
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolkit import cpu, reference
from poolkit import geometry as G
from strategies import adaptive_problem, assert_avg_close, assert_same, pool2d_problem, public, random_grad, window_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_SETTINGS = settings(max_examples=25, deadline=None)
TORCH_GRAD_SETTINGS = settings(max_examples=20, deadline=None)






def assert_close(got, want, rtol=None):
    assert got.shape == want.shape and got.dtype == want.dtype
    rtol = rtol or (2e-6 if got.dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)




# ------------------------------------------------------------------ 2-d: the reference and the CPU kernels
def _torch_input(x, layout):
    t = torch.from_numpy(np.ascontiguousarray(x))
    if layout == "NHWC":  # torch wants NCHW shape; keep channels_last memory
        t = t.movedim(-1, -3)
    return t


def _to_layout(t, layout):
    a = t.movedim(-3, -1) if layout == "NHWC" else t
    return a.numpy()


@settings(max_examples=200, deadline=None)
@given(pool2d_problem(op="max", dtypes=("float32", "float64")))
def test_max_pool2d_matches_torch(problem):
    x, kw, layout = problem
    want, want_idx = F.max_pool2d(_torch_input(x, layout), return_indices=True, **kw)
    got, idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    np.testing.assert_array_equal(got, _to_layout(want, layout))
    np.testing.assert_array_equal(idx, _to_layout(want_idx, layout))
    got_cpu = cpu.max_pool2d(x, layout=layout, **kw)
    np.testing.assert_array_equal(got_cpu, got)


@settings(max_examples=200, deadline=None)
@given(pool2d_problem(op="avg"))
def test_avg_pool2d_matches_torch(problem):
    x, kw, layout = problem
    want = _to_layout(F.avg_pool2d(_torch_input(x, layout), **kw), layout)
    got = reference.avg_pool2d(x, layout=layout, **kw)
    # the reference sums in PyTorch's order (row by row, input dtype): bitwise equal
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cpu.avg_pool2d(x, layout=layout, **kw), want)


# ------------------------------------------------------------------ the family, forward
def to_torch(x, nd, layout):
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


# ------------------------------------------------------------------ the family, against autograd
def torch_grad(fn, x, nd, layout, g, *args, **kwargs):
    """Gradient w.r.t. x of sum(fn(x) * g) from PyTorch's autograd, in poolkit's layout."""
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
@TORCH_GRAD_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_max_and_avg_backward_match_torch(nd, data, seed):
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
@TORCH_GRAD_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_adaptive_backward_matches_torch(nd, data, seed):
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
@TORCH_GRAD_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_lp_backward_matches_torch(nd, data, seed):
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
@TORCH_GRAD_SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_unpool_backward_matches_torch(nd, data, seed):
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
    cl = layout == G.LAYOUTS[nd][1]
    ti = torch.from_numpy(np.ascontiguousarray(idx if x.ndim == nd + 2 else idx[None]))
    ti = ti.movedim(-1, 1) if cl else ti
    want = torch_grad(lambda t, *a: getattr(F, f"max_unpool{nd}d")(t, ti, *a), pooled, nd, layout, g, *args)
    assert_same(public(f"max_unpool{nd}d_backward")(g, pooled, idx, *args, layout=layout), want)
