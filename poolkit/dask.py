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
``o*s - p + j*d`` for ``j < k`` -- its window *starts* at ``o*s - p``. Each output
block collects the windows that start inside one input chunk, so an output block
is about ``chunk / stride`` long. Its input slice is that chunk plus a **halo**:
the ``d*(k-1) + 1 - s`` cells (if positive) that its last windows read from the
next chunk, clipped to the array. :func:`block_plan` lists these ranges.

Each block task receives only what it reads: the chunk it starts in (a view,
when it is used whole) and *copies* of the thin halo strips of its neighbours
(copies, so a neighbour chunk can be freed as soon as its own block is done).
It glues them together and runs the serial CPU kernel with a *local* padding:
``padding`` is applied only where the slice touches the true edge of the array,
so ``-inf`` (max) and zero (avg) padding, the average divisor (a slice of
:func:`poolkit.geometry.avg_divisor_table` for the whole array), ceil_mode and
dilation all follow the global geometry, not the chunk edges. Indices from
``return_indices`` are converted to global flat ``(H, W)``-plane indices.

Why halos and not a rechunk: rechunking to window-aligned chunks rewrites the
whole array (every byte is copied once more and whole chunks move between
workers), while a halo costs ``(d*(k-1) + 1 - s) / chunk`` extra reads -- under
1 % for a 3x3 stride-2 window on 1024-cell chunks -- and nothing at all for
non-overlapping windows (``k <= s``) on chunks that are multiples of the stride.
And unlike :func:`dask.array.map_overlap`, the halo is one-sided and
stride-aware, and padding is never added at interior chunk edges.

Why serial kernels: Dask already runs one task per thread (or per worker
thread); the kernels are compiled with ``nogil=True``, so blocks run truly in
parallel, and nesting Numba's own thread pool inside Dask's threads would
oversubscribe the cores.

Memory: a block task holds its input slice (at most ``chunk + d*(k-1)`` cells
per spatial axis, see :func:`block_plan`) and its output block, so the peak
memory of a computation that writes its result out (``da.store``) is a few
chunks per thread, however large the array.
"""
from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass
from typing import NamedTuple

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import cpu
from . import geometry as G

__all__ = ["max_pool2d", "avg_pool2d", "block_plan", "BlockRange"]


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


def _axis_plan(chunks, L, k, s, p, d, out_len) -> tuple[BlockRange, ...]:
    """Cut one spatial axis into output blocks: one per input chunk that holds window starts."""
    eff = d * (k - 1) + 1
    bounds = np.cumsum((0,) + tuple(int(c) for c in chunks))
    cuts = [0]
    for b in bounds[1:-1]:
        o = -(-(int(b) + p) // s)  # first output whose window starts at or after b
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
    >>> poolkit.dask.block_plan(x, 3, 2, 1)[0]
    (BlockRange(out_start=0, out_stop=3, in_start=0, in_stop=6), BlockRange(out_start=3, out_stop=5, in_start=5, in_stop=10))

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
        _axis_plan(x.chunks[ax], g.in_size[i], g.kernel[i], g.stride[i], g.padding[i],
                   g.dilation[i], g.out_size[i])
        for i, ax in enumerate(axes)
    )


# --------------------------------------------------------------------- block tasks
@dataclass(frozen=True)
class _BlockSpec:
    """Everything a block task needs besides its input pieces (opaque to Dask)."""

    kind: str                 # "max", "max_idx" or "avg"
    path: str                 # the poolkit.cpu kernel family: "direct", "sep" or "flat"
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
    div_h: np.ndarray | None = None
    div_w: np.ndarray | None = None
    override: int = 0
    flat_divisor: int = 0     # the divisor of the "flat" path (whole-plane windows)


#: Stands for "the computed array", which is C-contiguous (see :func:`_kernel_path`).
_CONTIGUOUS = np.empty(0)


def _kernel_path(g, channels_last: bool, kind: str) -> str:
    """The kernel family :mod:`poolkit.cpu` runs for the whole array, so blocks can run the same.

    Average pooling's sums are exact only up to rounding, and poolkit.cpu's kernel
    families add a window's cells in different orders (row by row, column sums
    first, or eight interleaved partial sums for whole-plane windows). To be bit
    for bit equal to in-memory poolkit on the computed (C-contiguous) array, every
    block uses the family poolkit.cpu would pick for the *whole* array, decided
    with poolkit.cpu's own rules; only its padding and sizes are local.
    """
    if kind == "max_idx":
        return "direct"
    if cpu._is_global(_CONTIGUOUS, g, channels_last):
        return "flat"
    if channels_last and cpu._overlaps_along_w(g):
        return "sep"
    return "direct"


def _take(chunk, channels_last, h0, h1, w0, w1, copy):
    """Rows ``h0:h1`` and columns ``w0:w1`` of an input chunk: a copy for a thin halo
    strip (so that the neighbouring chunk can be freed as soon as its own block is
    done), a view otherwise."""
    part = chunk[:, h0:h1, w0:w1] if channels_last else chunk[:, :, h0:h1, w0:w1]
    return np.array(part, copy=True) if copy else part


def _assemble(pieces, axes):
    """Glue a [rows][cols] nested list of pieces into one array (no copy for a single piece)."""
    rows = [p[0] if len(p) == 1 else np.concatenate(p, axis=axes[1]) for p in pieces]
    return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=axes[0])


def _pool_block(pieces, spec: _BlockSpec):
    """Pool one output block from its input pieces with serial poolkit.cpu kernels.

    ``pieces[i][j]`` are the parts of the input chunks the block reads; the first
    one is the chunk its windows start in, the others are halo strips. The block
    is cut into up to three regions so that the bulk never needs a copy:

    * the outputs whose windows lie inside the first piece: run on a view of it;
    * the last output columns (their windows reach into the right-hand halo) and
    * the last output rows (they reach into the halo below): run on small
      glued strips.

    Every kernel writes straight into its part of the block's output. A cell's
    value does not depend on the region it is computed in: the same kernel
    family, the same taps in the same order, padding only at the array's edges.
    """
    axes = _spatial_axes(spec.channels_last)
    out = np.empty(spec.out_shape, dtype=spec.dtype)
    idx = np.empty(spec.out_shape, dtype=np.int64) if spec.kind == "max_idx" else None
    if not out.size:
        return out if idx is None else (out, idx)
    heights = [p[0].shape[axes[0]] for p in pieces]
    widths = [q.shape[axes[1]] for q in pieces[0]]
    oh, ow = out.shape[axes[0]], out.shape[axes[1]]
    rh = _inner_count(spec, 0, heights, oh)
    rw = _inner_count(spec, 1, widths, ow)
    regions = [((0, rh), (0, rw)), ((0, rh), (rw, ow)), ((rh, oh), (0, ow))]
    for (a, b), (c, d) in regions:
        if a < b and c < d:
            _pool_region(pieces, heights, widths, spec, out, idx, a, b, c, d)
    return out if idx is None else (out, idx)


def _inner_count(spec, axis, sizes, n_out):
    """How many of the block's outputs along ``axis`` read only the first piece."""
    if len(sizes) == 1:
        return n_out
    block = (spec.rows, spec.cols)[axis]
    s, p = spec.stride[axis], spec.padding[axis]
    eff = spec.dilation[axis] * (spec.kernel[axis] - 1) + 1
    first_window = block.out_start * s - p
    r = (block.in_start + sizes[0] - eff - first_window) // s + 1
    return max(0, min(n_out, r))


