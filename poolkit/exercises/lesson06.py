"""Checkers for lesson 06 (faster CUDA kernels): tiles, loads and shared-memory kernels.

* :func:`check_tile_with_halo` and :func:`check_naive_loads` are host-side arithmetic --
  no GPU needed -- checked against the functions poolkit's optimized kernels are
  planned with (:func:`poolkit.gpu.tile_extent`, :func:`poolkit.gpu.count_global_loads`).
* :func:`check_tiled_max_pool_1d` and :func:`check_tiled_avg_pool_2d` launch the
  learner's shared-memory kernels (on a GPU or on Numba's CUDA simulator) and compare
  them with poolkit's pooling. On the simulator they also track every access to shared
  memory and report a race -- a cell one thread reads and another writes with no
  ``cuda.syncthreads()`` between them -- whichever order the simulator's threads ran in.
"""
from __future__ import annotations

import numpy as np

from .. import avg_pool2d, max_pool1d
from .. import geometry as G
from .. import gpu
from . import Case, check, pool_window_explainer

__all__ = ["check_tile_with_halo", "check_naive_loads", "check_tiled_max_pool_1d", "check_tiled_avg_pool_2d",
           "check_grid_stride_max_pool_1d"]


def check_tile_with_halo(fn) -> bool:
    """Check ``fn(tile_rows, tile_cols, kernel_size, stride, dilation)`` -> ``(rows, cols)``.

    The input rows and columns a ``tile_rows x tile_cols`` tile of outputs reads:
    the tile plus its halo, before clipping to the input. Square ``kernel_size``,
    ``stride`` and ``dilation`` (ints).
    """
    def spec(tr, tc, k, s, d):
        return (gpu.tile_extent(tr, k, s, d), gpu.tile_extent(tc, k, s, d))

    first_last = ("the first window starts at 0, the last at (tile - 1) * stride; the last one "
                  "reaches (kernel_size - 1) * dilation cells further")
    cases = [
        Case("1x1 tile, 3x3 window: just one window", (1, 1, 3, 1, 1), hint=first_last),
        Case("4x32 tile, 2x2 stride 2 (no overlap, no halo)", (4, 32, 2, 2, 1), hint=first_last),
        Case("8x8 tile, 3x3 stride 1 (a 2-cell halo)", (8, 8, 3, 1, 1), hint=first_last),
        Case("16x28 tile, 3x3 stride 2", (16, 28, 3, 2, 1), hint=first_last),
        Case("4x4 tile, 3x3 stride 1, dilation 2", (4, 4, 3, 1, 2),
             hint="a dilated window spans (kernel_size - 1) * dilation + 1 cells"),
        Case("2x3 tile, 2x2 stride 3 (gaps between windows)", (2, 3, 2, 3, 1), hint=first_last),
    ]
    return check(fn, spec, cases, name=getattr(fn, "__name__", "your function"))


def check_naive_loads(fn) -> bool:
    """Check ``fn(H, W, kernel_size, stride, padding)`` -> int: global loads of the naive kernel.

    For one ``H x W`` plane (floor mode, square int arguments): the number of
    input reads the one-thread-per-output kernel makes, i.e. the in-bounds taps
    of every window (padding taps are skipped, not loaded).
    """
    def spec(H, W, k, s, p):
        g = G.make_geometry("naive_loads", (H, W), k, s, p)
        return gpu.count_global_loads((1, 1, H, W), g, "NCHW", "naive")

    pad = "padding taps are skipped, not loaded: count only rows 0..H-1 and columns 0..W-1"
    cases = [
        Case("seed 4x4, kernel 2, stride 2", (4, 4, 2, 2, 0),
             hint="non-overlapping windows read every cell once"),
        Case("5x5, kernel 2, stride 2 (a row and a column are never read)", (5, 5, 2, 2, 0),
             hint="(5 - 2) // 2 + 1 = 2 windows per dimension"),
        Case("8x8, kernel 3, stride 1 (overlapping)", (8, 8, 3, 1, 0),
             hint="6x6 windows of 9 taps each"),
        Case("8x8, kernel 3, stride 1, padding 1", (8, 8, 3, 1, 1), hint=pad),
        Case("112x112, kernel 3, stride 2, padding 1 (ResNet's stem pool)", (112, 112, 3, 2, 1), hint=pad),
        Case("7x9, kernel 3, stride 2, padding 1", (7, 9, 3, 2, 1), hint=pad),
    ]
    return check(fn, spec, cases, name=getattr(fn, "__name__", "your function"))


