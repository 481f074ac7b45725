"""Gradients of every pooling op on every backend: ``F_backward(grad_output, x, <F's arguments>)``.

Against the plain-loop reference (property-based; on the GPU, arrays on the device
half the time), central finite differences on float64, targeted examples (routing vs
spreading, ties, NaN, overlapping windows, repeated unpooling indices, N = 0),
determinism (two runs, serial vs parallel, bitwise equal) and the ``indices=``
shortcut. PyTorch's autograd is in test_torch.py, bad input in test_errors.py.

Gradients equal the reference bit for bit, except Lp pooling (``pow``), which is
compared with a tolerance.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import (BACKENDS, GPU_EXAMPLES_FAMILY, dtypes_for, examples, float_dtypes, is_gpu, parallel_threshold,
                      run, to_device, with_nd)
from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from strategies import adaptive_problem, assert_same, public, random_grad, window_problem

#: The max-type forward ops may take integers; every backward is float only.
MAX_DTYPES = ("float32", "float64", "int32", "uint8")






def assert_close(got, want, rtol=None):
    assert got.shape == want.shape and got.dtype == want.dtype
    rtol = rtol or (1e-5 if got.dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)




def grad_like(out, seed):
    """A gradient for ``out``: small integers plus a fraction (ties in sums are rare)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-3, 4, size=out.shape).astype(out.dtype) + rng.random(out.shape).astype(out.dtype)


def family(backend):
    return examples(backend, on_cpu=30, on_gpu=GPU_EXAMPLES_FAMILY)


