"""Pooling on Dask arrays: the CPU kernels, one block at a time, for rasters larger than memory.

``poolkit.dask.max_pool2d`` and ``poolkit.dask.avg_pool2d`` take a
``dask.array.Array`` (chunked along any axes: batch, channel, spatial) and
return a *lazy* Dask array with the same values, bit for bit, as in-memory
poolkit on the computed input. Nothing is computed until you call
``.compute()``, ``.store(...)``, ``.to_zarr(...)`` and so on; each output block
is then computed by a :mod:`poolkit.cpu` kernel on a small piece of the input,
on Dask's threaded scheduler or on a ``dask.distributed`` cluster. The top-level
``poolkit.max_pool2d(x)`` sends Dask arrays here (see :mod:`poolkit.functional`).

How the blocks are cut (halos)
------------------------------
Batch and channel chunks carry over unchanged: pooling never mixes them.
Along each spatial axis, output position ``o`` reads the input cells
``o*s - p + j*d`` for ``j < k``. Each output block collects the windows whose
*last* cell (clipped to the array) lies in one input chunk, so an output block
is about ``chunk / stride`` long. Its input slice is that chunk plus a **halo**:
the ``d*(k-1) + 1 - s`` cells (if positive) that its first windows read from the
chunk before, clipped to the array. :func:`block_plan` lists these ranges.

The graph has one task per input chunk (:func:`chunk_task`). It depends on
the chunk alone -- so Dask fuses it with the task that makes or reads the chunk,
and the chunk lives only inside that one task -- and it

* pools the block whose windows end in this chunk on the chunk *as it is*
  (C-contiguous chunks are what the kernels are fastest on), treating the
  cells before the chunk as padding: right for the bulk of the block and at the
  array's true edges, wrong only for the first rows/columns that read the halo;
* cuts *copies* of the thin halo strips (rows, columns, a corner) that the
  blocks after it read.

A small :func:`_halo_task` per block then recomputes those first rows and
columns from the strips; it is the output block itself. Because a block needs only
its own chunk and strips of earlier chunks, no chunk ever waits in memory for a chunk
not made yet. (Assigning windows by their *first* cell instead would make each block
wait for the next chunk row.) The graph has a few tasks per chunk, each with at most
five dependencies, and nothing links distant blocks, so building, ordering and
running it are linear in the number of chunks (16,384 chunks: seconds, not minutes).
Until issue 13 the halo tasks were chained in row-major order to make Dask's static
ordering sweep the array forwards; that made ``dask.order`` quadratic in the number
of chunks (6 GB and 285 s for 16,384 chunks). Without the chain Dask's ordering
finishes the first block rows early, so while the rest of the array streams, about
one row of blocks may wait for its halo strips (see Memory below).

Each kernel call gets a *local* padding -- taken from the array's padding only
where its input touches the true edge of the array -- so ``-inf`` (max) and
zero (avg) padding, the average divisor (a slice of
:func:`poolkit.geometry.avg_divisor_table` for the whole array), ceil_mode and
dilation all follow the global geometry, never chunk edges. Indices from
``return_indices`` are converted to global flat ``(H, W)``-plane indices. Each
block runs :func:`poolkit.cpu.run_max_pool2d` / :func:`poolkit.cpu.run_avg_pool2d`
(the kernels of an in-memory call, which all sum a window in PyTorch's order),
so results are bit for bit equal to in-memory poolkit.

Why halos and not a rechunk: rechunking to window-aligned chunks rewrites the
whole array (every byte is copied once more and whole chunks move between
workers), while a halo costs ``(d*(k-1) + 1 - s) / chunk`` extra reads -- under
1 % for a 3x3 stride-2 window on 1024-cell chunks -- and nothing at all for
non-overlapping windows (``d*(k-1) + 1 <= s``) on chunks that are multiples of
the stride. And unlike :func:`dask.array.map_overlap`, the halo is one-sided
and stride-aware, and padding is never added at interior chunk edges.

Why serial kernels: Dask already runs one task per thread (or per worker
thread); the kernels are compiled with ``nogil=True``, so blocks run truly in
parallel, and nesting Numba's own thread pool inside Dask's threads would
oversubscribe the cores.

Memory: one kernel call reads at most one chunk, or ``chunk + d*(k-1)`` cells
per spatial axis of glued strips (see :func:`block_plan`). A computation that
streams its result out (``da.store`` to disk, or a reduction) holds a few chunks
per thread, plus, for overlapping windows, up to one row of blocks waiting for their
halo strips (their outputs, about ``1/stride**2`` of a chunk each) and one row of thin
strips: bounded by a row of the array, not by the array
(``benchmarks/dask_bench.py`` and ``benchmarks/RESULTS_dask.md`` measure it). Windows larger than a chunk make
blocks read more than a chunk; for a window over a whole huge plane use a Dask
reduction such as ``x.max(axis=(-2, -1))`` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import cpu
from . import geometry as G

__all__ = ["max_pool2d", "avg_pool2d", "block_plan", "BlockRange", "axis_plan", "chunk_task"]


class BlockRange(NamedTuple):
    """One output block along one spatial axis and the input cells it reads.

    Output positions ``out_start <= o < out_stop`` read input cells
    ``in_start <= i < in_stop`` (already clipped to the array; padding is
    implicit).
    """

    out_start: int
    out_stop: int
    in_start: int
    in_stop: int


def axis_plan(chunks, L, k, s, p, d, out_len) -> tuple[BlockRange, ...]:
    """Cut one spatial axis into output blocks: one per input chunk that holds window ends."""
    eff = d * (k - 1) + 1
    bounds = np.cumsum((0,) + tuple(int(c) for c in chunks))
    cuts = [0]
    for b in bounds[1:-1]:
        # first output whose window's last cell, o*s - p + eff - 1 (clipped to L - 1), is >= b
        o = max(0, -(-(int(b) + p - eff + 1) // s))
        if cuts[-1] < o < out_len:
            cuts.append(o)
    cuts.append(out_len)
    return tuple(
        BlockRange(o0, o1, max(0, o0 * s - p), min(L, (o1 - 1) * s - p + eff))
        for o0, o1 in zip(cuts[:-1], cuts[1:])
    )


# --------------------------------------------------------------------- validation
def _check_dask(x, op: str):
    if not isinstance(x, da.Array):
        raise TypeError(f"{op}: x must be a dask.array.Array, got {type(x).__name__} "
                        f"(use poolkit.{op} for NumPy or GPU arrays)")
    meta = getattr(x, "_meta", None)
    if meta is not None and (not isinstance(meta, np.ndarray) or isinstance(meta, np.ma.MaskedArray)):
        raise TypeError(f"{op}: x must be a Dask array of NumPy chunks, got chunks of type "
                        f"{type(meta).__module__}.{type(meta).__name__}")
    if any(np.isnan(c) for axis in x.chunks for c in axis):
        raise ValueError(f"{op}: x has unknown chunk sizes (shape {x.shape}); "
                         f"call x.compute_chunk_sizes() first")


def _prepare(x, op, layout, allow_int):
    _check_dask(x, op)
    channels_last, batched, spatial = G.check_input(x.shape, x.dtype, 2, layout, op, allow_int=allow_int)
    if not batched:
        x = x[None]
    return x, channels_last, batched, spatial


def _spatial_axes(channels_last: bool) -> tuple[int, int]:
    return (1, 2) if channels_last else (2, 3)


def block_plan(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, layout="NCHW"):
    """The halo plan: which input cells each output block reads, per spatial axis.

    Parameters
    ----------
    x : dask.array.Array
        The input, as for :func:`max_pool2d` (only its shape, dtype and chunks are used).
    kernel_size, stride, padding, dilation, ceil_mode, layout
        As for :func:`max_pool2d` (use ``dilation=1`` for average pooling).

    Returns
    -------
    (rows, cols) : tuple of two tuples of :class:`BlockRange`
        One entry per output block along H and along W. An output block reads at
        most ``max(chunk) + dilation*(kernel_size-1)`` cells along an axis.

    Examples
    --------
    >>> import dask.array as da, poolkit.dask
    >>> x = da.zeros((1, 1, 10, 10), chunks=(1, 1, 5, 5))
    >>> rows, cols = poolkit.dask.block_plan(x, 3, 2, 1)
    >>> for b in rows:
    ...     print(b)
    BlockRange(out_start=0, out_stop=2, in_start=0, in_stop=4)
    BlockRange(out_start=2, out_stop=5, in_start=3, in_stop=10)

    See Also
    --------
    poolkit.geometry.window_range : the cells one output position reads.
    """
    op = "block_plan"
    x, cl, _, spatial = _prepare(x, op, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    return _plan(x, g, cl)


def _plan(x, g, channels_last):
    axes = _spatial_axes(channels_last)
    return tuple(
        axis_plan(x.chunks[ax], g.in_size[i], g.kernel[i], g.stride[i], g.padding[i],
                   g.dilation[i], g.out_size[i])
        for i, ax in enumerate(axes)
    )


# --------------------------------------------------------------------- block tasks
@dataclass(frozen=True)
class _BlockSpec:
    """Everything a block task needs besides its input pieces (opaque to Dask)."""

    kind: str                 # "max", "max_idx" or "avg"
    channels_last: bool
    out_shape: tuple          # shape of this output block
    dtype: np.dtype           # native output dtype
    rows: BlockRange          # this block's outputs and input cells along H
    cols: BlockRange          # ... and along W
    stride: tuple
    padding: tuple            # the whole array's padding (applied only at its edges)
    dilation: tuple
    kernel: tuple
    in_width: int = 0         # global W (for global flat indices)
    heights: tuple = ()       # rows of each input piece the block reads (the last: its own chunk)
    widths: tuple = ()        # columns of each input piece the block reads
    div_h: np.ndarray | None = None
    div_w: np.ndarray | None = None
    override: int = 0
    omit: bool = False        # nan_policy="omit" (float input)
    omit_tables: tuple = ()   # avg + omit: this block's (full_h, full_w, in_h, in_w) int64 counts


def _assemble(pieces, axes):
    """Glue a [rows][cols] nested list of pieces into one array (no copy for a single piece)."""
    rows = [p[0] if len(p) == 1 else np.concatenate(p, axis=axes[1]) for p in pieces]
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=axes[0])


def _sub(a, channels_last, rows=slice(None), cols=slice(None)):
    """``a[rows, cols]`` along the spatial axes of a 4-d block."""
    return a[:, rows, cols] if channels_last else a[:, :, rows, cols]


def _halo_count(block, sizes, s, p):
    """How many of a block's first outputs along one axis read cells before its own chunk
    (the last of the ``sizes`` of the pieces it reads)."""
    if len(sizes) == 1:
        return 0
    own_start = block.in_start + sum(sizes[:-1])
    r = -(-(own_start + p) // s) - block.out_start  # outputs whose window starts before own_start
    return max(0, min(block.out_stop - block.out_start, r))


def _span(block, lo, hi, s, p, eff):
    """Input cells ``[g0, g1)`` read by the block's outputs ``[lo, hi)`` and the padding before g0."""
    start = (block.out_start + lo) * s - p  # first window's start (may be in the padding)
    g0 = max(block.in_start, start)
    g1 = min(block.in_stop, (block.out_start + hi - 1) * s - p + eff)
    return g0, g1, g0 - start