# --- shared-memory tiles (run on a GPU or on Numba's CUDA simulator) -------------------

def _kernel_name(kernel):
    return (getattr(kernel, "__name__", None)
            or getattr(getattr(kernel, "py_func", None), "__name__", "your kernel"))


def _code_names(kernel):
    func = getattr(kernel, "py_func", None) or getattr(kernel, "fn", None) or kernel
    code = getattr(func, "__code__", None)
    return set(code.co_names) if code is not None else set()


class SharedMemoryError(AssertionError):
    """What the shared-memory tracker found: a race, a read of a cell nobody wrote, or no
    shared memory at all (raised after the launch, so the check reports it)."""


class _BlockState:
    """Race bookkeeping for one block's shared arrays, per array (keyed by source line).

    A *phase* is the stretch of a thread's run between two ``cuda.syncthreads()``.
    Every thread of a block is in the same phase at any time (that is what the
    barrier guarantees), so a shared cell written by one thread and read by another
    within the same phase is a race, whichever of the two happened first in this
    run: nothing orders them. The verdict therefore does not depend on how the
    simulator happened to schedule its Python threads.
    """

    def __init__(self):
        self.writes = {}      # (array key, cell) -> (phase, writer)
        self.reads = {}       # (array key, cell) -> (phase, set of readers)
        self.races = set()    # (reader, cell, writer, array key)
        self.unwritten = set()  # (reader, cell, phase, array key): read before any write


class _TrackedShared:
    """A stand-in for one block's ``cuda.shared.array`` on the simulator that records,
    per cell, which thread wrote and read it in which phase (see :class:`_BlockState`)."""

    def __init__(self, data, key, state, tracker):
        self._data = data
        self._ids = np.arange(data.size).reshape(data.shape)
        self._key, self._state, self._tracker = key, state, tracker
        self.shape, self.dtype, self.ndim, self.size = data.shape, data.dtype, data.ndim, data.size

    def __len__(self):
        return len(self._data)

    def _cells(self, idx):
        return np.atleast_1d(self._ids[idx]).ravel().tolist()

    def __getitem__(self, idx):
        value = self._data[idx]          # out-of-range indices raise here, as NumPy does
        me, phase = self._tracker.who()
        st = self._state
        with self._tracker.lock:
            for cell in self._cells(idx):
                w = st.writes.get((self._key, cell))
                if w is None:
                    st.unwritten.add((me, cell, phase, self._key))
                elif w[0] == phase and w[1] != me:
                    st.races.add((me, cell, w[1], self._key))
                r = st.reads.get((self._key, cell))
                if r is None or r[0] != phase:
                    st.reads[(self._key, cell)] = (phase, {me})
                else:
                    r[1].add(me)
        return value

    def __setitem__(self, idx, value):
        self._data[idx] = value
        me, phase = self._tracker.who()
        st = self._state
        with self._tracker.lock:
            for cell in self._cells(idx):
                r = st.reads.get((self._key, cell))
                if r is not None and r[0] == phase:
                    for reader in r[1]:
                        if reader != me:
                            st.races.add((reader, cell, me, self._key))
                            st.unwritten.discard((reader, cell, phase, self._key))
                st.writes[(self._key, cell)] = (phase, me)


