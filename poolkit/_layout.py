"""Array layouts, as shapes and NumPy views: batching, channels-first/last, unit dims.

Pure NumPy, no numba and no other poolkit module: every backend (reference, cpu,
gpu, dask) uses these to move between the user's layout and the layout a kernel
wants. Nothing here copies data unless its docstring says so.

Conventions: ``cl`` is True for channels-last (``NLC``, ``NHWC``, ``NDHWC``),
``nd`` is the number of spatial dimensions (1, 2 or 3), and "batched" arrays
have the leading ``N`` axis (unbatched inputs get it as a view at the entry).

    >>> import numpy as np
    >>> x = np.zeros((2, 5, 3))                  # (N, L, C), channels-last 1-d
    >>> to5(x, 1, True).shape                    # (N, 1, 1, L, C): 3-d kernels take it
    (2, 1, 1, 5, 3)
    >>> cf5(x, 1, True).shape                    # channels-first view (N, C, 1, 1, L)
    (2, 3, 1, 1, 5)
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "batched_shape", "nc", "spatial_shape", "unbatch", "to5", "cf5", "flat3", "channels_first",
    "channels_last", "as_2d", "from_2d", "cell_shape", "drop_unit", "add_unit",
]


def batched_shape(N: int, C: int, spatial, cl: bool) -> tuple[int, ...]:
    """The shape of a batched array with these sizes, in the given layout."""
    return (N,) + tuple(spatial) + (C,) if cl else (N, C) + tuple(spatial)


def nc(shape, cl: bool) -> tuple[int, int]:
    """``(N, C)`` of a batched shape."""
    return shape[0], (shape[-1] if cl else shape[1])


def spatial_shape(shape, cl: bool) -> tuple[int, ...]:
    """The spatial sizes of a batched shape."""
    return tuple(shape[1:-1]) if cl else tuple(shape[2:])


def unbatch(a, batched: bool):
    """Drop the batch axis that the entry added to an unbatched input."""
    return a if batched else a[0]


def to5(a, nd: int, cl: bool):
    """View a batched ``nd``-spatial array as 5-D (unit spatial dims in front), same layout."""
    unit = (None,) * (3 - nd)
    return a[(slice(None),) + unit] if cl else a[(slice(None), slice(None)) + unit]


def cf5(a, nd: int, cl: bool):
    """View a batched array as channels-first 5-D (a strided view for channels-last)."""
    a5 = to5(a, nd, cl)
    return np.moveaxis(a5, -1, 1) if cl else a5


def flat3(a, cl: bool):
    """Batched array -> ``(N, C, P)``, ``P`` the flattened spatial cells (a view when contiguous)."""
    if cl:
        return a.reshape(a.shape[0], -1, a.shape[-1]).swapaxes(1, 2)
    return a.reshape(a.shape[0], a.shape[1], -1)


def channels_first(a, cl: bool):
    """A batched array as a channels-first view."""
    return np.moveaxis(a, -1, 1) if cl else a


def channels_last(a, cl: bool):
    """A channels-first result back in the caller's layout (a C-contiguous copy if ``cl``)."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if cl else a


def as_2d(a, cl: bool):
    """A batched 1-d array ``(N, C, L)`` / ``(N, L, C)`` as 2-d with ``H = 1`` (a view)."""
    return a[:, None] if cl else a[:, :, None]


def from_2d(a, cl: bool):
    """Undo :func:`as_2d` on a result."""
    return a[:, 0] if cl else a[:, :, 0]


def cell_shape(spatial_shape_, cl: bool) -> tuple[int, ...]:
    """Shape that broadcasts a per-output-cell (spatial only) array against a batched array."""
    return (1,) + tuple(spatial_shape_) + (1,) if cl else (1, 1) + tuple(spatial_shape_)


def drop_unit(out, keepdims: bool, cl: bool):
    """Global pooling: drop the two unit spatial dims of a 2-d result unless ``keepdims``."""
    if keepdims:
        return out
    return out[..., 0, 0, :] if cl else out[..., 0, 0]


def add_unit(grad_output, keepdims: bool, cl: bool):
    """Global pooling backward: give an ``(N, C)`` gradient its unit spatial dims back.

    Anything but a NumPy array passes through unchanged, for the caller's
    ``grad_output`` check to name it."""
    if keepdims or not isinstance(grad_output, np.ndarray):
        return grad_output
    return grad_output[..., None, None, :] if cl else grad_output[..., None, None]
