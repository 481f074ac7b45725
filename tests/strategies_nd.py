"""Hypothesis strategies for 1-d, 2-d and 3-d pooling problems (the whole family).

Each strategy draws a small input in either layout (sometimes unbatched, sometimes a
non-contiguous view, values from a small integer set so ties are common, sometimes
NaN) plus valid arguments. Sizes are kept tiny: the reference is plain Python loops.
"""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from poolkit import geometry as G

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