class _SharedTracker:
    """While active, the simulator's ``cuda.shared.array`` returns tracked arrays (fresh
    per block, filled with NaN) and ``cuda.syncthreads()`` advances the calling thread's
    phase. Only for Numba's CUDA simulator."""

    def __init__(self):
        import threading
        self.lock = threading.Lock()
        self.blocks = {}        # blockIdx -> _BlockState
        self.arrays = {}        # (blockIdx, file, line) -> _TrackedShared
        self.phase = {}         # (blockIdx, threadIdx) -> barriers passed

    def who(self):
        import threading
        t = threading.current_thread()
        return tuple(t.threadIdx), self.phase.get((tuple(t.blockIdx), tuple(t.threadIdx)), 0)

    def __enter__(self):
        import sys
        import threading

        from numba.core import types
        from numba.cuda.simulator import kernel as simkernel
        from numba.cuda.simulator import kernelapi
        from numba.np import numpy_support

        tracker = self
        self._orig_array = kernelapi.FakeCUDAShared.array
        self._orig_sync = simkernel.BlockThread.syncthreads
        orig_array, orig_sync = self._orig_array, self._orig_sync

        def array(shared, shape, dtype, alignment=None):
            if shape == 0:                      # dynamic shared memory: not tracked
                return orig_array(shared, shape, dtype, alignment)
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            caller = sys._getframe(1)
            block = tuple(threading.current_thread().blockIdx)
            key = (block, caller.f_code.co_filename, caller.f_lineno)
            with tracker.lock:
                arr = tracker.arrays.get(key)
                if arr is None:
                    state = tracker.blocks.setdefault(block, _BlockState())
                    fill = np.nan if np.dtype(dtype).kind == "f" else 0
                    arr = _TrackedShared(np.full(shape, fill, dtype), key[1:], state, tracker)
                    tracker.arrays[key] = arr
            return arr

        def syncthreads(thread):
            orig_sync(thread)
            k = (tuple(thread.blockIdx), tuple(thread.threadIdx))
            tracker.phase[k] = tracker.phase.get(k, 0) + 1

        kernelapi.FakeCUDAShared.array = array
        simkernel.BlockThread.syncthreads = syncthreads
        return self

    def __exit__(self, *exc):
        from numba.cuda.simulator import kernel as simkernel
        from numba.cuda.simulator import kernelapi
        kernelapi.FakeCUDAShared.array = self._orig_array
        simkernel.BlockThread.syncthreads = self._orig_sync
        return False

    def verdict(self, ndim):
        """``None`` when no race was seen, else a sentence naming the first one (stable:
        the smallest block, thread and cell) and how many there were."""
        def t(idx):                              # a thread index as the kernel sees it
            return str(idx[0]) if ndim == 1 else str(tuple(idx[:ndim]))

        def c(arr_shape, cell):
            return str(cell) if len(arr_shape) == 1 else str(tuple(int(v) for v in np.unravel_index(cell, arr_shape)))

        shapes = {(a._key): a.shape for a in self.arrays.values()}
        for block in sorted(self.blocks):
            st = self.blocks[block]
            if st.races:
                reader, cell, writer, key = min(st.races)
                n = sum(len(s.races) for s in self.blocks.values())
                return (f"race in block {t(block)}: thread {t(reader)} reads shared cell "
                        f"{c(shapes[key], cell)}, which thread {t(writer)} writes, with no "
                        f"cuda.syncthreads() between the write and the read "
                        f"({n} racy read{'s' if n != 1 else ''} in all) -- a cuda.syncthreads() must "
                        "separate them: after the loads, before the reads; and before a new load "
                        "overwrites cells other threads may still be reading")
        for block in sorted(self.blocks):
            st = self.blocks[block]
            if st.unwritten:
                reader, cell, _, key = min(st.unwritten)
                return (f"block {t(block)}: thread {t(reader)} reads shared cell {c(shapes[key], cell)}, "
                        "which no thread of the block wrote: the load phase must copy the whole tile, "
                        "halo included")
        return None

    def used_shared(self):
        return bool(self.arrays)


def _launch_tiled(kernel, x, out_shape, args, griddim, blockdim, ndim):
    """Launch ``kernel[griddim, blockdim](x, out, *args)`` and return ``out`` (host).

    ``out`` starts as NaN, so an output no thread writes shows up. On the simulator
    the launch runs under :class:`_SharedTracker`: a race or a read of a shared cell
    nobody wrote raises :class:`SharedMemoryError`, and so does a kernel that never uses shared
    memory.
    """
    from numba import cuda

    from .. import gpu

    d_x = cuda.to_device(np.ascontiguousarray(x))
    d_out = cuda.to_device(np.full(out_shape, np.nan, dtype=x.dtype))
    if gpu.simulator_enabled():
        with _SharedTracker() as tracker:
            kernel[griddim, blockdim](d_x, d_out, *args)
        if not tracker.used_shared():
            raise SharedMemoryError("your kernel never called cuda.shared.array: stage the block's input tile in "
                        "shared memory first, then pool from it")
        problem = tracker.verdict(ndim)
        if problem:
            raise SharedMemoryError(problem)
    else:
        kernel[griddim, blockdim](d_x, d_out, *args)
        cuda.synchronize()
    out = d_out.copy_to_host()
    missing = int(np.isnan(out).sum())
    if missing:
        first = tuple(int(v) for v in np.argwhere(np.isnan(out))[0])
        raise AssertionError(
            f"{missing} of {out.size} outputs were never written (still NaN), first at index "
            f"{first[0] if ndim == 1 else first}: every output needs exactly one thread")
    return out


