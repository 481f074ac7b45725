"""Checkers for lesson 01 (pooling by hand): max and average pooling of one 2-D plane with loops.

The learner's functions take a single ``(H, W)`` plane and square, int-valued
``kernel_size``, ``stride`` and ``padding`` -- the d2l-style ``pool2d`` -- and
must agree with ``poolkit.max_pool2d`` / ``poolkit.avg_pool2d`` applied to
``x[None, None]`` (PyTorch semantics: padding is ``-inf`` for max, zeros counted
in the divisor for average).
"""
from __future__ import annotations

import numpy as np

from .. import avg_pool2d, max_pool2d
from . import Case, check, pool_window_explainer

__all__ = ["check_max_pool_loops", "check_avg_pool_loops"]

_EXPLAIN = pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2, padding_arg=3)


def _plane_spec(pool):
    def spec(x, kernel_size, stride, padding):
        return pool(x[None, None], kernel_size, stride, padding)[0, 0]
    return spec


def _cases(kind):
    rng = np.random.default_rng(1)
    seed = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    d2l = np.arange(9, dtype=np.float32).reshape(3, 3)
    odd = rng.integers(0, 10, size=(5, 7)).astype(np.float32)
    six = rng.integers(-5, 6, size=(6, 6)).astype(np.float32)
    negative = -rng.integers(1, 10, size=(5, 5)).astype(np.float32)
    start_hint = ("output cell (i, j)'s window starts at input row i*stride - padding "
                  "and column j*stride - padding")
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2", (seed, 2, 2, 0), hint=start_hint),
        Case("d2l's 3x3 (0..8), kernel 2, stride 1 (overlapping windows)", (d2l, 2, 1, 0), hint=start_hint),
        Case("5x7, kernel 2, stride 2 (last row and column left over)", (odd, 2, 2, 0),
             hint="a row or column that does not fill a whole window is dropped (floor)"),
        Case("6x6, kernel 3, stride 2", (six, 3, 2, 0), hint=start_hint),
    ]
    if kind == "max":
        cases += [
            Case("5x5 all negative, kernel 3, stride 2, padding 1", (negative, 3, 2, 1),
                 hint="padding cells must never win a max: skip them (or treat them as -inf), never as 0"),
            Case("4x6 int32, kernel 2, stride 2", (rng.integers(-50, 50, size=(4, 6)).astype(np.int32), 2, 2, 0),
                 hint="start each window's running max from its first cell (not from 0: "
                      "all values may be negative)"),
        ]
    else:
        cases += [
            Case("5x5, kernel 3, stride 2, padding 1", (odd[:, :5].copy(), 3, 2, 1),
                 hint="padding cells add 0 to the sum but still count in the divisor "
                      "(PyTorch's default count_include_pad=True): divide by kernel_size**2"),
            Case("4x6 float64, kernel 2, stride 2", (rng.standard_normal((4, 6)), 2, 2, 0),
                 hint=start_hint),
        ]
    return cases


def check_max_pool_loops(fn) -> bool:
    """Check ``fn(x, kernel_size, stride, padding)``: 2-D max pooling of one plane with loops.

    ``x`` is an ``(H, W)`` array; ``kernel_size``, ``stride`` and ``padding`` are
    ints. Cases: the seed 4x4, d2l's overlapping stride-1 example, inputs whose
    size the stride does not divide, padding on all-negative input (padding
    must not win) and an int32 input (the result keeps the dtype).
    """
    return check(fn, _plane_spec(max_pool2d), _cases("max"), strict_dtype=True, explain=_EXPLAIN)


def check_avg_pool_loops(fn) -> bool:
    """Check ``fn(x, kernel_size, stride, padding)``: 2-D average pooling of one plane with loops.

    Same cases as :func:`check_max_pool_loops`, except that the padded case
    checks the divisor (``kernel_size**2``, padding included) and the dtype case
    uses float64.
    """
    return check(fn, _plane_spec(avg_pool2d), _cases("avg"), strict_dtype=True, explain=_EXPLAIN)