class _Layout(NamedTuple):
    """Where a block's halo regions are: see :func:`chunk_task`."""

    rh: int       # first rows of outputs that read the halo above
    rw: int       # first columns of outputs that read the halo on the left
    need_h: int   # rows of the own chunk that those first output rows read
    need_w: int   # columns of the own chunk that those first output columns read
    own_h: int    # global row of the own chunk's first cell
    own_w: int    # global column of the own chunk's first cell


def _layout(spec) -> _Layout:
    eff = [d * (k - 1) + 1 for d, k in zip(spec.dilation, spec.kernel)]
    rh = _halo_count(spec.rows, spec.heights, spec.stride[0], spec.padding[0])
    rw = _halo_count(spec.cols, spec.widths, spec.stride[1], spec.padding[1])
    own_h = spec.rows.in_start + sum(spec.heights[:-1])
    own_w = spec.cols.in_start + sum(spec.widths[:-1])
    need_h = need_w = 0
    if rh:
        need_h = max(0, _span(spec.rows, 0, rh, spec.stride[0], spec.padding[0], eff[0])[1] - own_h)
    if rw:
        need_w = max(0, _span(spec.cols, 0, rw, spec.stride[1], spec.padding[1], eff[1])[1] - own_w)
    return _Layout(rh, rw, need_h, need_w, own_h, own_w)


