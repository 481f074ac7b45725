"""Checkers for lesson 02 (loops to NumPy): average pooling with the reshape trick, and
max pooling with ``numpy.lib.stride_tricks.sliding_window_view``.

Both take batched NCHW arrays and must agree with ``poolkit.avg_pool2d`` /
``poolkit.max_pool2d`` (no padding).
"""
from __future__ import annotations

import numpy as np

from .. import avg_pool2d, max_pool2d
from . import Case, check, pool_window_explainer

__all__ = ["check_avg_pool_reshape", "check_max_pool_windows"]


def _x(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def check_avg_pool_reshape(fn) -> bool:
    """Check ``fn(x, kernel_size)``: non-overlapping average pooling (stride = kernel_size).

    ``x`` is ``(N, C, H, W)`` and ``kernel_size`` an int. Cases include a
    non-square input, several channels and images, float64, and sizes the
    kernel does not divide: like PyTorch, the leftover rows and columns are
    dropped, so crop ``x`` to ``(H // k) * k`` rows and ``(W // k) * k`` columns
    before reshaping.
    """
    rng = np.random.default_rng(2)
    axes_hint = ("reshape to (N, C, H//k, k, W//k, k) and average over axes 3 and 5 "
                 "(the two within-window axes)")
    crop_hint = "crop first: x[:, :, :(H // k) * k, :(W // k) * k] -- the leftover cells are dropped"
    cases = [
        Case("seed 4x4 (1..16), kernel 2", (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2),
             hint=axes_hint),
        Case("2 images x 3 channels, 6x6, kernel 3", (_x(rng, (2, 3, 6, 6)), 3), hint=axes_hint),
        Case("non-square 4x8, kernel 2", (_x(rng, (1, 2, 4, 8)), 2), hint=axes_hint),
        Case("float64 6x9, kernel 3", (_x(rng, (2, 1, 6, 9), np.float64), 3), hint=axes_hint),
        Case("5x7, kernel 2 (one row and one column left over)", (_x(rng, (1, 2, 5, 7)), 2), hint=crop_hint),
    ]
    return check(fn, lambda x, k: avg_pool2d(x, k), cases, strict_dtype=True,
                 explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=None))


def check_max_pool_windows(fn) -> bool:
    """Check ``fn(x, kernel_size, stride)``: max pooling with ``sliding_window_view``.

    ``x`` is ``(N, C, H, W)``; ``kernel_size`` and ``stride`` are ints. Cases:
    stride equal to the kernel, overlapping windows (stride 1 and 2 with kernel
    3), a stride larger than the kernel (cells skipped), a size the stride does
    not divide, and an int32 input.
    """
    rng = np.random.default_rng(3)
    stride_hint = ("sliding_window_view gives every window (stride 1); keep every stride-th one: "
                   "windows[:, :, ::stride, ::stride]")
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2, 2), hint=stride_hint),
        Case("5x5, kernel 3, stride 1 (overlapping)", (_x(rng, (1, 2, 5, 5)), 3, 1), hint=stride_hint),
        Case("7x9, kernel 3, stride 2 (overlapping)", (_x(rng, (2, 1, 7, 9)), 3, 2), hint=stride_hint),
        Case("8x8, kernel 2, stride 3 (cells skipped)", (_x(rng, (1, 1, 8, 8)), 2, 3), hint=stride_hint),
        Case("6x7 int32, kernel 2, stride 2", (rng.integers(-9, 10, size=(1, 3, 6, 7)).astype(np.int32), 2, 2),
             hint=stride_hint),
    ]
    return check(fn, lambda x, k, s: max_pool2d(x, k, s), cases, strict_dtype=True,
                 explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2))
