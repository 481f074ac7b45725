"""Checkers for lesson 04 (parallel CPU): a ``prange`` max pool and the roofline floor of a pooling call."""
from __future__ import annotations

import numpy as np

from .. import geometry as G
from .. import max_pool2d
from . import Case, check, pool_window_explainer
from .lesson03 import _verdict, is_jitted

__all__ = ["check_prange_max_pool", "check_roofline_floor", "roofline_floor"]


def check_prange_max_pool(fn) -> bool:
    """Check ``fn(x, kernel_size, stride, padding)``: a parallel ``@njit`` max pool.

    Besides the results (as in lesson 03's padded max pool, on float32 batches
    with many (n, c) planes so that every thread gets work; one dtype keeps the
    slow parallel compilation to a single signature), ``fn`` must be compiled
    with ``@njit(parallel=True)`` and use ``prange``; each missing piece is
    reported.
    """
    name = getattr(fn, "__name__", "your function")
    ready = True
    if not is_jitted(fn):
        print(f"  FAIL  {name}: not compiled -- use @njit(parallel=True)")
        ready = False
    else:
        if not fn.targetoptions.get("parallel"):
            print(f"  FAIL  {name}: compiled without parallel=True -- prange then runs serially; "
                  "use @njit(parallel=True)")
            ready = False
        if "prange" not in fn.py_func.__code__.co_names:
            print(f"  FAIL  {name}: no prange in the function -- write the outer loop as "
                  "`for p in prange(N * C):`")
            ready = False
    rng = np.random.default_rng(6)
    pad_hint = "padding cells never win a max: skip them (start the running max at -np.inf)"
    race_hint = ("each prange iteration must write its own output cells only; "
                 "loop over (n, c) planes in prange and keep the window loops inside")
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2, padding 0",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2, 2, 0), hint=race_hint),
        Case("4 images x 16 channels, 12x12, kernel 3, stride 2, padding 1",
             (rng.standard_normal((4, 16, 12, 12)).astype(np.float32), 3, 2, 1), hint=race_hint),
        Case("all negative 2x8x7x9, kernel 3, stride 1, padding 1",
             (-rng.integers(1, 10, size=(2, 8, 7, 9)).astype(np.float32), 3, 1, 1), hint=pad_hint),
        Case("3x5x10x6, kernel 2, stride 2, padding 1",
             (rng.standard_normal((3, 5, 10, 6)).astype(np.float32), 2, 2, 1), hint=pad_hint),
    ]
    ok = check(fn, lambda x, k, s, p: max_pool2d(x, k, s, p), cases, name=name, strict_dtype=True,
               explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2, padding_arg=3))
    return _verdict(ok, ready, name)


def roofline_floor(shape, kernel_size, stride, padding, itemsize, bandwidth_gbs) -> float:
    """Lowest possible time in seconds of a 2-D pooling call limited by memory bandwidth.

    The input ``shape`` is ``(N, C, H, W)``. A pooling kernel must read every
    input element once and write every output element once; nothing else has to
    touch memory. At ``bandwidth_gbs`` GB/s (1 GB = 1e9 bytes) that takes
    ``(N*C*H*W + N*C*OH*OW) * itemsize / (bandwidth_gbs * 1e9)`` seconds, with
    ``OH``, ``OW`` from :func:`poolkit.geometry.pool_output_size`.

    >>> roofline_floor((1, 1, 4, 4), 2, 2, 0, 4, 1.0)   # (16 + 4) * 4 bytes at 1 GB/s
    8e-08
    """
    N, C, H, W = shape
    OH = G.pool_output_size(H, kernel_size, stride, padding, 1, False)
    OW = G.pool_output_size(W, kernel_size, stride, padding, 1, False)
    return (N * C * H * W + N * C * OH * OW) * itemsize / (bandwidth_gbs * 1e9)


def _roofline_mistake(case: Case, got) -> str | None:
    """Name the usual mistake that produces ``got``, if one does."""
    try:
        got = float(got)
    except (TypeError, ValueError):
        return None
    shape, k, s, p, itemsize, bw = case.args
    N, C, H, W = shape
    OH = G.pool_output_size(H, k, s, p, 1, False)
    OW = G.pool_output_size(W, k, s, p, 1, False)
    n_in, n_out = N * C * H * W, N * C * OH * OW
    right = (n_in + n_out) * itemsize / (bw * 1e9)
    mistakes = [
        ((n_in * itemsize) / (bw * 1e9), "that is the input's bytes only -- the output must be written too"),
        ((n_in + n_out) / (bw * 1e9), "that counts elements, not bytes -- multiply by itemsize"),
        (right * 1e9, "GB/s means 1e9 bytes per second -- divide by bandwidth_gbs * 1e9"),
        (right * 1e3, "the answer should be in seconds, not milliseconds"),
        ((n_out * k * k + n_out) * itemsize / (bw * 1e9),
         "that counts every window's reads separately -- the floor reads each input element once"),
    ]
    for value, why in mistakes:
        if np.isclose(got, value, rtol=1e-6, atol=0):
            return why
    return None


def check_roofline_floor(fn) -> bool:
    """Check ``fn(shape, kernel_size, stride, padding, itemsize, bandwidth_gbs) -> seconds``.

    The answer must equal :func:`roofline_floor` for a few layers (a 2x2 pool, a
    ResNet-style 3x3/stride-2 pool with padding, an overlapping stride-1 pool,
    float64). A wrong answer that matches a usual mistake (input bytes only,
    elements instead of bytes, GB/s taken as bytes/s, milliseconds, per-window
    reads) is named.
    """
    name = getattr(fn, "__name__", "your function")
    last = {}

    def recorded(*args):
        last["got"] = fn(*args)
        return last["got"]

    def explain(case, index):
        return _roofline_mistake(case, last.get("got"))

    cases = [
        Case("(1, 1, 4, 4) float32, kernel 2, stride 2 at 1 GB/s", ((1, 1, 4, 4), 2, 2, 0, 4, 1.0)),
        Case("(32, 64, 112, 112) float32, kernel 3, stride 2, padding 1 at 20 GB/s",
             ((32, 64, 112, 112), 3, 2, 1, 4, 20.0)),
        Case("(8, 256, 28, 28) float32, kernel 3, stride 1, padding 1 at 12.5 GB/s",
             ((8, 256, 28, 28), 3, 1, 1, 4, 12.5), hint="with stride 1 and padding 1 the output is as big as the input"),
        Case("(16, 128, 56, 56) float64, kernel 2, stride 2 at 3000 GB/s (a GPU)",
             ((16, 128, 56, 56), 2, 2, 0, 8, 3000.0)),
    ]
    return check(recorded, roofline_floor, cases, name=name, rtol=1e-6, atol=0.0, explain=explain)
