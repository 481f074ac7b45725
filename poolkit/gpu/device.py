"""Host-side device plumbing: inputs onto the device, outputs back, launches, recording.

Everything the public functions of :mod:`poolkit.gpu.ops` need to talk to a GPU
(or to Numba's CUDA simulator), and nothing about pooling itself:

* **Inputs.** :func:`shape_dtype` reads the shape and dtype of a NumPy array, a
  Numba (or simulator) device array or any object with ``__cuda_array_interface__``
  (CuPy, PyTorch...). GPU arrays are never copied to the host: :func:`device_view`
  wraps them zero-copy, :class:`CAIView` gives one another shape/strides over the
  same memory, and :func:`to_device_4d` / :func:`to5` give the kernels a batched,
  C-contiguous device array (a view when possible; a non-contiguous input is copied
  once, on the device, by :func:`~poolkit.gpu.kernels_nd.copy_4d` /
  :func:`~poolkit.gpu.kernels_nd.copy_5d`). NumPy input is copied in, and results
  copied back (:func:`result`).
* **Launches.** Every kernel launch goes through :func:`launch` (tests spy on it);
  :func:`launch_per_item` is the one-thread-per-item launch of the naive kernels;
  :class:`PreparedLaunch` is a launch with its outputs allocated, run again and
  again by the GPU benchmark.
* **Recording mode** (:func:`recording`): launches record ``(name, argument types)
  -> python function`` instead of running, and :func:`alloc` / :func:`put` hand out
  NumPy stand-ins for device arrays, so the public functions can be run without a
  device to list every kernel specialization they launch (the PTX tests compile
  that list: :func:`poolkit.gpu.kernel_specializations`).
* :func:`require_device` raises :class:`CudaUnavailableError` with instructions when
  there is neither a GPU nor the simulator.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import cuda

from .. import config
from .. import geometry as G
from .kernels_nd import copy_4d, copy_5d
from .plan import TilePlan, cdiv, max_blocks

__all__ = [
    "CudaUnavailableError", "simulator_enabled", "require_device", "recording", "is_recording",
    "launch", "launch_per_item", "PreparedLaunch", "threads_per_block", "alloc", "put", "empty",
    "is_fake", "shape_dtype", "CAIView", "device_view", "add_batch_axis", "to_device_4d", "shape5",
    "to5", "result",
]


class CudaUnavailableError(RuntimeError):
    """No CUDA device was found and the CUDA simulator is not enabled."""


def simulator_enabled() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config as numba_config

    return bool(numba_config.ENABLE_CUDASIM)


def require_device(op: str) -> None:
    """Raise :class:`CudaUnavailableError` unless a GPU, the simulator or the recording mode is there."""
    if _RECORD is not None or simulator_enabled() or cuda.is_available():
        return
    raise CudaUnavailableError(
        f"{op}: no CUDA device was found (numba.cuda.is_available() is False; "
        "numba.cuda.detect() says why). poolkit's GPU kernels can run without a GPU on Numba's "
        "CUDA simulator: set the environment variable NUMBA_ENABLE_CUDASIM=1 before numba is "
        "imported (e.g. `NUMBA_ENABLE_CUDASIM=1 python ...`), or call "
        "poolkit.config.use_simulator_if_no_gpu() first thing in a notebook. For NumPy input, "
        "the CPU functions poolkit.max_pool2d / poolkit.avg_pool2d need no GPU at all."
    )


# =====================================================================================
# Recording mode and launches.
# =====================================================================================
#: ``None``, or (in recording mode) a dict ``(name, argument types) -> python function``.
_RECORD = None


@contextlib.contextmanager
def recording():
    """Record launches instead of running them; yields the dict they fill.

    While recording, :func:`alloc` and :func:`put` return NumPy arrays (stand-ins
    typed like device arrays), :func:`launch` stores ``(name, argument types) ->
    kernel.py_func`` and returns at once, and :func:`require_device` passes. Feed
    the public functions NumPy inputs.
    """
    global _RECORD
    previous, _RECORD = _RECORD, {}
    try:
        yield _RECORD
    finally:
        _RECORD = previous


def is_recording() -> bool:
    return _RECORD is not None


def launch(name, kernel, griddim, blockdim, shared_bytes, args):
    """Launch ``kernel[griddim, blockdim, 0, shared_bytes](*args)`` (or record it)."""
    if _RECORD is not None:
        import numba

        _RECORD[(name, tuple(numba.typeof(a) for a in args))] = kernel.py_func
        return
    kernel[griddim, blockdim, 0, shared_bytes](*args)


def threads_per_block() -> int:
    """``config.GPU_THREADS_PER_BLOCK``, clipped to CUDA's 1..1024."""
    return max(1, min(1024, int(config.GPU_THREADS_PER_BLOCK)))