def _pool_region(pieces, heights, widths, spec, out, idx, a, b, c, d):
    """Outputs ``[a, b) x [c, d)`` of the block: glue the input they read, run the kernel."""
    cl = spec.channels_last
    axes = _spatial_axes(cl)
    spans = []
    for block, lo, hi, axis in ((spec.rows, a, b, 0), (spec.cols, c, d, 1)):
        s, p = spec.stride[axis], spec.padding[axis]
        eff = spec.dilation[axis] * (spec.kernel[axis] - 1) + 1
        start = (block.out_start + lo) * s - p  # first window's start (may be in the padding)
        g0 = max(block.in_start, start)
        g1 = min(block.in_stop, (block.out_start + hi - 1) * s - p + eff)
        spans.append((g0, g1, g0 - start))
    (r0, r1, pad_h), (c0, c1, pad_w) = spans
    x = _glue(pieces, heights, widths, spec.rows.in_start, spec.cols.in_start, r0, r1, c0, c1, axes)
    if x.dtype != spec.dtype:  # e.g. big-endian chunks -> native, as poolkit.cpu does
        x = x.astype(spec.dtype)
    sl = [slice(None)] * 4
    sl[axes[0]], sl[axes[1]] = slice(a, b), slice(c, d)
    sl = tuple(sl)
    iv = idx[sl] if idx is not None else None
    div_h = spec.div_h[a:b] if spec.div_h is not None else None
    div_w = spec.div_w[c:d] if spec.div_w is not None else None
    _run_kernel(x, out[sl], iv, spec, (pad_h, pad_w), div_h, div_w)
    if iv is not None:
        # local flat index (row * local_W + col) -> global flat index per (H, W) plane
        row, col = np.divmod(iv, c1 - c0)
        row += r0
        row *= spec.in_width
        row += col
        row += c0
        iv[...] = row


