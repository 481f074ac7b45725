"""``nan_policy="omit"`` on the GPU: every result equals ``poolkit.reference`` bit for bit.

The rule is :func:`poolkit.geometry.check_nan_policy` (tests/test_nan_policy.py checks
the reference and the CPU against it). On the GPU, ``"omit"`` runs on the generic
5-D kernels of :mod:`poolkit.gpu.kernels_nd` for every nd and layout: ``max3d_omit``
and ``adaptive_max_omit`` (the max kernels' own source compiled with the omit step),
``avg_omit`` (every omit average, and the divisors of the backward) and
``avg_gather_omit``. Inputs are mostly NaN on purpose: windows with no valid cell,
one valid cell, or all valid are all common; padding, ceil_mode, both layouts,
count_include_pad both ways, divisor_override, adaptive sizes down to 1, device and
NumPy inputs.

Run with ``NUMBA_ENABLE_CUDASIM=1`` (or on a GPU with ``POOLKIT_REAL_GPU=1``): few,
small examples, since the simulator costs ~0.2 ms per simulated thread.
"""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import cuda

import poolkit
from backends import GPU_EXAMPLES_FAMILY, GPU_MARKS, examples, host, is_device, run
from poolkit import gpu
from poolkit import geometry as G
from poolkit import reference as R
from poolkit.gpu import device as gpu_device
from strategies import adaptive_problem, nodata, random_grad, window_problem

pytestmark = list(GPU_MARKS) + [
    # 0/0 (no valid cell, no padding) is NaN by the rule (and such a window's share of the
    # gradient, read by no cell, inf); the simulator divides NumPy scalars
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning"),
]

FLOATS = ("float32", "float64")
NDS = [pytest.param(nd, id=f"{nd}d") for nd in (1, 2, 3)]
SETTINGS = examples("gpu", on_cpu=0, on_gpu=GPU_EXAMPLES_FAMILY)


def assert_bitwise(got, want, nan_bits=False):
    """Same shape, dtype, NaN positions, values and signs of zero; ``nan_bits``: each NaN's bits too.

    Averages leave NaN bits out: a NaN that 0/0 makes (a window with no valid cell) is
    negative on x86 (the reference, the simulator) and positive on a GPU. A maximum
    does no arithmetic: its NaNs are input cells, bits and all (``nan_bits=True``).
    """
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), (got, want)
    if got.dtype.kind == "f":
        num = ~np.isnan(want)
        np.testing.assert_array_equal(np.signbit(got[num]), np.signbit(want[num]))
        if nan_bits:
            u = np.dtype(f"u{got.dtype.itemsize}")
            np.testing.assert_array_equal(np.ascontiguousarray(got).view(u), np.ascontiguousarray(want).view(u))


def ref(name, *args, **kw):
    with np.errstate(invalid="ignore", divide="ignore"):
        return getattr(R, name)(*args, nan_policy="omit", **kw)


def on_gpu(data, name, *args, **kw):
    """``gpu.<name>`` with ``nan_policy="omit"``, NumPy or (drawn) device inputs; NumPy results."""
    return run("gpu", name, *args, device=data.draw(st.booleans()), nan_policy="omit", **kw)


# ------------------------------------------------------------------ forward
@pytest.mark.parametrize("nd", NDS)
def test_max_omit_matches_reference(nd):
    @SETTINGS
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=FLOATS, allow_nan=False))
        x = nodata(x, data)
        name = f"max_pool{nd}d"
        want, want_idx = ref(name, x, return_indices=True, layout=layout, **kw)
        got, idx = on_gpu(data, name, x, return_indices=True, layout=layout, **kw)
        assert_bitwise(got, want, nan_bits=True)
        assert_bitwise(idx, want_idx)
        assert_bitwise(on_gpu(data, name, x, layout=layout, **kw), want, nan_bits=True)

    check()


@pytest.mark.parametrize("nd", NDS)
def test_avg_omit_matches_reference(nd):
    @SETTINGS
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op="avg", dtypes=FLOATS, allow_nan=False))
        x = nodata(x, data)
        name = f"avg_pool{nd}d"
        assert_bitwise(on_gpu(data, name, x, layout=layout, **kw), ref(name, x, layout=layout, **kw))

    check()


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_omit_matches_reference(kind, nd):
    @SETTINGS
    @given(st.data())
    def check(data):
        x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=FLOATS, allow_nan=False))
        x = nodata(x, data)
        name = f"adaptive_{kind}_pool{nd}d"
        if kind == "max":
            want, want_idx = ref(name, x, out_size, True, layout=layout)
            got, idx = on_gpu(data, name, x, out_size, True, layout=layout)
            assert_bitwise(idx, want_idx)
        else:
            want = ref(name, x, out_size, layout=layout)
            got = on_gpu(data, name, x, out_size, layout=layout)
        assert_bitwise(got, want, nan_bits=kind == "max")

    check()


