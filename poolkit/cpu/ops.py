"""Host code of the CPU backend: validate once, allocate, pick a kernel, lay out the result.

Two layers, each in its own half of this file:

* **Runners** (``run_*``) take arrays that are already validated, batched and in
  native byte order, plus a validated :class:`poolkit.geometry.PoolGeometry` (or
  :class:`~poolkit.geometry.AdaptiveGeometry`), and never check an argument again.
  :mod:`poolkit.dask` calls :func:`run_max_pool2d` / :func:`run_avg_pool2d` per block.
* **Public functions** (``max_pool2d``, ..., every ``*_backward``) check their
  arguments exactly once with :mod:`poolkit.geometry`, then call runners.

1-d pooling runs on the 2-D kernels: an ``(N, C, L)`` array is viewed as
``(N, C, 1, L)`` and its geometry lifted with :func:`poolkit.geometry.with_unit_dims`.
Channels-last arrays go through the layout-free kernels (scatter, gathers) as
strided channels-first views (no copy).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import math

import numpy as np
from numba import get_num_threads

from .. import _layout as Lay
from .. import config
from .. import geometry as G
from .._docs import document_twins
from . import _jit
from .kernels2d import KERNELS as _KERNELS_2D
from .kernels_nd import CHECKS as _CHECKS
from .kernels_nd import KERNELS as _KERNELS_ND
from .kernels_nd import LANES
from ..threads import parallel_slot

__all__ = list(G.OPS) + ["run_max_pool2d", "run_avg_pool2d", "KERNELS"]

#: ``KERNELS[(name, parallel)]`` -> compiled kernel: the 2-D ones and the n-d ones.
KERNELS = {**_KERNELS_2D, **_KERNELS_ND}


def _helpers_digest():
    """A digest of the code every kernel inlines from outside its own module: the source of
    :mod:`._jit` (``vmax``, ``take_max``, the sweeps) and of ``geometry.tap_range``. Read
    through the import system, so a zipped install works too; an install without sources
    (nothing to edit) gets a constant, and Numba's own stamp alone."""
    try:
        source = inspect.getsource(_jit) + inspect.getsource(G.tap_range)
    except (OSError, TypeError):
        return "no-source"
    return hashlib.sha256(source.encode()).hexdigest()[:16]


#: :func:`_helpers_digest` of this installation: part of every cached kernel's stamp.
HELPERS = _helpers_digest()


def _key_caches_by_helpers(dispatchers, helpers):
    """Make each kernel's on-disk cache entry valid only with these ``helpers`` as well.

    Numba validates a cache entry by the kernel's own source file (mtime and size) and
    bytecode. The helpers a kernel inlines from :mod:`._jit` are compiled into its machine
    code but are in neither: after an edit of ``_jit.py`` alone (a ``git pull`` into the
    course's editable install) every kernel would load its stale machine code and give
    the old rule's answers. So the stamp the cache stores and checks becomes (Numba's
    stamp, ``helpers``), set here before any kernel's first call loads its cache. The
    stamp is a private attribute of Numba's cache; where a Numba version lacks it,
    ``tests/test_packaging.py`` fails rather than the kernels going stale.
    """
    for dispatcher in dispatchers:
        cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
        if cache_file is not None and hasattr(cache_file, "_source_stamp"):
            cache_file._source_stamp = (cache_file._source_stamp, helpers)


_key_caches_by_helpers([*KERNELS.values(), *_CHECKS.values()], HELPERS)

_NO_INDEX = np.empty((1, 1, 1, 1, 1), dtype=np.int64)  # placeholder when indices are not wanted


# ================================================================ runners: 2-D kernels
def _use_parallel(size, parallel):
    """Parallel if asked and ``size`` (elements) reaches ``config.CPU_PARALLEL_MIN_SIZE``
    (read at every call, so it can be changed at run time)."""
    return bool(parallel) and size >= config.CPU_PARALLEL_MIN_SIZE


def _kernel(name, parallel, size):
    """A launcher of the serial or parallel twin (see :func:`_use_parallel`); the
    parallel one runs only if :func:`.threads.parallel_slot` admits it."""
    return functools.partial(_launch, name, _use_parallel(size, parallel))


def _launch(name, parallel, *args):
    if not parallel:
        return KERNELS[(name, False)](*args)
    with parallel_slot(True) as par:
        return KERNELS[(name, par)](*args)


def _launch_planes(name, parallel, size, x, out, *args):
    """Run ``name(x, out, nchunks, *args)``: a channels-first kernel whose parallel loop runs over
    ``nchunks`` pieces of the (n, c) planes, with its scratch allocated once per piece; serial or
    parallel as :func:`_kernel` decides from ``size``."""
    with parallel_slot(_use_parallel(size, parallel)) as par:
        KERNELS[(name, par)](x, out, _nchunks(x.shape[0] * x.shape[1], par), *args)


#: ``adaptive_max_cf_lanes`` takes planes of at most this many cells (its scratch,
#: LANES planes turned channels-last, then stays within 1 MiB of float32).
LANES_MAX_CELLS = 16384


def _on_lanes(x5):
    """Channels-first adaptive max of many small planes: run ``adaptive_max_cf_lanes``."""
    return x5.shape[0] * x5.shape[1] >= LANES and math.prod(x5.shape[2:]) <= LANES_MAX_CELLS


#: ``adaptive_max_cf_cols`` runs where a bin averages at least this many cells: smaller bins
#: (7x7 -> 5) have too little to share per column, and too many zero/NaN bins looked up again.
COLUMNS_MIN_BIN = 8


def _on_columns(x5, out5):
    """Channels-first adaptive max values of bins more than one row high, and big enough:
    run ``adaptive_max_cf_cols`` (rows of one-row bins are plain scans: lanes do better)."""
    return (x5.shape[2] * x5.shape[3] > 1
            and math.prod(x5.shape[2:]) >= COLUMNS_MIN_BIN * math.prod(out5.shape[2:]))


