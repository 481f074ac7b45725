"""Public pooling functions: same names, arguments and semantics as ``torch.nn.functional``.

Each function looks at where ``x`` lives and hands it to a backend:

* a GPU array -- anything with ``__cuda_array_interface__`` (Numba device arrays,
  CuPy arrays, PyTorch CUDA tensors) or a simulator ``FakeCUDAArray`` -- goes to
  :mod:`poolkit.gpu` and stays on the device;
* a ``dask.array.Array`` goes to :mod:`poolkit.dask` and stays lazy;
* anything else must be a NumPy array and goes to :mod:`poolkit.cpu`
  (parallel kernel).

Backends are imported on first use, so ``import poolkit`` never imports CUDA or Dask.
"""
from __future__ import annotations

import importlib

__all__ = ["max_pool2d", "avg_pool2d", "backend_for"]


def _is_gpu_array(x) -> bool:
    if hasattr(x, "__cuda_array_interface__"):
        return True
    # Under NUMBA_ENABLE_CUDASIM=1, device arrays are FakeCUDAArray objects without
    # __cuda_array_interface__; recognise them so the simulator exercises this path.
    return type(x).__module__.startswith("numba.cuda.simulator")


def _is_dask_array(x) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "chunks")


def backend_for(x) -> str:
    """Name of the backend module that handles ``x``: ``"gpu"``, ``"dask"`` or ``"cpu"``."""
    if _is_gpu_array(x):
        return "gpu"
    if _is_dask_array(x):
        return "dask"
    return "cpu"


def _backend(x):
    return importlib.import_module(f"poolkit.{backend_for(x)}")


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW"):
    """2-D max pooling over ``(N, C, H, W)`` / ``(C, H, W)`` (or NHWC) arrays.

    Parameters
    ----------
    x : array
        NumPy array (float32, float64 or integer), GPU array or Dask array;
        ``(N, C, H, W)`` or unbatched ``(C, H, W)``; with ``layout="NHWC"``,
        ``(N, H, W, C)`` or ``(H, W, C)``.
    kernel_size, stride, padding, dilation : int or (int, int)
        As in PyTorch. ``stride=None`` means ``stride=kernel_size``; padding is
        implicit ``-inf`` and at most half the kernel size.
    ceil_mode : bool
        Use ceil instead of floor for the output size; a last window must start
        inside the input or the left padding.
    return_indices : bool
        Also return int64 indices of the maxima, flat per ``(H, W)`` plane.
    layout : {"NCHW", "NHWC"}
        Keyword-only. ``"NHWC"`` runs a channels-last kernel (no transposes).

    Returns
    -------
    out : array of the input's dtype (and ``indices`` if requested), on the input's device.

    Notes
    -----
    NaN propagates (a window with a NaN gives NaN; its index is the last NaN in
    scan order); ties go to the first maximum in scan order.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(1., 17.).reshape(1, 1, 4, 4)
    >>> poolkit.max_pool2d(x, 2, return_indices=True)[1][0, 0]
    array([[ 5,  7],
           [13, 15]])

    See Also
    --------
    poolkit.reference.max_pool2d, poolkit.cpu.max_pool2d, poolkit.gpu.max_pool2d
    """
    return _backend(x).max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode,
                                  return_indices, layout=layout)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW"):
    """2-D average pooling over ``(N, C, H, W)`` / ``(C, H, W)`` (or NHWC) float arrays.

    Parameters
    ----------
    x : array
        float32 or float64 NumPy, GPU or Dask array (layouts as :func:`max_pool2d`).
    kernel_size, stride, padding : int or (int, int)
        As in PyTorch; padding is implicit zeros, at most half the kernel size.
    ceil_mode : bool
        As in :func:`max_pool2d`.
    count_include_pad : bool
        Count padding cells in the divisor. Cells of a ceil_mode window that lie
        past the right padding are never counted.
    divisor_override : int, optional
        Divide every sum by this instead.
    layout : {"NCHW", "NHWC"}

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(1., 17.).reshape(1, 1, 4, 4)
    >>> poolkit.avg_pool2d(x, 2)[0, 0]
    array([[ 3.5,  5.5],
           [11.5, 13.5]])

    See Also
    --------
    poolkit.reference.avg_pool2d, poolkit.cpu.avg_pool2d, poolkit.gpu.avg_pool2d
    """
    return _backend(x).avg_pool2d(x, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override, layout=layout)