def chunk_task(chunk, own, spec, strips):
    """Everything one input chunk is needed for, so that it can be freed right after.

    A block's outputs fall into the bulk, whose windows lie inside the block's own
    chunk, and the first output rows and columns, whose windows reach into the
    halo above and on the left. This task

    * allocates the block's output and pools it on the chunk *as it is* (no
      copy, no view: the kernels are fastest on the C-contiguous chunk a source
      delivers), treating the cells before the chunk as padding -- right for the
      bulk, and right at the array's edges; the first rows and columns, wrong
      where they read the halo, are then overwritten by :func:`_halo_task`;
    * copies the first rows and columns of the chunk that the halo regions read;
    * copies the ``strips`` ``(h0, h1, w0, w1)`` that later blocks read from it.

    ``own = (h0, h1, w0, w1)`` is the part of the chunk the block reads; ``spec``
    is None for a chunk that holds no window ends (it only gives strips). Returns
    ``(out, indices, strips, own_top, own_left)``. The task depends on nothing but
    its chunk, so Dask fuses it with the task that makes (or reads) the chunk:
    the chunk lives only inside this one task.
    """
    cut = tuple(np.array(_sub(chunk, cl, slice(h0, h1), slice(w0, w1)), copy=True)
                for h0, h1, w0, w1, cl in strips)
    if spec is None:
        return None, None, cut, None, None
    cl = spec.channels_last
    out = np.empty(spec.out_shape, dtype=spec.dtype)
    idx = np.empty(spec.out_shape, dtype=np.int64) if spec.kind == "max_idx" else None
    lay = _layout(spec)
    oh, ow = spec.rows.out_stop - spec.rows.out_start, spec.cols.out_stop - spec.cols.out_start
    # per axis: where the kernel's input starts (local to the chunk) and its padding
    origin, trim, pads = [], [], []
    for block, lo, own_start, axis in ((spec.rows, own[0], lay.own_h, 0), (spec.cols, own[2], lay.own_w, 1)):
        chunk_start = own_start - lo
        first = block.out_start * spec.stride[axis] - spec.padding[axis]  # first window's start
        if first <= chunk_start:  # the whole chunk, the cells before it taken as padding
            origin.append(chunk_start), trim.append(0), pads.append(chunk_start - first)
        else:  # the block starts inside the chunk: skip the cells only earlier blocks read
            origin.append(own_start), trim.append(lo), pads.append(own_start - first)
    x = chunk if trim == [0, 0] else _sub(chunk, cl, slice(trim[0], None), slice(trim[1], None))
    if out.size:
        _kernel_into(x, origin[0], origin[1], tuple(pads), spec, out, idx, 0, oh, 0, ow)
    mine = _sub(chunk, cl, slice(own[0], own[1]), slice(own[2], own[3]))
    top = np.array(_sub(mine, cl, rows=slice(0, lay.need_h)), copy=True) if lay.need_h else None
    left = np.array(_sub(mine, cl, cols=slice(0, lay.need_w)), copy=True) if lay.need_w else None
    return out, idx, cut, top, left


