"""Checkers for lesson 06 (faster CUDA kernels): the arithmetic behind tiles and loads.

Both exercises are host-side arithmetic -- no GPU needed -- checked against the
functions poolkit's optimized kernels are planned with
(:func:`poolkit.gpu.tile_extent`, :func:`poolkit.gpu.count_global_loads`).
"""
from __future__ import annotations

from .. import geometry as G
from .. import gpu
from . import Case, check

__all__ = ["check_tile_with_halo", "check_naive_loads"]


def check_tile_with_halo(fn) -> bool:
    """Check ``fn(tile_rows, tile_cols, kernel_size, stride, dilation)`` -> ``(rows, cols)``.

    The input rows and columns a ``tile_rows x tile_cols`` tile of outputs reads:
    the tile plus its halo, before clipping to the input. Square ``kernel_size``,
    ``stride`` and ``dilation`` (ints).
    """
    def spec(tr, tc, k, s, d):
        return (gpu.tile_extent(tr, k, s, d), gpu.tile_extent(tc, k, s, d))

    first_last = ("the first window starts at 0, the last at (tile - 1) * stride; the last one "
                  "reaches (kernel_size - 1) * dilation cells further")
    cases = [
        Case("1x1 tile, 3x3 window: just one window", (1, 1, 3, 1, 1), hint=first_last),
        Case("4x32 tile, 2x2 stride 2 (no overlap, no halo)", (4, 32, 2, 2, 1), hint=first_last),
        Case("8x8 tile, 3x3 stride 1 (a 1-cell halo on each side)", (8, 8, 3, 1, 1), hint=first_last),
        Case("16x28 tile, 3x3 stride 2", (16, 28, 3, 2, 1), hint=first_last),
        Case("4x4 tile, 3x3 stride 1, dilation 2", (4, 4, 3, 1, 2),
             hint="a dilated window spans (kernel_size - 1) * dilation + 1 cells"),
        Case("2x3 tile, 2x2 stride 3 (gaps between windows)", (2, 3, 2, 3, 1), hint=first_last),
    ]
    return check(fn, spec, cases, name=getattr(fn, "__name__", "your function"))


def check_naive_loads(fn) -> bool:
    """Check ``fn(H, W, kernel_size, stride, padding)`` -> int: global loads of the naive kernel.

    For one ``H x W`` plane (floor mode, square int arguments): the number of
    input reads the one-thread-per-output kernel makes, i.e. the in-bounds taps
    of every window (padding taps are skipped, not loaded).
    """
    def spec(H, W, k, s, p):
        g = G.make_geometry("naive_loads", (H, W), k, s, p)
        return gpu.count_global_loads((1, 1, H, W), g, "NCHW", "naive")

    pad = "padding taps are skipped, not loaded: count only rows 0..H-1 and columns 0..W-1"
    cases = [
        Case("seed 4x4, kernel 2, stride 2", (4, 4, 2, 2, 0),
             hint="non-overlapping windows read every cell once"),
        Case("5x5, kernel 2, stride 2 (a row and a column are never read)", (5, 5, 2, 2, 0),
             hint="(5 - 2) // 2 + 1 = 2 windows per dimension"),
        Case("8x8, kernel 3, stride 1 (overlapping)", (8, 8, 3, 1, 0),
             hint="6x6 windows of 9 taps each"),
        Case("8x8, kernel 3, stride 1, padding 1", (8, 8, 3, 1, 1), hint=pad),
        Case("112x112, kernel 3, stride 2, padding 1 (ResNet's stem pool)", (112, 112, 3, 2, 1), hint=pad),
        Case("7x9, kernel 3, stride 2, padding 1", (7, 9, 3, 2, 1), hint=pad),
    ]
    return check(fn, spec, cases, name=getattr(fn, "__name__", "your function"))
