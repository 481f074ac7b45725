"""The optimized 2-D pooling kernels (lesson 06): shared-memory tiles with halos.

Pooling is memory-bound: a kernel is as fast as the bytes it moves, so the goal is
to read every input byte from DRAM once, in wide transactions, and keep the
arithmetic per byte small. The kernels here do it with:

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
* **Tiles shaped to the problem** (:func:`poolkit.gpu.plan.plan_tiles` chooses
  them). NCHW blocks are ``(BX, BP, BR)``: output columns, planes, output rows;
  when a whole output plane is smaller than a block, ``BP`` planes share a tile
  and the block's load is one contiguous sweep. NHWC blocks are ``(BX, BY, BZ)``:
  channels (contiguous), output columns, output rows.
* **Grid-stride loops.** Each block loops over tiles (``item += gridDim.x``), so
  the launch size does not depend on the problem size.
* **Flat, contiguous indexing.** The kernels take 1-D views of C-contiguous arrays
  and compute offsets themselves, hoisting the row base out of the inner loop.

**One kernel factory per layout.** The load phase (tile + halo, coalesced) is the
same whatever the window computes, so it is written once per layout, in
:func:`nchw_tiled` and :func:`nhwc_tiled`. Each factory takes the reduction --
``"max"``, ``"max_idx"`` (max and its flat index) or ``"avg"`` -- as a
compile-time choice: the flags ``AVG`` and ``WITH_INDEX`` are constants of the
closure, so Numba compiles only the branch that reduction takes (the PTX of
``nchw_tiled("max")`` is that of a hand-written max kernel). The three kernels of
a layout therefore share one argument list; a reduction ignores what it does not
use (the host passes ``outf``/``init`` there): ``idxf`` (max_idx only),
``div_h``/``div_w``/``override`` (avg only), and ``DH``/``DW`` for avg, which has
no dilation (its window step is the constant 1).

Semantics are exactly those of :mod:`poolkit.reference` (the max steps of
:mod:`poolkit.gpu.rules`; avg sums in the input dtype in scan order, row by row,
and divides once). No ``fastmath``. Kernels compile lazily, on first launch.
"""
import functools

from numba import cuda

from .rules import max_index_wins, max_wins

__all__ = ["REDUCTIONS", "nchw_tiled", "nhwc_tiled"]

#: The reductions a tiled kernel can compute.
REDUCTIONS = ("max", "max_idx", "avg")