def _launch_lanes(name, parallel, size, x, out, *args):
    """Run ``name(x, out, nchunks, *args)``, a ``*_lanes`` kernel: its parallel loop runs over
    ``nchunks`` pieces of the groups of LANES planes."""
    with parallel_slot(_use_parallel(size, parallel)) as par:
        KERNELS[(name, par)](x, out, _nchunks(-(-x.shape[0] * x.shape[1] // LANES), par), *args)


def _is_global(x, out, kernel, padding, dilation, channels_last):
    """One window covering each whole contiguous NCHW plane: reduce planes as flat rows."""
    return (not channels_last and x.flags.c_contiguous and out.flags.c_contiguous
            and out.shape[2:] == (1, 1) and tuple(kernel) == x.shape[2:]
            and tuple(padding) == (0, 0) and tuple(dilation) == (1, 1))


def _flat_rows(a):
    """``a`` (N, H, W, C) as an (N, H, W*C) view, or None if that would need a copy."""
    flat = a.reshape(a.shape[0], a.shape[1], a.shape[2] * a.shape[3])
    return flat if np.may_share_memory(flat, a) else None


def _named(name, omit):
    """The kernel ``name``, or its ``nan_policy="omit"`` twin."""
    return name + "_omit" if omit else name


def _count_proto(dtype, cells):
    """A 0-size array whose dtype the ``"omit"`` averages count valid cells in: ``dtype`` itself
    (sums and counts vectorise together) when ``cells``, the most a window holds, fit its
    mantissa exactly (2**24 for float32), else int64."""
    exact = 2 ** (np.finfo(dtype).nmant + 1)
    return np.empty(0, dtype=dtype if cells <= exact else np.int64)


def _index_proto(cells):
    """A 0-size array whose dtype a kernel counts flat indices of a ``cells``-cell plane in:
    int32 where they fit (as wide as float32 lanes), else int64."""
    return np.empty(0, dtype=np.int32 if cells <= np.iinfo(np.int32).max else np.int64)


def _nchunks(units, parallel):
    """How many pieces the parallel loop of a scratch-using kernel is cut into."""
    return max(1, min(units, 8 * get_num_threads())) if parallel else 1


def run_max_pool2d(x, out, idx, stride, padding, dilation, kernel, *, channels_last, parallel,
                   omit=False):
    """Run the 2-D max kernel that fits, writing into ``out`` (and ``idx`` unless None).

    The one place that picks a 2-D max kernel; the public functions and
    :mod:`poolkit.dask` (per block, with block-local padding) both call it. ``x`` is
    a validated 4-D native-order array, ``out``/``idx`` are preallocated with the
    output shape, ``padding`` is the leading (top, left) padding; everything else
    comes from ``out.shape``. ``parallel`` is taken as given (no size threshold);
    ``omit`` (float ``x`` only) runs the ``nan_policy="omit"`` twins.
    Every kernel gives bitwise identical results.
    """
    SH, SW = stride
    x = _read_only(x)  # Dask/Zarr blocks come read-only or not: one specialization for both
    init = G.max_init(x.dtype, omit)
    args = (SH, SW, *padding, *dilation, *kernel, init)
    with parallel_slot(bool(parallel)) as par:
        _max2d(x, out, idx, kernel, padding, dilation, channels_last, par, args, omit)


def _max2d(x, out, idx, kernel, padding, dilation, channels_last, par, args, omit):
    # run_max_pool2d's kernel choice, inside the parallel slot (``par`` as admitted).
    if idx is not None and channels_last:
        KERNELS[(_named("max_idx_nhwc", omit), par)](x, out, idx, *args, _index_proto(x.shape[1] * x.shape[2]))
    elif idx is not None:
        KERNELS[(_named("max_idx_nchw", omit), par)](x, out, idx, _nchunks(out.shape[0] * out.shape[1], par),
                                                     *args, _index_proto(x.shape[2] * x.shape[3]))
    elif _is_global(x, out, kernel, padding, dilation, channels_last):
        KERNELS[(_named("global_max", omit), par)](x.reshape(out.size, -1), out.reshape(-1), args[-1])
    elif channels_last:
        # Flat (W*C) rows: views for C-contiguous arrays (and most others); an input
        # whose W and C axes cannot be merged is copied, an output is written via a copy.
        N, H, W, C = x.shape
        flat = _flat_rows(out)
        target = np.empty((N, out.shape[1], out.shape[2] * C), out.dtype) if flat is None else flat
        KERNELS[(_named("max_nhwc", omit), par)](x.reshape(N, H, W * C), target,
                                                 _nchunks(out.shape[0] * out.shape[1], par), C, *args)
        if flat is None:
            out[...] = target.reshape(out.shape)
    elif kernel[0] == 1:  # windows one row high (1-d pooling): straight from input rows to output rows
        SH, SW, PH, PW, DH, DW, KH, KW, init = args
        KERNELS[(_named("max_rows", omit), par)](x, out, SH, SW, PH, PW, DW, KW, init)
    else:
        KERNELS[(_named("max_nchw", omit), par)](x, out, _nchunks(out.shape[0] * out.shape[1], par), *args)


def run_avg_pool2d(x, out, stride, padding, kernel, div_h, div_w, override, *, channels_last, parallel,
                   omit_tables=None):
    """Run the 2-D average kernel that fits, writing into ``out``.

    Like :func:`run_max_pool2d`; ``div_h``/``div_w`` are the per-dimension divisor
    tables of :func:`poolkit.geometry.avg_divisor_table` for these outputs, in
    ``x``'s dtype, and ``override`` is ``divisor_override`` or 0. Every kernel
    sums a window in PyTorch's order, so all give bitwise identical results.
    ``omit_tables`` (``nan_policy="omit"``): the int64 tables ``(full_h, full_w,
    in_h, in_w)`` of :func:`_omit_tables`; NCHW then runs ``avg_omit_nchw`` (the row
    sweeps of ``avg_nchw``), NHWC the channels-last omit kernel on 5-D views.
    """
    x = _read_only(x)
    if omit_tables is not None:
        if channels_last:
            _avg_omit(x, out, 2, stride, padding, kernel, omit_tables, override, channels_last, parallel,
                      large=False)
        else:
            with parallel_slot(bool(parallel)) as par:
                KERNELS[("avg_omit_nchw", par)](x, out, _nchunks(out.shape[0] * out.shape[1], par), *stride,
                                                *padding, *kernel, *omit_tables, x.dtype.type(override),
                                                _count_proto(x.dtype, kernel[0] * kernel[1]))
        return
    with parallel_slot(bool(parallel)) as par:
        if _is_global(x, out, kernel, padding, (1, 1), channels_last):
            d = override or int(div_h[0] * div_w[0])
            one = x.dtype.type(1)
            KERNELS[("global_sum", par)](x.reshape(out.size, -1), out.reshape(-1), x.dtype.type(d), one, one)
            return
        args = (*stride, *padding, *kernel, div_h, div_w, x.dtype.type(override))
        if channels_last:
            KERNELS[("avg_nhwc_small" if kernel[0] * kernel[1] <= 4 else "avg_nhwc", par)](x, out, *args)
        else:
            KERNELS[("avg_nchw", par)](x, out, _nchunks(out.shape[0] * out.shape[1], par), *args)


# ================================================================ runners: any nd
def _empty(x, cl, spatial, dtype=None):
    N, C = Lay.nc(x.shape, cl)
    return np.empty(Lay.batched_shape(N, C, spatial, cl), dtype=x.dtype if dtype is None else dtype)


def _omit_tables(g, count_include_pad):
    """The int64 tables of an ``"omit"`` average's divisor (:func:`poolkit.geometry.check_nan_policy`):
    the window counts with (``full``) and without (``in``) padding, per dimension."""
    full = G.avg_divisor_table(g, count_include_pad)
    inside = G.avg_divisor_table(g, False)
    return tuple(full) + tuple(inside)


def _avg_omit(x, out, nd, stride, padding, kernel, tables, override, cl, parallel, large):
    """Run an ``"omit"`` average kernel on 5-D views of the batched ``x``/``out`` (``nd`` spatial dims).

    ``stride``, ``padding``, ``kernel`` and the ``tables`` (full, then in-range
    counts, ``nd`` each) are lifted to 3-d with unit dimensions in front.
    Channels-last arrays, and windows far larger than the input, run on the
    channels-last kernel (it visits in-range taps only); channels-first ones on
    the row-sweeping channels-first kernel.
    """
    if not out.size:
        return
    lift = 3 - nd
    unit = (np.ones(1, np.int64),) * lift
    full, inside = unit + tuple(tables[:nd]), unit + tuple(tables[nd:])
    geo = ((1,) * lift + tuple(stride), (0,) * lift + tuple(padding), (1,) * lift + tuple(kernel))
    ov = x.dtype.type(override)
    proto = _count_proto(x.dtype, math.prod(kernel))
    if cl or large:
        x5, out5 = (Lay.to5(a, nd, True) if cl else np.moveaxis(Lay.to5(a, nd, False), 1, -1) for a in (x, out))
        _kernel("avg3d_omit_cl", parallel, x.size)(x5, out5, *geo[0], *geo[1], *geo[2], *full, *inside, ov,
                                                   proto)
    else:
        _launch_planes("avg3d_omit_cf", parallel, x.size, Lay.to5(x, nd, False), Lay.to5(out, nd, False),
                       *geo[0], *geo[1], *geo[2], *full, *inside, ov, proto)


def run_max_pool(x, g, cl, want_idx, parallel, omit=False):
    """Max pooling of a batched array: ``(out, idx)``, ``idx`` None unless ``want_idx``.

    A window far larger than the input (:func:`poolkit.geometry.large_window`, any nd)
    runs on ``max3d_cl``, which clips each window's taps to the input arithmetically,
    on channels-last 5-D views (strided for a channels-first array): memory for the
    output only, time for the taps inside the input. Same values and indices.
    """
    if g.nd == 1:  # the 2-D kernels on an H = 1 view
        out, idx = run_max_pool(Lay.as_2d(x, cl), G.with_unit_dims(g, 2), cl, want_idx, parallel, omit)
        return Lay.from_2d(out, cl), (None if idx is None else Lay.from_2d(idx, cl))
    out = _empty(x, cl, g.out_size)
    idx = np.empty(out.shape, dtype=np.int64) if want_idx else None
    if out.size and G.large_window(g):
        g5 = G.with_unit_dims(g, 3)
        x5, out5, idx5 = (None if a is None else
                          Lay.to5(a, g.nd, True) if cl else np.moveaxis(Lay.to5(a, g.nd, False), 1, -1)
                          for a in (x, out, idx))
        _kernel(_named("max3d_cl", omit), parallel, x.size)(
            x5, out5, _NO_INDEX if idx is None else idx5, want_idx, *g5.stride, *g5.padding,
            *g5.dilation, *g5.kernel, G.max_init(x.dtype, omit))
    elif out.size:
        if g.nd == 2:
            run_max_pool2d(x, out, idx, g.stride, g.padding, g.dilation, g.kernel, channels_last=cl,
                           parallel=_use_parallel(x.size, parallel), omit=omit)
        elif not cl and not want_idx and x.flags.c_contiguous:
            _max3d_separable(x, out, g, _use_parallel(x.size, parallel), omit)
        else:
            _kernel(_named("max3d_cl" if cl else "max3d_cf", omit), parallel, x.size)(
                x, out, _NO_INDEX if idx is None else idx, want_idx, *g.stride, *g.padding,
                *g.dilation, *g.kernel, G.max_init(x.dtype, omit))
    return out, idx


#: Most bytes of depth-slice maxima :func:`_max3d_separable` keeps at once.
_SEPARABLE_SCRATCH = 16 << 20


def _max3d_separable(x, out, g, parallel, omit):
    """3-d max pooling of a contiguous NCDHW array, values only, as two runs of the 2-D NCHW
    kernel: every depth slice pooled over (H, W), then those maxima pooled over D (a window
    of (KD, 1) on (D, OH*OW) rows).

    Equal bit for bit to the 3-d scan: the max step combines partial results with the
    earlier one on the left in any grouping (:func:`._jit.vmax`), so ties and NaN resolve
    as in one pass. The (n, c) planes go in groups whose slice maxima fit in
    ``_SEPARABLE_SCRATCH`` bytes (at least one plane), so the scratch stays small.
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = g.out_size
    planes = x.reshape(N * C, D, H, W)
    rows = out.reshape(N * C, OD, OH * OW)
    group = max(1, _SEPARABLE_SCRATCH // max(1, D * OH * OW * x.itemsize))
    for p0 in range(0, N * C, group):
        p = min(N * C, p0 + group) - p0
        mid = np.empty((1, p * D, OH, OW), dtype=x.dtype)
        run_max_pool2d(planes[p0:p0 + p].reshape(1, p * D, H, W), mid, None, g.stride[1:], g.padding[1:],
                       g.dilation[1:], g.kernel[1:], channels_last=False, parallel=parallel, omit=omit)
        run_max_pool2d(mid.reshape(1, p, D, OH * OW), rows[p0:p0 + p].reshape(1, p, OD, OH * OW), None,
                       (g.stride[0], 1), (g.padding[0], 0), (g.dilation[0], 1), (g.kernel[0], 1),
                       channels_last=False, parallel=parallel, omit=omit)


def run_avg_pool(x, g, cl, count_include_pad, override, parallel, omit=False):
    """Average pooling of a batched float array (``override``: divisor_override or 0).

    Large windows (:func:`poolkit.geometry.large_window`) run on ``avg3d_cl`` like
    :func:`run_max_pool`'s; it sums the in-range taps in the same scan order.
    ``omit`` (``nan_policy="omit"``) runs the omit kernels (:func:`_avg_omit`), any nd.
    """
    if omit and g.nd == 2 and not cl and not G.large_window(g):  # the row-sweeping 2-D kernel
        out = _empty(x, cl, g.out_size)
        if out.size:
            run_avg_pool2d(x, out, g.stride, g.padding, g.kernel, None, None, override, channels_last=False,
                           parallel=_use_parallel(x.size, parallel),
                           omit_tables=_omit_tables(g, count_include_pad))
        return out
    if omit and g.nd == 1 and not cl and not G.large_window(g):
        out = run_avg_pool(Lay.as_2d(x, cl), G.with_unit_dims(g, 2), cl, count_include_pad, override,
                           parallel, omit)
        return Lay.from_2d(out, cl)
    if omit:
        out = _empty(x, cl, g.out_size)
        _avg_omit(x, out, g.nd, g.stride, g.padding, g.kernel, _omit_tables(g, count_include_pad), override,
                  cl, parallel, G.large_window(g))
        return out
    if g.nd == 1:
        out = run_avg_pool(Lay.as_2d(x, cl), G.with_unit_dims(g, 2), cl, count_include_pad, override,
                           parallel)
        return Lay.from_2d(out, cl)
    out = _empty(x, cl, g.out_size)
    if out.size and G.large_window(g):
        g5 = G.with_unit_dims(g, 3)
        x5, out5 = (Lay.to5(a, g.nd, True) if cl else np.moveaxis(Lay.to5(a, g.nd, False), 1, -1)
                    for a in (x, out))
        _kernel("avg3d_cl", parallel, x.size)(
            x5, out5, *g5.stride, *g5.padding, *g5.kernel, *G.avg_divisors(g5, count_include_pad, x.dtype),
            x.dtype.type(override))
    elif out.size:
        tables = G.avg_divisors(g, count_include_pad, x.dtype)
        if g.nd == 2:
            run_avg_pool2d(x, out, g.stride, g.padding, g.kernel, *tables, override, channels_last=cl,
                           parallel=_use_parallel(x.size, parallel))
        elif cl:
            _kernel("avg3d_cl", parallel, x.size)(
                x, out, *g.stride, *g.padding, *g.kernel, *tables, x.dtype.type(override))
        else:
            _launch_planes("avg3d_cf", parallel, x.size, x, out, *g.stride, *g.padding, *g.kernel, *tables,
                           x.dtype.type(override))
    return out


def _adaptive_blocks(ag, x, cl, whole_input=False):
    """Each block of an adaptive pooling's output (:func:`.geometry.adaptive_blocks`: one block,
    the whole output, unless an output dimension is longer than ``ADAPTIVE_BLOCK``) as
    ``(xb, where, tables)``: the part of the batched ``x`` it reads, its index in a batched array
    of the output's shape and layout, and per spatial dimension its bins' (start, stop) int64
    tables, in cells of ``xb``.

    ``xb`` is the cells the block's bins cover, so no pass over a whole plane (a NaN check, a
    column pass) is repeated per block; with ``whole_input`` (indices wanted: they are flat
    positions in the whole plane) it is all of ``x``."""
    lead = (slice(None),) * (1 if cl else 2)
    for ranges in G.adaptive_blocks(ag.out_size):
        where = lead + tuple(slice(a, b) for a, b in ranges)
        tables = [ag.bins(i, a, b) for i, (a, b) in enumerate(ranges)]
        if whole_input or all(b - a == n for (a, b), n in zip(ranges, ag.out_size)):
            yield x, where, tables
            continue
        xb = x[lead + tuple(slice(s[0], e[-1]) for s, e in tables)]
        for s, e in tables:
            e -= s[0]
            s -= s[0]
        yield xb, where, tables


def _tables5(tables):
    """Per-dimension (start, stop) tables with the unit dimensions' first, for the 5-D kernels."""
    return [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - len(tables)) + list(tables)


def _flat_planes(x5):
    """``x5`` as (N*C, D*H*W) rows, where it is C-contiguous and its planes have fewer than 2**32
    cells (the adaptive average kernels' uint32 cell offsets); else a 0-row array."""
    cells = math.prod(x5.shape[2:])
    if x5.flags.c_contiguous and cells < 2**32:
        return x5.reshape(x5.shape[0] * x5.shape[1], cells)
    return np.empty((0, 1), x5.dtype)


def run_adaptive_max_pool(x, ag, cl, want_idx, parallel, omit=False):
    """Adaptive max pooling of a batched array: ``(out, idx)``, ``idx`` None unless ``want_idx``."""
    out = _empty(x, cl, ag.out_size)
    idx = np.empty(out.shape, dtype=np.int64) if want_idx else None
    nd, size = ag.nd, max(x.size, out.size)
    for xb, where, bins in (_adaptive_blocks(ag, x, cl, want_idx) if out.size else ()):
        x5, out5 = Lay.to5(xb, nd, cl), Lay.to5(out[where], nd, cl)
        args = (_NO_INDEX if idx is None else Lay.to5(idx[where], nd, cl), want_idx,
                *(t for pair in _tables5(bins) for t in pair), G.max_init(x.dtype, omit))
        if not cl and not want_idx and _on_columns(x5, out5):
            _launch_planes(_named("adaptive_max_cf_cols", omit), parallel, size, x5, out5, *args[2:])
        elif not cl and _on_lanes(x5):
            _launch_lanes(_named("adaptive_max_cf_lanes", omit), parallel, size, x5, out5, *args)
        else:
            _kernel(_named("adaptive_max_cl" if cl else "adaptive_max_cf", omit), parallel, size)(x5, out5, *args)
    return out, idx


def run_adaptive_avg_pool(x, ag, cl, parallel, omit=False):
    """Adaptive average pooling of a batched float array (``omit``: NaN cells left out; a bin that
    lost a cell is divided once by its count)."""
    out = _empty(x, cl, ag.out_size)
    if not out.size:
        return out
    if not cl and ag.out_size == (1,) * ag.nd and x.flags.c_contiguous:
        # One bin per plane: contiguous planes are flat rows (eight summed at once);
        # each is divided by its bin sizes in turn (the unit dimensions' 1 first), exactly
        # as adaptive_avg_cf does. No bin tables: building them was most of a global
        # average's per-call cost (a (1, 16, 7, 7) call: 61 us with them, 11 us without).
        sizes = [x.dtype.type(1)] * (3 - ag.nd) + [x.dtype.type(L) for L in ag.in_size]
        with parallel_slot(_use_parallel(x.size, parallel)) as par:
            KERNELS[(_named("global_sum", omit), par)](x.reshape(out.size, -1), out.reshape(-1), *sizes)
        return out
    nd, size = ag.nd, max(x.size, out.size)
    for xb, where, bins in _adaptive_blocks(ag, x, cl):
        x5, out5, bins = Lay.to5(xb, nd, cl), Lay.to5(out[where], nd, cl), _tables5(bins)
        sizes = [np.subtract(b, a, out=np.empty(len(a), x.dtype), casting="unsafe") for a, b in bins]
        if cl:
            extra = (_count_proto(x.dtype, math.prod(int((b - a).max()) for a, b in bins)),) if omit else ()
            _kernel(_named("adaptive_avg", omit) + "_cl", parallel, size)(
                x5, out5, *(t for pair in bins for t in pair), *sizes, *extra)
        else:
            _launch_planes(_named("adaptive_avg", omit) + "_cf", parallel, size, x5, out5, _flat_planes(x5),
                           *(t for pair in bins for t in pair), *sizes)
    return out


def _scatter(src, idx, shape, cl, accumulate, parallel):
    """A new array of ``shape`` (``src``'s dtype): zeros, then ``[idx] (+)= src`` per plane, in
    scan order (max backward, unpooling); the kernel zeroes each plane before its scatter."""
    dst = np.empty(shape, dtype=src.dtype)
    if src.size:
        s, i, d = Lay.flat3(src, cl), Lay.flat3(idx, cl), Lay.flat3(dst, cl)
        _kernel("scatter", parallel, max(src.size, dst.size))(s, i, d, bool(accumulate))
    else:
        dst[...] = 0
    return dst


def _divisor_array(g, count_include_pad, override, dtype):
    """The divisor of every output cell as ``dtype``: the product of the per-dimension
    counts, multiplied in ``dtype`` in dimension order like the forward kernels (an int64
    product could overflow for huge windows, and would round differently in 3-d)."""
    if override:
        return dtype.type(override)
    div = np.ones((1,) * g.nd, dtype=dtype)
    for i, t in enumerate(G.avg_divisors(g, count_include_pad, dtype)):
        div = div * t.reshape((1,) * i + (-1,) + (1,) * (g.nd - i - 1))
    return div


def _spread(share, x_shape, dtype, covering, nd, cl, parallel):
    """Gather ``share`` (per output cell) back over the windows; ``covering`` gives per dimension
    the (lo, hi) range of windows over each input cell (:func:`.geometry.covering_windows`)."""
    if share.size and all(n == 1 for n in Lay.spatial_shape(share.shape, cl)) and all(
            (lo == 0).all() and (hi == 1).all() for lo, hi in covering):
        # One window over every cell (adaptive pooling to size 1, a global window): each
        # cell gets its plane's share, added to zero as the gather does (-0.0 becomes +0.0).
        gx = np.empty(x_shape, dtype=dtype)
        gx[...] = share + dtype.type(0)
        return gx
    gx = np.zeros(x_shape, dtype=dtype)
    if gx.size and share.size:
        tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - nd) + list(covering)
        lo_w, hi_w = tables[-1]
        _kernel("avg_gather", parallel, max(gx.size, share.size))(
            Lay.cf5(share, nd, cl), Lay.cf5(gx, nd, cl), *(t for pair in tables for t in pair),
            int((hi_w - lo_w).max()))
    return gx


