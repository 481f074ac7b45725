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
Importing poolkit compiles nothing and never touches CUDA.
"""
from .functional import avg_pool2d, max_pool2d

__version__ = "0.1.0"
__all__ = ["max_pool2d", "avg_pool2d"]
