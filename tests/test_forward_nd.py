"""The pooling family forward on every backend against the plain-loop reference:
1-d and 3-d pooling, adaptive, global, Lp, unpooling, ``padding="same"``/``"valid"``.

Property-based (both layouts, NaN, ties, ceil and padding edges, N = 0, unbatched,
non-contiguous; on the GPU, inputs on the device half the time), plus TensorFlow's
"same"/"valid" formula written out by hand and targeted examples. The 2-d max/avg
kernels have their own file, test_forward_2d.py.

Results equal the reference bit for bit (NaN where NaN), except Lp pooling, which
goes through ``pow``: libm and libdevice do not round it alike, so it is compared
with a tight relative tolerance.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import (BACKENDS, BACKENDS_2D, GPU_EXAMPLES_FAMILY, dtypes_for, example_float, examples, float_dtypes,
                      is_gpu, parallel_threshold, run, with_nd)
from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from strategies import adaptive_problem, assert_same, window_problem

ND = [1, 2, 3]
#: Max-type ops: the floats and the integer dtypes the GPU runs too.
MAX_DTYPES = ("float32", "float64", "int32", "uint8")


def assert_close(got, want, backend):
    """Lp pooling: ``pow`` rounds differently in libm and CUDA's libdevice."""
    assert got.shape == want.shape and got.dtype == want.dtype
    if is_gpu(backend):
        rtol = 1e-5 if got.dtype == np.float32 else 1e-12
    else:
        rtol = 2e-6 if got.dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def family(backend):
    return examples(backend, on_cpu=30, on_gpu=GPU_EXAMPLES_FAMILY)


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("nd, backend", with_nd(BACKENDS_2D))
def test_max_pool_matches_reference(nd, backend):
    @family(backend)
    @given(window_problem(nd, op="max", dtypes=dtypes_for(backend, MAX_DTYPES)), st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        name = f"max_pool{nd}d"
        want, want_idx = getattr(R, name)(x, return_indices=True, layout=layout, **kw)
        got, idx = run(backend, name, x, return_indices=True, layout=layout, device=device, **kw)
        assert_same(got, want)
        assert_same(idx, want_idx)
        assert_same(run(backend, name, x, layout=layout, device=device, **kw), want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd(BACKENDS_2D))
def test_avg_pool_matches_reference(nd, backend):
    @family(backend)
    @given(window_problem(nd, op="avg", dtypes=float_dtypes(backend)), st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        name = f"avg_pool{nd}d"
        # summed in scan order in the input dtype, divided in the input dtype: bitwise equal
        assert_same(run(backend, name, x, layout=layout, device=device, **kw),
                    getattr(R, name)(x, layout=layout, **kw))

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # simulator threads: np.errstate is per thread
def test_lp_pool_matches_reference(nd, backend):
    @examples(backend, on_cpu=60, on_gpu=2 * GPU_EXAMPLES_FAMILY)
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op="lp", dtypes=float_dtypes(backend),
                                                 positive=data.draw(st.booleans())))
        name = f"lp_pool{nd}d"
        norm_type = kw.pop("norm_type")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            want = getattr(R, name)(x, norm_type, layout=layout, **kw)
            got = run(backend, name, x, norm_type, layout=layout, device=data.draw(st.booleans()), **kw)
        assert_close(got, want, backend)

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_matches_reference(kind, nd, backend):
    dtypes = ("float32", "float64", "int16", "int32", "uint8") if kind == "max" else ("float32", "float64")

    @family(backend)
    @given(adaptive_problem(nd, dtypes=dtypes_for(backend, dtypes)), st.booleans())
    def check(problem, device):
        x, out_size, layout = problem
        name = f"adaptive_{kind}_pool{nd}d"
        if kind == "max":
            want, want_idx = getattr(R, name)(x, out_size, True, layout=layout)
            got, idx = run(backend, name, x, out_size, True, layout=layout, device=device)
            assert_same(idx, want_idx)
            assert_same(run(backend, name, x, out_size, layout=layout, device=device), want)
        else:
            want = getattr(R, name)(x, out_size, layout=layout)
            got = run(backend, name, x, out_size, layout=layout, device=device)
        assert_same(got, want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
def test_max_unpool_matches_reference(nd, backend):
    @family(backend)
    @given(window_problem(nd, op="max", strings=False, dtypes=dtypes_for(backend, MAX_DTYPES)), st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        kw.update(dilation=1, ceil_mode=False)  # unpooling knows kernel, stride and padding only
        spatial = G.check_input(x.shape, x.dtype, nd, layout, "t", allow_int=True)[2]
        try:
            G.make_geometry("t", spatial, kw["kernel_size"], kw["stride"], kw["padding"])
        except ValueError:
            return
        pooled, idx = getattr(R, f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
        args = (kw["kernel_size"], kw["stride"], kw["padding"], tuple(spatial))
        want = getattr(R, f"max_unpool{nd}d")(pooled, idx, *args, layout=layout)
        got = run(backend, f"max_unpool{nd}d", pooled, idx, *args, layout=layout, device=device)
        assert_same(got, want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd())
def test_max_unpool_default_output_size(nd, backend):
    """Indices of a pooling with any dilation and ceil_mode; the default output size,
    or, where that is empty, the reference's error, word for word."""
    @family(backend)
    @given(window_problem(nd, op="max", strings=False, dtypes=dtypes_for(backend, MAX_DTYPES)), st.booleans())
    def check(problem, device):
        x, kw, layout = problem
        pooled, idx = getattr(R, f"max_pool{nd}d")(x, return_indices=True, layout=layout, **kw)
        kw = {k: kw[k] for k in ("kernel_size", "stride", "padding")}
        name = f"max_unpool{nd}d"
        try:
            want = getattr(R, name)(pooled, idx, layout=layout, **kw)
        except ValueError as exc:  # e.g. the default output size is empty: the same error
            with pytest.raises(ValueError) as info:
                run(backend, name, pooled, idx, layout=layout, device=device, **kw)
            assert str(info.value) == str(exc)
            return
        assert_same(run(backend, name, pooled, idx, layout=layout, device=device, **kw), want)

    check()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(keepdims, layout, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3) if layout == "NHWC" else (2, 3, 5, 4)).astype(np.float32)
    x[0, 1, 1, 1] = np.nan
    x.flat[7] = np.nan
    for kind, npfun in (("max", np.max), ("avg", np.mean)):
        got = run(backend, f"global_{kind}_pool2d", x, keepdims, layout=layout, device=True)
        assert_same(got, getattr(R, f"global_{kind}_pool2d")(x, keepdims, layout=layout))
        axes = (1, 2) if layout == "NHWC" else (2, 3)
        np.testing.assert_allclose(got, npfun(x, axis=axes, keepdims=keepdims), rtol=1e-6)
        unbatched = run(backend, f"global_{kind}_pool2d", x[1], keepdims, layout=layout)
        assert_same(unbatched, got[1])


# ------------------------------------------------------------------ targeted examples
@pytest.mark.parametrize("backend", BACKENDS)
def test_unpool_repeated_indices_last_write_wins(backend):
    x = np.array([[[1.0, 2.0, 3.0]]], dtype=np.float32)
    idx = np.array([[[1, 1, 0]]])
    for got in (R.max_unpool1d(x, idx, 2, 1), run(backend, "max_unpool1d", x, idx, 2, 1)):
        np.testing.assert_array_equal(got, [[[3.0, 2.0, 0.0, 0.0]]])
    assert run(backend, "max_unpool1d", x, idx.astype(np.int64), 2, 1).tolist() == [[[3.0, 2.0, 0.0, 0.0]]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpool_inverts_pool_where_the_max_was(backend):
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 1, 4, 4)
    y, idx = run(backend, "max_pool2d", x, 2, return_indices=True)
    u = run(backend, "max_unpool2d", y, idx, 2)
    want = np.zeros_like(x)
    want[0, 0, 1::2, 1::2] = [[6, 8], [14, 16]]
    np.testing.assert_array_equal(u, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpool_output_size_accepts_torch_forms(backend):
    y = np.ones((1, 1, 2, 2), np.float32)
    idx = np.array([[[[0, 3], [10, 15]]]])
    a = run(backend, "max_unpool2d", y, idx, 2, output_size=(4, 4))
    b = run(backend, "max_unpool2d", y, idx, 2, output_size=(1, 1, 4, 4))
    c = run(backend, "max_unpool2d", y, idx, 2, output_size=(5, 5))  # default 4 +- stride 2: 3..5 allowed
    assert_same(a, b)
    assert c.shape == (1, 1, 5, 5) and c.sum() == 4


@pytest.mark.parametrize("nd, backend", with_nd())
def test_empty_batch_everywhere(nd, backend):
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
        out = run(backend, name, x, *args)
        assert out.shape == shape and out.dtype == x.dtype, name
        assert_same(out, getattr(R, name)(x, *args))
    idx = np.zeros((0, 2) + (2,) * nd, dtype=np.int64)
    assert run(backend, f"max_unpool{nd}d", idx.astype(np.float32), idx, k).shape == (0, 2) + spatial


def test_serial_and_parallel_forward_agree():
    with parallel_threshold(0):  # small inputs would run the serial twin
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_agree_3d(backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 5, 7, 6)).astype(example_float(backend))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for name, args in (("max_pool3d", (3, 2, 1, (1, 2, 1))), ("avg_pool3d", ((3, 2, 3), 2, 1, True, False)),
                       ("lp_pool3d", (2.0, 2)), ("adaptive_avg_pool3d", ((3, None, 4),))):
        a = run(backend, name, x, *args)
        b = run(backend, name, xl, *args, layout="NDHWC")
        assert_same(np.moveaxis(b, -1, 1), a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_string_padding_3d(backend):
    x = np.zeros((1, 2, 3, 5, 4), np.float32)
    for padding in ("same", "valid"):
        for name in ("max_pool3d", "avg_pool3d"):
            assert_same(run(backend, name, x + 1, 2, padding=padding), getattr(R, name)(x + 1, 2, padding=padding))


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


@pytest.mark.parametrize("nd, backend", with_nd())
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_matches_tensorflow_formula(padding, nd, backend):
    @examples(backend, on_cpu=25, on_gpu=GPU_EXAMPLES_FAMILY)
    @given(st.data())
    def check(data):
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
        x = rng.standard_normal((2, 2) + spatial).astype(example_float(backend))
        got = run(backend, f"max_pool{nd}d", x, k, s, padding, d)
        np.testing.assert_array_equal(got, tf_pool(x, nd, k, s, d, padding, np.max))
        got = run(backend, f"avg_pool{nd}d", x, k, s, padding)
        # different summation orders: a bound on the rounding error, absolute (a mean near 0
        # has no meaningful relative error), not a relative tolerance
        tol = 1e-12 if x.dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, tf_pool(x, nd, k, s, (1,) * nd, padding, np.mean), rtol=tol, atol=tol)
        # count_include_pad is ignored for "same": padded cells are never counted
        assert_same(run(backend, f"avg_pool{nd}d", x, k, s, padding, False, False), got)

    check()


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_documentation_examples(backend):
    """Keras' MaxPooling2D / AveragePooling2D docs: 3x3 input, pool 2, stride 1."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(run(backend, "max_pool2d", x, 2, 1, "same")[0, 0],
                                  [[5, 6, 6], [8, 9, 9], [8, 9, 9]])
    np.testing.assert_array_equal(run(backend, "max_pool2d", x, 2, 1, "valid")[0, 0], [[5, 6], [8, 9]])
    np.testing.assert_array_equal(run(backend, "avg_pool2d", x, 2, 1, "same")[0, 0],
                                  [[3, 4, 4.5], [6, 7, 7.5], [7.5, 8.5, 9]])