def _covering(spans, in_size):
    """:func:`.geometry.covering_windows` of every dimension's window spans."""
    return [G.covering_windows(a, b, L) for (a, b), L in zip(spans, in_size)]


def _spread_avg(grad, x, g, cl, count_include_pad, override, parallel):
    """Average-pooling backward: ``grad / divisor`` gathered over the windows of ``g``."""
    div = _divisor_array(g, count_include_pad, override, x.dtype)
    if isinstance(div, np.ndarray):
        div = div.reshape(Lay.cell_shape(div.shape, cl))
    share = grad / div  # PyTorch: grad_delta = grad_output / divide_factor, once per output cell
    if all(k <= s for k, s in zip(g.kernel, g.stride)):  # windows never overlap: written, not gathered
        gx = np.empty(x.shape, dtype=x.dtype)
        if gx.size:
            g3 = G.with_unit_dims(g, 3)
            _kernel("avg_spread", parallel, gx.size)(Lay.cf5(share, g.nd, cl), Lay.cf5(gx, g.nd, cl), *g3.stride,
                                                     *g3.padding, *g3.kernel)
        return gx
    return _spread(share, x.shape, x.dtype, _covering(G.window_extents(g), g.in_size), g.nd, cl, parallel)


def _valid_counts(x, cl, spans, sizes):
    """The number of non-NaN cells of every window, exactly (int64), for ``"omit"`` backward passes.

    ``spans`` gives per spatial dimension the windows' ``(start, stop)`` cells
    (clipped here to the input; dilation 1: averages only). A cumulative count along
    one dimension at a time turns each window's count into two lookups.
    """
    counts = ~np.isnan(Lay.channels_first(x, cl))
    for i, ((start, stop), L) in enumerate(zip(spans, sizes)):
        axis = 2 + i
        c = np.cumsum(counts, axis=axis, dtype=np.int64)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        counts = np.take(c, np.clip(stop, 0, L), axis=axis) - np.take(c, np.clip(start, 0, L), axis=axis)
    return Lay.channels_last(counts, cl)


