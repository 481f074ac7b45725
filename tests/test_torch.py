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


# ------------------------------------------------------------------ empty arrays: what PyTorch accepts
#: (label, N or None for unbatched, C, the first spatial size) in channels-first terms.
EMPTY_SHAPES = [("unbatched C=0", None, 0, 4), ("N=0", 0, 2, 4), ("C=0", 2, 0, 4), ("N=0 C=0", 0, 0, 4),
                ("unbatched L=0", None, 2, 0), ("L=0", 2, 2, 0), ("N=0 L=0", 0, 2, 0),
                ("unbatched C=0 L=0", None, 0, 0)]


def _torch_shape(fn):
    """``fn()``'s shape, or None if PyTorch refuses the input."""
    try:
        out = fn()
    except (RuntimeError, ValueError, IndexError):
        return None
    return tuple((out[0] if isinstance(out, tuple) else out).shape)


def _torch_grad_shape(fn, t, ti):
    def run():
        tt = t.clone().requires_grad_(True)
        y = fn(tt, ti)
        (y[0] if isinstance(y, tuple) else y).sum().backward()
        return tt.grad
    return _torch_shape(run)


def _poolkit_shape(name, args, x, cl, nd):
    """The channels-first shape of ``name(*args)`` from the reference, cpu (parallel and serial)
    and the public function, which must agree; None where all of them refuse ``x``."""
    shapes = set()
    for fn in (getattr(reference, name), public(name), getattr(cpu, name),
               lambda *a, **k: getattr(cpu, name)(*a, parallel=False, **k)):
        try:
            out = fn(*args, layout=G.LAYOUTS[nd][int(cl)])
        except ValueError as exc:
            assert "x must have non-zero" in str(exc), (name, str(exc))
            shapes.add(None)
            continue
        assert out.dtype == x.dtype and out.size == 0
        shapes.add(np.moveaxis(out, -1, -nd - 1).shape if cl else out.shape)
    assert len(shapes) == 1, (name, shapes)
    return shapes.pop()


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
@pytest.mark.parametrize("label, n, c, side", EMPTY_SHAPES, ids=[s[0] for s in EMPTY_SHAPES])
def test_empty_inputs_are_accepted_where_torch_accepts_them(nd, cl, label, n, c, side):
    """N = 0, C = 0 and zero spatial sizes, every op forward and backward, both layouts:
    poolkit takes what PyTorch 2.13 takes, with its shapes (geometry.check_input's rule).

    Where poolkit differs, on purpose: adaptive pooling and unpooling take C = 0 batched or
    not (PyTorch takes it unbatched, and batched for adaptive_avg_pool1d/2d); a backward pass
    takes what its forward takes (PyTorch's adaptive_avg_pool1d/2d backward refuses a batched
    C = 0); an adaptive average to output size 1 over an empty plane is refused (PyTorch's
    mean() of nothing is NaN).
    """
    spatial = (side,) + (4,) * (nd - 1)

    def tensors(channels):
        shape = (() if n is None else (n,)) + (channels,) + spatial
        return torch.zeros(shape), torch.zeros(shape, dtype=torch.int64)

    t, ti = tensors(c)
    x = t.numpy()
    x = np.ascontiguousarray(np.moveaxis(x, -nd - 1, -1)) if cl else x
    idx = np.zeros(x.shape, np.int64)
    ops = {  # name: (poolkit's arguments after x, PyTorch's call)
        f"max_pool{nd}d": ((2,), lambda a, ai: getattr(F, f"max_pool{nd}d")(a, 2)),
        f"avg_pool{nd}d": ((2,), lambda a, ai: getattr(F, f"avg_pool{nd}d")(a, 2)),
        f"lp_pool{nd}d": ((2, 2), lambda a, ai: getattr(F, f"lp_pool{nd}d")(a, 2, 2)),
        f"adaptive_max_pool{nd}d": ((2,), lambda a, ai: getattr(F, f"adaptive_max_pool{nd}d")(a, 2)),
        f"adaptive_avg_pool{nd}d": ((2,), lambda a, ai: getattr(F, f"adaptive_avg_pool{nd}d")(a, 2)),
        f"max_unpool{nd}d": ((idx, 2), lambda a, ai: getattr(F, f"max_unpool{nd}d")(a, ai, 2)),
    }
    for name, (args, tfn) in ops.items():
        want = _torch_shape(lambda: tfn(t, ti))
        if c == 0 and side and name.startswith(("adaptive_", "max_unpool")):
            one = _torch_shape(lambda: tfn(*tensors(1)))  # the C = 1 twin's shape, with C = 0
            ch = 0 if n is None else 1
            assert want in (None, one[:ch] + (0,) + one[ch + 1:])
            want = one[:ch] + (0,) + one[ch + 1:]
        got = _poolkit_shape(name, (x,) + args, x, cl, nd)
        assert got == want, (name, label, got, want)
        want_grad = None if want is None else tuple(t.shape)
        torch_grad = _torch_grad_shape(tfn, t, ti)
        assert torch_grad == want_grad or (want_grad and torch_grad is None and c == 0 and n is not None
                                           and name.startswith(("adaptive_", "max_unpool")))
        g = np.zeros(x.shape if want is None else np.moveaxis(np.zeros(want), -nd - 1, -1).shape if cl
                     else want, np.float32)
        got_grad = _poolkit_shape(f"{name}_backward", (g, x) + args, x, cl, nd)
        assert got_grad == want_grad, (f"{name}_backward", label, got_grad, want_grad)
    # output size 1: PyTorch calls mean(), which takes an empty plane too (NaN); poolkit refuses it
    want = _torch_shape(lambda: getattr(F, f"adaptive_avg_pool{nd}d")(t, 1))
    got = _poolkit_shape(f"adaptive_avg_pool{nd}d", (x, 1), x, cl, nd)
    assert got == (None if side == 0 else want), (label, got, want)


