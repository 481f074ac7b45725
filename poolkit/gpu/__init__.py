"""The GPU backend: every pooling op and backward as CUDA kernels written with Numba's ``@cuda.jit``.

The GPU step of the course ladder (``reference`` -> ``cpu`` -> ``gpu``). The 2-D
forward kernels exist twice, because the course teaches the step between them:
**naive** (lesson 05; one thread per output, global memory only) and
**optimized** (lesson 06; shared-memory tiles with halos, several outputs per
thread, grid-stride loops). The package, by layer:

* :mod:`.rules` -- the semantic rules every kernel uses, as inline device
  functions: the NaN-aware max step (first maximum wins ties, NaN propagates),
  its index variant and its ``nan_policy="omit"`` variant (NaN skipped),
  PyTorch's ``sign`` (0 for NaN);
* :mod:`.naive2d` -- the six naive 2-D kernels (max, max with indices, avg; NCHW
  and NHWC);
* :mod:`.tiled2d` -- the optimized 2-D kernels: one kernel factory per layout,
  the reduction (max / max with indices / avg) a compile-time choice, so the
  tile + halo loading is written once per layout;
* :mod:`.kernels_nd` -- the generic 5-D kernels of the rest of the family (3-d,
  adaptive, the backward gathers, unpooling, Lp's element-wise steps), the
  ``nan_policy="omit"`` kernels of every nd, and the contiguous-copy kernels;
* :mod:`.plan` -- pure-Python tiling arithmetic (:func:`plan_tiles`,
  :func:`tile_extent`, :func:`count_global_loads`);
* :mod:`.device` -- host-side device plumbing: zero-copy views of GPU arrays,
  launches, allocation, and the recording mode that lists every kernel
  specialization for the PTX tests;
* :mod:`.ops` -- the public functions: each validates its arguments once
  (:mod:`poolkit.geometry`), then runs on the validated geometry.

Semantics are exactly those of :mod:`poolkit.reference`: indices are int64 and
flat per spatial plane; ``avg`` sums in the input dtype in scan order and divides
by a divisor of the input dtype from :func:`poolkit.geometry.avg_divisor_table`,
so results equal the reference (and the CPU backend) bit for bit. Gradients are
gathers, never atomics: the same bits on every run. No ``fastmath`` (it would let
the compiler assume no NaN/inf).

Inputs may be NumPy arrays (copied in, results copied out) or GPU arrays -- any
object with ``__cuda_array_interface__`` (Numba device arrays, CuPy, PyTorch CUDA
tensors), which stay on the device.

Kernels compile lazily, on first launch, for the argument types they see;
importing this package compiles nothing and needs no GPU. Without a GPU, set
``NUMBA_ENABLE_CUDASIM=1`` before Numba is imported to run everything on Numba's
CUDA simulator (or call :func:`poolkit.config.use_simulator_if_no_gpu` first).
All launch parameters live in :mod:`poolkit.config`.
"""
from ..geometry import OPS as _OPS
from .device import CudaUnavailableError, PreparedLaunch, simulator_enabled
from .kernels_nd import ND_KERNELS
from .ops import (
    KERNELS, ND_SUPPORTED_DTYPES, SUPPORTED_DTYPES, adaptive_avg_pool1d, adaptive_avg_pool1d_backward,
    adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_avg_pool3d, adaptive_avg_pool3d_backward,
    adaptive_max_pool1d, adaptive_max_pool1d_backward, adaptive_max_pool2d, adaptive_max_pool2d_backward,
    adaptive_max_pool3d, adaptive_max_pool3d_backward, avg_pool1d, avg_pool1d_backward, avg_pool2d,
    avg_pool2d_backward, avg_pool3d, avg_pool3d_backward, global_avg_pool2d, global_avg_pool2d_backward,
    global_max_pool2d, global_max_pool2d_backward, kernel_source, kernel_specializations, lp_pool1d,
    lp_pool1d_backward, lp_pool2d, lp_pool2d_backward, lp_pool3d, lp_pool3d_backward, max_pool1d,
    max_pool1d_backward, max_pool2d, max_pool2d_backward, max_pool3d, max_pool3d_backward, max_unpool1d,
    max_unpool1d_backward, max_unpool2d, max_unpool2d_backward, max_unpool3d, max_unpool3d_backward,
    nd_kernel_specializations, prepare_avg_pool2d, prepare_max_pool2d,
)
from .plan import TilePlan, count_global_loads, plan_tiles, tile_extent

__all__ = list(_OPS) + [
    "SUPPORTED_DTYPES", "ND_SUPPORTED_DTYPES", "KERNELS", "ND_KERNELS", "kernel_source", "plan_tiles",
    "TilePlan", "tile_extent", "count_global_loads", "prepare_max_pool2d", "prepare_avg_pool2d",
    "PreparedLaunch", "kernel_specializations", "nd_kernel_specializations", "CudaUnavailableError",
    "simulator_enabled",
]