def _spread_omit(grad, x, div, spans, in_size, nd, cl, parallel):
    """``"omit"`` average backward: ``grad / div`` gathered over the windows; NaN cells get 0."""
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 valid cells: only NaN cells read it
        share = grad / div.astype(x.dtype)  # the forward's divisor, rounded to x's dtype as the forward's
    gx = _spread(share, x.shape, x.dtype, _covering(spans, in_size), nd, cl, parallel)
    gx[np.isnan(x)] = 0
    return gx


def _sign(a):
    """PyTorch's sign: 0 for NaN (NumPy's gives NaN); used in the Lp gradients."""
    return np.where(np.isnan(a), a.dtype.type(0), np.sign(a))


def run_lp_pool(x, p, g, cl, parallel):
    """PyTorch's Lp pooling: ``(sign(a) * relu(|a|) * K) ** (1/p)``, ``a = avg_pool(x**p)``.

    A ceil_mode window that overhangs the input is averaged over its real cells,
    then scaled by the full kernel size ``K``; ``p = inf`` is ``max_pool(|x|)`` and
    ``-inf`` is ``-max_pool(-|x|)``.

    The (n, c) planes go in groups (:func:`_lp_groups`) whose ``x ** p`` (one buffer,
    reused) and pooled group fit in the output's bytes (or a group's minimum); each group
    is pooled and written into its slice of the output with the same elementwise
    operations, in the same order, as ``(avg_pool(x ** p) * K) ** (1/p)`` on the whole array: the same
    values bit for bit. A NaN stays a NaN at the same cell, but its sign bit may differ:
    which of two NaN operands NumPy's loops return depends on where the cell falls in
    its array (and the kernels' serial and parallel twins already differed there).

    ``p = 2`` on channels-first 1-d and 2-d input (:func:`_lp2_fused`) runs all of it in one
    kernel, ``lp2_nchw``: the same operations in the same order, one read of ``x``, no buffer.
    """
    out = _empty(x, cl, g.out_size)
    if _lp2_fused(p, g, cl):
        if out.size:
            x4, out4, g2 = (x, out, g) if g.nd == 2 else (Lay.as_2d(x, cl), Lay.as_2d(out, cl), G.with_unit_dims(g, 2))
            _launch_planes("lp2_nchw", parallel, x.size, x4, out4, *g2.stride, *g2.kernel,
                           *G.avg_divisors(g2, True, x.dtype), x.dtype.type(math.prod(g.kernel)))
        return out
    plane, out_plane = _lp_planes(x, cl, g)
    wt = _pow_dtype(x.dtype, p)
    # a plane's x**p (or s*|x|) and pooled plane; 3-d max pooling adds its depth-slice maxima
    per_plane = ((2 if math.isinf(p) else 1) * plane + out_plane) * wt.itemsize
    groups, most = _lp_groups(x, cl, per_plane, out.nbytes, parallel)
    buf = np.empty(most * plane, dtype=wt)
    K = math.prod(g.kernel)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for sel in groups:
            xs, o = x[sel], out[sel]
            t = buf[:xs.size].reshape(xs.shape)
            if math.isinf(p):
                s = 1 if p > 0 else -1
                np.multiply(s, np.abs(xs, out=t), out=t)  # s * |x|
                np.multiply(s, run_max_pool(t, g, cl, False, parallel)[0], out=o)
            else:
                a = run_avg_pool(_pow_into(xs, p, t), g, cl, True, 0, parallel)
                if a.dtype == o.dtype:
                    np.multiply(a, K, out=o)
                    o **= 1.0 / p  # in place: the same ufunc as ``** (1.0 / p)``
                else:  # NumPy 1.x, float32 and |p| > 3.4e38: computed in float64, rounded once at the end
                    o[...] = (a * K) ** (1.0 / p)
                del a  # before the next group's
    return out