def _flags(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction == "avg", reduction == "max_idx"


@functools.lru_cache(maxsize=None)
def nchw_tiled(reduction):
    """The tiled NCHW kernel for ``reduction`` (``"max"``, ``"max_idx"`` or ``"avg"``).

    Block ``(BX, BP, BR)``: ``tx`` indexes the output column, ``tp`` the plane
    within a group of ``BP`` planes and ``tr`` the output row (the thread computes
    rows ``tr, tr+BR, ...``, ``RPT`` of them). Work items (plane group, tile row,
    tile col) are visited with a grid-stride loop. ``xf``/``outf``/``idxf`` are flat
    views of C-contiguous ``(N*C, H, W)`` / ``(N*C, OH, OW)`` arrays.

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
    AVG, WITH_INDEX = _flags(reduction)

    @cuda.jit
    def kernel(xf, outf, idxf, P, H, W, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
               div_h, div_w, override, RPT, TIH, TIW, LW, tiles_h, tiles_w):
        sh = cuda.shared.array(0, dtype=xf.dtype)
        tx = cuda.threadIdx.x
        tp = cuda.threadIdx.y
        tr = cuda.threadIdx.z
        BX = cuda.blockDim.x
        BP = cuda.blockDim.y
        BR = cuda.blockDim.z
        TOH = BR * RPT
        dh = 1 if AVG else DH  # average pooling has no dilation: a constant step
        dw = 1 if AVG else DW
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
            # -- reduce phase: each thread scans the windows of its RPT outputs --
            p = p0 + tp
            ow = ow0 + tx
            if p < P and ow < OW:
                ws = ow * SW - PW
                srow = tp * TIH - ih0
                div_ow = div_w[ow] if AVG else init
                for r in range(RPT):
                    oh = oh0 + tr + r * BR
                    if oh < OH:
                        hs = oh * SH - PH
                        acc = init  # the running max, or the sum (init = 0)
                        mi = -1
                        for kh in range(KH):
                            ih = hs + kh * dh
                            if ih >= 0 and ih < H:
                                base = (srow + ih) * TIW - iw0
                                for kw in range(KW):
                                    iw = ws + kw * dw
                                    if iw >= 0 and iw < W:
                                        v = sh[base + iw]
                                        if AVG:
                                            acc += v
                                        elif WITH_INDEX:
                                            if max_index_wins(v, acc, mi):
                                                acc = v
                                                mi = ih * W + iw
                                        elif max_wins(v, acc):
                                            acc = v
                        o = (p * OH + oh) * OW + ow
                        if AVG:
                            d = override if override > 0 else div_h[oh] * div_ow
                            outf[o] = acc / d
                        else:
                            outf[o] = acc
                            if WITH_INDEX:
                                idxf[o] = mi

    return kernel


@functools.lru_cache(maxsize=None)
def nhwc_tiled(reduction):
    """The tiled NHWC kernel for ``reduction`` (``"max"``, ``"max_idx"`` or ``"avg"``).

    Block ``(BX, BY, BZ)``: ``tx`` indexes the channel within a tile of ``BX``
    channels (contiguous in memory: conflict-free shared reads, coalesced global
    writes), ``ty`` the output column and ``tz`` the output row (each thread
    computes rows ``tz, tz+BZ, ...``, ``RPT`` of them). Work items (image, tile row,
    tile col, channel tile) are visited with a grid-stride loop; ``xf``/``outf``/
    ``idxf`` are flat views of C-contiguous ``(N, H, W, C)`` / ``(N, OH, OW, C)``
    arrays.

    Load phase: pixels ``[ih0, ih0+TIH) x [iw0, iw0+TIW)``, channels
    ``[c0, c0+CT)`` go to ``sh[(i*TIW + j)*CT + cc]``; groups of ``LX`` threads copy
    the contiguous channel run of one pixel (coalesced), ``LY`` pixels at a time.
    With ``CT == C`` the pixels of a tile row are adjacent in memory too. The reduce
    phase is as in :func:`nchw_tiled`.
    """
    AVG, WITH_INDEX = _flags(reduction)

    @cuda.jit
    def kernel(xf, outf, idxf, N, H, W, C, OH, OW, SH, SW, PH, PW, DH, DW, KH, KW, init,
               div_h, div_w, override, RPT, TIH, TIW, LX, tiles_h, tiles_w, tiles_c):
        sh = cuda.shared.array(0, dtype=xf.dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tz = cuda.threadIdx.z
        CT = cuda.blockDim.x
        BY = cuda.blockDim.y
        BZ = cuda.blockDim.z
        TOH = BZ * RPT
        dh = 1 if AVG else DH  # average pooling has no dilation: a constant step
        dw = 1 if AVG else DW
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
            # -- reduce phase: each thread scans the windows of its RPT outputs --
            c = c0 + tx
            ow = ow0 + ty
            if c < C and ow < OW:
                ws = ow * SW - PW
                div_ow = div_w[ow] if AVG else init
                for r in range(RPT):
                    oh = oh0 + tz + r * BZ
                    if oh < OH:
                        hs = oh * SH - PH
                        acc = init  # the running max, or the sum (init = 0)
                        mi = -1
                        for kh in range(KH):
                            ih = hs + kh * dh
                            if ih >= 0 and ih < H:
                                base = (ih - ih0) * TIW - iw0
                                for kw in range(KW):
                                    iw = ws + kw * dw
                                    if iw >= 0 and iw < W:
                                        v = sh[(base + iw) * CT + tx]
                                        if AVG:
                                            acc += v
                                        elif WITH_INDEX:
                                            if max_index_wins(v, acc, mi):
                                                acc = v
                                                mi = ih * W + iw
                                        elif max_wins(v, acc):
                                            acc = v
                        o = ((n * OH + oh) * OW + ow) * C + c
                        if AVG:
                            d = override if override > 0 else div_h[oh] * div_ow
                            outf[o] = acc / d
                        else:
                            outf[o] = acc
                            if WITH_INDEX:
                                idxf[o] = mi

    return kernel
