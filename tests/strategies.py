"""Hypothesis strategies shared by the test modules: valid pooling problems."""
from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from poolkit import geometry as G


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
