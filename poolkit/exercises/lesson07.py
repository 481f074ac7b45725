"""Exercises for lesson 07, *What pooling buys, measured*.

Exercise 1 asks for a function that measures how much a pooled feature map
changes when the input slides sideways; exercise 2 asks for a min pool built
from :func:`poolkit.max_pool2d`. Each exercise has a specification here
(``*_spec``, written without the trick the learner is asked to use) and a
``check_*`` function that runs the learner's code on small known inputs with
:func:`poolkit.exercises.check`.

>>> import numpy as np, poolkit
>>> from poolkit.exercises import lesson07
>>> lesson07.min_pool2d_spec(np.arange(16.).reshape(1, 4, 4), 2)
array([[[ 0.,  2.],
        [ 8., 10.]]])
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import poolkit

from . import Case, check
from .. import geometry as G

__all__ = [
    "shift_sensitivity_spec",
    "check_shift_sensitivity",
    "min_pool2d_spec",
    "check_min_pool2d",
]


# ------------------------------------------------------------------ exercise 1
def shift_sensitivity_spec(image, kernel_size, max_shift, mode="max"):
    """Relative change of a pooled map when the input slides left by 0..max_shift pixels.

    The view ``image[:, s:s + w]`` (``w = W - max_shift``) is the input seen
    by a camera moved ``s`` pixels to the right: content slides left and new
    columns enter at the right edge. Each view is pooled with a
    ``kernel_size`` window and ``stride = kernel_size`` (PyTorch's default),
    and compared with the pooled ``s = 0`` view::

        r[s] = ||P(view_s) - P(view_0)|| / ||P(view_0)||      (L2 norms, float64)

    Parameters
    ----------
    image : (H, W) float array
        Must pool to a map that is not all zeros.
    kernel_size : int
        Pooling window (and stride).
    max_shift : int
        Largest shift, ``0 <= max_shift < W``.
    mode : {"max", "avg"}
        Which pooling to measure.

    Returns
    -------
    r : (max_shift + 1,) float64 array; ``r[0] == 0``.

    See Also
    --------
    check_shift_sensitivity : runs a learner's version against this one.
    """
    pool = {"max": poolkit.max_pool2d, "avg": poolkit.avg_pool2d}[mode]
    image = np.asarray(image)
    w = image.shape[1] - max_shift
    pooled = [pool(np.ascontiguousarray(image[None, :, s:s + w]), kernel_size)[0].astype(np.float64)
              for s in range(max_shift + 1)]
    base = pooled[0]
    norm = np.linalg.norm(base)
    return np.array([np.linalg.norm(p - base) / norm for p in pooled])


def _shift_cases() -> list[Case]:
    rng = np.random.default_rng(7)
    spike = np.zeros((8, 12), np.float32)
    spike[2, 2] = 1.0  # leaves the view after 3 shifts (see the lesson)
    sparse = np.zeros((16, 24), np.float32)
    sparse.flat[rng.choice(sparse.size, 12, replace=False)] = rng.uniform(0.5, 1.0, 12)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(16, 21)), 0), 1).astype(np.float32)
    smooth -= smooth.min() - 1.0
    return [
        Case("one spike, 4x4 max, shifts 0..3", (spike, 4, 3), {"mode": "max"}),
        Case("one spike, 2x2 avg, shifts 0..3", (spike, 2, 3), {"mode": "avg"}),
        Case("sparse spikes, 4x4 max, shifts 0..8", (sparse, 4, 8), {"mode": "max"}),
        Case("sparse spikes, 4x4 avg, shifts 0..8", (sparse, 4, 8), {"mode": "avg"}),
        Case("smooth random surface, 2x2 max, shifts 0..5", (smooth, 2, 5), {"mode": "max"}),
        Case("smooth random surface, 8x8 avg, shifts 0..5", (smooth, 8, 5), {"mode": "avg"}),
    ]


def check_shift_sensitivity(fn) -> bool:
    """Check ``fn(image, kernel_size, max_shift, mode="max")`` against :func:`shift_sensitivity_spec`.

    Prints one line per case and returns ``True`` when all pass (relative
    tolerance 1e-5: float32 and float64 arithmetic may both be used).
    """
    return check(fn, shift_sensitivity_spec, _shift_cases(), name="shift_sensitivity",
                 rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ exercise 2
def min_pool2d_spec(x, kernel_size, stride=None, padding=0):
    """Min pooling written directly with ``sliding_window_view`` (no max-pool trick).

    Same geometry as :func:`poolkit.max_pool2d` with ``dilation=1`` and
    ``ceil_mode=False``: padding cells never win (they act as ``+inf``), NaN
    propagates, integers keep their dtype. ``x`` is ``(N, C, H, W)`` or ``(C, H, W)``.

    See Also
    --------
    check_min_pool2d : runs a learner's version against this one.
    poolkit.max_pool2d : its mirror image.
    """
    x = np.asarray(x)
    g = G.make_geometry("min_pool2d", x.shape[-2:], kernel_size, stride, padding, 1, False)
    (kh, kw), (sh, sw), (ph, pw) = g.kernel, g.stride, g.padding
    if x.dtype.kind == "f":
        big = np.inf
    else:
        big = np.iinfo(x.dtype).max
    pad = [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)]
    xp = np.pad(x, pad, constant_values=big)
    win = sliding_window_view(xp, (kh, kw), axis=(-2, -1))[..., ::sh, ::sw, :, :]
    out = win.min(axis=(-2, -1))
    assert out.shape[-2:] == g.out_size
    return out


def _min_cases() -> list[Case]:
    rng = np.random.default_rng(11)
    f32 = rng.normal(size=(2, 3, 6, 7)).astype(np.float32)
    f64 = rng.normal(size=(1, 5, 5))
    f64[0, 1, 1] = np.nan
    u8 = rng.integers(0, 256, size=(1, 2, 6, 6)).astype(np.uint8)
    i16 = rng.integers(-300, 300, size=(1, 4, 5)).astype(np.int16)
    i16[0, 0, 0] = np.iinfo(np.int16).min
    return [
        Case("float32 (2, 3, 6, 7), 2x2 window", (f32, 2)),
        Case("float32, 3x3 window, stride 1, padding 1", (f32, 3, 1, 1)),
        Case("float32, 3x2 window, stride (2, 1)", (f32, (3, 2), (2, 1))),
        Case("float64 unbatched with a NaN, 2x2, padding 1", (f64, 2, 2, 1)),
        Case("uint8 image, 3x3, stride 3, padding 1", (u8, 3, 3, 1)),
        Case("int16 holding -32768, 2x2, stride 1", (i16, 2, 1)),
    ]


def check_min_pool2d(fn) -> bool:
    """Check ``fn(x, kernel_size, stride=None, padding=0)`` against :func:`min_pool2d_spec`.

    The cases include unsigned and signed integers at the edge of their range,
    where ``-x`` does not reverse the order (``-np.uint8(1) == 255``).
    """
    return check(fn, min_pool2d_spec, _min_cases(), name="min_pool2d")
