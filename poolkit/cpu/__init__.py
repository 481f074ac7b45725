"""The CPU backend: every pooling op and backward as Numba kernels, serial ``@njit`` and ``prange``-parallel.

The package, by layer:

* :mod:`._jit` -- the serial/parallel twin compiler and the one NaN-aware max step;
* :mod:`.kernels2d` -- the tuned 2-D kernels (NCHW and NHWC, max, max with indices, avg, global);
* :mod:`.kernels_nd` -- 3-d, adaptive, and the scatter/gather kernels of every backward;
* :mod:`.ops` -- host code: the public functions validate their arguments once
  (:mod:`poolkit.geometry`), then runners that take a validated geometry
  allocate outputs and pick kernels (:func:`run_max_pool2d` is also what
  :mod:`poolkit.dask` calls per block).

Each kernel is written once as a plain Python function and compiled twice:
``njit(parallel=False)`` (``prange`` behaves as ``range``) and
``njit(parallel=True)`` (the outer ``prange`` is split across threads). Kernels
compile lazily on first call and are cached on disk (``cache=True``); a cache entry
is valid while its kernel module *and* the helpers it inlines from :mod:`._jit` are
unchanged (``ops.HELPERS``), so an edit of either recompiles.

Pooling is memory-bound: the goal is to read each input byte once and keep
everything else in L1. How these kernels get there:

* **Max, separable** -- a maximum is separable over the window: each input
  row is swept once into the row of its window maxima along W (pass 1:
  stride-2 windows get loops with literal offsets that LLVM vectorises with
  shuffles), kept in a ring of the rows one window spans, so rows shared by
  overlapping windows are swept once; an output row is then the maximum of its
  KH swept rows (pass 2: contiguous, vectorised). Horizontal first, then rows
  in order, with the first maximum kept in both: exactly PyTorch's row-by-row
  scan, ties (+0.0 vs -0.0) included. NHWC does the same on channel vectors.
  Parallel loops are split into chunks so scratch is allocated once per chunk,
  never per plane or row.
* **NCHW avg, row sweeps** -- each valid window row is added to the whole
  output row with the same literal-offset loops, terms in scan order.
* **Global windows** (one window covering a whole contiguous plane, e.g. 7x7 on
  7x7) reduce each plane as a flat row, front to back (PyTorch's order), eight
  planes at once so that eight independent chains overlap.
* **NHWC** -- parallel over (n, output row); the innermost loop runs over the
  contiguous channels, a plain vector loop. Averages add up to four window taps
  per pass over the channel vector, so running sums stay in registers.
* **Indices** follow PyTorch's scan order (first max wins, last NaN wins). NCHW
  stays separable: a (value, index) pair combined with ``take_max``, the earlier
  partial on the left, is the scan's own step, so row maxima with their indices
  and then their maximum over the window's rows give the scan's answer. NHWC
  visits each window's taps row by row over the channel vector.
* A max step is PyTorch's ``v wins if v > m or v != v``: ties keep the first
  maximum, the last NaN is kept (value bits and index), exactly as PyTorch. It
  is written as nested LLVM ``select`` instructions (see ``_jit.vmax``): the plain
  ``v if ... else m`` compiles to masked stores, microcoded and 2-5x slower on
  AMD Zen.
* Innermost loops index with unsigned integers: Numba's wraparound code for
  negative signed indices keeps LLVM from vectorising them.
* ``avg`` sums in the input dtype, in PyTorch's scan order (row by row, from
  +0.0), and divides by a divisor of the same dtype, so averages are bitwise
  identical to the reference and to PyTorch's CPU kernels in both layouts.
* No ``fastmath``: it would let LLVM assume no NaN/inf.
* Inputs under ``poolkit.config.CPU_PARALLEL_MIN_SIZE`` elements run the serial kernel: starting
  the thread pool costs more than pooling them.


Backward kernels are **deterministic by construction**: max-type backward scatters
``grad_output`` to the argmax with one thread per ``(n, c)`` plane, in scan order;
average backward is a *gather* (every input cell sums ``grad / divisor`` over the
windows covering it, in increasing output order). No two threads write one cell,
so results are the same bits on every run and for any thread count.
"""
from ..geometry import OPS as _OPS
from .ops import (
    KERNELS, adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward, adaptive_avg_pool3d, adaptive_avg_pool3d_backward, adaptive_max_pool1d,
    adaptive_max_pool1d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward, adaptive_max_pool3d,
    adaptive_max_pool3d_backward, avg_pool1d, avg_pool1d_backward, avg_pool2d, avg_pool2d_backward,
    avg_pool3d, avg_pool3d_backward, global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d,
    global_max_pool2d_backward, lp_pool1d, lp_pool1d_backward, lp_pool2d, lp_pool2d_backward, lp_pool3d,
    lp_pool3d_backward, max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward, max_pool3d,
    max_pool3d_backward, max_unpool1d, max_unpool1d_backward, max_unpool2d, max_unpool2d_backward,
    max_unpool3d, max_unpool3d_backward, run_avg_pool2d, run_max_pool2d,
)

__all__ = list(_OPS) + ["run_max_pool2d", "run_avg_pool2d", "KERNELS"]
