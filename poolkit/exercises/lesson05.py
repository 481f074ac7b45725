"""Checkers for lesson 05 (first CUDA kernel): the learner's own naive kernels.

Each checker takes a ``@cuda.jit`` kernel, launches it on small inputs with one
thread per output element -- on several blocks, the last one only partly used --
and compares the result with poolkit's (CPU) answer. Outputs start filled with
NaN, so an output no thread writes shows up as ``nan``. They work on a GPU and
on Numba's CUDA simulator.
"""
from __future__ import annotations

import math

import numpy as np

from .. import avg_pool2d, max_pool2d
from . import Case, check, pool_window_explainer

__all__ = ["check_naive_max_kernel", "check_naive_avg_nhwc_kernel", "launch_one_thread_per_output"]


def _is_cuda_kernel(kernel) -> bool:
    mod = type(kernel).__module__
    return mod.startswith("numba.cuda") and hasattr(kernel, "__getitem__")


def launch_one_thread_per_output(kernel, x, out_shape, *args, threads_per_block=32):
    """Copy ``x`` to the device, launch ``kernel[blocks, threads](x, out, *args)`` with
    ``blocks = ceil(out.size / threads)``, and return ``out`` as a NumPy array.

    ``out`` starts as NaN, so outputs that no thread writes are visible: if any
    remain (and ``x`` has no NaN) an ``AssertionError`` says how many.
    """
    from numba import cuda

    d_x = cuda.to_device(np.ascontiguousarray(x))
    d_out = cuda.to_device(np.full(out_shape, np.nan, dtype=x.dtype))
    total = int(np.prod(out_shape))
    blocks = max(1, math.ceil(total / threads_per_block))
    kernel[blocks, threads_per_block](d_x, d_out, *args)
    out = d_out.copy_to_host()
    missing = int(np.isnan(out).sum()) if not np.isnan(x).any() else 0
    if missing:
        first = tuple(int(v) for v in np.argwhere(np.isnan(out))[0])
        raise AssertionError(
            f"{missing} of {out.size} outputs were never written (still NaN), first at index {first}: "
            "each output needs exactly one thread -- check how you unravel i into the output index")
    return out


def _not_a_kernel(name):
    print(f"  FAIL  {name}: not a CUDA kernel -- put @cuda.jit on the line above `def` "
          "(from numba import cuda)")
    print(f"{name}: some cases fail -- see above")
    return False


def check_naive_max_kernel(kernel) -> bool:
    """Check ``kernel(x, out, kernel_size, stride)``: a naive NCHW max-pool kernel.

    One thread per element of ``out`` (shape ``(N, C, OH, OW)``), no padding, int
    ``kernel_size`` and ``stride``. Launched with 32 and with 7 threads per block,
    so the grid has more threads than outputs.
    """
    name = getattr(kernel, "__name__", None) or getattr(getattr(kernel, "py_func", None), "__name__",
                                                        "your kernel")
    if not _is_cuda_kernel(kernel):
        return _not_a_kernel(name)
    rng = np.random.default_rng(50)
    guard = ("the grid has more threads than outputs: threads with i >= out.size must return "
             "without touching memory")
    unravel = ("unravel i with the last index fastest: ow = i % OW, then oh, c and n from i // OW")

    def run(x, k, s, tpb):
        N, C, H, W = x.shape
        out_shape = (N, C, (H - k) // s + 1, (W - k) // s + 1)
        return launch_one_thread_per_output(kernel, x, out_shape, k, s, threads_per_block=tpb)

    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2, 32 threads/block",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4), 2, 2, 32), hint=guard),
        Case("2 images x 3 channels, 7x9, kernel 3, stride 2, 32 threads/block",
             (rng.standard_normal((2, 3, 7, 9)).astype(np.float32), 3, 2, 32), hint=unravel),
        Case("1x2x8x8, kernel 2, stride 1 (overlapping), 7 threads/block",
             (rng.standard_normal((1, 2, 8, 8)).astype(np.float32), 2, 1, 7), hint=guard),
        Case("all negative 1x1x6x5, kernel 3, stride 3",
             (-rng.integers(1, 9, size=(1, 1, 6, 5)).astype(np.float32), 3, 3, 32),
             hint="start the running max at -inf (or at the window's first cell), never at 0"),
        Case("float64 2x1x5x7, kernel 2, stride 2",
             (rng.standard_normal((2, 1, 5, 7)), 2, 2, 7), hint=unravel),
    ]
    return check(run, lambda x, k, s, tpb: max_pool2d(x, k, s), cases, name=name, strict_dtype=True,
                 explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2))


def check_naive_avg_nhwc_kernel(kernel) -> bool:
    """Check ``kernel(x, out, kernel_size, stride, padding)``: a naive NHWC average-pool kernel.

    ``x`` is ``(N, H, W, C)``; zero padding is counted in the divisor
    (``count_include_pad=True``, so every window divides by ``kernel_size**2``).
    One thread per element of ``out`` ``(N, OH, OW, C)``.
    """
    name = getattr(kernel, "__name__", None) or getattr(getattr(kernel, "py_func", None), "__name__",
                                                        "your kernel")
    if not _is_cuda_kernel(kernel):
        return _not_a_kernel(name)
    rng = np.random.default_rng(51)
    pad = ("cells outside 0..H-1 / 0..W-1 are padding: add nothing for them, but still divide by "
           "kernel_size * kernel_size")
    unravel = "in NHWC the channel is the fastest index: c = i % C, then ow, oh and n"

    def run(x, k, s, p, tpb):
        N, H, W, C = x.shape
        out_shape = (N, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1, C)
        return launch_one_thread_per_output(kernel, x, out_shape, k, s, p, threads_per_block=tpb)

    cases = [
        Case("seed 4x4x1 (1..16), kernel 2, stride 2, padding 0",
             (np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1), 2, 2, 0, 32), hint=unravel),
        Case("1x6x5x3 (3 channels), kernel 2, stride 2, padding 0",
             (rng.standard_normal((1, 6, 5, 3)).astype(np.float32), 2, 2, 0, 32), hint=unravel),
        Case("2x5x5x2, kernel 3, stride 2, padding 1",
             (rng.standard_normal((2, 5, 5, 2)).astype(np.float32), 3, 2, 1, 7), hint=pad),
        Case("1x4x6x4, kernel 3, stride 1, padding 1",
             (rng.standard_normal((1, 4, 6, 4)).astype(np.float32), 3, 1, 1, 32), hint=pad),
        Case("float64 1x7x3x2, kernel 2, stride 3, padding 1",
             (rng.standard_normal((1, 7, 3, 2)), 2, 3, 1, 7), hint=pad),
    ]
    return check(run, lambda x, k, s, p, tpb: avg_pool2d(x, k, s, p, layout="NHWC"), cases, name=name,
                 strict_dtype=True, rtol=1e-5, atol=1e-6,
                 explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2, padding_arg=3,
                                               channels_last=True))