# ------------------------------------------------------------------ backward
@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_window_backward_omit_matches_reference(kind, nd):
    @SETTINGS
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op=kind, dtypes=FLOATS, allow_nan=False))
        x = nodata(x, data)
        fwd = ref(f"{kind}_pool{nd}d", x, layout=layout, **kw)
        g = random_grad(fwd.shape, x.dtype, data.draw(st.integers(0, 99)))
        name = f"{kind}_pool{nd}d_backward"
        want = ref(name, g, x, layout=layout, **kw)
        assert_bitwise(on_gpu(data, name, g, x, layout=layout, **kw), want)
        if kind == "max":  # with the forward's indices: the same routing
            _, idx = ref(f"max_pool{nd}d", x, return_indices=True, layout=layout, **kw)
            assert_bitwise(on_gpu(data, name, g, x, indices=idx, layout=layout, **kw), want)

    check()


@pytest.mark.parametrize("nd", NDS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_backward_omit_matches_reference(kind, nd):
    @SETTINGS
    @given(st.data())
    def check(data):
        x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=FLOATS, allow_nan=False))
        x = nodata(x, data)
        fwd = ref(f"adaptive_{kind}_pool{nd}d", x, out_size, layout=layout)
        g = random_grad(fwd.shape, x.dtype, data.draw(st.integers(0, 99)))
        name = f"adaptive_{kind}_pool{nd}d_backward"
        want = ref(name, g, x, out_size, layout=layout)
        assert_bitwise(on_gpu(data, name, g, x, out_size, layout=layout), want)

    check()


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_omit(kind, layout):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5, 2)).astype(np.float32)
    x[rng.random(x.shape) < 0.6] = np.nan
    x[1] = np.nan  # a whole sample of nodata
    name = f"global_{kind}_pool2d"
    want = ref(name, x, layout=layout)
    d = cuda.to_device(x)
    out = gpu.__dict__[name](d, layout=layout, nan_policy="omit")
    assert is_device(out)
    assert_bitwise(host(out), want, nan_bits=kind == "max")
    g = random_grad(want.shape, x.dtype, 0)
    gx = poolkit.__dict__[name + "_backward"](cuda.to_device(g), d, layout=layout, nan_policy="omit")
    assert is_device(gx)  # device in, device out: no host round trip
    assert_bitwise(host(gx), ref(name + "_backward", g, x, layout=layout))


# ------------------------------------------------------------------ the rule, by hand
NAN = np.nan
X = np.array([[[NAN, 1., 2., NAN],
               [NAN, NAN, 5., NAN],
               [NAN, NAN, NAN, NAN],
               [NAN, NAN, NAN, -0.]]], np.float32)


@pytest.mark.parametrize("kernel", ["optimized", "naive"])
def test_omit_rules_by_hand(kernel):
    out, idx = gpu.max_pool2d(X, 2, return_indices=True, nan_policy="omit", kernel=kernel)
    assert_bitwise(out, np.array([[[1., 5.], [NAN, -0.]]], np.float32))
    assert_bitwise(idx, np.array([[[1, 6], [13, 15]]]))  # an all-NaN window: its last cell, as propagate
    assert_bitwise(gpu.avg_pool2d(X, 2, nan_policy="omit", kernel=kernel),
                   np.array([[[1., 3.5], [NAN, 0.]]], np.float32))  # +0.0 + -0.0: the sum starts at +0.0
    # 3x3 s2 p1: output (0, 0) has 5 padding cells and one valid cell (1.0)
    a = gpu.avg_pool2d(X, 3, 2, 1, nan_policy="omit", kernel=kernel)
    assert a[0, 0, 0] == np.float32(1) / np.float32(6)
    assert a[0, 1, 0] == 0 and not np.signbit(a[0, 1, 0])  # all-NaN window + counted padding: 0 / 5
    b = gpu.avg_pool2d(X, 3, 2, 1, count_include_pad=False, nan_policy="omit", kernel=kernel)
    assert b[0, 0, 0] == 1 and np.isnan(b[0, 1, 0])  # no padding counted: 0 / 0
    assert_bitwise(gpu.avg_pool2d(X, 2, divisor_override=4, nan_policy="omit", kernel=kernel),
                   np.array([[[0.25, 1.75], [0., 0.]]], np.float32))
    assert_bitwise(gpu.adaptive_avg_pool2d(X, 1, nan_policy="omit"), np.array([[[2.]]], np.float32))
    g = np.ones((1, 2, 2), np.float32)
    assert_bitwise(gpu.avg_pool2d_backward(g, X, 2, nan_policy="omit"),
                   np.array([[[0, 1, .5, 0], [0, 0, .5, 0], [0, 0, 0, 0], [0, 0, 0, 1]]], np.float32))
    assert_bitwise(gpu.max_pool2d_backward(g, X, 2, nan_policy="omit"),
                   R.max_pool2d_backward(g, X, 2, nan_policy="omit"))