def _halo_task(first, grid, spec, *after):
    """Complete a block: pool its first output rows and columns from the halo strips.

    ``first`` is the block's :func:`chunk_task` result; ``grid[i][j]`` is
    ``[strips, k]`` for the chunks above and to the left (all the strips that
    chunk cut, and which of them is this block's: one task per chunk carries
    them, not one per strip), ``None`` where the own chunk goes. Overwrites
    those outputs in the array ``first`` allocated (no other task reads it) and
    returns ``(out, indices)``. ``after``: keys that must be computed first.
    """
    out, idx, _, top, left = first
    # each halo cell is [the strips a chunk cut, the index of this block's strip]
    grid = [[None if g is None else g[0][g[1]] for g in row] for row in grid]
    lay = _layout(spec)
    oh, ow = spec.rows.out_stop - spec.rows.out_start, spec.cols.out_stop - spec.cols.out_start
    if out.size and lay.rw and lay.rh < oh:  # first columns, below the first rows
        row = [q for q in grid[-1][:-1]] + ([left] if left is not None else [])
        _pool_region([row], lay.own_h, spec.cols.in_start, spec, out, idx, lay.rh, oh, 0, lay.rw)
    if out.size and lay.rh:  # first rows, every column
        rows = [list(r) for r in grid[:-1]]
        if top is not None:
            cl = spec.channels_last
            rows.append([_sub(q, cl, rows=slice(0, lay.need_h)) for q in grid[-1][:-1]] + [top])
        _pool_region(rows, spec.rows.in_start, spec.cols.in_start, spec, out, idx, 0, lay.rh, 0, ow)
    return out, idx


def _pool_region(pieces, top, left, spec, out, idx, a, b, c, d):
    """Outputs ``[a, b) x [c, d)`` of a block from ``pieces`` (a grid whose first cell is at
    global ``(top, left)``): glue exactly the input they read and run the kernel."""
    eff = [dd * (k - 1) + 1 for dd, k in zip(spec.dilation, spec.kernel)]
    r0, r1, pad_h = _span(spec.rows, a, b, spec.stride[0], spec.padding[0], eff[0])
    c0, c1, pad_w = _span(spec.cols, c, d, spec.stride[1], spec.padding[1], eff[1])
    x = _glue(pieces, top, left, r0, r1, c0, c1, _spatial_axes(spec.channels_last))
    _kernel_into(x, r0, c0, (pad_h, pad_w), spec, out, idx, a, b, c, d)


