"""CUDA pooling kernels written with Numba's ``@cuda.jit``: naive, then optimized.

The GPU step of the course ladder (``reference`` -> ``cpu`` -> ``gpu``). Every
kernel exists twice, because the course teaches the step between them:

**naive** (lesson 05) -- one thread per output element. Thread ``i`` turns its
global index into ``(n, c, oh, ow)`` (NCHW) or ``(n, oh, ow, c)`` (NHWC), walks its
window in global memory and writes one value. Easy to read and already correct;
in NHWC its loads are even coalesced (neighbouring threads read neighbouring
channels).

**optimized** (lesson 06) -- what makes pooling fast on a GPU. Pooling is
memory-bound: a kernel is as fast as the bytes it moves, so the goal is to read
every input byte from DRAM once, in wide transactions, and keep the arithmetic
per byte small:

* **Coalesced loads into a shared-memory tile with a halo.** A block owns an output
  tile. Its threads first copy the input cells those outputs read -- the tile
  plus its *halo*, the extra rows/columns that overlapping windows reach into --
  from global into shared memory. The copy is organised so that consecutive
  threads read consecutive addresses (along ``W`` in NCHW, along ``C`` in NHWC),
  so a warp issues one 128-byte transaction where the naive NCHW kernel's
  strided window walk issues several. Overlapping windows (3x3 stride 1 reads
  each input 9 times) then re-read shared memory, not DRAM. Only in-bounds cells
  are staged: padding is skipped by bounds checks in the window loop, so
  ``-inf``/zero padding never has to be stored and an all-``-inf`` window still
  gets the index of its first real cell.
* **Several outputs per thread.** Each thread computes ``RPT`` outputs (output
  rows ``ty, ty + BY, ...``) of its tile, so one block covers a taller tile: the
  halo is amortised over more outputs, and the index arithmetic (divisions) is
  done once per tile rather than once per output.
* **Tiles shaped to the problem.** NCHW blocks are ``(BX, BP, BR)``: ``BX``
  threads along the output row (<= ``config.GPU_TILE_WIDTH``, rounded so the row
  splits into equal tiles), ``BR`` output rows (``blockDim.z`` is limited to 64)
  and -- when a whole output plane is smaller than a block (the 7x7 global
  average of a ResNet head) -- ``BP`` planes per tile; then the staged rows of
  consecutive planes are adjacent in memory and the block's load is one
  contiguous sweep. NHWC blocks are ``(BX, BY, BZ)``: channels (contiguous), output
  columns, output rows; the channel tile widens when the spatial output is tiny.
  When there are too few tiles to fill the GPU, tiles get fewer planes.
  Shared memory per block stays under ``config.GPU_SHARED_BYTES`` (48 KiB) by
  shrinking the tile; a window too large for even a one-output tile falls back to
  the naive kernel.
* **Grid-stride loops.** The grid has at most ``config.GPU_BLOCKS_PER_SM``
  blocks per multiprocessor; each block loops over tiles (``item += gridDim.x``).
  The launch size no longer depends on the problem size, and block start-up is
  paid once per block, not per tile.
* **Flat, contiguous indexing.** The optimized kernels take 1-D views of
  C-contiguous arrays and compute offsets themselves, hoisting the row base out
  of the inner loop. A non-contiguous device input is first copied into a
  contiguous device array (one extra read and write of ``x`` on the device; no
  host copy).

Semantics are exactly those of :mod:`poolkit.reference`: ``max`` updates with
``v > m or v != v`` (first maximum wins ties; NaN propagates and its index is the
last NaN in scan order), indices are int64 and flat per ``(H, W)`` plane;
``avg`` sums in the input dtype in scan order (row by row) and divides by a
divisor of the input dtype from :func:`poolkit.geometry.avg_divisor_table`, so
results equal the reference bit for bit. No ``fastmath`` (it would let the
compiler assume no NaN/inf).

Kernels compile lazily, on first launch, for the argument types they see; importing
this module compiles nothing and needs no GPU. Without a GPU, set
``NUMBA_ENABLE_CUDASIM=1`` before Numba is imported to run everything on Numba's
CUDA simulator (or call :func:`poolkit.config.use_simulator_if_no_gpu` first).
All launch parameters live in :mod:`poolkit.config`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import cuda

from . import config
from . import geometry as G

__all__ = [
    "max_pool2d",
    "avg_pool2d",
    "prepare_max_pool2d",
    "prepare_avg_pool2d",
    "PreparedLaunch",
    "TilePlan",
    "plan_tiles",
    "tile_extent",
    "count_global_loads",
    "kernel_source",
    "CudaUnavailableError",
    "KERNELS",
    "SUPPORTED_DTYPES",
    "kernel_specializations",
    "simulator_enabled",
]

#: dtypes the GPU kernels are compiled for: max takes all of them, avg the floats.
#: (The CPU backend takes every integer dtype for max; on the GPU each dtype is one
#: more compiled specialization per kernel, so only the common image/label types.)
SUPPORTED_DTYPES = {
    "max_pool2d": ("float32", "float64", "int32", "uint8"),
    "avg_pool2d": ("float32", "float64"),
}

_KERNEL_CHOICES = ("optimized", "naive")


class CudaUnavailableError(RuntimeError):
    """No CUDA device was found and the CUDA simulator is not enabled."""


def simulator_enabled() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba import config as numba_config

    return bool(numba_config.ENABLE_CUDASIM)


def _require_device(op: str) -> None:
    if simulator_enabled() or cuda.is_available():
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
# Naive kernels (lesson 05): one thread per output element, global memory only.
# =====================================================================================
@cuda.jit
def _max_nchw_naive(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """One thread per output element of an NCHW max pool (global-memory reads).

    Thread ``i = blockIdx.x * blockDim.x + threadIdx.x`` computes
    ``out.flat[i]``: it unravels ``i`` into ``(n, c, oh, ow)`` (``ow`` fastest, like
    the memory order), then scans its window row by row. Taps outside the input
    are padding and never win. Threads past the end of ``out`` do nothing.
    """
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    m = init
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, c, ih, iw]
                    if v > m or v != v:  # first max wins ties; NaN propagates
                        m = v
    out[n, c, oh, ow] = m


@cuda.jit
def _max_idx_nchw_naive(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """Like :func:`_max_nchw_naive`, also writing the flat ``ih * W + iw`` of the max."""
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    m = init
    mi = -1
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, c, ih, iw]
                    # mi < 0: the first real cell always counts (an all -inf window)
                    if v > m or v != v or mi < 0:
                        m = v
                        mi = ih * W + iw
    out[n, c, oh, ow] = m
    idx[n, c, oh, ow] = mi


@cuda.jit
def _avg_nchw_naive(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero):
    """One thread per output element of an NCHW average pool.

    Sums the in-bounds cells in the input dtype in scan order, then divides by
    ``override`` (when > 0) or ``div_h[oh] * div_w[ow]`` (from geometry's table).
    """
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    s = zero
    for kh in range(KH):
        ih = oh * SH - PH + kh
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw
                if iw >= 0 and iw < W:
                    s += x[n, c, ih, iw]
    d = override if override > 0 else div_h[oh] * div_w[ow]
    out[n, c, oh, ow] = s / d


@cuda.jit
def _max_nhwc_naive(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """One thread per output element of an NHWC max pool.

    ``c`` is the fastest index, so the 32 threads of a warp read 32 neighbouring
    channels of the same pixel: coalesced loads without any effort.
    """
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    m = init
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, ih, iw, c]
                    if v > m or v != v:
                        m = v
    out[n, oh, ow, c] = m


@cuda.jit
def _max_idx_nhwc_naive(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """Like :func:`_max_nhwc_naive`, also writing the flat ``ih * W + iw`` of the max."""
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    m = init
    mi = -1
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, ih, iw, c]
                    if v > m or v != v or mi < 0:
                        m = v
                        mi = ih * W + iw
    out[n, oh, ow, c] = m
    idx[n, oh, ow, c] = mi


@cuda.jit
def _avg_nhwc_naive(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero):
    """One thread per output element of an NHWC average pool."""
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    s = zero
    for kh in range(KH):
        ih = oh * SH - PH + kh
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw
                if iw >= 0 and iw < W:
                    s += x[n, ih, iw, c]
    d = override if override > 0 else div_h[oh] * div_w[ow]
    out[n, oh, ow, c] = s / d


# =====================================================================================
# Optimized kernels (lesson 06): shared-memory tiles with halos, several outputs per
# thread, grid-stride loops over tiles, flat indexing of contiguous arrays.
# =====================================================================================
@cuda.jit
def _max_nchw_tiled(xf, outf, P, H, W, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
                    RPT, TIH, TIW, LW, tiles_h, tiles_w):
    """Tiled NCHW max pool: stage tile + halo in shared memory, then reduce windows.

    Block ``(BX, BP, BR)``: ``tx`` indexes the output column, ``tp`` the plane
    within a group of ``BP`` planes and ``tr`` the output row (the thread computes
    rows ``tr, tr+BR, ...``, ``RPT`` of them). Work items (plane group, tile row,
    tile col) are visited with a grid-stride loop. ``xf``/``outf`` are flat views of
    C-contiguous ``(N*C, H, W)`` / ``(N*C, OH, OW)`` arrays.

    Each item has two phases separated by ``cuda.syncthreads()``:

    1. *Load*: input rows ``[ih0, ih0+TIH)`` x cols ``[iw0, iw0+TIW)`` of the
       ``BP`` planes go to shared memory as ``sh[(plane*TIH + i)*TIW + j]``. The
       block's threads form ``LH`` rows of ``LW`` threads and a row of threads
       copies a contiguous run of an input row, so a warp reads consecutive
       addresses (coalesced). When a tile spans whole input rows (``TIW == W``),
       consecutive staged rows -- across planes too -- are adjacent in memory and
       the block sweeps one contiguous range. Cells past the input are not
       loaded; the window loop never reads them.
    2. *Reduce*: every thread scans the windows of its ``RPT`` outputs in shared
       memory (bounds checks skip padding) and writes them; neighbouring threads
       write neighbouring outputs (coalesced stores).
    """
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    tp = cuda.threadIdx.y
    tr = cuda.threadIdx.z
    BX = cuda.blockDim.x
    BP = cuda.blockDim.y
    BR = cuda.blockDim.z
    TOH = BR * RPT
    # load-phase layout: LH rows of LW threads, each row copies a contiguous run
    t = tx + BX * (tp + BP * tr)  # linear thread id, in warp order
    LH = (BX * BP * BR) // LW
    li = t // LW
    lj = t - li * LW
    li0 = li // TIH  # this thread's first staged row as (plane, row) ...
    li1 = li - li0 * TIH
    dP = LH // TIH  # ... and the step between its rows
    dI = LH - dP * TIH
    tiles = tiles_h * tiles_w
    items = ((P + BP - 1) // BP) * tiles
    for item in range(cuda.blockIdx.x, items, cuda.gridDim.x):
        grp = item // tiles
        rem = item - grp * tiles
        th = rem // tiles_w
        tw = rem - th * tiles_w
        oh0 = th * TOH
        ow0 = tw * BX
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        p0 = grp * BP
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced --
        if li < LH:
            jend = min(TIW, W - iw0)
            pz = li0
            i = li1
            r = li
            while r < BP * TIH:  # staged row r = pz * TIH + i
                ih = ih0 + i
                if p0 + pz < P and ih < H:
                    src = ((p0 + pz) * H + ih) * W + iw0
                    dst = r * TIW
                    j = lj
                    while j < jend:  # (while, not range: no trip-count division)
                        sh[dst + j] = xf[src + j]
                        j += LW
                r += LH  # next row, without a division
                i += dI
                pz += dP
                if i >= TIH:
                    i -= TIH
                    pz += 1
        cuda.syncthreads()  # the tile is complete
        p = p0 + tp
        ow = ow0 + tx
        if p < P and ow < OW:
            ws = ow * SW - PW
            srow = tp * TIH - ih0
            for r in range(RPT):
                oh = oh0 + tr + r * BR
                if oh < OH:
                    hs = oh * SH - PH
                    m = init
                    for kh in range(KH):
                        ih = hs + kh * DH
                        if ih >= 0 and ih < H:
                            base = (srow + ih) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw * DW
                                if iw >= 0 and iw < W:
                                    v = sh[base + iw]
                                    if v > m or v != v:
                                        m = v
                    outf[(p * OH + oh) * OW + ow] = m


@cuda.jit
def _max_idx_nchw_tiled(xf, outf, idxf, P, H, W, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
                        RPT, TIH, TIW, LW, tiles_h, tiles_w):
    """Tiled NCHW max pool with indices (see :func:`_max_nchw_tiled`)."""
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    tp = cuda.threadIdx.y
    tr = cuda.threadIdx.z
    BX = cuda.blockDim.x
    BP = cuda.blockDim.y
    BR = cuda.blockDim.z
    TOH = BR * RPT
    # load-phase layout: LH rows of LW threads, each row copies a contiguous run
    t = tx + BX * (tp + BP * tr)  # linear thread id, in warp order
    LH = (BX * BP * BR) // LW
    li = t // LW
    lj = t - li * LW
    li0 = li // TIH  # this thread's first staged row as (plane, row) ...
    li1 = li - li0 * TIH
    dP = LH // TIH  # ... and the step between its rows
    dI = LH - dP * TIH
    tiles = tiles_h * tiles_w
    items = ((P + BP - 1) // BP) * tiles
    for item in range(cuda.blockIdx.x, items, cuda.gridDim.x):
        grp = item // tiles
        rem = item - grp * tiles
        th = rem // tiles_w
        tw = rem - th * tiles_w
        oh0 = th * TOH
        ow0 = tw * BX
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        p0 = grp * BP
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced --
        if li < LH:
            jend = min(TIW, W - iw0)
            pz = li0
            i = li1
            r = li
            while r < BP * TIH:  # staged row r = pz * TIH + i
                ih = ih0 + i
                if p0 + pz < P and ih < H:
                    src = ((p0 + pz) * H + ih) * W + iw0
                    dst = r * TIW
                    j = lj
                    while j < jend:  # (while, not range: no trip-count division)
                        sh[dst + j] = xf[src + j]
                        j += LW
                r += LH  # next row, without a division
                i += dI
                pz += dP
                if i >= TIH:
                    i -= TIH
                    pz += 1
        cuda.syncthreads()  # the tile is complete
        p = p0 + tp
        ow = ow0 + tx
        if p < P and ow < OW:
            ws = ow * SW - PW
            srow = tp * TIH - ih0
            for r in range(RPT):
                oh = oh0 + tr + r * BR
                if oh < OH:
                    hs = oh * SH - PH
                    m = init
                    mi = -1
                    for kh in range(KH):
                        ih = hs + kh * DH
                        if ih >= 0 and ih < H:
                            base = (srow + ih) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw * DW
                                if iw >= 0 and iw < W:
                                    v = sh[base + iw]
                                    if v > m or v != v or mi < 0:
                                        m = v
                                        mi = ih * W + iw
                    o = (p * OH + oh) * OW + ow
                    outf[o] = m
                    idxf[o] = mi


@cuda.jit
def _avg_nchw_tiled(xf, outf, P, H, W, OH, OW, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero,
                    RPT, TIH, TIW, LW, tiles_h, tiles_w):
    """Tiled NCHW average pool (see :func:`_max_nchw_tiled`); scan-order sums."""
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    tp = cuda.threadIdx.y
    tr = cuda.threadIdx.z
    BX = cuda.blockDim.x
    BP = cuda.blockDim.y
    BR = cuda.blockDim.z
    TOH = BR * RPT
    # load-phase layout: LH rows of LW threads, each row copies a contiguous run
    t = tx + BX * (tp + BP * tr)  # linear thread id, in warp order
    LH = (BX * BP * BR) // LW
    li = t // LW
    lj = t - li * LW
    li0 = li // TIH  # this thread's first staged row as (plane, row) ...
    li1 = li - li0 * TIH
    dP = LH // TIH  # ... and the step between its rows
    dI = LH - dP * TIH
    tiles = tiles_h * tiles_w
    items = ((P + BP - 1) // BP) * tiles
    for item in range(cuda.blockIdx.x, items, cuda.gridDim.x):
        grp = item // tiles
        rem = item - grp * tiles
        th = rem // tiles_w
        tw = rem - th * tiles_w
        oh0 = th * TOH
        ow0 = tw * BX
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        p0 = grp * BP
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced --
        if li < LH:
            jend = min(TIW, W - iw0)
            pz = li0
            i = li1
            r = li
            while r < BP * TIH:  # staged row r = pz * TIH + i
                ih = ih0 + i
                if p0 + pz < P and ih < H:
                    src = ((p0 + pz) * H + ih) * W + iw0
                    dst = r * TIW
                    j = lj
                    while j < jend:  # (while, not range: no trip-count division)
                        sh[dst + j] = xf[src + j]
                        j += LW
                r += LH  # next row, without a division
                i += dI
                pz += dP
                if i >= TIH:
                    i -= TIH
                    pz += 1
        cuda.syncthreads()  # the tile is complete
        p = p0 + tp
        ow = ow0 + tx
        if p < P and ow < OW:
            ws = ow * SW - PW
            srow = tp * TIH - ih0
            dw = div_w[ow]
            for r in range(RPT):
                oh = oh0 + tr + r * BR
                if oh < OH:
                    hs = oh * SH - PH
                    s = zero
                    for kh in range(KH):
                        ih = hs + kh
                        if ih >= 0 and ih < H:
                            base = (srow + ih) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw
                                if iw >= 0 and iw < W:
                                    s += sh[base + iw]
                    d = override if override > 0 else div_h[oh] * dw
                    outf[(p * OH + oh) * OW + ow] = s / d


@cuda.jit
def _max_nhwc_tiled(xf, outf, N, H, W, C, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
                    RPT, TIH, TIW, LX, tiles_h, tiles_w, tiles_c):
    """Tiled NHWC max pool.

    Block ``(BX, BY, BZ)``: ``tx`` indexes the channel within a tile of ``BX``
    channels (contiguous in memory: conflict-free shared reads, coalesced global
    writes), ``ty`` the output column and ``tz`` the output row (each thread
    computes rows ``tz, tz+BZ, ...``, ``RPT`` of them). Work items (image, tile row,
    tile col, channel tile) are visited with a grid-stride loop; ``xf``/``outf``
    are flat views of C-contiguous ``(N, H, W, C)`` / ``(N, OH, OW, C)`` arrays.

    Load phase: pixels ``[ih0, ih0+TIH) x [iw0, iw0+TIW)``, channels
    ``[c0, c0+CT)`` go to ``sh[(i*TIW + j)*CT + cc]``; groups of ``LX`` threads copy
    the contiguous channel run of one pixel (coalesced), ``LY`` pixels at a time.
    With ``CT == C`` the pixels of a tile row are adjacent in memory too. The reduce
    phase is as in :func:`_max_nchw_tiled`.
    """
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tz = cuda.threadIdx.z
    CT = cuda.blockDim.x
    BY = cuda.blockDim.y
    BZ = cuda.blockDim.z
    TOH = BZ * RPT
    # load-phase layout: LY groups of LX threads, each group copies one pixel's channel run
    t = tx + CT * (ty + BY * tz)
    LY = (CT * BY * BZ) // LX
    ly = t // LX
    lx = t - ly * LX
    ly0 = ly // TIW  # this thread's first staged pixel as (row, col) ...
    ly1 = ly - ly0 * TIW
    dI = LY // TIW  # ... and the step between its pixels
    dJ = LY - dI * TIW
    per_image = tiles_h * tiles_w * tiles_c
    for item in range(cuda.blockIdx.x, N * per_image, cuda.gridDim.x):
        n = item // per_image
        rem = item - n * per_image
        th = rem // (tiles_w * tiles_c)
        rem = rem - th * (tiles_w * tiles_c)
        tw = rem // tiles_c
        ct = rem - tw * tiles_c
        oh0 = th * TOH
        ow0 = tw * BY
        c0 = ct * CT
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced along channels --
        if ly < LY:
            cend = min(CT, C - c0)
            i = ly0
            j = ly1
            pos = ly
            while pos < TIH * TIW:  # staged pixel pos = i * TIW + j
                ih = ih0 + i
                iw = iw0 + j
                if ih < H and iw < W:
                    src = ((n * H + ih) * W + iw) * C + c0
                    dst = pos * CT
                    cc = lx
                    while cc < cend:  # (while, not range: no trip-count division)
                        sh[dst + cc] = xf[src + cc]
                        cc += LX
                pos += LY  # next pixel, without a division
                j += dJ
                i += dI
                if j >= TIW:
                    j -= TIW
                    i += 1
        cuda.syncthreads()  # the tile is complete
        c = c0 + tx
        ow = ow0 + ty
        if c < C and ow < OW:
            ws = ow * SW - PW
            for r in range(RPT):
                oh = oh0 + tz + r * BZ
                if oh < OH:
                    hs = oh * SH - PH
                    m = init
                    for kh in range(KH):
                        ih = hs + kh * DH
                        if ih >= 0 and ih < H:
                            base = (ih - ih0) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw * DW
                                if iw >= 0 and iw < W:
                                    v = sh[(base + iw) * CT + tx]
                                    if v > m or v != v:
                                        m = v
                    outf[((n * OH + oh) * OW + ow) * C + c] = m


@cuda.jit
def _max_idx_nhwc_tiled(xf, outf, idxf, N, H, W, C, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
                        RPT, TIH, TIW, LX, tiles_h, tiles_w, tiles_c):
    """Tiled NHWC max pool with indices (see :func:`_max_nhwc_tiled`)."""
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tz = cuda.threadIdx.z
    CT = cuda.blockDim.x
    BY = cuda.blockDim.y
    BZ = cuda.blockDim.z
    TOH = BZ * RPT
    # load-phase layout: LY groups of LX threads, each group copies one pixel's channel run
    t = tx + CT * (ty + BY * tz)
    LY = (CT * BY * BZ) // LX
    ly = t // LX
    lx = t - ly * LX
    ly0 = ly // TIW  # this thread's first staged pixel as (row, col) ...
    ly1 = ly - ly0 * TIW
    dI = LY // TIW  # ... and the step between its pixels
    dJ = LY - dI * TIW
    per_image = tiles_h * tiles_w * tiles_c
    for item in range(cuda.blockIdx.x, N * per_image, cuda.gridDim.x):
        n = item // per_image
        rem = item - n * per_image
        th = rem // (tiles_w * tiles_c)
        rem = rem - th * (tiles_w * tiles_c)
        tw = rem // tiles_c
        ct = rem - tw * tiles_c
        oh0 = th * TOH
        ow0 = tw * BY
        c0 = ct * CT
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced along channels --
        if ly < LY:
            cend = min(CT, C - c0)
            i = ly0
            j = ly1
            pos = ly
            while pos < TIH * TIW:  # staged pixel pos = i * TIW + j
                ih = ih0 + i
                iw = iw0 + j
                if ih < H and iw < W:
                    src = ((n * H + ih) * W + iw) * C + c0
                    dst = pos * CT
                    cc = lx
                    while cc < cend:  # (while, not range: no trip-count division)
                        sh[dst + cc] = xf[src + cc]
                        cc += LX
                pos += LY  # next pixel, without a division
                j += dJ
                i += dI
                if j >= TIW:
                    j -= TIW
                    i += 1
        cuda.syncthreads()  # the tile is complete
        c = c0 + tx
        ow = ow0 + ty
        if c < C and ow < OW:
            ws = ow * SW - PW
            for r in range(RPT):
                oh = oh0 + tz + r * BZ
                if oh < OH:
                    hs = oh * SH - PH
                    m = init
                    mi = -1
                    for kh in range(KH):
                        ih = hs + kh * DH
                        if ih >= 0 and ih < H:
                            base = (ih - ih0) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw * DW
                                if iw >= 0 and iw < W:
                                    v = sh[(base + iw) * CT + tx]
                                    if v > m or v != v or mi < 0:
                                        m = v
                                        mi = ih * W + iw
                    o = ((n * OH + oh) * OW + ow) * C + c
                    outf[o] = m
                    idxf[o] = mi


@cuda.jit
def _avg_nhwc_tiled(xf, outf, N, H, W, C, OH, OW, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero,
                    RPT, TIH, TIW, LX, tiles_h, tiles_w, tiles_c):
    """Tiled NHWC average pool (see :func:`_max_nhwc_tiled`); scan-order sums."""
    sh = cuda.shared.array(0, dtype=xf.dtype)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tz = cuda.threadIdx.z
    CT = cuda.blockDim.x
    BY = cuda.blockDim.y
    BZ = cuda.blockDim.z
    TOH = BZ * RPT
    # load-phase layout: LY groups of LX threads, each group copies one pixel's channel run
    t = tx + CT * (ty + BY * tz)
    LY = (CT * BY * BZ) // LX
    ly = t // LX
    lx = t - ly * LX
    ly0 = ly // TIW  # this thread's first staged pixel as (row, col) ...
    ly1 = ly - ly0 * TIW
    dI = LY // TIW  # ... and the step between its pixels
    dJ = LY - dI * TIW
    per_image = tiles_h * tiles_w * tiles_c
    for item in range(cuda.blockIdx.x, N * per_image, cuda.gridDim.x):
        n = item // per_image
        rem = item - n * per_image
        th = rem // (tiles_w * tiles_c)
        rem = rem - th * (tiles_w * tiles_c)
        tw = rem // tiles_c
        ct = rem - tw * tiles_c
        oh0 = th * TOH
        ow0 = tw * BY
        c0 = ct * CT
        ih0 = max(oh0 * SH - PH, 0)
        iw0 = max(ow0 * SW - PW, 0)
        cuda.syncthreads()  # everyone is done reading the previous tile
        # -- load phase: stage the tile + halo, coalesced along channels --
        if ly < LY:
            cend = min(CT, C - c0)
            i = ly0
            j = ly1
            pos = ly
            while pos < TIH * TIW:  # staged pixel pos = i * TIW + j
                ih = ih0 + i
                iw = iw0 + j
                if ih < H and iw < W:
                    src = ((n * H + ih) * W + iw) * C + c0
                    dst = pos * CT
                    cc = lx
                    while cc < cend:  # (while, not range: no trip-count division)
                        sh[dst + cc] = xf[src + cc]
                        cc += LX
                pos += LY  # next pixel, without a division
                j += dJ
                i += dI
                if j >= TIW:
                    j -= TIW
                    i += 1
        cuda.syncthreads()  # the tile is complete
        c = c0 + tx
        ow = ow0 + ty
        if c < C and ow < OW:
            ws = ow * SW - PW
            dw = div_w[ow]
            for r in range(RPT):
                oh = oh0 + tz + r * BZ
                if oh < OH:
                    hs = oh * SH - PH
                    s = zero
                    for kh in range(KH):
                        ih = hs + kh
                        if ih >= 0 and ih < H:
                            base = (ih - ih0) * TIW - iw0
                            for kw in range(KW):
                                iw = ws + kw
                                if iw >= 0 and iw < W:
                                    s += sh[(base + iw) * CT + tx]
                    d = override if override > 0 else div_h[oh] * dw
                    outf[((n * OH + oh) * OW + ow) * C + c] = s / d


@cuda.jit
def _copy_4d(src, dst):
    """``dst[...] = src[...]``: a strided 4-d device array into a C-contiguous one.

    Grid-stride loop, one element per thread per step, in ``dst``'s memory order
    (writes coalesced). Used to give the optimized kernels a contiguous input.
    """
    A, B, Cc, D = dst.shape
    for i in range(cuda.grid(1), A * B * Cc * D, cuda.gridsize(1)):
        d = i % D
        t = i // D
        c = t % Cc
        t = t // Cc
        b = t % B
        a = t // B
        dst[a, b, c, d] = src[a, b, c, d]


#: ``KERNELS[(op, layout, kernel)]`` -> the ``@cuda.jit`` dispatcher, with ``op`` one of
#: ``"max"``, ``"max_idx"``, ``"avg"``, ``layout`` ``"NCHW"``/``"NHWC"`` and ``kernel``
#: ``"naive"``/``"optimized"``. The notebooks show their source (``.py_func``).
KERNELS = {
    ("max", "NCHW", "naive"): _max_nchw_naive,
    ("max_idx", "NCHW", "naive"): _max_idx_nchw_naive,
    ("avg", "NCHW", "naive"): _avg_nchw_naive,
    ("max", "NHWC", "naive"): _max_nhwc_naive,
    ("max_idx", "NHWC", "naive"): _max_idx_nhwc_naive,
    ("avg", "NHWC", "naive"): _avg_nhwc_naive,
    ("max", "NCHW", "optimized"): _max_nchw_tiled,
    ("max_idx", "NCHW", "optimized"): _max_idx_nchw_tiled,
    ("avg", "NCHW", "optimized"): _avg_nchw_tiled,
    ("max", "NHWC", "optimized"): _max_nhwc_tiled,
    ("max_idx", "NHWC", "optimized"): _max_idx_nhwc_tiled,
    ("avg", "NHWC", "optimized"): _avg_nhwc_tiled,
}


def kernel_source(op: str = "max", layout: str = "NCHW", kernel: str = "naive") -> str:
    """Python source of one kernel, e.g. ``kernel_source("max", "NCHW", "optimized")``.

    ``op`` is ``"max"``, ``"max_idx"`` or ``"avg"``; works on a GPU and on the simulator.
    """
    import inspect

    return inspect.getsource(KERNELS[(op, layout.upper(), kernel)].py_func)


# =====================================================================================
# Launch planning (host side, pure Python): every number comes from poolkit.config.
# =====================================================================================
def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class TilePlan:
    """How an optimized kernel splits one pooling problem into tiles.

    Attributes
    ----------
    layout : str
        ``"NCHW"`` or ``"NHWC"``.
    block : (int, int, int)
        Threads per block (x, y, z). NCHW: output columns, planes, output rows.
        NHWC: channels, output columns, output rows. (CUDA allows at most 64
        along z and 1024 in all.)
    outputs_per_thread : int
        Output rows each thread computes per tile (``RPT``).
    tile_out : (int, int)
        Output rows and columns per tile.
    tile_in : (int, int)
        Input rows and columns staged per tile: the tile plus its halo, clipped to
        the input (so padding is never stored).
    depth : int
        Planes (NCHW) or channels (NHWC) per tile.
    tiles : (int, int, int)
        Number of tiles along output rows, output columns and depth (plane groups
        in NCHW, channel tiles in NHWC; NHWC tiles also repeat per image).
    load_width : int
        Threads that copy one contiguous run in the load phase (``LW``/``LX``).
    shared_bytes : int
        Dynamic shared memory per block.
    items : int
        Tiles in the whole problem (work items of the grid-stride loop).
    grid : int
        Blocks launched.
    """

    layout: str
    block: tuple
    outputs_per_thread: int
    tile_out: tuple
    tile_in: tuple
    depth: int
    tiles: tuple
    load_width: int
    shared_bytes: int
    items: int
    grid: int

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


def _max_blocks() -> int:
    if config.GPU_MAX_BLOCKS is not None:
        return max(1, int(config.GPU_MAX_BLOCKS))
    try:
        sms = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # the simulator's fake device has no attributes
        sms = 2
    return max(1, sms * int(config.GPU_BLOCKS_PER_SM))


def _balanced(n: int, cap: int) -> int:
    """Largest block extent <= cap that splits ``n`` into equal-ish tiles (no idle tail)."""
    cap = max(1, min(cap, n))
    return _cdiv(n, _cdiv(n, cap))


def tile_extent(outputs: int, kernel: int, stride: int, dilation: int = 1, length: int | None = None) -> int:
    """Input cells (along one dimension) that ``outputs`` consecutive windows read.

    The tile of outputs plus its *halo*: ``(outputs - 1) * stride`` cells between the
    first and the last window's start, plus the last window's span
    ``(kernel - 1) * dilation + 1``. With ``length`` (the input size), clipped to it:
    the optimized kernels never stage more than the input has.

    >>> tile_extent(32, 3, 1)     # 32 outputs of a 3-wide stride-1 window: 32 + 2 halo cells
    34
    """
    ext = (outputs - 1) * stride + (kernel - 1) * dilation + 1
    return ext if length is None else min(length, ext)


def _tile_in(TO, S, K, D, L):
    return tile_extent(TO, K, S, D, L)


def plan_tiles(layout, x_shape, geom: G.PoolGeometry, itemsize: int, *, grid_cap: int | None = None):
    """Choose the tiling of an optimized kernel (``None`` if no tile fits in shared memory).

    ``x_shape`` is the batched 4-d shape in ``layout``. Pure arithmetic on
    :mod:`poolkit.config`'s settings; see :class:`TilePlan`.
    """
    (KH, KW), (SH, SW), (DH, DW) = geom.kernel, geom.stride, geom.dilation
    OH, OW = geom.out_size
    tpb = max(1, min(1024, int(config.GPU_TILE_THREADS)))
    opt = max(1, int(config.GPU_OUTPUTS_PER_THREAD))
    budget = int(config.GPU_SHARED_BYTES)
    cap = grid_cap if grid_cap is not None else _max_blocks()
    if layout == "NCHW":
        N, C, H, W = x_shape
        P = N * C
        BX = _balanced(OW, int(config.GPU_TILE_WIDTH))
        BR = max(1, min(OH, 64, tpb // BX))  # blockDim.z <= 64
        RPT = max(1, min(opt, _cdiv(OH, BR)))
        while True:
            # equal tile rows: no mostly-idle last tile
            tiles_h = _cdiv(OH, BR * RPT)
            rows = _cdiv(OH, tiles_h)
            RPT = _cdiv(rows, BR)
            BR = _cdiv(rows, RPT)
            TIH = _tile_in(BR * RPT, SH, KH, DH, H)
            TIW = _tile_in(BX, SW, KW, DW, W)
            per_plane = TIH * TIW * itemsize
            BP = max(1, min(P, tpb // (BX * BR)))
            if BP > 1:  # small planes: several per block, as many as shared memory allows
                BP = max(1, min(BP, budget // per_plane))
                if BP >= 64:
                    BP -= BP % 32  # whole warps
            if BP * per_plane <= budget:
                break
            if RPT > 1:
                RPT = _cdiv(RPT, 2)
            elif BR > 1:
                BR = _cdiv(BR, 2)
            elif BX > 1:
                BX = _cdiv(BX, 2)
            else:
                return None
        tiles_w = _cdiv(OW, BX)
        if BP > 1 and _cdiv(P, BP) * tiles_h * tiles_w < cap:
            # too few tiles to fill the GPU: fewer planes per block (down to a warp's worth)
            want = _cdiv(max(32, _cdiv(P, cap)), 32) * 32
            BP = max(1, min(BP, want))
        threads = BX * BR * BP
        items = _cdiv(P, BP) * tiles_h * tiles_w
        return TilePlan("NCHW", (BX, BP, BR), RPT, (BR * RPT, BX), (TIH, TIW), BP,
                        (tiles_h, tiles_w, _cdiv(P, BP)), min(TIW, threads),
                        BP * TIH * TIW * itemsize, items, max(1, min(items, cap)))
    if layout == "NHWC":
        N, H, W, C = x_shape
        ct0 = max(1, min(C, int(config.GPU_TILE_CHANNELS)))
        BY = _balanced(OW, max(1, tpb // ct0))
        BZ = max(1, min(OH, 64, tpb // (ct0 * BY)))  # blockDim.z <= 64
        RPT = max(1, min(opt, _cdiv(OH, BZ)))
        BX = max(1, min(C, max(ct0, tpb // (BY * BZ))))  # widen the channel tile for tiny outputs
        while True:
            tiles_h = _cdiv(OH, BZ * RPT)
            rows = _cdiv(OH, tiles_h)
            RPT = _cdiv(rows, BZ)
            BZ = _cdiv(rows, RPT)
            TIH = _tile_in(BZ * RPT, SH, KH, DH, H)
            TIW = _tile_in(BY, SW, KW, DW, W)
            per_channel = TIH * TIW * itemsize
            if BX * per_channel <= budget:
                break
            if BX > ct0:
                BX = max(ct0, min(BX // 2, budget // per_channel))
            elif RPT > 1:
                RPT = _cdiv(RPT, 2)
            elif BZ > 1:
                BZ = _cdiv(BZ, 2)
            elif BY > 1:
                BY = _cdiv(BY, 2)
            elif BX > 1:
                BX = max(1, min(BX // 2, budget // per_channel))
            else:
                return None
        tiles_w, tiles_c = _cdiv(OW, BY), _cdiv(C, BX)
        threads = BX * BY * BZ
        items = N * tiles_h * tiles_w * tiles_c
        return TilePlan("NHWC", (BX, BY, BZ), RPT, (BZ * RPT, BY), (TIH, TIW), BX,
                        (tiles_h, tiles_w, tiles_c), min(BX, threads),
                        TIH * TIW * BX * itemsize, items, max(1, min(items, cap)))
    raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")


def count_global_loads(x_shape, geom: G.PoolGeometry, layout="NCHW", kernel="optimized",
                       itemsize: int = 4) -> int:
    """Number of input elements a kernel reads from global memory (exact, computed).

    ``"naive"``: every in-bounds window tap of every output is one global load.
    ``"optimized"``: every staged tile cell is one global load (windows then read
    shared memory). Divide by the number of outputs for loads per output; the
    ideal is ``H*W / (OH*OW)`` (each input read once).
    """
    N, C = (x_shape[0], x_shape[1]) if layout == "NCHW" else (x_shape[0], x_shape[3])
    H, W = (x_shape[2], x_shape[3]) if layout == "NCHW" else (x_shape[1], x_shape[2])
    counts = []
    for i, L in enumerate((H, W)):
        o = np.arange(geom.out_size[i])
        taps = [len(G.window_range(int(v), L, geom.kernel[i], geom.stride[i], geom.padding[i],
                                   geom.dilation[i])[1]) for v in o]
        counts.append(np.asarray(taps, dtype=np.int64))
    if kernel == "naive":
        return int(N * C * counts[0].sum() * counts[1].sum())
    plan = plan_tiles(layout, x_shape, geom, itemsize, grid_cap=1)
    if plan is None:
        return count_global_loads(x_shape, geom, layout, "naive", itemsize)
    (TOH, TOW), (TIH, TIW) = plan.tile_out, plan.tile_in
    rows = sum(min(TIH, H - max(t * TOH * geom.stride[0] - geom.padding[0], 0))
               for t in range(plan.tiles[0]))
    cols = sum(min(TIW, W - max(t * TOW * geom.stride[1] - geom.padding[1], 0))
               for t in range(plan.tiles[1]))
    return int(N * C * rows * cols)


# =====================================================================================
# Host side: inputs, outputs, launches.
# =====================================================================================
@dataclass
class PreparedLaunch:
    """One kernel launch with its outputs allocated: ``run()`` launches it again.

    Made by :func:`prepare_max_pool2d` / :func:`prepare_avg_pool2d`; the GPU
    benchmark times ``run()`` alone (no argument checks, no allocation).
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
        for launch in self.pre:
            launch.run()
        if _RECORD is not None:
            import numba

            _RECORD.add((self.name, tuple(numba.typeof(a) for a in self.args)))
        self.kernel[self.griddim, self.blockdim, 0, self.shared_bytes](*self.args)
        return self.outputs


#: Set to a ``set()`` (tests do) to record ``(name, argument types)`` of every launch.
_RECORD = None


def _check_kernel(kernel, op):
    if not isinstance(kernel, str) or kernel not in _KERNEL_CHOICES:
        raise ValueError(f"{op}: kernel must be 'optimized' or 'naive', got {kernel!r}")
    return kernel


def _is_fake(x) -> bool:
    return type(x).__module__.startswith("numba.cuda.simulator")


def _shape_dtype(x, op):
    """Shape and dtype of a NumPy, Numba/CuPy/PyTorch CUDA or simulator array."""
    if isinstance(x, np.ndarray):
        return x.shape, x.dtype
    if _is_fake(x):
        return tuple(x.shape), np.dtype(x.dtype)
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        dtype = np.dtype(cai["typestr"])
        if not dtype.isnative:
            raise TypeError(f"{op}: x must be in native byte order on the GPU, got {dtype}")
        return tuple(cai["shape"]), dtype
    raise TypeError(
        f"{op}: x must be a NumPy array or a GPU array (an object with "
        f"__cuda_array_interface__), got {type(x).__name__}"
    )


class _CAIView:
    """A ``__cuda_array_interface__`` with another shape/strides over the same memory."""

    def __init__(self, base, shape, strides):
        self._base = base
        cai = dict(base.__cuda_array_interface__)
        cai["shape"] = tuple(shape)
        cai["strides"] = tuple(strides)
        cai.pop("mask", None)
        self.__cuda_array_interface__ = cai


def _add_batch_axis(d):
    """``d[None]`` for a device array (a view; no copy)."""
    if _is_fake(d):
        return d[None]
    if d.is_c_contiguous():
        return d.reshape((1,) + tuple(d.shape))
    strides = tuple(d.strides)
    return cuda.as_cuda_array(_CAIView(d, (1,) + tuple(d.shape), (strides[0] * d.shape[0],) + strides))


def _to_device_4d(x, batched, op):
    """A batched, C-contiguous device array holding ``x`` (NumPy input is copied in)."""
    if isinstance(x, np.ndarray):
        x = G.as_native_array(x, op)
        return cuda.to_device(np.ascontiguousarray(x if batched else x[None]))
    if _is_fake(x) or type(x).__module__.startswith("numba.cuda"):
        d = x  # a Numba device array (or the simulator's)
    else:
        d = cuda.as_cuda_array(x)  # CuPy, PyTorch, ...: a zero-copy view
    if not batched:
        d = _add_batch_axis(d)
    if not d.is_c_contiguous():
        # The optimized kernels index flat, contiguous memory: make a device copy.
        dst = cuda.device_array(tuple(d.shape), dtype=d.dtype)
        if dst.size:
            tpb = max(1, min(1024, int(config.GPU_THREADS_PER_BLOCK)))
            blocks = max(1, min(_cdiv(dst.size, tpb), _max_blocks()))
            if _RECORD is not None:
                import numba

                _RECORD.add(("copy_4d", (numba.typeof(d), numba.typeof(dst))))
            _copy_4d[blocks, tpb](d, dst)
        d = dst
    return d


def _flat(a):
    return a.reshape(int(np.prod(a.shape)))


def _out_shape(shape, g, cl):
    return (shape[0],) + g.out_size + (shape[3],) if cl else (shape[0], shape[1]) + g.out_size


def _prepare(op, xd, g, cl, kernel, *, count_include_pad=True, override=0, alloc=None, put=None):
    """Build the launch for batched, C-contiguous ``xd`` (device array, or NumPy for typing)."""
    alloc = alloc or (lambda shape, dtype: cuda.device_array(shape, dtype=dtype))
    put = put or cuda.to_device
    shape = tuple(int(v) for v in xd.shape)
    dtype = np.dtype(xd.dtype)
    layout = "NHWC" if cl else "NCHW"
    out_shape = _out_shape(shape, g, cl)
    out = alloc(out_shape, dtype)
    outputs = (out,)
    if op == "max_idx":
        outputs = (out, alloc(out_shape, np.int64))
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = g.kernel, g.stride, g.padding, g.dilation
    if op == "avg":
        div_h, div_w = (put(np.ascontiguousarray(t.astype(dtype))) for t in G.avg_divisor_table(g, count_include_pad))
        tail = (div_h, div_w, dtype.type(override), dtype.type(0))
        geo = (SH, SW, PH, PW, KH, KW)
    else:
        tail = (G.max_identity(dtype),)
        geo = (SH, SW, PH, PW, DH, DW, KH, KW)
    plan = plan_tiles(layout, shape, g, dtype.itemsize) if kernel == "optimized" else None
    if plan is None:  # naive requested, or no tile fits in shared memory
        total = int(np.prod(out_shape))
        tpb = max(1, min(1024, int(config.GPU_THREADS_PER_BLOCK)))
        return PreparedLaunch(f"{op}_{layout.lower()}_naive", KERNELS[(op, layout, "naive")],
                              max(1, _cdiv(total, tpb)), tpb, 0,
                              (xd,) + outputs + geo + tail, outputs)
    OH, OW = g.out_size
    flats = tuple(_flat(o) for o in outputs)
    tail = tail + (plan.outputs_per_thread, plan.tile_in[0], plan.tile_in[1], plan.load_width)
    if cl:
        N, H, W, C = shape
        head = (N, H, W, C, OH, OW)
        tiles = plan.tiles
    else:
        N, C, H, W = shape
        head = (N * C, H, W, OH, OW)
        tiles = plan.tiles[:2]
    args = (_flat(xd),) + flats + head + geo + tail + tuple(tiles)
    return PreparedLaunch(f"{op}_{layout.lower()}_tiled", KERNELS[(op, layout, "optimized")],
                          plan.grid, plan.block, plan.shared_bytes, args, outputs, plan)


def _input(x, op, layout, allow_int):
    shape, dtype = _shape_dtype(x, op)
    cl, batched, spatial = G.check_input(shape, dtype, 2, layout, op, allow_int=allow_int)
    name = "max_pool2d" if op == "max_pool2d" else "avg_pool2d"
    if dtype.name not in SUPPORTED_DTYPES[name]:
        raise TypeError(
            f"{op}: the GPU kernels support dtypes {', '.join(SUPPORTED_DTYPES[name])}; got {dtype} "
            "(cast with x.astype(...), or use the CPU functions)"
        )
    return shape, dtype, cl, batched, spatial


def prepare_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=False, *, layout="NCHW", kernel="optimized"):
    """Validate, move ``x`` to the device if needed, allocate outputs: a :class:`PreparedLaunch`.

    Same arguments as :func:`max_pool2d`. ``launch.run()`` launches the kernel and
    returns the device outputs ``(out,)`` or ``(out, indices)`` (batched shapes).
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    kernel = _check_kernel(kernel, op)
    shape, dtype, cl, batched, spatial = _input(x, op, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    _require_device(op)
    xd = _to_device_4d(x, batched, op)
    return _prepare("max_idx" if return_indices else "max", xd, g, cl, kernel)


def prepare_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, *, layout="NCHW",
                       kernel="optimized"):
    """Like :func:`prepare_max_pool2d`, for :func:`avg_pool2d`."""
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    kernel = _check_kernel(kernel, op)
    shape, dtype, cl, batched, spatial = _input(x, op, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    _require_device(op)
    xd = _to_device_4d(x, batched, op)
    return _prepare("avg", xd, g, cl, kernel, count_include_pad=count_include_pad, override=override)


def _run(op, x, g, cl, batched, kernel, **kw):
    """Launch on ``x`` (any accepted input); outputs shaped like ``x`` (unbatched too)."""
    host = isinstance(x, np.ndarray)
    shape, dtype = _shape_dtype(x, op)
    out_shape = _out_shape(tuple(shape) if batched else (1,) + tuple(shape), g, cl)
    if int(np.prod(out_shape)) == 0:  # N = 0: nothing to launch
        dtypes = (dtype, np.dtype(np.int64))[: 2 if op == "max_idx" else 1]
        make = np.empty if host else (lambda s, d: cuda.device_array(s, dtype=d))
        return [make(out_shape, d) for d in dtypes]
    xd = _to_device_4d(x, batched, op)
    outputs = _prepare(op, xd, g, cl, kernel, **kw).run()
    res = []
    for o in outputs:
        if host:
            o = o.copy_to_host()
            res.append(o if batched else o[0])
        else:
            res.append(o if batched else o.reshape(tuple(o.shape)[1:]))
    return res


# =====================================================================================
# Public API: the twins of poolkit.cpu.max_pool2d / avg_pool2d.
# =====================================================================================
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", kernel="optimized"):
    """2-D max pooling on a CUDA GPU (or Numba's CUDA simulator).

    Same arguments, results and semantics as :func:`poolkit.max_pool2d`.

    Parameters
    ----------
    x : array
        A GPU array -- any object with ``__cuda_array_interface__`` (Numba device
        array, CuPy array, PyTorch CUDA tensor) or, under the simulator, a Numba
        simulator device array -- or a NumPy array. float32, float64, int32
        or uint8 (``SUPPORTED_DTYPES``); ``(N, C, H, W)`` / ``(C, H, W)``, or
        ``(N, H, W, C)`` / ``(H, W, C)`` with ``layout="NHWC"``.
    kernel_size, stride, padding, dilation, ceil_mode, return_indices
        As in :func:`poolkit.max_pool2d`.
    layout : {"NCHW", "NHWC"}
        Keyword-only.
    kernel : {"optimized", "naive"}
        Keyword-only. ``"naive"``: one thread per output (lesson 05);
        ``"optimized"``: shared-memory tiles (lesson 06; see the module notes).

    Returns
    -------
    out : array (and ``indices``, int64, if ``return_indices``)
        For GPU input a Numba device array (zero-copy viewable from CuPy/PyTorch
        via ``__cuda_array_interface__``); nothing is copied to the host. For NumPy
        input a NumPy array (copied in and out).

    Raises
    ------
    TypeError, ValueError
        Bad arguments, before anything touches the GPU.
    CudaUnavailableError
        No CUDA device and no simulator.

    Notes
    -----
    Kernels run on Numba's default stream; a non-contiguous device input is
    copied to a contiguous device array first.

    Examples
    --------
    Needs a GPU or ``NUMBA_ENABLE_CUDASIM=1``:

    >>> import numpy as np                                   # doctest: +SKIP
    >>> from numba import cuda                               # doctest: +SKIP
    >>> from poolkit import gpu                              # doctest: +SKIP
    >>> x = cuda.to_device(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))  # doctest: +SKIP
    >>> gpu.max_pool2d(x, 2).copy_to_host()[0, 0]            # doctest: +SKIP
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)

    See Also
    --------
    poolkit.cpu.max_pool2d : the CPU twin.
    poolkit.reference.max_pool2d : the plain-loop specification.
    poolkit.max_pool2d : dispatches here for GPU arrays.
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    kernel = _check_kernel(kernel, op)
    shape, dtype, cl, batched, spatial = _input(x, op, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    _require_device(op)
    res = _run("max_idx" if return_indices else "max", x, g, cl, batched, kernel)
    return tuple(res) if return_indices else res[0]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW",
               kernel="optimized"):
    """2-D average pooling on a CUDA GPU (or Numba's CUDA simulator).

    Same arguments, results and semantics as :func:`poolkit.avg_pool2d`; ``x``
    and the result as in :func:`max_pool2d` (float32 or float64 only).
    ``kernel`` (keyword-only) is ``"optimized"`` or ``"naive"``.

    The sum is taken in the input dtype in scan order and divided by a divisor
    of the input dtype, so the result equals :func:`poolkit.reference.avg_pool2d`
    bit for bit.

    Examples
    --------
    NumPy in, NumPy out (needs a GPU or ``NUMBA_ENABLE_CUDASIM=1``):

    >>> import numpy as np                                   # doctest: +SKIP
    >>> from poolkit import gpu                              # doctest: +SKIP
    >>> gpu.avg_pool2d(np.arange(16.).reshape(1, 1, 4, 4), 2)[0, 0]  # doctest: +SKIP
    array([[ 2.5,  4.5],
           [10.5, 12.5]])

    See Also
    --------
    poolkit.cpu.avg_pool2d : the CPU twin.
    poolkit.reference.avg_pool2d : the plain-loop specification.
    poolkit.avg_pool2d : dispatches here for GPU arrays.
    """
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    kernel = _check_kernel(kernel, op)
    shape, dtype, cl, batched, spatial = _input(x, op, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    _require_device(op)
    return _run("avg", x, g, cl, batched, kernel, count_include_pad=count_include_pad,
                override=override)[0]


# =====================================================================================
# Every compiled specialization we ship (the PTX tests compile each one).
# =====================================================================================
def kernel_specializations():
    """``[(name, python function, argument types)]`` for every kernel poolkit launches.

    Built by preparing real launches on small NumPy stand-ins (so the argument
    types are exactly those :func:`max_pool2d`/:func:`avg_pool2d` pass), for every
    op, layout, kernel stage and supported dtype, plus the contiguous-copy kernel.
    """
    import numba
    from numba import types

    specs = {}
    geom = G.make_geometry("spec", (5, 5), 3, 2, 1, 1, False)
    for layout in ("NCHW", "NHWC"):
        cl = layout == "NHWC"
        shape = (1, 5, 5, 2) if cl else (1, 2, 5, 5)
        for name, ops in (("max_pool2d", ("max", "max_idx")), ("avg_pool2d", ("avg",))):
            for dt in SUPPORTED_DTYPES[name]:
                x = np.zeros(shape, dtype=dt)
                for op in ops:
                    for stage in _KERNEL_CHOICES:
                        launch = _prepare(op, x, geom, cl, stage, alloc=lambda s, d: np.zeros(s, d),
                                          put=np.asarray)
                        sig = tuple(numba.typeof(a) for a in launch.args)
                        specs[(launch.name, sig)] = launch.kernel.py_func
    for dt in sorted(set(SUPPORTED_DTYPES["max_pool2d"]) | set(SUPPORTED_DTYPES["avg_pool2d"])):
        nb = numba.from_dtype(np.dtype(dt))
        sig = (types.Array(nb, 4, "A"), types.Array(nb, 4, "C"))
        specs[("copy_4d", sig)] = _copy_4d.py_func
    return [(name, fn, sig) for (name, sig), fn in specs.items()]


# The rest of the pooling family (1-d, 3-d, adaptive, global, Lp, unpooling) and every backward.
from .gpu_nd import *  # noqa: E402,F401,F403  (the rest of the pooling family and every backward)