# ------------------------------------------------------------------ a negative divisor_override
@pytest.mark.parametrize("nd", [2, 3])
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
def test_negative_divisor_override_divides_like_torch(nd, cl):
    """PyTorch divides by any non-zero divisor_override, a negative one too: the reference, the CPU
    kernels (serial and parallel) and the public function give its bits, forward and backward
    (tests/test_limits.py runs the GPU kernels; tests/test_dask.py the Dask blocks)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3) + (5, 6, 7)[:nd]).astype(np.float32)
    layout = G.LAYOUTS[nd][int(cl)]
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x
    back = (lambda a: np.moveaxis(a, -1, 1)) if cl else (lambda a: a)
    name = f"avg_pool{nd}d"
    for args in [(2,), (3, 2, 1), (3, 2, 1, True, False), (3, 2, 1, True, True)]:
        xt = torch.from_numpy(x).requires_grad_()
        want = getattr(F, name)(xt, *args, divisor_override=-3)
        g = rng.standard_normal(want.shape).astype(np.float32)
        want.backward(torch.from_numpy(g))
        gl = np.ascontiguousarray(np.moveaxis(g, 1, -1)) if cl else g
        for fn in (getattr(reference, name), public(name), getattr(cpu, name),
                   lambda *a, **k: getattr(cpu, name)(*a, parallel=False, **k)):
            assert_same(back(fn(xl, *args, divisor_override=-3, layout=layout)), want.detach().numpy())
        for fn in (getattr(reference, f"{name}_backward"), public(f"{name}_backward"),
                   lambda *a, **k: getattr(cpu, f"{name}_backward")(*a, parallel=False, **k)):
            assert_same(back(fn(gl, xl, *args, divisor_override=-3, layout=layout)), xt.grad.numpy())


# ------------------------------------------------------------------ the sign of a zero gradient
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
def test_avg_backward_of_a_negative_zero_gradient_is_plus_zero_like_torch(nd, cl):
    """PyTorch adds each window's share into a zeroed gradient, so -0.0 comes back as +0.0: the
    gather (overlapping windows) and the spread (windows that never overlap: written, not added)
    keep that sign, serial and parallel (assert_same cannot see it)."""
    layout = G.LAYOUTS[nd][int(cl)]
    spatial = (8, 10, 12)[:nd]
    for args in [(2,), (3, 2, 1), (2, 3), (3, 1, 1), (2, 2, 0, True)]:
        xt = torch.zeros((2, 3) + spatial, requires_grad=True)
        y = getattr(F, f"avg_pool{nd}d")(xt, *args)
        g = -torch.zeros_like(y)
        g.view(-1)[::3] = torch.randn(g.numel() // 3 + (g.numel() % 3 > 0))  # some non-zero shares too
        y.backward(g)
        want = xt.grad.numpy()
        gl, xl = (np.ascontiguousarray(np.moveaxis(a.detach().numpy(), 1, -1)) if cl else a.detach().numpy()
                  for a in (g, xt))
        for par in (False, True):
            got = getattr(cpu, f"avg_pool{nd}d_backward")(gl, xl, *args, layout=layout, parallel=par)
            got = np.moveaxis(got, -1, 1) if cl else got
            assert_same(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=f"{args} parallel={par}")


# ------------------------------------------------------------------ max_unpool's output_size, any layout
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
def test_unpool_full_output_size_is_read_in_the_layouts_order(nd, cl):
    """``output_size=x.shape`` (N, C, *spatial, or N, *spatial, C channels-last) gives PyTorch's
    result for ``output_size=x.size()``, as do the spatial sizes alone; N and C are not read,
    as in PyTorch. Odd sizes make the size differ from the default unpooling size."""
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((2, 3) + (5, 7, 3)[:nd]).astype(np.float32)
    layout = G.LAYOUTS[nd][int(cl)]
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x
    back = (lambda a: np.moveaxis(a, -1, 1)) if cl else (lambda a: a)
    y, i = public(f"max_pool{nd}d")(xl, 2, return_indices=True, layout=layout)
    yt, it = getattr(F, f"max_pool{nd}d")(torch.from_numpy(x), 2, return_indices=True)
    want = getattr(F, f"max_unpool{nd}d")(yt, it, 2, output_size=x.shape).numpy()
    g = rng.standard_normal(xl.shape).astype(np.float32)
    want_grad = back(public(f"max_unpool{nd}d_backward")(g, y, i, 2, output_size=xl.shape[1:-1] if cl
                                                         else xl.shape[2:], layout=layout))
    for size in (xl.shape, list(xl.shape), xl.shape[1:-1] if cl else xl.shape[2:]):
        for fn in (getattr(reference, f"max_unpool{nd}d"), public(f"max_unpool{nd}d"),
                   lambda *a, **k: getattr(cpu, f"max_unpool{nd}d")(*a, parallel=False, **k)):
            assert_same(back(fn(y, i, 2, output_size=size, layout=layout)), want)
        for fn in (getattr(reference, f"max_unpool{nd}d_backward"), public(f"max_unpool{nd}d_backward")):
            assert_same(back(fn(g, y, i, 2, output_size=size, layout=layout)), want_grad)


# ------------------------------------------------------------------ adaptive average to size 1: PyTorch's mean()
def _ulps(got, want):
    return np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.spacing(np.abs(want)).astype(np.float64)


def _sequential_mean(x, nd):
    """The specification of poolkit's size-1 adaptive average: each plane summed front to back in
    x's dtype (np.add.accumulate is strictly sequential), then divided by D, H, W in turn."""
    flat = x.reshape(x.shape[:2] + (-1,))
    out = np.add.accumulate(flat, axis=-1, dtype=x.dtype)[..., -1:].reshape(x.shape[:2] + (1,) * nd)
    for size in x.shape[2:]:
        out = out / x.dtype.type(size)
    return out


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adaptive_avg_to_size_1_stays_within_the_documented_bound_of_torch(nd, dtype):
    """PyTorch's adaptive average to output size 1 (global average) calls mean(): a cascade sum
    vectorised at the CPU's width, then one division by n. poolkit keeps every other bin's rule
    (sequential sum, then the bin sizes in turn); the README states where bitwise equality stops:
    |poolkit - torch| <= (n - 1) eps mean|x| + 2 eps |mean| always; <= 2 sqrt(n) + 2 ulp for values
    in [0, 1) (measured); the backward (grad / D / H / W against grad / n) within 1 ulp."""
    rng = np.random.default_rng(nd)
    eps = np.finfo(dtype).eps
    sides = {1: [5, 7, 49, 100, 1000, 4096], 2: [(3, 3), (7, 7), (9, 13), (14, 14), (56, 56)],
             3: [(3, 3, 3), (4, 5, 6), (8, 8, 8), (16, 16, 16)]}[nd]
    for spatial in sides:
        spatial = spatial if nd > 1 else (spatial,)
        n = math.prod(spatial)
        C = max(4, min(512, 50_000 // n))
        planes = [rng.random((2, C) + spatial), rng.standard_normal((2, C) + spatial),
                  np.full((1, 4) + spatial, 0.1) * np.array([1, 3, 7, 1234.5]).reshape(1, 4, *(1,) * nd)]
        for kind, x in zip(("uniform", "normal", "constant"), planes):
            x = x.astype(dtype)
            for cl in (False, True):
                layout = G.LAYOUTS[nd][int(cl)]
                xl = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x
                t = torch.from_numpy(xl).movedim(-1, 1) if cl else torch.from_numpy(x)
                want = getattr(F, f"adaptive_avg_pool{nd}d")(t, 1).numpy()
                got = public(f"adaptive_avg_pool{nd}d")(xl, 1, layout=layout)
                got = np.moveaxis(got, -1, 1) if cl else got
                assert_same(got, _sequential_mean(x, nd))
                scale = np.abs(x).mean(axis=tuple(range(2, 2 + nd)), keepdims=True)
                bound = (n - 1) * eps * scale + 2 * eps * np.abs(want)
                assert np.all(np.abs(got.astype(np.float64) - want) <= bound), (spatial, kind, cl)
                if kind == "uniform":
                    assert _ulps(got, want).max() <= 2 * math.sqrt(n) + 2, (spatial, cl)
                g = rng.standard_normal(want.shape).astype(dtype)
                tt = t.detach().clone().requires_grad_(True)
                getattr(F, f"adaptive_avg_pool{nd}d")(tt, 1).backward(torch.from_numpy(g))
                gl = np.ascontiguousarray(np.moveaxis(g, 1, -1)) if cl else g
                gx = public(f"adaptive_avg_pool{nd}d_backward")(gl, xl, 1, layout=layout)
                gx = np.moveaxis(gx, -1, 1) if cl else gx
                assert _ulps(gx, tt.grad.numpy()).max() <= 1, (spatial, kind, cl)
                if nd == 2:  # global_avg_pool2d is the same computation
                    glob = public("global_avg_pool2d")(xl, layout=layout)
                    assert_same(glob, got.reshape(glob.shape) if not cl else got[:, :, 0, 0])


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("cl", [False, True], ids=["channels_first", "channels_last"])
def test_every_other_adaptive_avg_output_size_is_bitwise_torch(nd, cl):
    """Output sizes other than 1 in every dimension (1 in some dimensions included): PyTorch sums
    each bin front to back and divides by the bin sizes in turn, as poolkit does, forward and
    backward, bit for bit."""
    rng = np.random.default_rng(10 + nd)
    layout = G.LAYOUTS[nd][int(cl)]
    cases = {1: [((L,), (o,)) for L in (1, 2, 5, 7, 12) for o in range(2, L + 3)],
             2: [((H, W), (oh, ow)) for H, W in ((1, 5), (5, 7), (6, 6), (13, 4))
                 for oh in (1, 2, 3, H, H + 1) for ow in (1, 2, 5, W + 2) if (oh, ow) != (1, 1)],
             3: [((D, H, W), o) for D, H, W in ((3, 4, 5), (6, 2, 7))
                 for o in ((1, 1, 2), (2, 1, 1), (1, 3, 1), (2, 3, 4), (D + 1, 1, W))]}[nd]
    for spatial, out in cases:
        x = rng.random((2, 3) + spatial).astype(np.float32)
        xl = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x
        tt = torch.from_numpy(x).requires_grad_(True)
        want = getattr(F, f"adaptive_avg_pool{nd}d")(tt, out)
        got = public(f"adaptive_avg_pool{nd}d")(xl, out, layout=layout)
        assert_same(np.moveaxis(got, -1, 1) if cl else got, want.detach().numpy())
        g = rng.standard_normal(want.shape).astype(np.float32)
        want.backward(torch.from_numpy(g))
        gl = np.ascontiguousarray(np.moveaxis(g, 1, -1)) if cl else g
        gx = public(f"adaptive_avg_pool{nd}d_backward")(gl, xl, out, layout=layout)
        assert_same(np.moveaxis(gx, -1, 1) if cl else gx, tt.grad.numpy())