def _lp2_fused(p, g, cl):
    """Whether :func:`run_lp_pool` runs ``lp2_nchw``: ``p = 2`` on channels-first 1-d or 2-d input
    with ordinary windows (not :func:`poolkit.geometry.large_window`). Its ``x * x`` is what
    NumPy's ``x ** 2.0`` runs (np.square on NumPy 1.x, np.power's fast path for a scalar 2.0 on 2.x)."""
    return p == 2 and not cl and g.nd <= 2 and not G.large_window(g)


def run_lp_pool_backward(grad, x, p, g, cl, parallel):
    """PyTorch's autograd values for :func:`run_lp_pool` (a zero window sum gives zero).

    Group by group of (n, c) planes (:func:`_lp_groups`), the whole chain -- ``x ** p``,
    its average, the output cells' factor, the spread back over the windows, the product
    with ``p * x ** (p - 1)`` -- runs on the group's slices, with temporaries of at most
    half the grad_input's bytes all told (or a group's minimum, :func:`_lp_groups`); each
    group's product is written into its slice of the result. Every step is the whole-array
    formula's elementwise operation and planes never mix: the same values bit for bit
    (NaN's sign bit aside, as in :func:`run_lp_pool`).
    """
    gx = np.empty(x.shape, dtype=x.dtype)
    plane, out_plane = _lp_planes(x, cl, g)
    wt = x.dtype if math.isinf(p) else _pow_dtype(x.dtype, p)
    if math.isinf(p):  # s*|x| then sign(x) in the buffer, the scatter, isnan's mask; max values, indices
        per_plane = plane * (2 * x.itemsize + 1) + out_plane * (x.itemsize + 8)
    else:  # x**p then p*x**(p-1) in the buffer, the spread, ~7 output-sized steps of the factor
        per_plane = plane * (wt.itemsize + x.itemsize) + 7 * out_plane * wt.itemsize
    groups, most = _lp_groups(x, cl, per_plane, gx.nbytes // 2, parallel)
    buf = np.empty(most * plane, dtype=wt)
    zero = x.dtype.type(0)
    K = math.prod(g.kernel)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for sel in groups:
            xs, gs = x[sel], grad[sel]
            t = buf[:xs.size].reshape(xs.shape)
            if math.isinf(p):
                s = 1 if p > 0 else -1
                idx = run_max_pool(np.multiply(s, np.abs(xs, out=t), out=t), g, cl, True, parallel)[1]
                g_abs = _scatter(gs, idx, xs.shape, cl, True, parallel)
                del idx
                np.multiply(g_abs, _sign_into(xs, t), out=gx[sel])  # g_abs * sign(x)
                continue
            a = run_avg_pool(_pow_into(xs, p, t), g, cl, True, 0, parallel)
            gt = gs * ((1.0 / p) * (a * K) ** (1.0 / p - 1.0)) * K
            sa = _sign(a)  # through sign(a) * relu(|a|): relu masks |a| <= 0, sign(a) enters twice
            ga = np.where(a == 0, zero, gt * sa * sa)  # zero sum -> zero gradient
            del a, gt, sa
            g_pow = _spread_avg(ga, xs, g, cl, True, 0, parallel)
            del ga
            _pow_into(xs, p - 1.0, t)
            np.multiply(g_pow, np.multiply(p, t, out=t), out=gx[sel])  # g_pow * (p * x ** (p - 1))
    return gx


def _lp_planes(x, cl, g):
    """Cells of one (n, c) plane of the batched ``x`` and of its pooled output (geometry ``g``)."""
    return math.prod(Lay.spatial_shape(x.shape, cl)), math.prod(g.out_size)


def _lp_groups(x, cl, plane_bytes, budget, parallel):
    """``(selections, most)``: index tuples that split the batched ``x`` (and any array in its
    layout: output, gradients) into groups of (n, c) planes, and the most planes in one group.

    A group holds at most ``budget // plane_bytes`` planes (``plane_bytes``: a plane's
    temporaries), as whole batch entries when an entry fits, else as a run of channels of
    one entry, and at least one plane: one plane's temporaries is the bound when a single
    plane is over the budget. The groups are even (sizes differ by one at most), so no small
    remainder is left over. When the whole array would run the parallel kernels, a group is
    also at least ``config.CPU_PARALLEL_MIN_SIZE`` cells (so it runs them too) and,
    channels-first (whose kernels split the planes among the threads), one plane per thread.
    """
    N, C = Lay.nc(x.shape, cl)
    if not N * C:
        return [], 0
    plane = x.size // (N * C)
    size = least = max(1, budget // max(1, plane_bytes))
    if _use_parallel(x.size, parallel):
        least = max(-(-config.CPU_PARALLEL_MIN_SIZE // max(1, plane)), 1 if cl else get_num_threads())
        size = max(size, least)
    if size >= C:  # batch entries: k a group, at least ``least`` planes
        k = min(N, max(size // C, -(-least // C)))
        return [_lp_sel(cl, b, slice(None)) for b in _even(N, k)], -(-N // -(-N // k)) * C
    return [_lp_sel(cl, slice(n, n + 1), c) for n in range(N) for c in _even(C, size)], -(-C // -(-C // size))


def _even(n, most):
    """``n`` items as consecutive slices of at most ``most`` items, as few and as even as can be."""
    groups = -(-n // most)
    return [slice(i * n // groups, (i + 1) * n // groups) for i in range(groups)]


def _lp_sel(cl, batch, channels):
    """The index of a batch range and a channel range of a batched array."""
    return (batch, Ellipsis, channels) if cl else (batch, channels)


class _PowProbe(np.ndarray):
    """An array whose every ufunc call returns the ufunc itself (see :func:`_pow_ufunc`)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return ufunc


@functools.lru_cache(maxsize=64)
def _pow_ufunc(e):
    """The ufunc ``a ** e`` runs for a float array ``a`` and a Python float ``e``: ``np.power``, or
    the one ``ndarray.__pow__`` hands some exponents to instead (NumPy 2: 0.5 -> ``np.sqrt``;
    NumPy 1.x also 2 -> ``np.square``, 1, -1, 0), as this NumPy does it."""
    return np.zeros(1).view(_PowProbe) ** e


def _pow_dtype(dtype, e):
    """The dtype of ``x ** e`` for an array ``x`` of ``dtype`` (``dtype`` itself, except on NumPy 1.x for
    float32 and a Python float beyond float32's range: float64)."""
    with np.errstate(over="ignore"):  # NumPy 2 rounds a huge ``e`` to float32's inf
        return (np.ones(1, dtype) ** e).dtype


def _pow_into(src, e, dst):
    """``dst[...] = src ** e`` bit for bit (``e`` a Python float), through the same ufunc; returns ``dst``."""
    ufunc = _pow_ufunc(e)
    return np.power(src, e, out=dst) if ufunc is np.power else ufunc(src, out=dst)


def _sign_into(a, out):
    """:func:`_sign` of ``a`` written into ``out`` (same values: NaN gives 0); returns ``out``."""
    np.sign(a, out=out)
    np.copyto(out, out.dtype.type(0), where=np.isnan(a))
    return out


# ================================================================ argument checks (once per call)
def _read_only(x):
    """``x`` as a read-only view (no copy). The kernels never write their input, and Numba
    compiles a kernel once per argument type, the read-only flag included: this way
    writable and read-only inputs (``np.memmap(mode="r")``, Zarr and Dask blocks, arrays
    with ``writeable=False``) share one specialization instead of compiling every kernel twice."""
    if x.flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


def _window_call(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, layout, allow_int):
    """Validate a windowed call: ``(x batched, channels_last, batched, geometry)``."""
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=allow_int)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    return _read_only(x), cl, batched, g


def _adaptive_call(op, nd, x, output_size, layout, allow_int):
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=allow_int)
    return _read_only(x), cl, batched, G.make_adaptive_geometry(op, spatial, output_size)


def _grad(grad_output, x, out_spatial, cl, batched, op):
    """Check ``grad_output`` (forward output's shape, ``x``'s dtype); return it batched."""
    shape = Lay.batched_shape(*Lay.nc(x.shape, cl), out_spatial, cl)
    g = G.check_grad_output(grad_output, x, shape if batched else shape[1:], op)
    return g if batched else g[None]


def _user_indices(indices, shape, batched, op, n_cells, cl, parallel):
    """Check indices given by the caller: shape, integer dtype, values inside one plane of
    ``n_cells`` (one parallel pass, :func:`.kernels_nd.count_outside`; min and max only for
    the message)."""
    idx = G.check_indices(indices, shape if batched else shape[1:], op)
    idx = idx if batched else idx[None]
    if idx.size:
        with parallel_slot(_use_parallel(idx.size, parallel)) as par:
            outside = _CHECKS[("count_outside", par)](Lay.flat3(idx, cl), n_cells)
        if outside:
            G.check_index_range(int(idx.min()), int(idx.max()), n_cells, op)
    return idx


def _max_indices(op, x, cl, batched, out_spatial, indices, compute, parallel):
    """The caller's indices (checked), or ``compute()``'s."""
    if indices is None:
        return compute()
    shape = Lay.batched_shape(*Lay.nc(x.shape, cl), out_spatial, cl)
    return _user_indices(indices, shape, batched, op, math.prod(Lay.spatial_shape(x.shape, cl)), cl, parallel)


def _results(batched, out, idx=None):
    out = Lay.unbatch(out, batched)
    return out if idx is None else (out, Lay.unbatch(idx, batched))


# ================================================================ public functions
def _omits(nan_policy, op, x):
    """Whether the kernels must skip NaN: ``nan_policy="omit"`` on a float array (checked first)."""
    return G.check_nan_policy(nan_policy, op) and x.dtype.kind == "f"


def _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout,
              parallel, nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, g = _window_call(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode,
                                     layout, True)
    return _results(batched, *run_max_pool(x, g, cl, return_indices, parallel, _omits(nan_policy, op, x)))


def _max_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices, indices, layout, parallel, nan_policy):
    G.check_bool(return_indices, "return_indices", op)  # accepted so F's arguments pass unchanged
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, g = _window_call(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode,
                                     layout, False)
    grad = _grad(grad_output, x, g.out_size, cl, batched, op)
    omit = _omits(nan_policy, op, x)
    idx = _max_indices(op, x, cl, batched, g.out_size, indices,
                       lambda: run_max_pool(x, g, cl, True, parallel, omit)[1], parallel)
    return _results(batched, _scatter(grad, idx, x.shape, cl, True, parallel))


def _avg_pool(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
              layout, parallel, nan_policy):
    cip = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, g = _window_call(op, nd, x, kernel_size, stride, padding, 1, ceil_mode, layout, False)
    return _results(batched, run_avg_pool(x, g, cl, cip, override, parallel, _omits(nan_policy, op, x)))


def _avg_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, layout, parallel, nan_policy):
    cip = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, g = _window_call(op, nd, x, kernel_size, stride, padding, 1, ceil_mode, layout, False)
    grad = _grad(grad_output, x, g.out_size, cl, batched, op)
    if not _omits(nan_policy, op, x):
        return _results(batched, _spread_avg(grad, x, g, cl, cip, override, parallel))
    spans = G.window_extents(g)
    if override:
        div = np.asarray(override, dtype=np.int64)
    else:  # the valid cells + the padding cells counted (geometry.check_nan_policy)
        tables = _omit_tables(g, cip)
        full = np.ones((1,) * g.nd, np.int64)
        inside = np.ones((1,) * g.nd, np.int64)
        for i in range(g.nd):
            axis = (1,) * i + (-1,) + (1,) * (g.nd - i - 1)
            full, inside = full * tables[i].reshape(axis), inside * tables[g.nd + i].reshape(axis)
        pads = full - inside
        div = _valid_counts(x, cl, spans, g.in_size) + pads.reshape(Lay.cell_shape(pads.shape, cl))
    return _results(batched, _spread_omit(grad, x, div, spans, g.in_size, g.nd, cl, parallel))


def _adaptive_max(op, nd, x, output_size, return_indices, layout, parallel, nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, ag = _adaptive_call(op, nd, x, output_size, layout, True)
    return _results(batched, *run_adaptive_max_pool(x, ag, cl, return_indices, parallel,
                                                    _omits(nan_policy, op, x)))


def _adaptive_max_backward(op, nd, grad_output, x, output_size, return_indices, indices, layout,
                           parallel, nan_policy):
    G.check_bool(return_indices, "return_indices", op)
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, ag = _adaptive_call(op, nd, x, output_size, layout, False)
    grad = _grad(grad_output, x, ag.out_size, cl, batched, op)
    omit = _omits(nan_policy, op, x)
    idx = _max_indices(op, x, cl, batched, ag.out_size, indices,
                       lambda: run_adaptive_max_pool(x, ag, cl, True, parallel, omit)[1], parallel)
    return _results(batched, _scatter(grad, idx, x.shape, cl, True, parallel))


def _adaptive_avg(op, nd, x, output_size, layout, parallel, nan_policy):
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, ag = _adaptive_call(op, nd, x, output_size, layout, False)
    return _results(batched, run_adaptive_avg_pool(x, ag, cl, parallel, _omits(nan_policy, op, x)))


def _adaptive_avg_backward(op, nd, grad_output, x, output_size, layout, parallel, nan_policy):
    G.check_nan_policy(nan_policy, op)
    x, cl, batched, ag = _adaptive_call(op, nd, x, output_size, layout, False)
    grad = _grad(grad_output, x, ag.out_size, cl, batched, op)
    omit = _omits(nan_policy, op, x) and bool(np.isnan(x).any())  # without NaN no bin loses a cell
    share = np.empty(grad.shape, x.dtype)
    for xb, where, bins in (_adaptive_blocks(ag, x, cl) if grad.size else ()):
        _adaptive_share(grad[where], share[where], bins, cl)
        if omit:  # the forward's rule per bin: one division by the count where a cell was left out
            valid = _valid_counts(xb, cl, bins, Lay.spatial_shape(xb.shape, cl))
            full = np.ones((1,) * nd, np.int64)
            for i, (start, stop) in enumerate(bins):
                full = full * (stop - start).reshape((1,) * i + (-1,) + (1,) * (nd - i - 1))
            lost = valid < full.reshape(Lay.cell_shape(full.shape, cl))
            with np.errstate(divide="ignore", invalid="ignore"):
                share[where] = np.where(lost, grad[where] / valid.astype(x.dtype), share[where])
    covering = [G.adaptive_covering(L, O) for L, O in zip(ag.in_size, ag.out_size)]
    gx = _spread(share, x.shape, x.dtype, covering, nd, cl, parallel)
    if omit:
        gx[np.isnan(x)] = 0
    return _results(batched, gx)


def _adaptive_share(grad, share, bins, cl):
    """``share = grad / kd / kh / kw`` per output cell of a block with the given bins: PyTorch's
    adaptive average backward, one bin size after the other (in place after the first)."""
    nd = len(bins)
    for i, (start, stop) in enumerate(bins):
        size = (stop - start).astype(share.dtype)
        size = size.reshape((1,) * (i + (1 if cl else 2)) + (-1,) + (1,) * (nd - i - 1 + cl))
        np.divide(grad if i == 0 else share, size, out=share)


def _lp_call(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    return (p,) + _window_call(op, nd, x, kernel_size, stride, 0, 1, ceil_mode, layout, False)


def _lp_pool(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel):
    p, x, cl, batched, g = _lp_call(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    return _results(batched, run_lp_pool(x, p, g, cl, parallel))


def _lp_pool_backward(op, nd, grad_output, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel):
    p, x, cl, batched, g = _lp_call(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    grad = _grad(grad_output, x, g.out_size, cl, batched, op)
    return _results(batched, run_lp_pool_backward(grad, x, p, g, cl, parallel))


def _unpool_call(op, nd, x, indices, kernel_size, stride, padding, output_size, layout, parallel):
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=True)
    x = _read_only(x)
    size = G.unpool_output_size(op, spatial, kernel_size, stride, padding, output_size, channels_last=cl)
    idx = _user_indices(indices, x.shape, batched, op, math.prod(size), cl, parallel)
    return x, cl, batched, size, idx


def _max_unpool(op, nd, x, indices, kernel_size, stride, padding, output_size, layout, parallel):
    x, cl, batched, size, idx = _unpool_call(op, nd, x, indices, kernel_size, stride, padding,
                                             output_size, layout, parallel)
    shape = Lay.batched_shape(*Lay.nc(x.shape, cl), size, cl)
    return _results(batched, _scatter(x, idx, shape, cl, False, parallel))


def _max_unpool_backward(op, nd, grad_output, x, indices, kernel_size, stride, padding, output_size,
                         layout, parallel):
    x, cl, batched, size, idx = _unpool_call(op, nd, x, indices, kernel_size, stride, padding,
                                             output_size, layout, parallel)
    grad = _grad(grad_output, x, size, cl, batched, op)
    gx = np.empty(x.shape, dtype=x.dtype)
    if gx.size:
        _kernel("gather", parallel, max(gx.size, grad.size))(
            Lay.flat3(grad, cl), Lay.flat3(idx, cl), Lay.flat3(gx, cl))
    return _results(batched, gx)


def _global(op, keepdims, layout):
    return G.check_bool(keepdims, "keepdims", op), G.check_layout(layout, 2, op)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", parallel=True, nan_policy="propagate"):
    return _max_pool("max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, parallel, nan_policy)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", parallel=True, nan_policy="propagate"):
    return _max_pool("max_pool2d", 2, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, parallel, nan_policy)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW", parallel=True, nan_policy="propagate"):
    return _max_pool("max_pool3d", 3, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, parallel, nan_policy)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", parallel=True, nan_policy="propagate"):
    return _avg_pool("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     None, layout, parallel, nan_policy)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCHW", parallel=True, nan_policy="propagate"):
    return _avg_pool("avg_pool2d", 2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, parallel, nan_policy)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW", parallel=True, nan_policy="propagate"):
    return _avg_pool("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, parallel, nan_policy)


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL", parallel=True,
                        nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool1d", 1, x, output_size, return_indices, layout, parallel,
                         nan_policy)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW", parallel=True,
                        nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool2d", 2, x, output_size, return_indices, layout, parallel,
                         nan_policy)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW", parallel=True,
                        nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool3d", 3, x, output_size, return_indices, layout, parallel,
                         nan_policy)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL", parallel=True, nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool1d", 1, x, output_size, layout, parallel, nan_policy)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW", parallel=True, nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool2d", 2, x, output_size, layout, parallel, nan_policy)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW", parallel=True, nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool3d", 3, x, output_size, layout, parallel, nan_policy)


def global_max_pool2d(x, keepdims=False, *, layout="NCHW", parallel=True, nan_policy="propagate"):
    keepdims, cl = _global("global_max_pool2d", keepdims, layout)
    return Lay.drop_unit(_adaptive_max("global_max_pool2d", 2, x, 1, False, layout, parallel, nan_policy),
                         keepdims, cl)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW", parallel=True, nan_policy="propagate"):
    keepdims, cl = _global("global_avg_pool2d", keepdims, layout)
    return Lay.drop_unit(_adaptive_avg("global_avg_pool2d", 2, x, 1, layout, parallel, nan_policy),
                         keepdims, cl)


def lp_pool1d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCL", parallel=True):
    return _lp_pool("lp_pool1d", 1, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCHW", parallel=True):
    return _lp_pool("lp_pool2d", 2, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel)


def lp_pool3d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCDHW", parallel=True):
    return _lp_pool("lp_pool3d", 3, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel)


def max_unpool1d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCL",
                 parallel=True):
    return _max_unpool("max_unpool1d", 1, x, indices, kernel_size, stride, padding, output_size,
                       layout, parallel)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCHW",
                 parallel=True):
    return _max_unpool("max_unpool2d", 2, x, indices, kernel_size, stride, padding, output_size,
                       layout, parallel)


def max_unpool3d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                 layout="NCDHW", parallel=True):
    return _max_unpool("max_unpool3d", 3, x, indices, kernel_size, stride, padding, output_size,
                       layout, parallel)


# ---------------------------------------------------------------- backward
def max_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCL",
                        parallel=True, nan_policy="propagate"):
    return _max_pool_backward("max_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel, nan_policy)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW",
                        parallel=True, nan_policy="propagate"):
    return _max_pool_backward("max_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel, nan_policy)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW",
                        parallel=True, nan_policy="propagate"):
    return _max_pool_backward("max_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel, nan_policy)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL", parallel=True, nan_policy="propagate"):
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, None, layout, parallel, nan_policy)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW", parallel=True,
                        nan_policy="propagate"):
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, parallel, nan_policy)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW", parallel=True,
                        nan_policy="propagate"):
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, parallel, nan_policy)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCL", parallel=True, nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool1d_backward", 1, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel, nan_policy)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCHW", parallel=True, nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool2d_backward", 2, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel, nan_policy)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCDHW", parallel=True, nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool3d_backward", 3, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel, nan_policy)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL", parallel=True,
                                 nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool1d_backward", 1, grad_output, x, output_size,
                                  layout, parallel, nan_policy)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW", parallel=True,
                                 nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool2d_backward", 2, grad_output, x, output_size,
                                  layout, parallel, nan_policy)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW", parallel=True,
                                 nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool3d_backward", 3, grad_output, x, output_size,
                                  layout, parallel, nan_policy)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", parallel=True,
                               nan_policy="propagate"):
    op = "global_max_pool2d_backward"
    keepdims, cl = _global(op, keepdims, layout)
    return _adaptive_max_backward(op, 2, Lay.add_unit(grad_output, keepdims, cl), x, 1, False, None,
                                  layout, parallel, nan_policy)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", parallel=True,
                               nan_policy="propagate"):
    op = "global_avg_pool2d_backward"
    keepdims, cl = _global(op, keepdims, layout)
    return _adaptive_avg_backward(op, 2, Lay.add_unit(grad_output, keepdims, cl), x, 1, layout, parallel,
                                  nan_policy)