def launch_per_item(name, kernel, total, *args):
    """One thread per item (``total`` items), ``config.GPU_THREADS_PER_BLOCK`` threads per block."""
    if _RECORD is None and total <= 0:
        return
    tpb = threads_per_block()
    launch(name, kernel, cdiv(total, tpb), tpb, 0, args)


@dataclass
class PreparedLaunch:
    """One kernel launch with its outputs allocated: ``run()`` launches it again.

    Made by :func:`poolkit.gpu.prepare_max_pool2d` / :func:`poolkit.gpu.prepare_avg_pool2d`;
    the GPU benchmark times ``run()`` alone (no argument checks, no allocation).
    """

    name: str
    kernel: Any
    griddim: Any
    blockdim: Any
    shared_bytes: int
    args: tuple
    outputs: tuple
    plan: TilePlan | None = None
    pre: list = field(default_factory=list)

    def run(self):
        """Launch the kernel (asynchronously on a GPU); return the outputs."""
        for pre in self.pre:
            pre.run()
        launch(self.name, self.kernel, self.griddim, self.blockdim, self.shared_bytes, self.args)
        return self.outputs


# =====================================================================================
# Allocation (NumPy stand-ins while recording).
# =====================================================================================
def alloc(shape, dtype):
    """An uninitialised device array (zeros on the host while recording)."""
    if _RECORD is not None:
        return np.zeros(shape, dtype=dtype)
    return cuda.device_array(tuple(shape), dtype=dtype)


def put(a):
    """``a`` as a C-contiguous device array (the NumPy array itself while recording)."""
    a = np.ascontiguousarray(a)
    return a if _RECORD is not None else cuda.to_device(a)


def empty(shape, dtype, host, with_idx=False):
    """Empty result(s) of ``shape`` (``N = 0``): NumPy for NumPy input, else device arrays."""
    make = np.empty if host else (lambda s, d: cuda.device_array(s, dtype=d))
    res = [make(shape, dtype)] + ([make(shape, np.int64)] if with_idx else [])
    return tuple(res) if with_idx else res[0]


# =====================================================================================
# Inputs: shapes, zero-copy views, batched contiguous device arrays.
# =====================================================================================
def is_fake(x) -> bool:
    """True for the CUDA simulator's device arrays."""
    return type(x).__module__.startswith("numba.cuda.simulator")


def shape_dtype(x, op, name="x"):
    """Shape and dtype of a NumPy, Numba/CuPy/PyTorch CUDA or simulator array (``name`` for errors)."""
    if isinstance(x, np.ndarray):
        G.plain_array(x, name, op)  # refuses masked arrays (their mask would be lost)
        return x.shape, x.dtype
    if is_fake(x):
        return tuple(x.shape), np.dtype(x.dtype)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        dtype = np.dtype(cai["typestr"])
        if not dtype.isnative:
            raise TypeError(f"{op}: {name} must be in native byte order on the GPU, got {dtype}")
        return tuple(cai["shape"]), dtype
    raise TypeError(
        f"{op}: {name} must be a NumPy array or a GPU array (an object with "
        f"__cuda_array_interface__), got {type(x).__name__}"
    )


