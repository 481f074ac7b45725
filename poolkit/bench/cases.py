"""The benchmark cases shared by the CPU and GPU benchmarks, and their small shared helpers.

Imports no other module of :mod:`poolkit.bench` (nor numba): :mod:`poolkit.bench.cpu`
and :mod:`poolkit.bench.gpu` both import it, never each other.
"""
from __future__ import annotations

import sys

#: (label, op, NCHW shape, kwargs, large?) -- "large" cases are compared with the copy.
CASES = [
    ("max 2x2 s2", "max", (8, 64, 224, 224), dict(kernel_size=2, stride=2), True),
    ("max 3x3 s2 p1", "max", (8, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1), True),
    ("avg 2x2 s2", "avg", (8, 128, 112, 112), dict(kernel_size=2, stride=2), True),
    ("avg 3x3 s1 p1 nopad", "avg", (8, 192, 28, 28),
     dict(kernel_size=3, stride=1, padding=1, count_include_pad=False), False),
    ("avg 7x7", "avg", (32, 2048, 7, 7), dict(kernel_size=7), False),
]

#: Extra cases for ``--indices`` (max pooling with ``return_indices=True``, what
#: max_unpool and the backward pass need); reported, not part of the summary lines.
INDEX_CASES = [
    ("max 3x3 s2 p1 +indices", "max", (8, 64, 112, 112),
     dict(kernel_size=3, stride=2, padding=1, return_indices=True), False),
]

#: Both memory layouts, in the order the tables list them.
LAYOUTS = ("NCHW", "NHWC")


def progress(msg):
    """Print a progress line (``  ... msg``) to stderr, so that stdout holds only the table."""
    print(f"  ... {msg}", file=sys.stderr, flush=True)


def shape_str(shape):
    """``(8, 64, 224, 224)`` -> ``'8x64x224x224'``, as the tables print shapes."""
    return "x".join(map(str, shape))