def _kernel_into(x, x_top, x_left, padding, spec, out, idx, a, b, c, d):
    """Run the kernel for the block's outputs ``[a, b) x [c, d)`` on ``x`` (whose first cell
    is global ``(x_top, x_left)``, with ``padding`` cells before it), writing into ``out``."""
    axes = _spatial_axes(spec.channels_last)
    if x.dtype != spec.dtype:  # e.g. big-endian chunks -> native, as poolkit.cpu does
        x = x.astype(spec.dtype)
    elif x.strides[-1] != x.itemsize:
        # The kernels' inner loops run along the last axis. A chunk in Fortran order
        # (some sources make them) runs ~10x slower than a C-order copy of it;
        # views with contiguous rows (da.from_array of a NumPy array) are left alone:
        # copying them costs more than it saves.
        x = np.ascontiguousarray(x)
    sl = [slice(None)] * 4
    sl[axes[0]], sl[axes[1]] = slice(a, b), slice(c, d)
    sl = tuple(sl)
    iv = idx[sl] if idx is not None else None
    div_h = spec.div_h[a:b] if spec.div_h is not None else None
    div_w = spec.div_w[c:d] if spec.div_w is not None else None
    omit_tables = None
    if spec.omit_tables:
        full_h, full_w, in_h, in_w = spec.omit_tables
        omit_tables = (full_h[a:b], full_w[c:d], in_h[a:b], in_w[c:d])
    _run_kernel(x, out[sl], iv, spec, padding, div_h, div_w, omit_tables)
    if iv is not None:
        # local flat index (row * local_W + col) -> global flat index per (H, W) plane
        row, col = np.divmod(iv, x.shape[axes[1]])
        row += x_top
        row *= spec.in_width
        row += col
        row += x_left
        iv[...] = row