class CAIView:
    """A ``__cuda_array_interface__`` with another shape/strides over the same memory."""

    def __init__(self, base, shape, strides):
        self._base = base
        cai = dict(base.__cuda_array_interface__)
        cai["shape"] = tuple(shape)
        cai["strides"] = tuple(strides)
        cai.pop("mask", None)
        self.__cuda_array_interface__ = cai


def device_view(a):
    """A Numba (or simulator) device array for any accepted GPU array (zero-copy)."""
    if is_fake(a) or type(a).__module__.startswith("numba.cuda"):
        return a
    return cuda.as_cuda_array(a)


def add_batch_axis(d):
    """``d[None]`` for a device array (a view; no copy)."""
    if is_fake(d):
        return d[None]
    if d.is_c_contiguous():
        return d.reshape((1,) + tuple(d.shape))
    strides = tuple(d.strides)
    return cuda.as_cuda_array(CAIView(d, (1,) + tuple(d.shape), (strides[0] * d.shape[0],) + strides))


def _contiguous_copy(name, kernel, src):
    """A C-contiguous device copy of ``src``, made on the device (grid-stride copy kernel)."""
    dst = cuda.device_array(tuple(src.shape), dtype=src.dtype)
    if dst.size:
        tpb = threads_per_block()
        launch(name, kernel, max(1, min(cdiv(dst.size, tpb), max_blocks())), tpb, 0, (src, dst))
    return dst


def to_device_4d(x, batched, op):
    """A batched, C-contiguous 4-d device array holding ``x`` (NumPy input is copied in)."""
    if isinstance(x, np.ndarray):
        x = G.as_native_array(x, op)
        return put(x if batched else x[None])
    d = device_view(x)  # CuPy, PyTorch, ...: a zero-copy view
    if not batched:
        d = add_batch_axis(d)
    if not d.is_c_contiguous():
        # The optimized kernels index flat, contiguous memory: make a device copy.
        d = _contiguous_copy("copy_4d", copy_4d, d)
    return d


def shape5(shape, nd, cl, batched):
    """Batched 5-D shape (unit spatial dims in front) of an array with ``shape``."""
    full = tuple(shape) if batched else (1,) + tuple(shape)
    unit = (1,) * (3 - nd)
    if cl:
        return (full[0],) + unit + full[1:]
    return full[:2] + unit + full[2:]


def to5(a, nd, cl, batched, op):
    """``a`` (NumPy or device) as a batched, C-contiguous 5-D device array (a view when possible)."""
    shape, _ = shape_dtype(a, op)
    s5 = shape5(shape, nd, cl, batched)
    if isinstance(a, np.ndarray):
        return put(G.as_native_array(a, op).reshape(s5))
    d = device_view(a)
    if d.is_c_contiguous():
        return d.reshape(s5)
    # strided: view with unit axes inserted, then one device-side copy
    if is_fake(d):
        full = d if batched else d[None]
        idx = (slice(None),) + (None,) * (3 - nd) if cl else (slice(None), slice(None)) + (None,) * (3 - nd)
        src = full[idx]
    else:
        strides = tuple(d.strides)
        if not batched:
            strides = (0,) + strides
        item = np.dtype(d.dtype).itemsize
        pos = 1 if cl else 2
        strides = strides[:pos] + (item,) * (3 - nd) + strides[pos:]
        src = cuda.as_cuda_array(CAIView(d, s5, strides))
    return _contiguous_copy("copy_5d", copy_5d, src)


def result(a, shape, host, batched):
    """Device result -> ``shape`` (batched), unbatched if needed, on the host for NumPy input."""
    shape = tuple(int(v) for v in shape)
    if _RECORD is not None:
        r = np.asarray(a).reshape(shape)
        return r if batched else r[0]
    if host:
        r = a.copy_to_host()
        r = r if r.shape == shape else r.reshape(shape)
        return r if batched else r[0]
    if batched and tuple(a.shape) == shape:
        return a
    return a.reshape(shape if batched else shape[1:])