def test_omit_ceil_mode_overhang_and_padding_3d():
    # ceil_mode windows that overhang the input, padding counted or not, NaN planes, both layouts
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, size=(1, 2, 3, 4, 5)).astype(np.float64)
    x[rng.random(x.shape) < 0.5] = np.nan
    x[0, 0, 1] = np.nan
    for layout, xi in (("NCDHW", x), ("NDHWC", np.ascontiguousarray(np.moveaxis(x, 1, -1)))):
        for cip in (True, False):
            kw = dict(kernel_size=(2, 3, 2), stride=2, padding=(1, 1, 0), ceil_mode=True,
                      count_include_pad=cip)
            assert_bitwise(gpu.avg_pool3d(xi, layout=layout, nan_policy="omit", **kw),
                           ref("avg_pool3d", xi, layout=layout, **kw))
        got = gpu.max_pool3d(xi, 3, 2, 1, 1, True, True, layout=layout, nan_policy="omit")
        want = ref("max_pool3d", xi, 3, 2, 1, 1, True, True, layout=layout)
        assert_bitwise(got[0], want[0], nan_bits=True)
        assert_bitwise(got[1], want[1])


def test_omit_large_windows_visit_in_range_cells_only():
    # windows of 10**6 + 1 (and 2**24 + 3) cells over 8: the kernels clip each window to the input
    x = np.array([[[NAN, 2., NAN, -1., 4., NAN, NAN, 0.5]]], np.float32)
    k, p = 10**6 + 1, 5 * 10**5
    for cip in (True, False):
        assert_bitwise(gpu.avg_pool1d(x, k, 1, p, count_include_pad=cip, nan_policy="omit"),
                       ref("avg_pool1d", x, k, 1, p, count_include_pad=cip))
    got = gpu.max_pool1d(x, k, 1, p, return_indices=True, nan_policy="omit")
    want = ref("max_pool1d", x, k, 1, p, return_indices=True)
    assert_bitwise(got[0], want[0], nan_bits=True)
    assert_bitwise(got[1], want[1])
    # 6 valid cells + 2**24 - 5 padding cells: the divisor 2**24 + 1 is no float32; like the
    # reference, the kernel rounds it to float32 first (19 / 2**24, not 19 / (2**24 + 1))
    x = np.array([[[NAN, 3., 7., NAN, 1., 5., 2., 1.]]], np.float32)
    k = 2**24 + 3
    want = ref("avg_pool1d", x, k, 1, k // 2)
    assert want[0, 0, 0] == np.float32(19) / np.float32(2**24)
    assert_bitwise(gpu.avg_pool1d(x, k, 1, k // 2, nan_policy="omit"), want)


def test_omit_on_strided_device_input():
    rng = np.random.default_rng(5)
    big = rng.integers(-3, 4, size=(2, 3, 6, 10)).astype(np.float32)
    big[rng.random(big.shape) < 0.6] = np.nan
    d = cuda.to_device(big)[:, :, :, ::2]  # non-contiguous: copied once on the device
    x = big[:, :, :, ::2]
    out, idx = gpu.max_pool2d(d, 3, 2, 1, return_indices=True, nan_policy="omit")
    want, want_idx = ref("max_pool2d", x, 3, 2, 1, return_indices=True)
    assert is_device(out) and is_device(idx)
    assert_bitwise(host(out), want, nan_bits=True)
    assert_bitwise(host(idx), want_idx)
    a = gpu.avg_pool2d(d, 3, 1, 1, nan_policy="omit")
    assert is_device(a)
    assert_bitwise(host(a), ref("avg_pool2d", x, 3, 1, 1))
    g = random_grad(want.shape, x.dtype, 1)
    gx = gpu.avg_pool2d_backward(cuda.to_device(g), d, 3, 2, 1, divisor_override=3, nan_policy="omit")
    assert is_device(gx)
    assert_bitwise(host(gx), ref("avg_pool2d_backward", g, x, 3, 2, 1, divisor_override=3))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_omit_equals_propagate_without_nan(layout):
    """With no NaN the two policies give the same bits (an adaptive bin with no cell left
    out is divided by its sizes in turn, as with propagate), forward and backward."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1, 2, 7, 9)) * 1e3).astype(np.float32)
    x[0, 0, 0, 0] = -0.0
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for name, args, kw in [("max_pool2d", (3, 2, 1), dict(return_indices=True)),
                           ("avg_pool2d", (3, 2, 1, True), {}),
                           ("avg_pool2d", ((2, 3),), dict(count_include_pad=False)),
                           ("adaptive_max_pool2d", ((4, 5), True), {}),
                           ("adaptive_avg_pool2d", ((4, 5),), {}),
                           ("adaptive_avg_pool2d", ((3, 2),), {})]:
        a = getattr(gpu, name)(x, *args, layout=layout, nan_policy="omit", **kw)
        b = getattr(gpu, name)(x, *args, layout=layout, **kw)
        for u, v in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
            assert_bitwise(u, v)
        if not name.startswith("adaptive_max"):
            bw = name + "_backward"
            g = random_grad((a[0] if isinstance(a, tuple) else a).shape, x.dtype, 2)
            kw.pop("return_indices", None)
            assert_bitwise(getattr(gpu, bw)(g, x, *args, layout=layout, nan_policy="omit", **kw),
                           getattr(gpu, bw)(g, x, *args, layout=layout, **kw))


@pytest.mark.parametrize("dtype", ["int32", "uint8"])
def test_omit_on_integers_is_propagate(dtype):
    x = np.random.default_rng(2).integers(0, 5, size=(1, 2, 5, 5)).astype(dtype)
    for name, xi, k in [("max_pool1d", x.reshape(1, 2, 25), 2), ("max_pool2d", x, 2),
                        ("max_pool3d", x[:, :, None], (1, 2, 2)), ("adaptive_max_pool2d", x, 2)]:
        a = getattr(gpu, name)(xi, k, return_indices=True, nan_policy="omit")
        b = getattr(gpu, name)(xi, k, return_indices=True)
        assert_bitwise(a[0], b[0])
        assert_bitwise(a[1], b[1])


def test_omit_empty_batch():
    x = np.zeros((0, 3, 6, 6), np.float32)
    assert gpu.max_pool2d(x, 2, nan_policy="omit").shape == (0, 3, 3, 3)
    assert gpu.avg_pool3d(x[:, :, None], (1, 2, 2), nan_policy="omit").shape == (0, 3, 1, 3, 3)
    assert gpu.adaptive_avg_pool2d(x, 2, nan_policy="omit").shape == (0, 3, 2, 2)
    g = np.zeros((0, 3, 3, 3), np.float32)
    assert gpu.avg_pool2d_backward(g, x, 2, nan_policy="omit").shape == x.shape


# ------------------------------------------------------------------ the argument itself
FAMILY = [n for n in G.OPS if n.startswith(("max_pool", "avg_pool", "adaptive_", "global_"))]


def test_every_max_avg_function_takes_nan_policy_like_poolkit():
    assert len(FAMILY) == 28
    for name in FAMILY:
        p = inspect.signature(getattr(gpu, name)).parameters["nan_policy"]
        assert p.kind is p.KEYWORD_ONLY and p.default == "propagate", name


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool1d", "adaptive_avg_pool3d", "global_max_pool2d",
                                  "avg_pool2d_backward", "adaptive_max_pool2d_backward"])
@pytest.mark.parametrize("bad", ["ignore", "OMIT", None])
def test_bad_nan_policy_is_refused_before_the_gpu(name, bad, monkeypatch):
    touched = []
    for fn in ("launch", "put", "alloc", "to5", "to_device_4d"):
        monkeypatch.setattr(gpu_device, fn, lambda *a, **k: touched.append(a))
    nd = 2 if "2d" in name else 3 if "3d" in name else 1
    x = np.zeros((1, 2) + (4,) * nd, np.float32)
    args = () if name.startswith("global") else (2,)
    call = [x] if not name.endswith("_backward") else [np.zeros((1, 2, 2, 2), np.float32), x]
    with pytest.raises(TypeError if bad is None or bad == 1 else ValueError, match="nan_policy"):
        getattr(gpu, name)(*call, *args, nan_policy=bad)
    with pytest.raises(TypeError if bad is None or bad == 1 else ValueError, match="nan_policy"):
        getattr(poolkit, name)(*[cuda.to_device(a) for a in call], *args, nan_policy=bad)
    assert touched == []
