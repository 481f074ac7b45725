"""Checkers for lesson 03 (Numba ``@njit``): an average pool and a padded max pool, compiled.

Both take batched NCHW arrays and int ``kernel_size``/``stride``/``padding`` and
must agree with ``poolkit.avg_pool2d`` / ``poolkit.max_pool2d``, keep the input's
dtype, and be compiled with ``numba.njit`` (a plain Python function is reported).
"""
from __future__ import annotations

import numpy as np

from .. import avg_pool2d, max_pool2d
from . import Case, check, pool_window_explainer

__all__ = ["check_njit_avg_pool", "check_njit_max_pool_padding", "is_jitted"]


def is_jitted(fn) -> bool:
    """True if ``fn`` is a Numba CPU dispatcher (made by ``@njit`` / ``@jit``)."""
    return hasattr(fn, "py_func") and hasattr(fn, "signatures") and hasattr(fn, "targetoptions")


def _require_jit(fn, name) -> bool:
    if is_jitted(fn):
        return True
    print(f"  FAIL  {name}: not compiled -- put @njit on the line above `def`; the cases below "
          "still run, in plain Python")
    return False


def _verdict(ok: bool, ready: bool, name: str) -> bool:
    if ok and not ready:
        print(f"{name}: the results are right, but see the FAIL line at the top")
    return ok and ready


def check_njit_avg_pool(fn) -> bool:
    """Check ``fn(x, kernel_size, stride)``: an ``@njit`` average pool without padding.

    ``x`` is ``(N, C, H, W)`` float32 or float64. Cases: the seed 4x4,
    overlapping windows, a stride larger than the window, a non-square
    multi-channel batch, float64 and ``kernel_size=1``. The output must keep
    ``x``'s dtype.
    """
    name = getattr(fn, "__name__", "your function")
    jitted = _require_jit(fn, name)
    rng = np.random.default_rng(4)
    start_hint = "window (oh, ow) starts at input row oh*stride and column ow*stride"
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2, 2), hint=start_hint),
        Case("6x6, kernel 3, stride 1 (overlapping)", (rng.standard_normal((1, 2, 6, 6)).astype(np.float32), 3, 1),
             hint=start_hint),
        Case("7x7, kernel 2, stride 3 (cells skipped)", (rng.standard_normal((1, 1, 7, 7)).astype(np.float32), 2, 3),
             hint=start_hint),
        Case("2 images x 3 channels, 5x8, kernel 2, stride 2",
             (rng.standard_normal((2, 3, 5, 8)).astype(np.float32), 2, 2),
             hint="a row or column that does not fill a whole window is dropped (floor)"),
        Case("float64 6x6, kernel 3, stride 2", (rng.standard_normal((1, 2, 6, 6)), 3, 2), hint=start_hint),
        Case("kernel 1, stride 1 (a copy)", (rng.standard_normal((1, 1, 3, 4)).astype(np.float32), 1, 1),
             hint="with a 1x1 window every output equals its input cell"),
    ]
    ok = check(fn, lambda x, k, s: avg_pool2d(x, k, s), cases, name=name, strict_dtype=True,
               explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2))
    return _verdict(ok, jitted, name)


def check_njit_max_pool_padding(fn) -> bool:
    """Check ``fn(x, kernel_size, stride, padding)``: an ``@njit`` max pool with padding.

    ``x`` is ``(N, C, H, W)`` float32 or float64; padding is implicit ``-inf``
    (padding cells never win). Cases: no padding, padding on all-negative
    input (where zero padding would win), overlapping padded windows, a 5x5
    window with padding 2, non-square input and float64.
    """
    name = getattr(fn, "__name__", "your function")
    jitted = _require_jit(fn, name)
    rng = np.random.default_rng(5)
    pad_hint = ("padding cells never win a max: skip rows/columns outside 0..H-1 / 0..W-1 "
                "(start the running max at -np.inf), never read them as 0")
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2, padding 0",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2, 2, 0),
             hint="window (oh, ow) starts at input row oh*stride - padding and column ow*stride - padding"),
        Case("5x5 all negative, kernel 3, stride 2, padding 1",
             (-rng.integers(1, 10, size=(1, 2, 5, 5)).astype(np.float32), 3, 2, 1), hint=pad_hint),
        Case("6x6, kernel 2, stride 1, padding 1 (overlapping)",
             (rng.standard_normal((1, 1, 6, 6)).astype(np.float32), 2, 1, 1), hint=pad_hint),
        Case("9x9 all negative, kernel 5, stride 2, padding 2",
             (-np.abs(rng.standard_normal((1, 1, 9, 9))).astype(np.float32) - 1, 5, 2, 2), hint=pad_hint),
        Case("2 images x 3 channels, 7x4, kernel 3, stride 2, padding 1",
             (rng.standard_normal((2, 3, 7, 4)).astype(np.float32), 3, 2, 1), hint=pad_hint),
        Case("float64 5x6, kernel 3, stride 3, padding 1", (rng.standard_normal((1, 1, 5, 6)), 3, 3, 1),
             hint=pad_hint),
    ]
    ok = check(fn, lambda x, k, s, p: max_pool2d(x, k, s, p), cases, name=name, strict_dtype=True,
               explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2, padding_arg=3))
    return _verdict(ok, jitted, name)
