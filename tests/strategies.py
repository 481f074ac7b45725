"""Hypothesis strategies shared by the test modules: small, valid pooling problems.

* :func:`pool2d_problem` -- 2-d max/avg pooling, the widest argument ranges (dilation
  up to 3, kernels up to 4, any integer dtype), for the tuned 2-d kernels;
* :func:`window_problem` / :func:`adaptive_problem` -- max/avg/lp and adaptive
  pooling with 1, 2 or 3 spatial dimensions (the whole family), ``padding="same"``
  / ``"valid"`` included;
* :func:`nodata` -- a random NaN mask (``nan_policy="omit"``), its NaNs of
  several bit patterns (:func:`nan_patterns`).

Every strategy draws inputs in either layout, sometimes unbatched, sometimes a
non-contiguous view, with values from a small integer set (so ties are common) and
sometimes NaN. Sizes stay tiny: the reference is plain Python loops, and the CUDA
simulator costs ~0.2 ms per simulated thread.
"""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import poolkit
from poolkit import geometry as G


# ------------------------------------------------------------------ 2-d max / avg
@st.composite
def pool2d_problem(draw, *, op="max", dtypes=("float32", "float64"), max_hw=9,
                   allow_nan=True, max_n=2, max_c=3):
    """Draw (x, kwargs, layout): a small input and valid pooling arguments.

    Values come from a small integer set (so ties are common), optionally with NaN.
    ``x`` is channels-first or channels-last according to ``layout``; sometimes
    unbatched, sometimes a non-contiguous view.
    """
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if op == "max":
        dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    else:
        dh = dw = 1
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    H = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max(max_hw, dh * (kh - 1) + 1)))
    W = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max(max_hw, dw * (kw - 1) + 1)))
    N, C = draw(st.integers(0, max_n)), draw(st.integers(1, max_c))
    try:
        G.make_geometry("test", (H, W), (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil_mode)
    except ValueError:
        assume(False)
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (N, C, H, W) if layout == "NCHW" else (N, H, W, C)
    if dtype.kind == "f":
        x = rng.integers(-3, 4, size=shape).astype(dtype)
        if draw(st.booleans()):
            x = x + rng.random(shape).astype(dtype)  # ties become rare
        if allow_nan and draw(st.integers(0, 3)) == 0 and x.size:
            x.flat[rng.integers(0, x.size, size=max(1, x.size // 10))] = np.nan
    else:
        x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
        if draw(st.booleans()):
            x = (x % 4).astype(dtype)  # many ties
    if draw(st.integers(0, 3)) == 0:
        # non-contiguous view with the same values
        big = np.zeros(shape[:-1] + (shape[-1] * 2,), dtype=dtype)
        big[..., ::2] = x
        x = big[..., ::2]
    if N == 1 and draw(st.booleans()):
        x = x[0]  # unbatched
    kwargs = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=ceil_mode)
    if op == "max":
        kwargs["dilation"] = (dh, dw)
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
        kwargs["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
    return x, kwargs, layout


def assert_avg_close(got, want, x, kernel_size):
    """Averages may differ from the reference only by float summation order.

    Sums of K values of magnitude <= max|x| differ by at most ~K*eps*max|x| in any order.
    """
    assert got.dtype == want.dtype and got.shape == want.shape
    eps = np.finfo(want.dtype).eps
    k = int(np.prod(kernel_size))
    scale = float(np.nanmax(np.abs(x))) if x.size and not np.all(np.isnan(x)) else 1.0
    np.testing.assert_allclose(got, want, rtol=4 * eps, atol=2 * k * eps * max(scale, 1.0))


# ------------------------------------------------------------------ the family: 1-d, 2-d, 3-d
MAX_SIDE = {1: 9, 2: 6, 3: 4}


def make_input(draw, nd, spatial, dtype, *, allow_nan=True, max_n=2, max_c=3, positive=False):
    """Draw ``(x, layout)``: values, layout, batching and contiguity."""
    N, C = draw(st.integers(0, max_n)), draw(st.integers(1, max_c))
    dtype = np.dtype(dtype)
    layout = draw(st.sampled_from(G.LAYOUTS[nd]))
    channels_last = layout == G.LAYOUTS[nd][1]
    shape = (N,) + tuple(spatial) + (C,) if channels_last else (N, C) + tuple(spatial)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "f":
        lo = 1 if positive else -3
        x = rng.integers(lo, 4, size=shape).astype(dtype)
        if draw(st.booleans()):
            x = x + rng.random(shape).astype(dtype)  # ties become rare
        if allow_nan and draw(st.integers(0, 4)) == 0 and x.size:
            x.flat[rng.integers(0, x.size, size=max(1, x.size // 10))] = np.nan
    else:
        x = rng.integers(-4, 4, size=shape).astype(dtype)
    if draw(st.integers(0, 3)) == 0:
        big = np.zeros(shape[:-1] + (shape[-1] * 2,), dtype=dtype)
        big[..., ::2] = x
        x = big[..., ::2]  # non-contiguous view, same values
    if N == 1 and draw(st.booleans()):
        x = x[0]  # unbatched
    return x, layout


@st.composite
def window_problem(draw, nd, *, op="max", dtypes=("float32", "float64"), strings=True,
                   allow_nan=True, positive=False):
    """``(x, kwargs, layout)`` for max/avg/lp pooling with ``nd`` spatial dimensions.

    ``op`` is ``"max"`` (with dilation), ``"avg"`` (count_include_pad,
    divisor_override for 2-d/3-d) or ``"lp"`` (no padding, no dilation).
    """
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd)) if op == "max" else (1,) * nd
    if op == "lp":
        padding = 0
    elif strings and draw(st.integers(0, 3)) == 0:
        padding = draw(st.sampled_from(["same", "valid"]))
    else:
        padding = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    ceil_mode = False if padding == "same" else draw(st.booleans())
    spatial = tuple(draw(st.integers(1, MAX_SIDE[nd])) for _ in range(nd))
    try:
        G.make_geometry("test", spatial, k, s, padding, d, ceil_mode)
    except ValueError:
        assume(False)
    dtype = draw(st.sampled_from(dtypes))
    x, layout = make_input(draw, nd, spatial, dtype, allow_nan=allow_nan, positive=positive)
    kw = dict(kernel_size=k, stride=s, ceil_mode=ceil_mode)
    if op == "max":
        kw.update(padding=padding, dilation=d)
    elif op == "avg":
        kw.update(padding=padding, count_include_pad=draw(st.booleans()))
        if nd > 1:
            kw["divisor_override"] = draw(st.sampled_from([None, None, 1, 3]))
    else:
        kw["norm_type"] = draw(st.sampled_from([1, 2, 3, 1.5, float("inf"), -float("inf")]))
    return x, kw, layout


@st.composite
def adaptive_problem(draw, nd, *, dtypes=("float32", "float64"), allow_nan=True):
    """``(x, output_size, layout)`` for adaptive pooling (sizes smaller, equal or larger)."""
    spatial = tuple(draw(st.integers(1, MAX_SIDE[nd] + 1)) for _ in range(nd))
    if draw(st.booleans()):
        out = draw(st.integers(1, MAX_SIDE[nd] + 1))
    else:
        out = tuple(draw(st.one_of(st.integers(1, MAX_SIDE[nd] + 1), st.none())) for _ in range(nd))
    x, layout = make_input(draw, nd, spatial, draw(st.sampled_from(dtypes)), allow_nan=allow_nan)
    return x, out, layout


# ------------------------------------------------------------------ helpers the test files share
def public(name):
    """The public function ``poolkit.<name>``."""
    return getattr(poolkit, name)


def assert_same(got, want):
    """Same shape, dtype and values (NaN where NaN) -- bitwise up to the sign of zero."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)


def random_grad(shape, dtype, seed):
    """A standard-normal gradient of the given shape and dtype."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------ nodata (nan_policy="omit")
def nan_patterns(dtype):
    """Three NaNs of ``dtype`` with different bits: NumPy's ``np.nan``, the same with the
    sign bit set (what x86 gives for 0/0), and a quiet NaN with a payload. A kernel that
    picks the wrong NaN of a window shows in the result's bits."""
    u = np.dtype(f"u{np.dtype(dtype).itemsize}")
    base = int(np.array(np.nan, dtype).view(u))
    sign = 1 << (8 * u.itemsize - 1)
    return np.array([base, base | sign, base | 5], u).view(dtype)


def nodata(x, data):
    """A copy of ``x`` (same layout; a strided view stays one) with a random NaN mask:
    no cell, some, most or all; each NaN one of :func:`nan_patterns`. ``data``: a
    hypothesis ``st.data()``. Integer or empty ``x`` is returned as it is."""
    frac = data.draw(st.sampled_from([0.0, 0.3, 0.7, 0.95, 1.0]))
    if x.dtype.kind != "f" or not x.size or frac == 0:
        return x
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    if x.flags.c_contiguous:
        y = x.copy()
    else:
        y = np.zeros(x.shape[:-1] + (x.shape[-1] * 2,), dtype=x.dtype)[..., ::2]
        y[...] = x
    mask = rng.random(y.shape) < frac
    y[mask] = nan_patterns(x.dtype)[rng.integers(0, 3, int(mask.sum()))]
    return y
