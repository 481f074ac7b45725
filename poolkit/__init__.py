"""poolkit: pooling layers for NumPy and GPU arrays, from plain loops to CUDA.

The public functions mirror ``torch.nn.functional`` (names, argument names and
order, defaults, semantics)::

    >>> import numpy as np, poolkit
    >>> x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> poolkit.max_pool2d(x, 2)[0, 0]
    array([[ 6.,  8.],
           [14., 16.]], dtype=float32)

The course ladder is visible in the package:
``poolkit.geometry`` (shared rules) -> ``poolkit.reference`` (plain loops, the
spec) -> ``poolkit.cpu`` (Numba, serial and parallel) -> ``poolkit.gpu`` (CUDA).
Importing poolkit compiles nothing and never touches CUDA. It registers one fork
handler (:mod:`poolkit.threads`: parallel kernels are safe from threads and after fork).
"""
from . import threads  # noqa: F401  (first: its fork handler must be in place before any fork)
from .functional import (
    adaptive_avg_pool1d, adaptive_avg_pool1d_backward, adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
    adaptive_avg_pool3d, adaptive_avg_pool3d_backward, adaptive_max_pool1d, adaptive_max_pool1d_backward,
    adaptive_max_pool2d, adaptive_max_pool2d_backward, adaptive_max_pool3d, adaptive_max_pool3d_backward,
    avg_pool1d, avg_pool1d_backward, avg_pool2d, avg_pool2d_backward, avg_pool3d, avg_pool3d_backward,
    global_avg_pool2d, global_avg_pool2d_backward, global_max_pool2d, global_max_pool2d_backward,
    lp_pool1d, lp_pool1d_backward, lp_pool2d, lp_pool2d_backward, lp_pool3d, lp_pool3d_backward,
    max_pool1d, max_pool1d_backward, max_pool2d, max_pool2d_backward, max_pool3d, max_pool3d_backward,
    max_unpool1d, max_unpool1d_backward, max_unpool2d, max_unpool2d_backward, max_unpool3d,
    max_unpool3d_backward,
)
from .explain import explain, plot_windows
from .geometry import OPS as _OPS
from .multiscale import pyramid, pyramid_shapes, pyramid_to_zarr

__version__ = "0.1.0"
__all__ = [*_OPS, "explain", "plot_windows", "pyramid", "pyramid_to_zarr", "pyramid_shapes"]