def _glue(pieces, top, left, r0, r1, c0, c1, axes):
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` (global) of a grid of pieces whose first
    cell is at ``(top, left)``: a view when one piece holds them, else a concatenation."""
    def parts(sizes, start, lo, hi):
        out, pos = [], start
        for i, n in enumerate(sizes):
            if pos < hi and pos + n > lo:
                out.append((i, max(lo, pos) - pos, min(hi, pos + n) - pos))
            pos += n
        return out

    heights = [r[0].shape[axes[0]] for r in pieces]
    widths = [q.shape[axes[1]] for q in pieces[0]]
    rows = []
    for i, h0, h1 in parts(heights, top, r0, r1):
        row = []
        for j, w0, w1 in parts(widths, left, c0, c1):
            sl = [slice(None)] * 4
            sl[axes[0]], sl[axes[1]] = slice(h0, h1), slice(w0, w1)
            row.append(pieces[i][j][tuple(sl)])
        rows.append(row)
    return _assemble(rows, axes)


def _run_kernel(x, out, idx, spec, padding, div_h, div_w, omit_tables=None):
    """Run poolkit.cpu's serial kernel on one region's input (block-local padding).

    :func:`poolkit.cpu.run_max_pool2d` / :func:`~poolkit.cpu.run_avg_pool2d` pick
    the kernel exactly as for an in-memory call; all of them sum a window in the
    same order, so every block is bit for bit what in-memory poolkit computes.
    With ``nan_policy="omit"`` the average's divisor counts the valid cells the
    block sees plus the true padding cells of the *whole* array's window (from
    ``omit_tables``): cells before the block are never counted, and the rows and
    columns that read them are recomputed from the halo, as for propagate.
    """
    if spec.kind == "avg":
        cpu.run_avg_pool2d(x, out, spec.stride, padding, spec.kernel, div_h, div_w, spec.override,
                           channels_last=spec.channels_last, parallel=False, omit_tables=omit_tables)
    else:
        cpu.run_max_pool2d(x, out, idx, spec.stride, padding, spec.dilation, spec.kernel,
                           channels_last=spec.channels_last, parallel=False, omit=spec.omit)


def _part(result, i, *after):
    """Item ``i`` of a task's result (``after``: keys that must be computed first)."""
    return result[i]


def _reads(chunks, plan):
    """``reads[b]``: the ``(chunk j, lo, hi)`` pieces (chunk-local, non-empty) that output
    block ``b`` of ``plan`` reads along one axis. Linear in blocks + chunks + pieces:
    each block's first and last chunk are found by bisection."""
    starts = np.cumsum((0,) + tuple(int(c) for c in chunks))
    first = np.searchsorted(starts, [b.in_start for b in plan], side="right") - 1
    stop = np.searchsorted(starts, [b.in_stop for b in plan], side="left")
    starts = starts.tolist()
    out = []
    for blk, j0, j1 in zip(plan, first.tolist(), stop.tolist()):
        items = []
        for j in range(max(j0, 0), j1):  # chunks with c0 < in_stop and c1 > in_start
            c0, c1 = starts[j], starts[j + 1]
            if c1 > c0:
                items.append((j, max(blk.in_start, c0) - c0, min(blk.in_stop, c1) - c0))
        out.append(items)
    return out


def _inline_sources(x):
    """``{chunk key: array}`` for the chunks of ``x`` that its graph holds as plain data
    (``da.from_array`` of a NumPy array): the chunk tasks take those arrays directly.

    Dask fuses such a data node into its one reader only when its linear fusion reaches
    the data node before the reader's other dependents; for every data node it leaves
    over, the local schedulers then spend time proportional to the number of data nodes
    *per task* (``task.dependencies - set(cache)``), so a graph of 16,384 chunks took
    minutes to start. Inlined, the chunk tasks have no dependencies at all.
    """
    layer = x.__dask_graph__().layers.get(x.name)
    if layer is None or not hasattr(layer, "mapping"):
        return {}
    data = {}
    for k, v in layer.mapping.items():
        v = getattr(v, "value", v) if type(v).__name__ == "DataNode" else v
        if isinstance(v, np.ndarray):
            data[k] = v
    return data


def _halo_out(first, grid, spec, *after):
    """:func:`_halo_task`'s block only (the output task when no indices are asked for)."""
    return _halo_task(first, grid, spec)[0]


def _build(x, g, cl, spec_for_block, name, with_indices, op):
    """The task graph: a small constant number of tasks per input chunk.

    * ``{op}-chunk``: one :func:`chunk_task` per input chunk; it depends on the
      chunk alone (so Dask fuses it with the chunk's own task; chunks held as plain
      data are passed in directly, see :func:`_inline_sources`);
    * ``{op}-halo``: the strips later blocks read (an item of a chunk task's result,
      one per chunk, passed whole to each reader) and one :func:`_halo_task` per
      block whose first rows/columns need them;
    * the output arrays: the block's halo task itself, or items of its last task.

    Every loop here is linear in the number of chunks (plus the pieces blocks read).
    """
    axes = _spatial_axes(cl)
    other = (0, 3) if cl else (0, 1)
    plan = _plan(x, g, cl)
    xname = x.name
    chunk_name, halo_name = f"{op}-chunk-{name}", f"{op}-halo-{name}"
    out_names = [f"{op}{suffix}-{name}" for suffix in ("", "-indices")[:1 + with_indices]]
    # reads[a][b]: (chunk j, lo, hi) read by output block b along spatial axis a (chunk-local)
    reads = [_reads(x.chunks[axes[a]], plan[a]) for a in range(2)]
    # usedby[a][j]: blocks along axis a that read chunk j; owner[a][j]: the block ending in j
    usedby = [[[] for _ in x.chunks[axes[a]]] for a in range(2)]
    owner = [dict() for _ in range(2)]
    for a in range(2):
        for b, items in enumerate(reads[a]):
            for j, lo, hi in items:
                usedby[a][j].append((b, lo, hi))
            owner[a][items[-1][0]] = b
    sources = _inline_sources(x)

    layer, outputs = {}, [{} for _ in out_names]
    for i0 in range(len(x.chunks[other[0]])):
        for i1 in range(len(x.chunks[other[1]])):
            def key(nm, jh, jw, *rest):
                return _key(nm, cl, i0, i1, jh, jw) + rest

            strip_of = {}  # (chunk row, chunk col, reader block row, col) -> index in the chunk's strips

            for jh in range(len(x.chunks[axes[0]])):
                for jw in range(len(x.chunks[axes[1]])):
                    if not usedby[0][jh] or not usedby[1][jw]:
                        continue  # an empty chunk, or one no window reads
                    mine = (owner[0].get(jh), owner[1].get(jw))
                    strips = []
                    for bh, h0, h1 in usedby[0][jh]:
                        for bw, w0, w1 in usedby[1][jw]:
                            if (bh, bw) != mine:
                                strip_of[(jh, jw, bh, bw)] = len(strips)
                                strips.append((h0, h1, w0, w1, cl))
                    spec = own = None
                    if None not in mine:
                        bh, bw = mine
                        rh, rw = reads[0][bh], reads[1][bw]
                        own = (rh[-1][1], rh[-1][2], rw[-1][1], rw[-1][2])
                        spec = spec_for_block(plan[0][bh], plan[1][bw], x.chunks[other[0]][i0],
                                              x.chunks[other[1]][i1],
                                              tuple(hi - lo for _, lo, hi in rh), tuple(hi - lo for _, lo, hi in rw))
                    src = key(xname, jh, jw)
                    ck = key(chunk_name, jh, jw)
                    layer[ck] = (chunk_task, sources.get(src, src), own, spec, strips)
                    # All strips of a chunk in one small result, taken out of the chunk task's
                    # result *before* the block is finished (``after`` below): so the chunk task's
                    # result, which holds the block's output, is not kept alive until the blocks
                    # below have read their strips.
                    after = ()
                    if strips:
                        layer[key(halo_name, jh, jw)] = (_part, ck, 2)
                        after = (key(halo_name, jh, jw),)
                    if spec is None:
                        continue
                    block = _key("", cl, i0, i1, bh, bw)[1:]
                    if len(rh) == 1 and len(rw) == 1:  # no halo: the chunk task's result is the block
                        for part, out in enumerate(outputs):
                            out[block] = (_part, ck, part, *after)
                        continue
                    grid = [[None if (ph, pw) == (jh, jw) else [key(halo_name, ph, pw), strip_of[(ph, pw, bh, bw)]]
                             for pw, _, _ in rw] for ph, _, _ in rh]
                    if with_indices:
                        done = key(halo_name, jh, jw, "block")
                        layer[done] = (_halo_task, ck, grid, spec, *after)
                        for part, out in enumerate(outputs):
                            out[block] = (_part, done, part)
                    else:  # the halo task is the output block itself
                        outputs[0][block] = (_halo_out, ck, grid, spec, *after)

    chunks = [None] * 4
    chunks[other[0]], chunks[other[1]] = x.chunks[other[0]], x.chunks[other[1]]
    chunks[axes[0]], chunks[axes[1]] = [tuple(b.out_stop - b.out_start for b in plan[a]) for a in range(2)]
    chunks = tuple(chunks)
    dtype = np.dtype(x.dtype).newbyteorder("=")
    layers, deps = {chunk_name: layer}, {chunk_name: {xname}}
    arrays = []
    for out_name, out, dt in zip(out_names, outputs, (dtype, np.dtype(np.int64))):
        layers[out_name] = {(out_name,) + blk: task for blk, task in out.items()}
        deps[out_name] = {chunk_name}
        arrays.append((out_name, dt))
    graph = HighLevelGraph.merge(HighLevelGraph(layers, deps), x.dask)
    res = [da.Array(graph, n, chunks, dtype=dt) for n, dt in arrays]
    return tuple(res) if with_indices else res[0]


def _key(name, cl, i0, i1, jh, jw):
    """Block key in the array's own axis order (NCHW: n, c, h, w; NHWC: n, h, w, c)."""
    return (name, i0, jh, jw, i1) if cl else (name, i0, i1, jh, jw)


# --------------------------------------------------------------------- public API
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    """2-D max pooling of a Dask array, lazily, block by block.

    Same arguments and results as :func:`poolkit.max_pool2d`; ``x`` is a
    ``dask.array.Array`` of NumPy chunks (float32, float64 or integer), chunked
    along any axes. Arguments are validated with :mod:`poolkit.geometry` before
    any graph is built.

    Parameters
    ----------
    x : dask.array.Array
        ``(N, C, H, W)`` or unbatched ``(C, H, W)``; with ``layout="NHWC"``,
        ``(N, H, W, C)`` or ``(H, W, C)``.
    kernel_size, stride, padding, dilation : int or (int, int)
        As in PyTorch; ``stride=None`` means ``kernel_size``; padding is implicit
        ``-inf``, applied only at the edges of the whole array.
    ceil_mode : bool
        Use ceil instead of floor for the output size.
    return_indices : bool
        Also return a lazy int64 array of the maxima's indices, flat per
        ``(H, W)`` plane of the *whole* array (not of a chunk).
    layout : {"NCHW", "NHWC"}
        Keyword-only.
    nan_policy : {"propagate", "omit"}
        Keyword-only; as in :func:`poolkit.max_pool2d` ("omit" skips NaN cells).

    Returns
    -------
    out : dask.array.Array
        Lazy, same dtype (native byte order); batch/channel chunks as ``x``,
        spatial chunks about ``x``'s divided by the stride (see :func:`block_plan`).
        With ``return_indices``, ``(out, indices)``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, poolkit
    >>> x = da.from_array(np.arange(1., 17.).reshape(1, 1, 4, 4), chunks=(1, 1, 2, 3))
    >>> y = poolkit.max_pool2d(x, 2)
    >>> type(y).__name__, y.compute()[0, 0].tolist()
    ('Array', [[6.0, 8.0], [14.0, 16.0]])

    See Also
    --------
    poolkit.cpu.max_pool2d : the in-memory twin (its kernels run each block).
    poolkit.dask.avg_pool2d : average pooling on Dask arrays.
    block_plan : the input slice (chunk plus halo) every output block reads.
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    x4, cl, batched, spatial = _prepare(x, op, layout, allow_int=True)
    omit = omit and np.dtype(x4.dtype).kind == "f"
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    dtype = np.dtype(x4.dtype).newbyteorder("=")
    kind = "max_idx" if return_indices else "max"

    def spec(bh, bw, n0, n1, heights, widths):
        return _BlockSpec(
            heights=heights, widths=widths, kind=kind, channels_last=cl, out_shape=_block_shape(cl, n0, n1, bh, bw), dtype=dtype,
            rows=bh, cols=bw, stride=g.stride, padding=g.padding, dilation=g.dilation,
            kernel=g.kernel, in_width=g.in_size[1], omit=omit)

    name = tokenize(x4.name, op, kind, cl, g, omit)
    res = _build(x4, g, cl, spec, name, return_indices, op)
    if batched:
        return res
    return (res[0][0], res[1][0]) if return_indices else res[0]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW", nan_policy="propagate"):
    """2-D average pooling of a Dask array, lazily, block by block.

    Same arguments and results (bit for bit: the kernel sums each window in scan
    order in the input dtype) as :func:`poolkit.avg_pool2d`; ``x`` is a
    float32/float64 ``dask.array.Array`` chunked along any axes.

    Parameters
    ----------
    x : dask.array.Array
        Layouts as :func:`max_pool2d`.
    kernel_size, stride, padding : int or (int, int)
        As in PyTorch; padding is implicit zeros at the edges of the whole array.
    ceil_mode : bool
        As in :func:`max_pool2d`.
    count_include_pad : bool
        Count padding cells in the divisor (the divisor follows the whole
        array's geometry, never a chunk's edges).
    divisor_override : int, optional
        Divide every sum by this instead.
    layout : {"NCHW", "NHWC"}
        Keyword-only.
    nan_policy : {"propagate", "omit"}
        Keyword-only; as in :func:`poolkit.avg_pool2d` ("omit": NaN cells are left
        out of the sum and of the divisor).

    Returns
    -------
    out : dask.array.Array
        Lazy, same dtype; chunks as for :func:`max_pool2d`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, poolkit
    >>> x = da.from_array(np.arange(1., 17.).reshape(1, 1, 4, 4), chunks=(1, 1, 3, 3))
    >>> poolkit.avg_pool2d(x, 2).compute()[0, 0].tolist()
    [[3.5, 5.5], [11.5, 13.5]]

    See Also
    --------
    poolkit.cpu.avg_pool2d : the in-memory twin (its kernels run each block).
    poolkit.dask.max_pool2d : max pooling on Dask arrays.
    """
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    omit = G.check_nan_policy(nan_policy, op)
    x4, cl, batched, spatial = _prepare(x, op, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    dtype = np.dtype(x4.dtype).newbyteorder("=")
    div_h, div_w = G.avg_divisors(g, count_include_pad, dtype)
    # omit: the divisor counts (geometry.check_nan_policy), sliced per block below
    full_h, full_w = G.avg_divisor_table(g, count_include_pad)
    in_h, in_w = G.avg_divisor_table(g, False)

    def omit_tables(bh, bw):
        if not omit:
            return ()
        rows, cols = slice(bh.out_start, bh.out_stop), slice(bw.out_start, bw.out_stop)
        return (full_h[rows].copy(), full_w[cols].copy(), in_h[rows].copy(), in_w[cols].copy())

    def spec(bh, bw, n0, n1, heights, widths):
        return _BlockSpec(
            heights=heights, widths=widths, kind="avg", channels_last=cl, out_shape=_block_shape(cl, n0, n1, bh, bw), dtype=dtype,
            rows=bh, cols=bw, stride=g.stride, padding=g.padding, dilation=(1, 1),
            kernel=g.kernel, div_h=_readonly_copy(div_h[bh.out_start:bh.out_stop]),
            div_w=_readonly_copy(div_w[bw.out_start:bw.out_stop]), override=override, omit=omit,
            omit_tables=omit_tables(bh, bw))

    name = tokenize(x4.name, op, cl, g, count_include_pad, override, omit)
    out = _build(x4, g, cl, spec, name, False, op)
    return out if batched else out[0]


def _readonly_copy(a):
    """A small copy of a slice of the (read-only, cached) divisor tables: the task graph
    then carries only the block's entries, and the kernels see the same array type as
    in memory (read-only), so no second specialisation is compiled."""
    a = a.copy()
    a.flags.writeable = False
    return a


def _block_shape(cl, n0, n1, bh, bw):
    oh, ow = bh.out_stop - bh.out_start, bw.out_stop - bw.out_start
    return (n0, oh, ow, n1) if cl else (n0, n1, oh, ow)