def devices(data):
    """Which of (grad_output, x) go to the device (GPU only): drawn independently."""
    return [i for i in (0, 1) if data.draw(st.booleans())]


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("nd, backend", with_nd())
def test_max_backward_matches_reference(nd, backend):
    @family(backend)
    @given(st.data(), st.integers(0, 2**16))
    def check(data, seed):
        x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=float_dtypes(backend)))
        dev = devices(data)
        out, idx = run(backend, f"max_pool{nd}d", x, return_indices=True, layout=layout, **kw)
        g = random_grad(out.shape, x.dtype, seed)
        name = f"max_pool{nd}d_backward"
        want = getattr(R, name)(g, x, layout=layout, **kw)
        assert_same(run(backend, name, g, x, layout=layout, device=dev, **kw), want)
        # the indices shortcut routes the same way (the indices live where x does)
        if is_gpu(backend) and 1 in dev:
            idx = to_device(idx)
        assert_same(run(backend, name, g, x, indices=idx, layout=layout, device=dev, **kw), want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
def test_avg_backward_matches_reference(nd, backend):
    @family(backend)
    @given(st.data(), st.integers(0, 2**16))
    def check(data, seed):
        x, kw, layout = data.draw(window_problem(nd, op="avg", dtypes=float_dtypes(backend)))
        out = getattr(R, f"avg_pool{nd}d")(x, layout=layout, **kw)
        g = random_grad(out.shape, x.dtype, seed)
        # gather in increasing output order == scatter in output scan order: bitwise equal
        name = f"avg_pool{nd}d_backward"
        assert_same(run(backend, name, g, x, layout=layout, device=devices(data), **kw),
                    getattr(R, name)(g, x, layout=layout, **kw))

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_backward_matches_reference(kind, nd, backend):
    @family(backend)
    @given(st.data(), st.integers(0, 2**16))
    def check(data, seed):
        x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=float_dtypes(backend)))
        out = getattr(R, f"adaptive_{kind}_pool{nd}d")(x, out_size, layout=layout)
        g = random_grad(out.shape, x.dtype, seed)
        name = f"adaptive_{kind}_pool{nd}d_backward"
        assert_same(run(backend, name, g, x, out_size, layout=layout, device=devices(data)),
                    getattr(R, name)(g, x, out_size, layout=layout))

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # simulator threads: np.errstate is per thread
def test_lp_backward_matches_reference(nd, backend):
    @examples(backend, on_cpu=60, on_gpu=2 * GPU_EXAMPLES_FAMILY)
    @given(st.data(), st.integers(0, 2**16))
    def check(data, seed):
        x, kw, layout = data.draw(window_problem(nd, op="lp", dtypes=float_dtypes(backend),
                                                 positive=data.draw(st.booleans()),
                                                 allow_nan=data.draw(st.booleans())))
        norm_type = kw.pop("norm_type")
        with np.errstate(all="ignore"):
            out = getattr(R, f"lp_pool{nd}d")(x, norm_type, layout=layout, **kw)
            g = random_grad(out.shape, x.dtype, seed)
            want = getattr(R, f"lp_pool{nd}d_backward")(g, x, norm_type, layout=layout, **kw)
            got = run(backend, f"lp_pool{nd}d_backward", g, x, norm_type, layout=layout, device=devices(data), **kw)
        if is_gpu(backend):  # pow: libdevice and libm round differently
            assert_close(got, want, rtol=1e-5 if x.dtype == np.float32 else 1e-12)
        elif nd == 3:
            np.testing.assert_allclose(got, want, rtol=2e-5 if x.dtype == np.float32 else 1e-12, atol=1e-6)
        else:
            assert_close(got, want, rtol=1e-4 if x.dtype == np.float32 else 1e-10)

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
def test_unpool_backward_matches_reference(nd, backend):
    @family(backend)
    @given(st.data(), st.integers(0, 2**16))
    def check(data, seed):
        x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=float_dtypes(backend), strings=False))
        kw.update(dilation=1, ceil_mode=False)
        spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=False)[2]
        try:
            G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"])
        except ValueError:
            return
        pooled, idx = run(backend, f"max_pool{nd}d", x, return_indices=True, layout=layout, **kw)
        args = (idx, kw["kernel_size"], kw["stride"], kw["padding"], tuple(spatial))
        g = random_grad(x.shape, x.dtype, seed)
        name = f"max_unpool{nd}d_backward"
        assert_same(run(backend, name, g, pooled, *args, layout=layout, device=data.draw(st.booleans())),
                    getattr(R, name)(g, pooled, *args, layout=layout))

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
def test_unpool_backward_default_output_size(nd, backend):
    """Indices of a pooling with any dilation and ceil_mode (integer dtypes too), the default output size."""
    @family(backend)
    @given(st.data())
    def check(data):
        dtypes = dtypes_for(backend, MAX_DTYPES + ("int16",))
        x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=dtypes, strings=False))
        pooled, idx = getattr(R, f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
        kw = {k: kw[k] for k in ("kernel_size", "stride", "padding")}
        try:
            want = getattr(R, f"max_unpool{nd}d")(pooled, idx, layout=layout, **kw)
        except ValueError:
            return  # the default output size is empty (test_forward_nd checks the error)
        g = want if x.dtype.kind != "f" else grad_like(want, data.draw(st.integers(0, 99)))
        name = f"max_unpool{nd}d_backward"
        assert_same(run(backend, name, g, pooled, idx, layout=layout, device=data.draw(st.booleans()), **kw),
                    getattr(R, name)(g, pooled, idx, layout=layout, **kw))

    check()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_backward(keepdims, kind, backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    g = rng.standard_normal((2, 3, 1, 1) if keepdims else (2, 3))
    got = run(backend, f"global_{kind}_pool2d_backward", g, x, keepdims)
    assert_same(got, getattr(R, f"global_{kind}_pool2d_backward")(g, x, keepdims))
    g4 = g if keepdims else g[..., None, None]
    if kind == "avg":
        np.testing.assert_allclose(got, np.broadcast_to(g4 / 20, x.shape), rtol=1e-15)
    else:  # one cell per plane, the argmax, receives the whole gradient
        flat = got.reshape(2, 3, -1)
        np.testing.assert_array_equal(np.count_nonzero(flat, axis=-1), np.ones((2, 3)))
        np.testing.assert_array_equal(flat.sum(axis=-1), g4[..., 0, 0])
        np.testing.assert_array_equal(np.argmax(np.abs(flat), axis=-1), np.argmax(x.reshape(2, 3, -1), axis=-1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_backward_layouts_and_nan(keepdims, layout, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4) if layout == "NCHW" else (2, 5, 4, 3)).astype(np.float32)
    x.flat[7] = np.nan
    for kind in ("max", "avg"):
        f = f"global_{kind}_pool2d"
        g = grad_like(getattr(R, f)(x, keepdims, layout=layout), 1)
        assert_same(run(backend, f + "_backward", g, x, keepdims, layout=layout, device=(0,)),
                    getattr(R, f + "_backward")(g, x, keepdims, layout=layout))


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


# ------------------------------------------------------------------ routing vs spreading, ties, N = 0
@pytest.mark.parametrize("backend", BACKENDS)
def test_unpool_backward_with_repeated_indices_follows_torch_not_the_last_write(backend):
    x = np.array([[[1.0, 2.0]]])
    idx = np.array([[[1, 1]]])
    g = np.array([[[10.0, 20.0, 30.0]]])
    np.testing.assert_array_equal(run(backend, "max_unpool1d", x, idx, 2, 1), [[[0.0, 2.0, 0.0]]])
    np.testing.assert_array_equal(run(backend, "max_unpool1d_backward", g, x, idx, 2, 1), [[[20.0, 20.0]]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_routes_and_avg_spreads(backend):
    x = np.array([[[[1.0, 5.0], [3.0, 2.0]]]])
    g = np.ones((1, 1, 1, 1))
    np.testing.assert_array_equal(run(backend, "max_pool2d_backward", g, x, 2)[0, 0], [[0, 1], [0, 0]])
    np.testing.assert_array_equal(run(backend, "avg_pool2d_backward", g, x, 2)[0, 0],
                                  [[0.25, 0.25], [0.25, 0.25]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_route_to_the_first_maximum_and_nan_to_the_last_nan(backend):
    x = np.array([[[2.0, 7.0, 7.0, np.nan, 1.0, np.nan]]])
    g = np.array([[[10.0, 100.0]]])
    got = run(backend, "max_pool1d_backward", g, x, 3)
    np.testing.assert_array_equal(got, [[[0, 10, 0, 0, 0, 100]]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_route_to_the_first_maximum_3d(backend):
    x = np.zeros((1, 2, 3, 5, 4), np.float32)  # all ties: every gradient goes to a window's first cell
    for padding in ("same", "valid"):
        g = grad_like(R.max_pool3d(x, 2, 1, padding=padding), 4)
        assert_same(run(backend, "max_pool3d_backward", g, x, 2, 1, padding=padding),
                    R.max_pool3d_backward(g, x, 2, 1, padding=padding))


@pytest.mark.parametrize("backend", BACKENDS)
def test_overlapping_windows_add_up(backend):
    x = np.array([[[0.0, 9.0, 0.0, 0.0]]])
    g = np.array([[[1.0, 2.0, 4.0]]])
    np.testing.assert_array_equal(run(backend, "max_pool1d_backward", g, x, 2, 1), [[[0, 3, 4, 0]]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0 ** negative on the simulator's threads
def test_lp_zero_sum_gives_zero_gradient(backend):
    x = np.zeros((1, 1, 4))
    np.testing.assert_array_equal(run(backend, "lp_pool1d_backward", np.ones((1, 1, 2)), x, 2, 2), np.zeros_like(x))


@pytest.mark.parametrize("nd, backend", with_nd())
def test_empty_batch_backward(nd, backend):
    lay = G.LAYOUTS[nd][0]
    x = np.zeros((0, 2) + (4,) * nd, np.float32)
    for name, args in ((f"max_pool{nd}d", (2,)), (f"adaptive_avg_pool{nd}d", (3,)), (f"lp_pool{nd}d", (2, 2))):
        g = getattr(R, name)(x, *args, layout=lay)
        assert_same(run(backend, name + "_backward", g, x, *args, layout=lay),
                    getattr(R, name + "_backward")(g, x, *args, layout=lay))


# ------------------------------------------------------------------ determinism
def _determinism_cases(rng):
    x1 = rng.standard_normal((3, 4, 40)).astype(np.float32)  # float32: the prange dtypes (backends.PRANGE_DTYPES)
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
def test_backward_is_deterministic(channels_last):
    """The CPU kernels: run to run, and the prange twin against the serial one."""
    rng = np.random.default_rng(11)
    with parallel_threshold(0):  # small inputs would run the serial twin
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_is_bitwise_deterministic_with_ties(backend):
    rng = np.random.default_rng(11)
    x = rng.integers(0, 3, size=(1, 2, 5, 5, 4)).astype(np.float32)  # many ties
    calls = [
        lambda g: run(backend, "max_pool3d_backward", g, x, 3, 1, 1),
        lambda g: run(backend, "avg_pool3d_backward", g, x, 3, 1, 1, True, False),
        lambda g: run(backend, "adaptive_avg_pool3d_backward", g[:, :, :3, :3, :3], x, 3),
    ]
    g = rng.standard_normal((1, 2, 5, 5, 4)).astype(np.float32)
    for call in calls:
        a, b = call(g), call(g)
        assert a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ byte order, every op
def _big_endian_calls():
    """One call per op (forward and backward) on float64 input, from tests/test_errors.py's table."""
    from test_errors import CALLS
    return CALLS


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_op_takes_big_endian_input_and_returns_native_order(backend):
    """The README promises big-endian input everywhere (raw medical images): each op, forward and
    backward, gives the native-order result of the same values in native order."""
    for name, (args, kw) in sorted(_big_endian_calls().items()):
        if backend == "cpu":  # the prange twins run float32 (backends.example_float)
            args = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
                         for a in args)
        swapped = tuple(a.astype(a.dtype.newbyteorder(">")) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                        else a for a in args)
        assert any(isinstance(a, np.ndarray) and not a.dtype.isnative for a in swapped)
        want = run(backend, name, *args, **kw)
        got = run(backend, name, *swapped, **kw)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert g.dtype.isnative, f"{name}: {g.dtype}"
            np.testing.assert_array_equal(g, w, err_msg=name)
