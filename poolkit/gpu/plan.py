"""Launch planning for the optimized 2-D kernels: pure-Python tiling arithmetic.

:func:`plan_tiles` chooses how a :mod:`poolkit.gpu.tiled2d` kernel splits one
pooling problem into tiles (a :class:`TilePlan`); :func:`tile_extent` and
:func:`count_global_loads` are the arithmetic lesson 06 teaches (input cells per
tile with its halo; global loads of the naive and tiled kernels). Every number
comes from :mod:`poolkit.config`:

* NCHW blocks are ``(BX, BP, BR)``: ``BX`` threads along the output row
  (<= ``config.GPU_TILE_WIDTH``, rounded so the row splits into equal tiles), ``BR``
  output rows (``blockDim.z`` is limited to 64) and -- when a whole output plane is
  smaller than a block (the 7x7 global average of a ResNet head) -- ``BP`` planes
  per tile. NHWC blocks are ``(BX, BY, BZ)``: channels (contiguous), output columns,
  output rows; the channel tile widens when the spatial output is tiny. When there
  are too few tiles to fill the GPU, tiles get fewer planes.
* Shared memory per block stays under ``config.GPU_SHARED_BYTES`` (48 KiB) by
  shrinking the tile; a window too large for even a one-output tile gets no plan
  (``None``) and the naive kernel runs instead. So does a window far larger than
  the input (:func:`poolkit.geometry.large_window`): the tiled kernels loop over
  every tap of a window, and :mod:`poolkit.gpu.ops` runs such windows on the 5-D
  kernels, which visit the in-range taps only.
* The grid has at most ``config.GPU_BLOCKS_PER_SM`` blocks per multiprocessor
  (:func:`max_blocks`); each block loops over tiles.

No Numba here (only :func:`max_blocks` asks the device for its multiprocessor count,
and only when no ``grid_cap`` is given): the plans can be computed and taught
without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import config
from .. import geometry as G

__all__ = ["TilePlan", "plan_tiles", "tile_extent", "count_global_loads", "cdiv", "balanced",
           "max_blocks"]


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive ints."""
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


def max_blocks() -> int:
    """Most blocks a grid-stride launch uses: ``config.GPU_MAX_BLOCKS``, else
    ``config.GPU_BLOCKS_PER_SM`` per multiprocessor of the current device."""
    if config.GPU_MAX_BLOCKS is not None:
        return max(1, int(config.GPU_MAX_BLOCKS))
    return max(1, _multiprocessors() * int(config.GPU_BLOCKS_PER_SM))


def _multiprocessors() -> int:
    # The one place this module touches Numba: only when a launch needs the device's
    # size. Imported here, not at the top, so the tiling math runs without Numba.
    from numba import cuda

    try:
        return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
    except Exception:  # the simulator's fake device has no attributes
        return 2


def balanced(n: int, cap: int) -> int:
    """Largest block extent <= cap that splits ``n`` into equal-ish tiles (no idle tail)."""
    cap = max(1, min(cap, n))
    return cdiv(n, cdiv(n, cap))


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
    if G.large_window(geom):
        return None
    (KH, KW), (SH, SW), (DH, DW) = geom.kernel, geom.stride, geom.dilation
    OH, OW = geom.out_size
    tpb = max(1, min(1024, int(config.GPU_TILE_THREADS)))
    opt = max(1, int(config.GPU_OUTPUTS_PER_THREAD))
    budget = int(config.GPU_SHARED_BYTES)
    cap = grid_cap if grid_cap is not None else max_blocks()
    if layout == "NCHW":
        N, C, H, W = x_shape
        P = N * C
        BX = balanced(OW, int(config.GPU_TILE_WIDTH))
        BR = max(1, min(OH, 64, tpb // BX))  # blockDim.z <= 64
        RPT = max(1, min(opt, cdiv(OH, BR)))
        while True:
            # equal tile rows: no mostly-idle last tile
            tiles_h = cdiv(OH, BR * RPT)
            rows = cdiv(OH, tiles_h)
            RPT = cdiv(rows, BR)
            BR = cdiv(rows, RPT)
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
                RPT = cdiv(RPT, 2)
            elif BR > 1:
                BR = cdiv(BR, 2)
            elif BX > 1:
                BX = cdiv(BX, 2)
            else:
                return None
        tiles_w = cdiv(OW, BX)
        if BP > 1 and cdiv(P, BP) * tiles_h * tiles_w < cap:
            # too few tiles to fill the GPU: fewer planes per block (down to a warp's worth)
            want = cdiv(max(32, cdiv(P, cap)), 32) * 32
            BP = max(1, min(BP, want))
        threads = BX * BR * BP
        items = cdiv(P, BP) * tiles_h * tiles_w
        return TilePlan("NCHW", (BX, BP, BR), RPT, (BR * RPT, BX), (TIH, TIW), BP,
                        (tiles_h, tiles_w, cdiv(P, BP)), min(TIW, threads),
                        BP * TIH * TIW * itemsize, items, max(1, min(items, cap)))
    if layout == "NHWC":
        N, H, W, C = x_shape
        ct0 = max(1, min(C, int(config.GPU_TILE_CHANNELS)))
        BY = balanced(OW, max(1, tpb // ct0))
        BZ = max(1, min(OH, 64, tpb // (ct0 * BY)))  # blockDim.z <= 64
        RPT = max(1, min(opt, cdiv(OH, BZ)))
        BX = max(1, min(C, max(ct0, tpb // (BY * BZ))))  # widen the channel tile for tiny outputs
        while True:
            tiles_h = cdiv(OH, BZ * RPT)
            rows = cdiv(OH, tiles_h)
            RPT = cdiv(rows, BZ)
            BZ = cdiv(rows, RPT)
            TIH = _tile_in(BZ * RPT, SH, KH, DH, H)
            TIW = _tile_in(BY, SW, KW, DW, W)
            per_channel = TIH * TIW * itemsize
            if BX * per_channel <= budget:
                break
            if BX > ct0:
                BX = max(ct0, min(BX // 2, budget // per_channel))
            elif RPT > 1:
                RPT = cdiv(RPT, 2)
            elif BZ > 1:
                BZ = cdiv(BZ, 2)
            elif BY > 1:
                BY = cdiv(BY, 2)
            elif BX > 1:
                BX = max(1, min(BX // 2, budget // per_channel))
            else:
                return None
        tiles_w, tiles_c = cdiv(OW, BY), cdiv(C, BX)
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
        taps = [G.tap_range(o * geom.stride[i] - geom.padding[i], L, geom.kernel[i], geom.dilation[i])
                for o in range(geom.out_size[i])]  # in-range taps per window, O(1) each
        counts.append(np.asarray([j1 - j0 for j0, j1 in taps], dtype=np.int64))
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