def lp_pool1d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCL", parallel=True):
    return _lp_pool_backward("lp_pool1d_backward", 1, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout, parallel)


def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCHW", parallel=True):
    return _lp_pool_backward("lp_pool2d_backward", 2, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout, parallel)


def lp_pool3d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCDHW", parallel=True):
    return _lp_pool_backward("lp_pool3d_backward", 3, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout, parallel)


def max_unpool1d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCL", parallel=True):
    return _max_unpool_backward("max_unpool1d_backward", 1, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout, parallel)


def max_unpool2d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCHW", parallel=True):
    return _max_unpool_backward("max_unpool2d_backward", 2, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout, parallel)


def max_unpool3d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCDHW", parallel=True):
    return _max_unpool_backward("max_unpool3d_backward", 3, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout, parallel)


# ---------------------------------------------------------------- docstrings (one template: poolkit._docs)
def _summary(name):
    if name.endswith("_backward"):
        return f"Gradient of :func:`poolkit.{name[:-9]}` w.r.t. ``x`` on the CPU (deterministic)."
    if name.endswith("1d") and name.startswith(("max_pool", "avg_pool")):
        return f"``{name}`` on the CPU (the 2-D kernels on an H = 1 view)."
    if name.startswith("global"):
        return f"``{name}`` on the CPU (adaptive pooling to 1 x 1)."
    if name.startswith(("max_pool", "avg_pool")):
        return f"``{name}`` on the CPU with Numba (NumPy in, NumPy out)."
    return f"``{name}`` on the CPU with Numba (generic kernel on 5-D views)."


document_twins(globals(), G.OPS, "cpu", _summary,
               "``parallel=False`` runs the serial kernel (inputs under\n    "
               "``poolkit.config.CPU_PARALLEL_MIN_SIZE`` elements always do).")
