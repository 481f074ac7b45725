"""The tunables of poolkit's kernels, in one place: CPU thread-pool threshold, CUDA launch configuration.

Every tunable of :mod:`poolkit.cpu` and :mod:`poolkit.gpu` is a module-level
variable here, read at call or launch time (never at import), so a test or a
notebook can change it::

    >>> from poolkit import config
    >>> config.GPU_THREADS_PER_BLOCK = 32      # tiny inputs now span several blocks
    >>> config.reset()                          # back to the defaults

(the pattern of ``stumpy.config``). Tests usually set them with pytest's
``monkeypatch.setattr(config, "GPU_THREADS_PER_BLOCK", 16)``, which restores them.

This module is pure Python and never imports Numba, so it can also choose, before
Numba is imported, whether the CUDA kernels run on a GPU or on Numba's CUDA
simulator: :func:`use_simulator_if_no_gpu`.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = [
    "CPU_PARALLEL_MIN_SIZE",
    "GPU_THREADS_PER_BLOCK",
    "GPU_TILE_THREADS",
    "GPU_TILE_WIDTH",
    "GPU_TILE_CHANNELS",
    "GPU_OUTPUTS_PER_THREAD",
    "GPU_SHARED_BYTES",
    "GPU_BLOCKS_PER_SM",
    "GPU_MAX_BLOCKS",
    "reset",
    "detect_gpu",
    "use_simulator_if_no_gpu",
]

_DEFAULTS = dict(
    # CPU: inputs with fewer elements than this run the serial kernel even with
    # parallel=True (starting the thread pool costs more than pooling them).
    CPU_PARALLEL_MIN_SIZE=1 << 15,
    # Naive kernels: 1-D blocks, one thread per output element.
    GPU_THREADS_PER_BLOCK=256,
    # Optimized (tiled) kernels: at most this many threads per block.
    GPU_TILE_THREADS=256,
    # NCHW tiles: at most this many output columns per tile row (threads along W;
    # 32 = one warp writes one contiguous 128-byte row segment of float32).
    GPU_TILE_WIDTH=32,
    # NHWC tiles: channels per tile (threads along C) before widening for tiny outputs.
    GPU_TILE_CHANNELS=64,
    # Optimized kernels: each thread computes up to this many outputs per tile
    # (output rows in NCHW and NHWC), which lets a block cover a taller tile whose
    # halo is shared by more outputs.
    GPU_OUTPUTS_PER_THREAD=4,
    # Dynamic shared memory per block (bytes) for the input tile. 48 KiB is what
    # every CUDA GPU gives a block without an explicit opt-in.
    GPU_SHARED_BYTES=48 * 1024,
    # Grid-stride loops: launch at most this many blocks per multiprocessor ...
    GPU_BLOCKS_PER_SM=8,
    # ... or exactly at most this many blocks in total when set (tests set it small
    # so that every block loops over several tiles).
    GPU_MAX_BLOCKS=None,
)

CPU_PARALLEL_MIN_SIZE = _DEFAULTS["CPU_PARALLEL_MIN_SIZE"]
GPU_THREADS_PER_BLOCK = _DEFAULTS["GPU_THREADS_PER_BLOCK"]
GPU_TILE_THREADS = _DEFAULTS["GPU_TILE_THREADS"]
GPU_TILE_WIDTH = _DEFAULTS["GPU_TILE_WIDTH"]
GPU_TILE_CHANNELS = _DEFAULTS["GPU_TILE_CHANNELS"]
GPU_OUTPUTS_PER_THREAD = _DEFAULTS["GPU_OUTPUTS_PER_THREAD"]
GPU_SHARED_BYTES = _DEFAULTS["GPU_SHARED_BYTES"]
GPU_BLOCKS_PER_SM = _DEFAULTS["GPU_BLOCKS_PER_SM"]
GPU_MAX_BLOCKS = _DEFAULTS["GPU_MAX_BLOCKS"]


def reset() -> None:
    """Restore every setting to its default."""
    globals().update(_DEFAULTS)


# ------------------------------------------------------------------ GPU or simulator
def _load_libcuda():
    names = ["nvcuda.dll"] if os.name == "nt" else ["libcuda.so.1", "libcuda.so", "libcuda.dylib"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def detect_gpu() -> str | None:
    """Name of the first NVIDIA GPU the CUDA driver reports, or ``None``.

    Uses the driver library directly through :mod:`ctypes` (``cuInit``,
    ``cuDeviceGetCount``, ``cuDeviceGetName``), so it works before -- and without --
    importing Numba.
    """
    lib = _load_libcuda()
    if lib is None:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return None
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
            return "NVIDIA GPU"
        name = ctypes.create_string_buffer(256)
        if lib.cuDeviceGetName(name, 256, dev) != 0:
            return "NVIDIA GPU"
        return name.value.decode(errors="replace") or "NVIDIA GPU"
    except (AttributeError, OSError):
        return None


def _simulator_requested() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def use_simulator_if_no_gpu() -> str:
    """Run the CUDA lessons on a GPU when there is one, else on Numba's CUDA simulator.

    Call it first thing (before anything imports Numba, e.g. in a notebook's first
    cell). With no NVIDIA GPU it sets ``NUMBA_ENABLE_CUDASIM=1``, which Numba reads
    once, at import. An explicit ``NUMBA_ENABLE_CUDASIM=1`` in the environment is
    respected even on a machine with a GPU.

    Returns
    -------
    str
        One line saying what the CUDA kernels will run on.

    Raises
    ------
    RuntimeError
        If Numba is already imported and the choice can no longer take effect
        (restart the Python kernel and call this before importing poolkit's GPU
        module or Numba).
    """
    numba = sys.modules.get("numba")
    if numba is not None:
        sim_active = bool(getattr(numba.config, "ENABLE_CUDASIM", 0))
        if sim_active:
            return "CUDA simulator (Numba's, on the CPU; NUMBA_ENABLE_CUDASIM=1 was set before numba was imported)"
        name = detect_gpu()
        if name is not None:
            return f"GPU: {name}"
        raise RuntimeError(
            "use_simulator_if_no_gpu(): no NVIDIA GPU was found, and numba is already imported "
            "without the CUDA simulator, so switching to the simulator can no longer take effect "
            "(NUMBA_ENABLE_CUDASIM is read once, when numba is imported). Restart the Python "
            "kernel and call poolkit.config.use_simulator_if_no_gpu() before anything imports "
            "numba, or start Python with NUMBA_ENABLE_CUDASIM=1."
        )
    if _simulator_requested():
        return "CUDA simulator (Numba's, on the CPU; NUMBA_ENABLE_CUDASIM=1 is set)"
    name = detect_gpu()
    if name is not None:
        return f"GPU: {name}"
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    return "CUDA simulator (Numba's, on the CPU): no NVIDIA GPU found, so NUMBA_ENABLE_CUDASIM=1 was set"
