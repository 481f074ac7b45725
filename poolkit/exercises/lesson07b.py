"""Exercises for lesson 07b, *Parameters, strides and borders*.

Exercise 1 asks for the number of multiply-adds a convolution layer performs
(the compute that downsampling saves); exercise 2 asks how many input cells of
an axis no pooling window ever reads (the stride and border pitfalls). Each
exercise has a specification here (``*_spec``) and a ``check_*`` function that
runs the learner's code on small known inputs with
:func:`poolkit.exercises.check`.

>>> from poolkit.exercises import lesson07b
>>> int(lesson07b.conv2d_macs_spec(56, 56, 64, 64, 3, 1, 1))
115605504
>>> int(lesson07b.cells_never_read_spec(64, 2, 3))
22
"""
from __future__ import annotations

import numpy as np

from . import Case, check
from .. import geometry as G

__all__ = [
    "conv2d_macs_spec",
    "check_conv2d_macs",
    "cells_never_read_spec",
    "check_cells_never_read",
]


# ------------------------------------------------------------------ exercise 1
def conv2d_macs_spec(H, W, C_in, C_out, kernel_size, stride=1, padding=0):
    """Multiply-adds of a ``kernel_size`` x ``kernel_size`` convolution (no dilation, no groups).

    Every output value (``C_out`` channels times ``OH x OW`` positions) is a sum of
    ``C_in * kernel_size**2`` products, so the count is
    ``OH * OW * C_out * C_in * kernel_size**2``, with ``OH``, ``OW`` from the same
    output-size rule as pooling (:func:`poolkit.geometry.pool_output_size`).

    Returns
    -------
    numpy.int64

    See Also
    --------
    check_conv2d_macs : runs a learner's version against this one.
    """
    oh = G.pool_output_size(H, kernel_size, stride, padding, 1, False)
    ow = G.pool_output_size(W, kernel_size, stride, padding, 1, False)
    return np.int64(oh) * ow * C_out * C_in * kernel_size * kernel_size


def _macs_cases() -> list[Case]:
    return [
        Case("56x56, 64 -> 64 channels, 3x3, stride 1, padding 1", (56, 56, 64, 64, 3, 1, 1),
             hint="each of the 56*56*64 outputs sums 64 channels times 3*3 taps"),
        Case("28x28, 64 -> 64 channels, 3x3, stride 1, padding 1", (28, 28, 64, 64, 3, 1, 1),
             hint="half the side, a quarter of the outputs"),
        Case("56x56, 64 -> 64 channels, 3x3, stride 2, padding 1", (56, 56, 64, 64, 3, 2, 1),
             hint="count the *output* positions: stride 2 gives 28x28 of them"),
        Case("7x9, 3 -> 8 channels, 3x3, stride 2, no padding", (7, 9, 3, 8, 3, 2, 0),
             hint="output size (L + 2*padding - kernel_size) // stride + 1 per side: 3 x 4"),
        Case("5x5, 1 -> 1 channel, 5x5 kernel", (5, 5, 1, 1, 5, 1, 0),
             hint="one output position, 25 products"),
        Case("6x6, 2 -> 3 channels, 1x1 kernel", (6, 6, 2, 3, 1, 1, 0),
             hint="a 1x1 convolution still sums over the input channels"),
    ]


def check_conv2d_macs(fn) -> bool:
    """Check ``fn(H, W, C_in, C_out, kernel_size, stride=1, padding=0)`` against :func:`conv2d_macs_spec`."""
    return check(fn, conv2d_macs_spec, _macs_cases(), name="conv2d_macs")


# ------------------------------------------------------------------ exercise 2
def cells_never_read_spec(L, kernel_size, stride=None, padding=0, ceil_mode=False):
    """How many of an axis's ``L`` input cells no pooling window reads.

    Windows are placed as every poolkit backend places them
    (:func:`poolkit.geometry.window_range`); ``stride=None`` means
    ``stride=kernel_size``.

    Returns
    -------
    numpy.int64

    See Also
    --------
    check_cells_never_read : runs a learner's version against this one.
    """
    s = kernel_size if stride is None else stride
    n_out = G.pool_output_size(L, kernel_size, s, padding, 1, ceil_mode)
    read = np.zeros(L, dtype=bool)
    for o in range(n_out):
        _, taps = G.window_range(o, L, kernel_size, s, padding)
        read[taps] = True
    return np.int64(L - read.sum())


def _never_cases() -> list[Case]:
    leftover = "floor mode makes no window for the last (L + 2*padding - kernel_size) % stride cells"
    gaps = "with stride > kernel_size, stride - kernel_size cells between two windows are skipped"
    return [
        Case("L=64, kernel 2 (stride 2): windows tile", (64, 2)),
        Case("L=64, kernel 3 (stride 3): one cell left over", (64, 3), hint=leftover),
        Case("L=7, kernel 2, stride 2", (7, 2, 2), hint=leftover),
        Case("L=7, kernel 2, stride 2, ceil_mode=True", (7, 2, 2, 0, True),
             hint="ceil_mode=True adds a last window that reads the leftover cells"),
        Case("L=64, kernel 2, stride 3: gaps", (64, 2, 3), hint=gaps),
        Case("L=64, kernel 3, stride 1: overlap", (64, 3, 1),
             hint="overlapping windows read cells several times, but count each cell once"),
        Case("L=10, kernel 3, stride 4, padding 1", (10, 3, 4, 1),
             hint=gaps + "; padding shifts every window left by `padding` cells"),
        Case("L=256, kernel 3 (stride 3)", (256, 3), hint=leftover),
    ]


def check_cells_never_read(fn) -> bool:
    """Check ``fn(L, kernel_size, stride=None, padding=0, ceil_mode=False)`` against
    :func:`cells_never_read_spec`."""
    return check(fn, cells_never_read_spec, _never_cases(), name="cells_never_read")