def _static_problems(kernel, name):
    """Messages for a kernel that is not a CUDA kernel or (on a GPU, where races are not
    tracked) has no ``cuda.syncthreads()``; ``[]`` when it looks right."""
    from .. import gpu
    from .lesson05 import _is_cuda_kernel

    if not _is_cuda_kernel(kernel):
        return [f"{name}: not a CUDA kernel -- put @cuda.jit on the line above `def` (from numba import cuda)"]
    names = _code_names(kernel)
    problems = []
    if "shared" not in names:
        problems.append(f"{name}: no cuda.shared.array in the kernel -- stage the tile in shared memory")
    if not gpu.simulator_enabled() and "syncthreads" not in names:
        problems.append(f"{name}: no cuda.syncthreads() -- the block must wait until the tile is loaded")
    return problems


def _fail_static(problems, name):
    for p in problems:
        print(f"  FAIL  {p}")
    print(f"{name}: some cases fail -- see above")
    return False


#: Threads per block of the 1-d checker's launches, and the shared cells its cases need at most.
TILE_1D_THREADS = (8, 16)
#: The 2-d checker's blocks: (threads along x = output columns, threads along y = output rows).
TILE_2D_BLOCK = (8, 4)


def check_tiled_max_pool_1d(kernel) -> bool:
    """Check ``kernel(x, out, kernel_size, stride)``: a 1-d max pool through shared memory.

    ``x`` is a float32 vector of length ``L``, ``out`` has ``(L - kernel_size) // stride + 1``
    cells. The checker launches ``ceil(out.size / T)`` blocks of ``T`` threads
    (``T`` = 8 and 16), one output per thread: block ``b`` computes outputs
    ``b*T .. b*T + T - 1`` from the input cells ``b*T*stride`` onward, at most
    ``(T - 1)*stride + kernel_size = 49`` of them, which it must first copy to a
    ``cuda.shared.array``. On the simulator every read of shared memory is tracked:
    a read of a cell that another thread writes without a ``cuda.syncthreads()`` in
    between is reported as a race, deterministically.
    """
    name = _kernel_name(kernel)
    problems = _static_problems(kernel, name)
    if problems:
        return _fail_static(problems, name)
    rng = np.random.default_rng(60)

    def run(x, k, s, tpb):
        n_out = (x.size - k) // s + 1
        blocks = -(-n_out // tpb)
        return _launch_tiled(kernel, x, (n_out,), (k, s), blocks, tpb, ndim=1)

    def spec(x, k, s, tpb):
        return max_pool1d(x[None, None], k, s)[0, 0]

    steps = ("three steps: all threads load the tile plus its halo, (T - 1)*stride + kernel_size cells "
             "from x[start] on (striding by blockDim.x, skipping cells past the end of x); "
             "cuda.syncthreads(); each thread pools its output from sh, starting the max at -inf")
    cases = [
        Case("seed 1..16, kernel 2, stride 2, 8 threads/block (no halo)",
             (np.arange(1, 17, dtype=np.float32), 2, 2, 8), hint=steps),
        Case("length 37, kernel 3, stride 1, 8 threads/block (a 2-cell halo)",
             (rng.standard_normal(37).astype(np.float32), 3, 1, 8), hint=steps),
        Case("length 50, kernel 3, stride 2, 16 threads/block",
             (rng.standard_normal(50).astype(np.float32), 3, 2, 16), hint=steps),
        Case("length 45, kernel 4, stride 3, 16 threads/block",
             (rng.standard_normal(45).astype(np.float32), 4, 3, 16), hint=steps),
        Case("all negative, length 29, kernel 3, stride 1, 8 threads/block",
             (-rng.integers(1, 9, size=29).astype(np.float32), 3, 1, 8), hint=steps),
    ]
    return check(run, spec, cases, name=name, strict_dtype=True)


def check_tiled_avg_pool_2d(kernel) -> bool:
    """Check ``kernel(x, out, kernel_size, stride)``: a 2-d average pool through a shared tile.

    ``x`` is a float32 ``(H, W)`` image, ``out`` is ``(OH, OW)`` (no padding). The
    checker launches blocks of ``(8, 4)`` threads -- ``threadIdx.x`` along the output
    columns, ``threadIdx.y`` along the rows -- on a grid of
    ``(ceil(OW / 8), ceil(OH / 4))`` blocks, one output per thread. A block's tile
    of outputs needs ``(4 - 1)*stride + kernel_size`` input rows and
    ``(8 - 1)*stride + kernel_size`` columns (at most 9 x 17 in these cases),
    starting at row ``blockIdx.y*4*stride`` and column ``blockIdx.x*8*stride``.
    Races are tracked on the simulator as in :func:`check_tiled_max_pool_1d`.
    """
    name = _kernel_name(kernel)
    problems = _static_problems(kernel, name)
    if problems:
        return _fail_static(problems, name)
    rng = np.random.default_rng(61)
    bx, by = TILE_2D_BLOCK

    def run(x, k, s):
        H, W = x.shape
        OH, OW = (H - k) // s + 1, (W - k) // s + 1
        grid = (-(-OW // bx), -(-OH // by))
        return _launch_tiled(kernel, x, (OH, OW), (k, s), grid, (bx, by), ndim=2)

    def spec(x, k, s):
        return avg_pool2d(x[None, None], k, s)[0, 0]

    halo = ("three steps: all 32 threads load the tile plus its halo, (4 - 1)*stride + kernel_size rows by "
            "(8 - 1)*stride + kernel_size columns, each copying every 32nd cell; cuda.syncthreads(); "
            "each thread averages its window from sh")
    cases = [
        Case("seed 4x4 (1..16), kernel 2, stride 2: one block",
             (np.arange(1, 17, dtype=np.float32).reshape(4, 4), 2, 2), hint=halo),
        Case("11x19, kernel 2, stride 2 (no halo), 2x2 blocks",
             (rng.standard_normal((11, 19)).astype(np.float32), 2, 2), hint=halo),
        Case("10x13, kernel 3, stride 1 (a 2-cell halo), 2x2 blocks",
             (rng.standard_normal((10, 13)).astype(np.float32), 3, 1), hint=halo),
        Case("13x20, kernel 3, stride 2 (a 1-cell halo), 2x2 blocks",
             (rng.standard_normal((13, 20)).astype(np.float32), 3, 2), hint=halo),
    ]
    return check(run, spec, cases, name=name, strict_dtype=True, rtol=1e-5, atol=1e-6,
                 explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2))


def check_grid_stride_max_pool_1d(kernel) -> bool:
    """Check ``kernel(x, out, kernel_size, stride)``: the 1-d shared-memory max pool of
    :func:`check_tiled_max_pool_1d`, with a grid-stride loop over the tiles.

    Tile ``i`` holds outputs ``i*T .. i*T + T - 1`` (``T = blockDim.x``); block ``b``
    handles tiles ``b, b + gridDim.x, b + 2*gridDim.x, ...``. The checker launches
    **2 blocks of 8 threads** on inputs of 4 to 9 tiles, so every block reuses its
    shared array for several tiles -- and a thread that starts loading the next tile
    while a neighbour still pools from the current one is reported as a race.
    """
    name = _kernel_name(kernel)
    problems = _static_problems(kernel, name)
    if problems:
        return _fail_static(problems, name)
    rng = np.random.default_rng(62)

    def run(x, k, s):
        n_out = (x.size - k) // s + 1
        return _launch_tiled(kernel, x, (n_out,), (k, s), 2, 8, ndim=1)

    def spec(x, k, s):
        return max_pool1d(x[None, None], k, s)[0, 0]

    loop = ("each block loops `for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x)`; "
            "the block's threads must all finish pooling one tile before any of them loads the next")
    cases = [
        Case("length 66, kernel 2, stride 2: 33 outputs, 5 tiles",
             (rng.standard_normal(66).astype(np.float32), 2, 2), hint=loop),
        Case("length 70, kernel 3, stride 1: 68 outputs, 9 tiles (a 2-cell halo)",
             (rng.standard_normal(70).astype(np.float32), 3, 1), hint=loop),
        Case("length 77, kernel 3, stride 2: 38 outputs, 5 tiles",
             (rng.standard_normal(77).astype(np.float32), 3, 2), hint=loop),
    ]
    return check(run, spec, cases, name=name, strict_dtype=True)