def _glue(pieces, heights, widths, top, left, r0, r1, c0, c1, axes):
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` (global) of the pieces: a view when one
    piece holds them, else a concatenation of the parts."""
    def parts(sizes, start, lo, hi):
        out, pos = [], start
        for i, n in enumerate(sizes):
            if pos < hi and pos + n > lo:
                out.append((i, max(lo, pos) - pos, min(hi, pos + n) - pos))
            pos += n
        return out

    rows = []
    for i, h0, h1 in parts(heights, top, r0, r1):
        row = []
        for j, w0, w1 in parts(widths, left, c0, c1):
            sl = [slice(None)] * 4
            sl[axes[0]], sl[axes[1]] = slice(h0, h1), slice(w0, w1)
            row.append(pieces[i][j][tuple(sl)])
        rows.append(row)
    return _assemble(rows, axes)


def _run_kernel(x, out, idx, spec, padding, div_h, div_w):
    """Run the serial poolkit.cpu kernel of ``spec.path`` on one region's input."""
    tag = "nhwc" if spec.channels_last else "nchw"
    op = "avg" if spec.kind == "avg" else "max"
    if spec.path == "flat":  # one window per whole plane: a flat reduction per (n, c)
        x = np.ascontiguousarray(x).reshape(out.size, -1)
        flat = out.reshape(-1)  # out is a (n, c, 1, 1) block: reshaping gives a view
        if op == "max":
            cpu.KERNELS[("global_max", False)](x, flat, cpu._init_value(spec.dtype))
        else:
            cpu.KERNELS[("global_sum", False)](x, flat, spec.dtype.type(spec.flat_divisor))
        return
    if spec.kind == "max_idx":
        name = f"max_idx_{tag}"
    elif spec.path == "sep":  # NHWC, windows overlapping along W
        name = f"{op}_nhwc_sep"
    else:
        name = f"{op}_{tag}"
    (SH, SW), (PH, PW), (DH, DW), (KH, KW) = spec.stride, padding, spec.dilation, spec.kernel
    args = dict(x=x, out=out, idx=idx, SH=SH, SW=SW, PH=PH, PW=PW, DH=DH, DW=DW, KH=KH, KW=KW,
                init=cpu._init_value(spec.dtype), div_h=div_h, div_w=div_w,
                override=spec.dtype.type(spec.override), nchunks=1)
    kernel = cpu.KERNELS[(name, False)]
    kernel(*[args[p] for p in _kernel_params(name)])


_PARAMS = {}


def _kernel_params(name):
    """Parameter names of a poolkit.cpu kernel (bound by name, so the kernels' argument
    order is poolkit.cpu's business)."""
    if name not in _PARAMS:
        _PARAMS[name] = tuple(inspect.signature(cpu.KERNELS[(name, False)].py_func).parameters)
    return _PARAMS[name]


def _build(x, g, cl, spec_for_block, name, with_indices, op):
    """Assemble the task graph: halo strips, one pool task per output block, outputs."""
    axes = _spatial_axes(cl)
    plan = _plan(x, g, cl)
    other = (0, 3) if cl else (0, 1)
    xname = x.name
    starts = [np.cumsum((0,) + x.chunks[ax]) for ax in axes]
    halo_name, pool_name = f"{op}-halo-{name}", f"{op}-{name}"
    halo_layer, pool_layer = {}, {}
    ranges = [[(b.in_start, b.in_stop) for b in plan[0]], [(b.in_start, b.in_stop) for b in plan[1]]]
    # which input chunks (and which part of each) every output block reads, per spatial axis
    reads = []
    for a in range(2):
        per_block = []
        for lo, hi in ranges[a]:
            first = int(np.searchsorted(starts[a], lo, side="right")) - 1
            items = []
            j = first
            while j < len(starts[a]) - 1 and starts[a][j] < hi:
                c0, c1 = int(starts[a][j]), int(starts[a][j + 1])
                if c1 > c0:  # skip empty chunks
                    items.append((j, max(lo, c0) - c0, min(hi, c1) - c0, c1 - c0))
                j += 1
            per_block.append(items)
        reads.append(per_block)

    nb = [len(x.chunks[other[0]]), len(x.chunks[other[1]])]
    for i0 in range(nb[0]):
        for i1 in range(nb[1]):
            for bh in range(len(plan[0])):
                for bw in range(len(plan[1])):
                    rows = []
                    for jh, h0, h1, hn in reads[0][bh]:
                        row = []
                        for jw, w0, w1, wn in reads[1][bw]:
                            key = _key(xname, cl, i0, i1, jh, jw)
                            if (h0, h1) != (0, hn) or (w0, w1) != (0, wn):
                                hkey = _key(halo_name, cl, i0, i1, jh, jw) + (bh, bw)
                                small = 2 * (h1 - h0) * (w1 - w0) < hn * wn
                                halo_layer[hkey] = (_take, key, cl, h0, h1, w0, w1, small)
                                key = hkey
                            row.append(key)
                        rows.append(row)
                    spec = spec_for_block(plan[0][bh], plan[1][bw],
                                          x.chunks[other[0]][i0], x.chunks[other[1]][i1])
                    pool_layer[_key(pool_name, cl, i0, i1, bh, bw)] = (_pool_block, rows, spec)

    out_chunks_hw = [tuple(b.out_stop - b.out_start for b in plan[a]) for a in range(2)]
    chunks = [None] * 4
    chunks[other[0]], chunks[other[1]] = x.chunks[other[0]], x.chunks[other[1]]
    chunks[axes[0]], chunks[axes[1]] = out_chunks_hw
    chunks = tuple(chunks)
    dtype = np.dtype(x.dtype).newbyteorder("=")

    layers = {halo_name: halo_layer}
    deps = {halo_name: {xname}}
    if not with_indices:
        layers[pool_name] = pool_layer
        deps[pool_name] = {xname, halo_name}
        graph = HighLevelGraph.merge(
            HighLevelGraph(layers, deps), x.dask)
        return da.Array(graph, pool_name, chunks, dtype=dtype)
    tmp_name = f"{op}-block-{name}"
    layers[tmp_name] = {(tmp_name,) + k[1:]: v for k, v in pool_layer.items()}
    deps[tmp_name] = {xname, halo_name}
    val_name, idx_name = f"{op}-values-{name}", f"{op}-indices-{name}"
    layers[val_name] = {(val_name,) + k[1:]: (operator.getitem, (tmp_name,) + k[1:], 0) for k in pool_layer}
    layers[idx_name] = {(idx_name,) + k[1:]: (operator.getitem, (tmp_name,) + k[1:], 1) for k in pool_layer}
    deps[val_name] = deps[idx_name] = {tmp_name}
    graph = HighLevelGraph.merge(HighLevelGraph(layers, deps), x.dask)
    return (da.Array(graph, val_name, chunks, dtype=dtype),
            da.Array(graph, idx_name, chunks, dtype=np.int64))


def _key(name, cl, i0, i1, jh, jw):
    """Block key in the array's own axis order (NCHW: n, c, h, w; NHWC: n, h, w, c)."""
    return (name, i0, jh, jw, i1) if cl else (name, i0, i1, jh, jw)


# --------------------------------------------------------------------- public API
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW"):
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
    x4, cl, batched, spatial = _prepare(x, op, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    dtype = np.dtype(x4.dtype).newbyteorder("=")
    kind = "max_idx" if return_indices else "max"
    path = _kernel_path(g, cl, kind)

    def spec(bh, bw, n0, n1):
        return _BlockSpec(
            kind=kind, path=path, channels_last=cl, out_shape=_block_shape(cl, n0, n1, bh, bw), dtype=dtype,
            rows=bh, cols=bw, stride=g.stride, padding=g.padding, dilation=g.dilation,
            kernel=g.kernel, in_width=g.in_size[1])

    name = tokenize(x4.name, op, kind, cl, g)
    res = _build(x4, g, cl, spec, name, return_indices, op)
    if batched:
        return res
    return (res[0][0], res[1][0]) if return_indices else res[0]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW"):
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
    x4, cl, batched, spatial = _prepare(x, op, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    dtype = np.dtype(x4.dtype).newbyteorder("=")
    div_h, div_w = (t.astype(dtype) for t in G.avg_divisor_table(g, count_include_pad))
    path = _kernel_path(g, cl, "avg")
    flat_divisor = override or int(div_h[0] * div_w[0])

    def spec(bh, bw, n0, n1):
        return _BlockSpec(
            kind="avg", path=path, channels_last=cl, out_shape=_block_shape(cl, n0, n1, bh, bw), dtype=dtype,
            rows=bh, cols=bw, stride=g.stride, padding=g.padding, dilation=(1, 1),
            kernel=g.kernel, div_h=div_h[bh.out_start:bh.out_stop].copy(),
            div_w=div_w[bw.out_start:bw.out_stop].copy(), override=override,
            flat_divisor=flat_divisor)

    name = tokenize(x4.name, op, cl, g, count_include_pad, override)
    out = _build(x4, g, cl, spec, name, False, op)
    return out if batched else out[0]


def _block_shape(cl, n0, n1, bh, bw):
    oh, ow = bh.out_stop - bh.out_start, bw.out_stop - bw.out_start
    return (n0, oh, ow, n1) if cl else (n0, n1, oh, ow)
