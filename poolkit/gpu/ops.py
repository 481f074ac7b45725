"""The public GPU functions: validate once, then run on already-validated geometry.

Every public function here checks its arguments exactly once, at the boundary --
:func:`_input` for ``x`` (shape, layout, dtype), one call of
:func:`poolkit.geometry.make_geometry` / :func:`~poolkit.geometry.make_adaptive_geometry`
/ :func:`~poolkit.geometry.unpool_output_size`, and the ``check_*`` helpers -- and
then hands the validated geometry and device arrays to the *runners* (``_run_*``),
which never validate again and never call a public function:

* **1-d and 2-d max/avg pooling run on the 2-D kernels** (:mod:`poolkit.gpu.naive2d`,
  :mod:`poolkit.gpu.tiled2d`): an ``(N, C, L)`` array is an ``(N, C, 1, L)`` view
  pooled with the geometry lifted by :func:`poolkit.geometry.with_unit_dims`, so
  they get the tiled kernels too (keyword ``kernel="optimized"``/``"naive"``).
  :func:`_launch_2d` builds one such launch (:class:`~poolkit.gpu.device.PreparedLaunch`).
* **Everything else runs the generic 5-D kernels** of :mod:`poolkit.gpu.kernels_nd`
  (3-d pooling, adaptive, the backward gathers, unpooling, Lp's element-wise steps).
* **``nan_policy="omit"``** (float inputs; integers hold no NaN and run the propagate
  kernels) runs on the generic kernels for every nd, 1-d and 2-d included:
  ``max3d_omit`` / ``adaptive_max_omit`` (the max kernels' own source with the omit
  step), ``avg_omit`` (every omit average, and the divisors of its backward) and
  ``avg_gather_omit``. The 2-D naive and tiled kernels stay propagate-only.
* **Gradients are gathers, never atomics**: bitwise deterministic and equal to
  the CPU's. Indices passed with ``indices=`` must come from that forward call: an
  index outside its own window is never matched (the CPU scatter would still
  route it). User-given indices are range-checked like on the CPU, which copies
  them to the host once.

Inputs: GPU arrays (Numba device arrays, anything with ``__cuda_array_interface__``,
the simulator's ``FakeCUDAArray``) stay on the device and give device arrays; NumPy
input is copied in and the result copied back. ``grad_output`` and ``indices`` may
be NumPy or device arrays.

Dtypes (:data:`SUPPORTED_DTYPES`, :data:`ND_SUPPORTED_DTYPES`): max-type forward ops
and unpooling take float32, float64, int32 and uint8; average, adaptive average,
Lp pooling and every backward take float32 and float64.
"""
from __future__ import annotations

import inspect
import math
from typing import NamedTuple

import numpy as np

from .. import _layout as L
from .. import geometry as G
from .._docs import document_twins
from . import device as D
from . import naive2d, tiled2d
from .kernels_nd import ND_KERNELS, copy_4d, copy_5d
from .plan import plan_tiles

__all__ = list(G.OPS) + [
    "prepare_max_pool2d", "prepare_avg_pool2d", "kernel_source", "kernel_specializations",
    "nd_kernel_specializations", "KERNELS", "SUPPORTED_DTYPES", "ND_SUPPORTED_DTYPES",
]

# =====================================================================================
# Dtypes and kernel tables.
# =====================================================================================
#: dtypes the GPU kernels are compiled for. (The CPU backend takes every integer dtype
#: for max; on the GPU each dtype is one more compiled specialization per kernel, so
#: only the common image/label types.)
_MAXLIKE = ("float32", "float64", "int32", "uint8")
_FLOATS = ("float32", "float64")
#: ... per 2-D forward op: max takes all of them, avg the floats.
SUPPORTED_DTYPES = {"max_pool2d": _MAXLIKE, "avg_pool2d": _FLOATS}
#: ... per kind of op: ``"max"`` (max-type forward, unpooling) and ``"float"`` (the rest).
ND_SUPPORTED_DTYPES = {"max": _MAXLIKE, "float": _FLOATS}

_KERNEL_CHOICES = ("optimized", "naive")
_TILED = {"NCHW": tiled2d.nchw_tiled, "NHWC": tiled2d.nhwc_tiled}

#: ``KERNELS[(op, layout, kernel)]`` -> the ``@cuda.jit`` dispatcher, with ``op`` one of
#: ``"max"``, ``"max_idx"``, ``"avg"``, ``layout`` ``"NCHW"``/``"NHWC"`` and ``kernel``
#: ``"naive"``/``"optimized"``. The notebooks show their source (:func:`kernel_source`).
KERNELS = {
    ("max", "NCHW", "naive"): naive2d.max_nchw_naive,
    ("max_idx", "NCHW", "naive"): naive2d.max_idx_nchw_naive,
    ("avg", "NCHW", "naive"): naive2d.avg_nchw_naive,
    ("max", "NHWC", "naive"): naive2d.max_nhwc_naive,
    ("max_idx", "NHWC", "naive"): naive2d.max_idx_nhwc_naive,
    ("avg", "NHWC", "naive"): naive2d.avg_nhwc_naive,
}
KERNELS.update({(red, layout, "optimized"): factory(red)
                for layout, factory in _TILED.items() for red in tiled2d.REDUCTIONS})


def kernel_source(op: str = "max", layout: str = "NCHW", kernel: str = "naive") -> str:
    """Python source of one 2-D kernel, e.g. ``kernel_source("max", "NCHW", "optimized")``.

    ``op`` is ``"max"``, ``"max_idx"`` or ``"avg"``; works on a GPU and on the
    simulator. A naive kernel is one function; an optimized kernel is made by its
    layout's factory (:func:`poolkit.gpu.tiled2d.nchw_tiled` /
    :func:`~poolkit.gpu.tiled2d.nhwc_tiled`), whose source is shown with a first
    line saying which reduction it was built for.
    """
    layout = layout.upper()
    fn = KERNELS[(op, layout, kernel)].py_func
    if kernel == "naive":
        return inspect.getsource(fn)
    factory = _TILED[layout]
    return (f"# KERNELS[({op!r}, {layout!r}, 'optimized')] is {factory.__name__}({op!r}): the factory below,\n"
            f"# compiled with AVG={op == 'avg'} and WITH_INDEX={op == 'max_idx'} as constants.\n"
            + inspect.getsource(factory.__wrapped__))


# =====================================================================================
# Validation (the public boundary; nothing below re-validates).
# =====================================================================================
class _Input(NamedTuple):
    """A validated ``x``: its shape/dtype, layout flag, batch flag, spatial size, N, C, NumPy-ness."""

    shape: tuple
    dtype: np.dtype
    cl: bool
    batched: bool
    spatial: tuple
    N: int
    C: int
    host: bool

    @property
    def empty(self) -> bool:
        """No plane to pool: ``N = 0``, or ``C = 0`` (adaptive pooling and unpooling take it,
        :func:`poolkit.geometry.takes_zero_channels`). Nothing is launched."""
        return self.N * self.C == 0


def _check_kernel(kernel, op):
    if not isinstance(kernel, str) or kernel not in _KERNEL_CHOICES:
        raise ValueError(f"{op}: kernel must be 'optimized' or 'naive', got {kernel!r}")
    return kernel


def _input(x, op, nd, layout, kind) -> _Input:
    """Validate ``x`` (before any launch): ``kind`` ``"max"`` allows the integer dtypes."""
    shape, dtype = D.shape_dtype(x, op)
    cl, batched, spatial = G.check_input(shape, dtype, nd, layout, op, allow_int=kind == "max")
    allowed = ND_SUPPORTED_DTYPES[kind]
    if dtype.name not in allowed:
        raise TypeError(f"{op}: the GPU kernels support dtypes {', '.join(allowed)}; got {dtype} "
                        "(cast with x.astype(...), or use the CPU functions)")
    N, C = L.nc(tuple(shape) if batched else (1,) + tuple(shape), cl)
    # results (and the dtype grad_output must have) are in native byte order, as on the CPU
    native = np.dtype(dtype).newbyteorder("=")
    return _Input(tuple(shape), native, cl, batched, tuple(spatial), N, C, isinstance(x, np.ndarray))


def _empty(a: _Input, shape, with_idx=False):
    """The empty result(s) of ``shape`` (batched), unbatched like ``x``: nothing to launch."""
    return D.empty(shape if a.batched else shape[1:], a.dtype, a.host, with_idx)


def _out_shape(a: _Input, spatial):
    """Batched shape of an array with ``a``'s N, C and layout and these spatial sizes."""
    return L.batched_shape(a.N, a.C, spatial, a.cl)


def _grad5(grad_output, a: _Input, out_shape, nd, op):
    """Check ``grad_output`` (forward output's shape, ``x``'s dtype); return it 5-D on the device."""
    shape, gdt = D.shape_dtype(grad_output, op, "grad_output")
    want = out_shape if a.batched else out_shape[1:]
    if tuple(shape) != tuple(want):
        raise ValueError(f"{op}: grad_output must have the forward output's shape {tuple(want)}, "
                         f"got {tuple(shape)}")
    if gdt.newbyteorder("=") != np.dtype(a.dtype):
        raise TypeError(f"{op}: grad_output must have x's dtype {a.dtype}, got {gdt}")
    return D.to5(grad_output, nd, a.cl, a.batched, op)


def _indices5(indices, a: _Input, shape_batched, nd, op, n_cells):
    """Check user indices (shape, integer dtype, values in one plane); return int64 5-D on the device."""
    shape, idt = D.shape_dtype(indices, op, "indices")
    want = shape_batched if a.batched else shape_batched[1:]
    if idt.kind not in "iu":
        raise TypeError(f"{op}: indices must have an integer dtype, got {idt}")
    if tuple(shape) != tuple(want):
        raise ValueError(f"{op}: indices must have shape {tuple(want)}, got {tuple(shape)}")
    host = indices if isinstance(indices, np.ndarray) else D.device_view(indices).copy_to_host()
    if host.size:
        G.check_index_range(host.min(), host.max(), n_cells, op)
    if idt == np.int64 and not isinstance(indices, np.ndarray):
        return D.to5(indices, nd, a.cl, a.batched, op)
    return D.put(host.astype(np.int64).reshape(D.shape5(shape, nd, a.cl, a.batched)))


# =====================================================================================
# Runners: validated geometry + device arrays in, device arrays out.
# =====================================================================================
def _launch_2d(red, xd, g, cl, stage, *, count_include_pad=True, override=0):
    """The launch of a 2-D kernel on batched, C-contiguous ``xd`` (a 2-d geometry ``g``).

    ``red`` is ``"max"``, ``"max_idx"`` or ``"avg"``; ``stage`` ``"optimized"`` or
    ``"naive"`` (the naive kernel also runs when no tile fits in shared memory). A
    window far larger than the input (:func:`poolkit.geometry.large_window`) runs on
    the 5-D kernel ``max3d``/``avg3d`` instead, which visits only in-range taps.
    """
    shape = tuple(int(v) for v in xd.shape)
    dtype = np.dtype(xd.dtype)
    layout = "NHWC" if cl else "NCHW"
    out_shape = L.batched_shape(*L.nc(shape, cl), g.out_size, cl)
    out = D.alloc(out_shape, dtype)
    outputs = (out, D.alloc(out_shape, np.int64)) if red == "max_idx" else (out,)
    if G.large_window(g):
        return _launch_large(red, xd, g, cl, outputs, count_include_pad, override)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = g.kernel, g.stride, g.padding, g.dilation
    if red == "avg":
        div_h, div_w = (D.put(t.astype(dtype)) for t in G.avg_divisor_table(g, count_include_pad))
        init, over = dtype.type(0), dtype.type(override)
    else:
        init = G.max_identity(dtype)
    plan = plan_tiles(layout, shape, g, dtype.itemsize) if stage == "optimized" else None
    if plan is not None and red == "avg" and override < 0:
        # The tiled kernels take a divisor_override only when > 0; a negative one
        # (PyTorch divides by it too) goes in as the divisor table: override * 1.
        div_h = D.put(np.full(g.out_size[0], override, dtype=dtype))
        div_w = D.put(np.ones(g.out_size[1], dtype=dtype))
        over = dtype.type(0)
    if plan is None:  # naive requested, or no tile fits in shared memory
        if red == "avg":
            args = (xd, out, SH, SW, PH, PW, KH, KW, div_h, div_w, over, init)
        else:
            args = (xd,) + outputs + (SH, SW, PH, PW, DH, DW, KH, KW, init)
        total = int(np.prod(out_shape))
        tpb = D.threads_per_block()
        return D.PreparedLaunch(f"{red}_{layout.lower()}_naive", KERNELS[(red, layout, "naive")],
                                max(1, -(-total // tpb)), tpb, 0, args, outputs)
    # The tiled kernels of one layout share an argument list; what a reduction does
    # not use gets any value of the right kind (tiled2d's notes): outf, init, 1.
    flat = tuple(a.reshape(int(np.prod(a.shape))) for a in outputs)
    idxf = flat[1] if red == "max_idx" else flat[0]
    if red == "avg":
        DH = DW = 1
    else:
        div_h = div_w = flat[0]
        over = init
    OH, OW = g.out_size
    if cl:
        N, H, W, C = shape
        head = (N, H, W, C, OH, OW)
        tiles = plan.tiles
    else:
        N, C, H, W = shape
        head = (N * C, H, W, OH, OW)
        tiles = plan.tiles[:2]
    args = ((xd.reshape(int(np.prod(shape))), flat[0], idxf) + head + (SH, SW, PH, PW, DH, DW, KH, KW, init)
            + (div_h, div_w, over, plan.outputs_per_thread, plan.tile_in[0], plan.tile_in[1],
               plan.load_width) + tuple(tiles))
    return D.PreparedLaunch(f"{red}_{layout.lower()}_tiled", KERNELS[(red, layout, "optimized")],
                            plan.grid, plan.block, plan.shared_bytes, args, outputs, plan)


def _launch_large(red, xd, g, cl, outputs, count_include_pad, override):
    """:func:`_launch_2d` for a large window: ``max3d``/``avg3d`` on 5-D views (unit D)."""
    dtype = np.dtype(xd.dtype)
    g5 = G.with_unit_dims(g, 3)
    x5, out5 = _as5(xd, cl), _as5(outputs[0], cl)
    if red == "avg":
        tables = [D.put(t.astype(dtype)) for t in G.avg_divisor_table(g5, count_include_pad)]
        name, kernel = "avg3d", ND_KERNELS["avg3d"]
        args = (x5, out5, bool(cl), *g5.stride, *g5.padding, *g5.kernel, *tables, dtype.type(override),
                dtype.type(0))
    else:
        want_idx = red == "max_idx"
        idx5 = _as5(outputs[1], cl) if want_idx else D.alloc((1, 1, 1, 1, 1), np.int64)
        name, kernel = "max3d", ND_KERNELS["max3d"]
        args = (x5, out5, idx5, want_idx, bool(cl), *g5.stride, *g5.padding, *g5.dilation, *g5.kernel,
                G.max_identity(dtype))
    total = int(np.prod(tuple(outputs[0].shape)))
    tpb = D.threads_per_block()
    return D.PreparedLaunch(name, kernel, max(1, -(-total // tpb)), tpb, 0, args, outputs)


def _as4(x5, cl):
    s = tuple(x5.shape)
    return x5.reshape((s[0], s[2], s[3], s[4]) if cl else (s[0], s[1], s[3], s[4]))


def _as5(a4, cl):
    s = tuple(a4.shape)
    return a4.reshape((s[0], 1) + s[1:] if cl else (s[0], s[1], 1) + s[2:])


def _run_max(x5, g, nd, cl, want_idx, stage="optimized", omit=False):
    """Max pooling of a 5-D device array with geometry ``g``; returns ``(out5, idx5 or None)``.

    ``omit`` (``nan_policy="omit"``, float ``x5`` only) runs ``max3d_omit`` for every
    nd: the 2-D kernels (naive and tiled) know the propagate rule only, so ``stage``
    is then ignored.
    """
    if nd < 3 and not omit:  # the 2-D kernels on the (N, C, H, W) / (N, H, W, C) view
        outs = _launch_2d("max_idx" if want_idx else "max", _as4(x5, cl), G.with_unit_dims(g, 2), cl,
                          stage).run()
        return _as5(outs[0], cl), (_as5(outs[1], cl) if want_idx else None)
    g5 = G.with_unit_dims(g, 3)
    name = "max3d_omit" if omit else "max3d"
    N, C = L.nc(tuple(x5.shape), cl)
    out = D.alloc(L.batched_shape(N, C, g5.out_size, cl), x5.dtype)
    idx = D.alloc(out.shape, np.int64) if want_idx else D.alloc((1, 1, 1, 1, 1), np.int64)
    D.launch_per_item(name, ND_KERNELS[name], int(np.prod(out.shape)), x5, out, idx, bool(want_idx),
                      bool(cl), *g5.stride, *g5.padding, *g5.dilation, *g5.kernel, G.max_init(x5.dtype, omit))
    return out, (idx if want_idx else None)


def _run_avg(x5, g, nd, cl, count_include_pad=True, override=0, stage="optimized"):
    """Average pooling of a 5-D device array with geometry ``g`` (``override`` 0: none)."""
    if nd < 3:
        out = _launch_2d("avg", _as4(x5, cl), G.with_unit_dims(g, 2), cl, stage,
                         count_include_pad=count_include_pad, override=override).run()[0]
        return _as5(out, cl)
    dtype = np.dtype(x5.dtype)
    N, C = L.nc(tuple(x5.shape), cl)
    out = D.alloc(L.batched_shape(N, C, g.out_size, cl), dtype)
    tables = [D.put(t.astype(dtype)) for t in G.avg_divisor_table(g, count_include_pad)]
    D.launch_per_item("avg3d", ND_KERNELS["avg3d"], int(np.prod(out.shape)), x5, out, bool(cl), *g.stride,
                      *g.padding, *g.kernel, *tables, dtype.type(override), dtype.type(0))
    return out


# The element-wise steps of Lp pooling (kernels_nd.ewise's op codes).
_POW, _SCALE_POW, _ABS, _SCALE, _LP_GRAD, _POW_GRAD, _TIMES_SIGN = range(7)


def _run_ewise(op_code, a, b, dtype, p1=0.0, p2=0.0, K=1.0):
    """Element-wise step on same-shape contiguous 5-D arrays (``b`` may be None)."""
    dtype = np.dtype(dtype)
    shape = tuple(a.shape)
    size = int(np.prod(shape))
    out = D.alloc(shape, dtype)
    af = a.reshape(size)
    bf = b.reshape(size) if b is not None else af
    D.launch_per_item("ewise", ND_KERNELS["ewise"], size, af, bf, out.reshape(size), np.int64(op_code),
                      dtype.type(p1), dtype.type(p2), dtype.type(K), dtype.type(0), dtype.type(1))
    return out


def _covering(starts_stops, in_size):
    """Per dimension (unit dims first) the covering output ranges as device int64 arrays."""
    nd = len(in_size)
    tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - nd)
    tables += [G.covering_windows(a, b, n) for (a, b), n in zip(starts_stops, in_size)]
    return [D.put(t) for pair in tables for t in pair]


def _run_max_gather(grad5, idx5, x_shape5, dtype, cl, starts_stops, in_size):
    gx = D.alloc(x_shape5, dtype)
    D.launch_per_item("max_gather", ND_KERNELS["max_gather"], int(np.prod(x_shape5)), grad5, idx5, gx,
                      bool(cl), *_covering(starts_stops, in_size), np.dtype(dtype).type(0))
    return gx


def _run_avg_gather(grad5, x_shape5, dtype, cl, starts_stops, in_size, tables, adaptive, override):
    dtype = np.dtype(dtype)
    gx = D.alloc(x_shape5, dtype)
    t = [np.ones(1, dtype)] * (3 - len(in_size)) + [np.asarray(v).astype(dtype) for v in tables]
    D.launch_per_item("avg_gather", ND_KERNELS["avg_gather"], int(np.prod(x_shape5)), grad5, gx, bool(cl),
                      *_covering(starts_stops, in_size), *[D.put(v) for v in t], bool(adaptive),
                      dtype.type(override), dtype.type(0))
    return gx


def _run_avg_omit(x5, cl, spans, in_size, full, inside, override, sizes=None, grad5=None):
    """A ``nan_policy="omit"`` average (``avg_omit``) of a 5-D device array: per output
    cell the valid cells' sum over the divisor of :func:`poolkit.geometry.check_nan_policy`,
    or, given ``grad5`` (the backward), ``grad5`` over that divisor.

    ``spans`` are the windows' per-dimension ``(start, stop)`` (pooling:
    :func:`poolkit.geometry.window_extents`; adaptive: the bins), clipped here to
    the input; ``full``/``inside`` the int64 per-dimension window counts with and
    without the padding (:func:`poolkit.geometry.avg_divisor_table` for
    count_include_pad and for False; adaptive: the same tables twice, no padding);
    ``override`` divisor_override or 0; ``sizes`` (adaptive pooling only) the bin
    sizes per dimension, which a bin with no cell left out is divided by in turn.
    """
    dtype = np.dtype(x5.dtype)
    nd = len(in_size)
    lift = 3 - nd
    N, C = L.nc(tuple(x5.shape), cl)
    out = D.alloc(L.batched_shape(N, C, (1,) * lift + tuple(len(a) for a, _ in spans), cl), dtype)
    windows = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * lift
    windows += [(np.clip(a, 0, n), np.clip(b, 0, n)) for (a, b), n in zip(spans, in_size)]
    unit = [np.ones(1, np.int64)] * lift
    counts = unit + [np.asarray(t, np.int64) for t in full] + unit + [np.asarray(t, np.int64) for t in inside]
    bin_sizes = [np.ones(1, dtype)] * (3 if sizes is None else lift)  # not read unless adaptive
    bin_sizes += [] if sizes is None else [np.asarray(t).astype(dtype) for t in sizes]
    grad = D.alloc((1, 1, 1, 1, 1), dtype) if grad5 is None else grad5  # not read in the forward
    D.launch_per_item("avg_omit", ND_KERNELS["avg_omit"], int(np.prod(out.shape)), x5, grad, out, bool(cl),
                      grad5 is not None, *[D.put(t) for pair in windows for t in pair],
                      *[D.put(t) for t in counts], np.int64(override), sizes is not None,
                      *[D.put(t) for t in bin_sizes], dtype.type(0))
    return out


def _run_avg_gather_omit(grad5, x5, x_shape5, cl, spans, in_size, full, inside, override, sizes=None):
    """``nan_policy="omit"`` average backward: each window's share ``grad / divisor``
    (:func:`_run_avg_omit`, the forward's divisor), gathered over the windows of each
    valid cell; NaN cells get 0."""
    dtype = np.dtype(x5.dtype)
    share = _run_avg_omit(x5, cl, spans, in_size, full, inside, override, sizes, grad5)
    gx = D.alloc(x_shape5, dtype)
    D.launch_per_item("avg_gather_omit", ND_KERNELS["avg_gather_omit"], int(np.prod(x_shape5)), share, x5, gx,
                      bool(cl), *_covering(spans, in_size), dtype.type(0))
    return gx


def _adaptive_omit(ag):
    """The arguments of :func:`_run_avg_omit` after ``cl`` for adaptive pooling: the bins,
    count tables that cancel (no padding), no override, the bin sizes."""
    bins = [ag.bins(i) for i in range(ag.nd)]
    ones = [np.ones(n, np.int64) for n in ag.out_size]
    return bins, ag.in_size, ones, ones, 0, [b - a for a, b in bins]


def _bins5(ag):
    tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - ag.nd)
    return tables + [ag.bins(i) for i in range(ag.nd)]


def _run_adaptive_max(x5, ag, cl, want_idx, omit=False):
    name = "adaptive_max_omit" if omit else "adaptive_max"
    N, C = L.nc(tuple(x5.shape), cl)
    out = D.alloc(L.batched_shape(N, C, (1,) * (3 - ag.nd) + tuple(ag.out_size), cl), x5.dtype)
    idx = D.alloc(out.shape, np.int64) if want_idx else D.alloc((1, 1, 1, 1, 1), np.int64)
    D.launch_per_item(name, ND_KERNELS[name], int(np.prod(out.shape)), x5, out, idx,
                      bool(want_idx), bool(cl), *[D.put(t) for pair in _bins5(ag) for t in pair],
                      G.max_init(x5.dtype, omit))
    return out, idx


def _run_adaptive_avg(x5, ag, cl):
    dtype = np.dtype(x5.dtype)
    N, C = L.nc(tuple(x5.shape), cl)
    out = D.alloc(L.batched_shape(N, C, (1,) * (3 - ag.nd) + tuple(ag.out_size), cl), dtype)
    bins = _bins5(ag)
    sizes = [D.put((b - a).astype(dtype)) for a, b in bins]
    D.launch_per_item("adaptive_avg", ND_KERNELS["adaptive_avg"], int(np.prod(out.shape)), x5, out, bool(cl),
                      *[D.put(t) for pair in bins for t in pair], *sizes, dtype.type(0))
    return out


def _run_lp(x5, g, nd, cl, p, dtype):
    """Lp pooling: ``(sum |x|**p)**(1/p)`` as PyTorch computes it (``avg * K``, then the root)."""
    if math.isinf(p):  # PyTorch: max_pool(|x|) for inf, -max_pool(-|x|) for -inf
        s = 1.0 if p > 0 else -1.0
        m = _run_max(_run_ewise(_ABS, x5, None, dtype, s), g, nd, cl, False)[0]
        return _run_ewise(_SCALE, m, None, dtype, s)
    a = _run_avg(_run_ewise(_POW, x5, None, dtype, p), g, nd, cl)
    return _run_ewise(_SCALE_POW, a, None, dtype, 1.0 / p, K=math.prod(g.kernel))


def _run_lp_backward(grad5, x5, xs5, g, nd, cl, p, dtype):
    """The gradient of :func:`_run_lp` w.r.t. ``x`` (``xs5`` its 5-D shape)."""
    if math.isinf(p):
        s = 1.0 if p > 0 else -1.0
        idx = _run_max(_run_ewise(_ABS, x5, None, dtype, s), g, nd, cl, True)[1]
        g_abs = _run_max_gather(grad5, idx, xs5, dtype, cl, G.window_extents(g), g.in_size)
        return _run_ewise(_TIMES_SIGN, g_abs, x5, dtype)
    K = math.prod(g.kernel)
    a = _run_avg(_run_ewise(_POW, x5, None, dtype, p), g, nd, cl)
    ga = _run_ewise(_LP_GRAD, a, grad5, dtype, 1.0 / p, 1.0 / p - 1.0, K)
    g_pow = _run_avg_gather(ga, xs5, dtype, cl, G.window_extents(g), g.in_size,
                            G.avg_divisor_table(g, True), False, 0)
    return _run_ewise(_POW_GRAD, g_pow, x5, dtype, p, p - 1.0)


# =====================================================================================
# The op families: validate once, then run.
# =====================================================================================
def _omits(omit, a: _Input):
    """``nan_policy="omit"`` (already checked) on a float input: integers hold no NaN, so
    they run the propagate kernels."""
    return omit and a.dtype.kind == "f"


def _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout,
              kernel, nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    kernel = _check_kernel(kernel, op)
    a = _input(x, op, nd, layout, "max")
    omit = _omits(omit, a)
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, dilation, ceil_mode)
    D.require_device(op)
    oshape = _out_shape(a, g.out_size)
    if a.empty:
        return _empty(a, oshape, return_indices)
    if nd == 2 and not omit:  # straight onto the 2-D kernels (a strided input is copied by copy_4d)
        outs = _launch_2d("max_idx" if return_indices else "max", D.to_device_4d(x, a.batched, op), g,
                          a.cl, kernel).run()
    else:
        outs = _run_max(D.to5(x, nd, a.cl, a.batched, op), g, nd, a.cl, return_indices, kernel, omit)
    res = D.result(outs[0], oshape, a.host, a.batched)
    return (res, D.result(outs[1], oshape, a.host, a.batched)) if return_indices else res


def _avg_pool(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
              layout, kernel, nan_policy):
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    omit = G.check_nan_policy(nan_policy, op)
    kernel = _check_kernel(kernel, op)
    a = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, 1, ceil_mode)
    D.require_device(op)
    oshape = _out_shape(a, g.out_size)
    if a.empty:
        return _empty(a, oshape)
    if omit:  # every nd on avg_omit (the 2-D kernels know propagate only)
        out = _run_avg_omit(D.to5(x, nd, a.cl, a.batched, op), a.cl, G.window_extents(g), g.in_size,
                            G.avg_divisor_table(g, count_include_pad), G.avg_divisor_table(g, False),
                            override)
    elif nd == 2:
        out = _launch_2d("avg", D.to_device_4d(x, a.batched, op), g, a.cl, kernel,
                         count_include_pad=count_include_pad, override=override).run()[0]
    else:
        out = _run_avg(D.to5(x, nd, a.cl, a.batched, op), g, nd, a.cl, count_include_pad, override, kernel)
    return D.result(out, oshape, a.host, a.batched)


def _max_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices, indices, layout, nan_policy):
    G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, dilation, ceil_mode)
    oshape, xshape = _out_shape(a, g.out_size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    idx5 = None
    if indices is not None:
        idx5 = _indices5(indices, a, oshape, nd, op, math.prod(a.spatial))
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    if idx5 is None:
        idx5 = _run_max(D.to5(x, nd, a.cl, a.batched, op), g, nd, a.cl, True, omit=omit)[1]
    gx = _run_max_gather(grad5, idx5, D.shape5(xshape, nd, a.cl, True), a.dtype, a.cl, G.window_extents(g),
                         g.in_size)
    return D.result(gx, xshape, a.host, a.batched)


def _avg_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, layout, nan_policy):
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, 1, ceil_mode)
    oshape, xshape = _out_shape(a, g.out_size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    if omit:
        gx = _run_avg_gather_omit(grad5, D.to5(x, nd, a.cl, a.batched, op), D.shape5(xshape, nd, a.cl, True),
                                  a.cl, G.window_extents(g), g.in_size,
                                  G.avg_divisor_table(g, count_include_pad), G.avg_divisor_table(g, False),
                                  override)
        return D.result(gx, xshape, a.host, a.batched)
    gx = _run_avg_gather(grad5, D.shape5(xshape, nd, a.cl, True), a.dtype, a.cl, G.window_extents(g),
                         g.in_size, G.avg_divisor_table(g, count_include_pad), False, override)
    return D.result(gx, xshape, a.host, a.batched)


def _adaptive_max(op, nd, x, output_size, return_indices, layout, nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "max")
    omit = _omits(omit, a)
    ag = G.make_adaptive_geometry(op, a.spatial, output_size)
    D.require_device(op)
    oshape = _out_shape(a, ag.out_size)
    if int(np.prod(oshape)) == 0:
        return _empty(a, oshape, return_indices)
    out, idx = _run_adaptive_max(D.to5(x, nd, a.cl, a.batched, op), ag, a.cl, return_indices, omit)
    res = D.result(out, oshape, a.host, a.batched)
    return (res, D.result(idx, oshape, a.host, a.batched)) if return_indices else res


def _adaptive_avg(op, nd, x, output_size, layout, nan_policy):
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, a.spatial, output_size)
    D.require_device(op)
    oshape = _out_shape(a, ag.out_size)
    if int(np.prod(oshape)) == 0:
        return _empty(a, oshape)
    x5 = D.to5(x, nd, a.cl, a.batched, op)
    if omit:
        out = _run_avg_omit(x5, a.cl, *_adaptive_omit(ag))
    else:
        out = _run_adaptive_avg(x5, ag, a.cl)
    return D.result(out, oshape, a.host, a.batched)


def _adaptive_max_backward(op, nd, grad_output, x, output_size, return_indices, indices, layout, nan_policy):
    G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, a.spatial, output_size)
    oshape, xshape = _out_shape(a, ag.out_size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    idx5 = None
    if indices is not None:
        idx5 = _indices5(indices, a, oshape, nd, op, math.prod(a.spatial))
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    if int(np.prod(oshape)) == 0:  # empty output: nothing flows back
        return D.result(D.put(np.zeros(D.shape5(xshape, nd, a.cl, True), a.dtype)), xshape, a.host, a.batched)
    if idx5 is None:
        idx5 = _run_adaptive_max(D.to5(x, nd, a.cl, a.batched, op), ag, a.cl, True, omit)[1]
    gx = _run_max_gather(grad5, idx5, D.shape5(xshape, nd, a.cl, True), a.dtype, a.cl,
                         [ag.bins(i) for i in range(nd)], ag.in_size)
    return D.result(gx, xshape, a.host, a.batched)


def _adaptive_avg_backward(op, nd, grad_output, x, output_size, layout, nan_policy):
    omit = G.check_nan_policy(nan_policy, op)
    a = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, a.spatial, output_size)
    oshape, xshape = _out_shape(a, ag.out_size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    if omit:
        gx = _run_avg_gather_omit(grad5, D.to5(x, nd, a.cl, a.batched, op), D.shape5(xshape, nd, a.cl, True),
                                  a.cl, *_adaptive_omit(ag))
        return D.result(gx, xshape, a.host, a.batched)
    sizes = [b - s for s, b in (ag.bins(i) for i in range(nd))]
    gx = _run_avg_gather(grad5, D.shape5(xshape, nd, a.cl, True), a.dtype, a.cl,
                         [ag.bins(i) for i in range(nd)], ag.in_size, sizes, True, 0)
    return D.result(gx, xshape, a.host, a.batched)


def _drop_unit(out, keepdims, cl):
    """Global pooling: drop the two unit spatial dims of a 2-d result unless ``keepdims``
    (a reshape, so it works on device arrays too)."""
    if keepdims:
        return out
    s = tuple(out.shape)
    return out.reshape(s[:-3] + s[-1:] if cl else s[:-2])


def _add_unit(grad_output, keepdims, cl):
    """Global pooling backward: give an ``(N, C)`` gradient (NumPy or device) its unit spatial dims."""
    if keepdims or isinstance(grad_output, np.ndarray):
        return L.add_unit(grad_output, keepdims, cl)
    try:
        shape, _ = D.shape_dtype(grad_output, "global")
    except TypeError:
        return grad_output  # reported by the backward's own check
    d = D.device_view(grad_output)
    new = shape[:-1] + (1, 1, shape[-1]) if cl else tuple(shape) + (1, 1)
    if d.is_c_contiguous():
        return d.reshape(new)
    return D.put(d.copy_to_host().reshape(new))  # rare: strided grads


def _global(op, keepdims, layout):
    """``(keepdims, channels_last)`` of a global pooling op, checked first (as the CPU does)."""
    return G.check_bool(keepdims, "keepdims", op), G.check_layout(layout, 2, op)


def _lp_pool(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    a = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, 0, 1, ceil_mode)
    D.require_device(op)
    oshape = _out_shape(a, g.out_size)
    if a.empty:
        return _empty(a, oshape)
    out = _run_lp(D.to5(x, nd, a.cl, a.batched, op), g, nd, a.cl, p, a.dtype)
    return D.result(out, oshape, a.host, a.batched)


def _lp_pool_backward(op, nd, grad_output, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    a = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, 0, 1, ceil_mode)
    oshape, xshape = _out_shape(a, g.out_size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    gx = _run_lp_backward(grad5, D.to5(x, nd, a.cl, a.batched, op), D.shape5(xshape, nd, a.cl, True), g, nd,
                          a.cl, p, a.dtype)
    return D.result(gx, xshape, a.host, a.batched)


def _unpool_input(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    """Validate an unpooling call: ``(x's _Input, output spatial size, indices 5-D on the device)``."""
    a = _input(x, op, nd, layout, "max")
    size = G.unpool_output_size(op, a.spatial, kernel_size, stride, padding, output_size, channels_last=a.cl)
    idx5 = _indices5(indices, a, _out_shape(a, a.spatial), nd, op, math.prod(size))
    return a, size, idx5


def _max_unpool(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    a, size, idx5 = _unpool_input(op, nd, x, indices, kernel_size, stride, padding, output_size, layout)
    D.require_device(op)
    oshape = _out_shape(a, size)
    if a.empty:
        return _empty(a, oshape)
    out = D.alloc(D.shape5(oshape, nd, a.cl, True), a.dtype)
    D.launch_per_item("unpool_scatter", ND_KERNELS["unpool_scatter"], a.N * a.C,
                      D.to5(x, nd, a.cl, a.batched, op), idx5, out, bool(a.cl), a.dtype.type(0))
    return D.result(out, oshape, a.host, a.batched)


def _max_unpool_backward(op, nd, grad_output, x, indices, kernel_size, stride, padding, output_size,
                         layout):
    a, size, idx5 = _unpool_input(op, nd, x, indices, kernel_size, stride, padding, output_size, layout)
    oshape, xshape = _out_shape(a, size), _out_shape(a, a.spatial)
    grad5 = _grad5(grad_output, a, oshape, nd, op)
    D.require_device(op)
    if a.empty:
        return _empty(a, xshape)
    gx = D.alloc(D.shape5(xshape, nd, a.cl, True), a.dtype)
    D.launch_per_item("index_gather", ND_KERNELS["index_gather"], int(np.prod(xshape)), grad5, idx5, gx,
                      bool(a.cl))
    return D.result(gx, xshape, a.host, a.batched)


# =====================================================================================
# Public API: the twins of poolkit.cpu's functions (minus ``parallel=``).
# =====================================================================================
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", kernel="optimized", nan_policy="propagate"):
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
        ``"optimized"``: shared-memory tiles (lesson 06; see :mod:`poolkit.gpu.tiled2d`).
    nan_policy : {"propagate", "omit"}
        Keyword-only, as in :func:`poolkit.max_pool2d`. ``"omit"`` on a float input
        runs the generic kernel ``max3d_omit`` (:mod:`poolkit.gpu.kernels_nd`) whatever
        ``kernel`` says: the 2-D kernels know the propagate rule only.

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
    return _max_pool("max_pool2d", 2, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, kernel, nan_policy)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW",
               kernel="optimized", nan_policy="propagate"):
    """2-D average pooling on a CUDA GPU (or Numba's CUDA simulator).

    Same arguments, results and semantics as :func:`poolkit.avg_pool2d`; ``x``
    and the result as in :func:`max_pool2d` (float32 or float64 only).
    ``kernel`` (keyword-only) is ``"optimized"`` or ``"naive"``. ``nan_policy="omit"``
    (keyword-only, as in :func:`poolkit.avg_pool2d`) runs the generic kernel
    ``avg_omit`` (:mod:`poolkit.gpu.kernels_nd`) whatever ``kernel`` says.

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
    return _avg_pool("avg_pool2d", 2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, kernel, nan_policy)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", kernel="optimized", nan_policy="propagate"):
    return _max_pool("max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, kernel, nan_policy)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    return _max_pool("max_pool3d", 3, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, "naive", nan_policy)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", kernel="optimized", nan_policy="propagate"):
    return _avg_pool("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     None, layout, kernel, nan_policy)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW", nan_policy="propagate"):
    return _avg_pool("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, "naive", nan_policy)


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL", nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool1d", 1, x, output_size, return_indices, layout, nan_policy)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool2d", 2, x, output_size, return_indices, layout, nan_policy)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    return _adaptive_max("adaptive_max_pool3d", 3, x, output_size, return_indices, layout, nan_policy)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL", nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool1d", 1, x, output_size, layout, nan_policy)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW", nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool2d", 2, x, output_size, layout, nan_policy)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW", nan_policy="propagate"):
    return _adaptive_avg("adaptive_avg_pool3d", 3, x, output_size, layout, nan_policy)


def global_max_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    keepdims, cl = _global("global_max_pool2d", keepdims, layout)
    return _drop_unit(_adaptive_max("global_max_pool2d", 2, x, 1, False, layout, nan_policy), keepdims, cl)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    keepdims, cl = _global("global_avg_pool2d", keepdims, layout)
    return _drop_unit(_adaptive_avg("global_avg_pool2d", 2, x, 1, layout, nan_policy), keepdims, cl)


def lp_pool1d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCL"):
    return _lp_pool("lp_pool1d", 1, x, norm_type, kernel_size, stride, ceil_mode, layout)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCHW"):
    return _lp_pool("lp_pool2d", 2, x, norm_type, kernel_size, stride, ceil_mode, layout)


def lp_pool3d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCDHW"):
    return _lp_pool("lp_pool3d", 3, x, norm_type, kernel_size, stride, ceil_mode, layout)


def max_unpool1d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCL"):
    return _max_unpool("max_unpool1d", 1, x, indices, kernel_size, stride, padding, output_size, layout)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCHW"):
    return _max_unpool("max_unpool2d", 2, x, indices, kernel_size, stride, padding, output_size, layout)


def max_unpool3d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCDHW"):
    return _max_unpool("max_unpool3d", 3, x, indices, kernel_size, stride, padding, output_size, layout)


def max_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCL",
                        nan_policy="propagate"):
    return _max_pool_backward("max_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, nan_policy)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW",
                        nan_policy="propagate"):
    return _max_pool_backward("max_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, nan_policy)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW",
                        nan_policy="propagate"):
    return _max_pool_backward("max_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, nan_policy)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL", nan_policy="propagate"):
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, None, layout, nan_policy)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW",
                        nan_policy="propagate"):
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, nan_policy)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW",
                        nan_policy="propagate"):
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, nan_policy)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCL", nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool1d_backward", 1, grad_output, x, output_size,
                                  return_indices, indices, layout, nan_policy)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCHW", nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool2d_backward", 2, grad_output, x, output_size,
                                  return_indices, indices, layout, nan_policy)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCDHW", nan_policy="propagate"):
    return _adaptive_max_backward("adaptive_max_pool3d_backward", 3, grad_output, x, output_size,
                                  return_indices, indices, layout, nan_policy)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL", nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool1d_backward", 1, grad_output, x, output_size, layout,
                                  nan_policy)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW", nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool2d_backward", 2, grad_output, x, output_size, layout,
                                  nan_policy)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW", nan_policy="propagate"):
    return _adaptive_avg_backward("adaptive_avg_pool3d_backward", 3, grad_output, x, output_size, layout,
                                  nan_policy)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    op = "global_max_pool2d_backward"
    keepdims, cl = _global(op, keepdims, layout)
    return _adaptive_max_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, False, None, layout,
                                  nan_policy)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    op = "global_avg_pool2d_backward"
    keepdims, cl = _global(op, keepdims, layout)
    return _adaptive_avg_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, layout, nan_policy)


def lp_pool1d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCL"):
    return _lp_pool_backward("lp_pool1d_backward", 1, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout)


def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCHW"):
    return _lp_pool_backward("lp_pool2d_backward", 2, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout)


def lp_pool3d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCDHW"):
    return _lp_pool_backward("lp_pool3d_backward", 3, grad_output, x, norm_type, kernel_size, stride,
                             ceil_mode, layout)


def max_unpool1d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCL"):
    return _max_unpool_backward("max_unpool1d_backward", 1, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout)


def max_unpool2d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCHW"):
    return _max_unpool_backward("max_unpool2d_backward", 2, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout)


def max_unpool3d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCDHW"):
    return _max_unpool_backward("max_unpool3d_backward", 3, grad_output, x, indices, kernel_size,
                                stride, padding, output_size, layout)


# =====================================================================================
# Prepared 2-D launches (the GPU benchmark times ``run()`` alone).
# =====================================================================================
def prepare_max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       return_indices=False, *, layout="NCHW", kernel="optimized"):
    """Validate, move ``x`` to the device if needed, allocate outputs: a :class:`PreparedLaunch`.

    Same arguments as :func:`max_pool2d`. ``launch.run()`` launches the kernel and
    returns the device outputs ``(out,)`` or ``(out, indices)`` (batched shapes).
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    kernel = _check_kernel(kernel, op)
    a = _input(x, op, 2, layout, "max")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, dilation, ceil_mode)
    D.require_device(op)
    xd = D.to_device_4d(x, a.batched, op)
    return _launch_2d("max_idx" if return_indices else "max", xd, g, a.cl, kernel)


def prepare_avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, *, layout="NCHW",
                       kernel="optimized"):
    """Like :func:`prepare_max_pool2d`, for :func:`avg_pool2d`."""
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    kernel = _check_kernel(kernel, op)
    a = _input(x, op, 2, layout, "float")
    g = G.make_geometry(op, a.spatial, kernel_size, stride, padding, 1, ceil_mode)
    D.require_device(op)
    xd = D.to_device_4d(x, a.batched, op)
    return _launch_2d("avg", xd, g, a.cl, kernel, count_include_pad=count_include_pad, override=override)


# =====================================================================================
# Every compiled specialization we ship (the PTX tests compile each one), listed by
# running the public functions in the recording mode of poolkit.gpu.device.
# =====================================================================================
def _copy_specs(name, fn, ndim, dtypes):
    import numba
    from numba import types

    specs = {}
    for dt in dtypes:
        nb = numba.from_dtype(np.dtype(dt))
        specs[(name, (types.Array(nb, ndim, "A"), types.Array(nb, ndim, "C")))] = fn.py_func
    return specs


def kernel_specializations():
    """``[(name, python function, argument types)]`` for every 2-D kernel poolkit launches.

    Prepares and runs (in recording mode, on small NumPy stand-ins) a launch of
    every op, layout, kernel stage and supported dtype, so the argument types are
    exactly those :func:`max_pool2d`/:func:`avg_pool2d` pass; plus the
    contiguous-copy kernel ``copy_4d``.
    """
    geom = G.make_geometry("spec", (5, 5), 3, 2, 1, 1, False)
    with D.recording() as rec:
        for layout in ("NCHW", "NHWC"):
            cl = layout == "NHWC"
            shape = (1, 5, 5, 2) if cl else (1, 2, 5, 5)
            for name, reds in (("max_pool2d", ("max", "max_idx")), ("avg_pool2d", ("avg",))):
                for dt in SUPPORTED_DTYPES[name]:
                    x = np.zeros(shape, dtype=dt)
                    for red in reds:
                        for stage in _KERNEL_CHOICES:
                            _launch_2d(red, x, geom, cl, stage).run()
    rec.update(_copy_specs("copy_4d", copy_4d, 4, sorted(set(_MAXLIKE) | set(_FLOATS))))
    return [(name, fn, sig) for (name, sig), fn in rec.items()]


def nd_kernel_specializations():
    """``[(name, python function, argument types)]`` for every :data:`ND_KERNELS` kernel.

    Runs every public function in recording mode on small NumPy stand-ins (no
    device needed): each launch records the exact argument types instead of
    running, so the PTX tests compile what the functions really pass -- for both
    layouts, 1-d/2-d/3-d, every op and every supported dtype. The 2-D kernels
    that the 1-d/2-d forward paths launch are left to :func:`kernel_specializations`;
    the strided-input copy ``copy_5d`` is added for each dtype.
    """
    with D.recording() as rec:
        for nd in (1, 2, 3):
            first, last = G.LAYOUTS[nd]
            for layout in (first, last):
                shape = (1, 2) + (4,) * nd if layout == first else (1,) + (4,) * nd + (2,)
                for dt in _MAXLIKE:
                    _record_ops(nd, np.ones(shape, dtype=dt), layout, floats=dt in _FLOATS)
    specs = {key: fn for key, fn in rec.items() if key[0] in ND_KERNELS}
    specs.update(_copy_specs("copy_5d", copy_5d, 5, _MAXLIKE))
    return [(name, fn, sig) for (name, sig), fn in specs.items()]


def _record_ops(nd, x, layout, floats):
    """Call every op once (recording mode) on ``x``."""
    m = globals()
    sfx = f"{nd}d"
    out, idx = m[f"max_pool{sfx}"](x, 2, 1, 1, 1, False, True, layout=layout)
    m[f"adaptive_max_pool{sfx}"](x, 3, True, layout=layout)
    up = m[f"max_unpool{sfx}"](out, idx, 2, 1, 1, layout=layout)
    m[f"max_unpool{sfx}_backward"](up, out, idx, 2, 1, 1, layout=layout)
    if not floats:
        return
    ap = m[f"avg_pool{sfx}"](x, 2, 1, 1, False, True, layout=layout)
    m[f"adaptive_avg_pool{sfx}"](x, 3, layout=layout)
    for p in (2.0, float("inf")):
        lp = m[f"lp_pool{sfx}"](x, p, 2, layout=layout)
        m[f"lp_pool{sfx}_backward"](lp, x, p, 2, layout=layout)
    m[f"max_pool{sfx}_backward"](out, x, 2, 1, 1, layout=layout)
    m[f"max_pool{sfx}_backward"](out, x, 2, 1, 1, indices=idx, layout=layout)
    m[f"avg_pool{sfx}_backward"](ap, x, 2, 1, 1, layout=layout)
    am = m[f"adaptive_max_pool{sfx}"](x, 3, layout=layout)
    m[f"adaptive_max_pool{sfx}_backward"](am, x, 3, layout=layout)
    m[f"adaptive_avg_pool{sfx}_backward"](am, x, 3, layout=layout)
    # nan_policy="omit" (floats only: integers run the propagate kernels)
    out, idx = m[f"max_pool{sfx}"](x, 2, 1, 1, 1, False, True, layout=layout, nan_policy="omit")
    m[f"adaptive_max_pool{sfx}"](x, 3, True, layout=layout, nan_policy="omit")
    ap = m[f"avg_pool{sfx}"](x, 2, 1, 1, False, True, layout=layout, nan_policy="omit")
    aa = m[f"adaptive_avg_pool{sfx}"](x, 3, layout=layout, nan_policy="omit")
    m[f"max_pool{sfx}_backward"](out, x, 2, 1, 1, layout=layout, nan_policy="omit")
    m[f"avg_pool{sfx}_backward"](ap, x, 2, 1, 1, layout=layout, nan_policy="omit")
    m[f"adaptive_max_pool{sfx}_backward"](aa, x, 3, layout=layout, nan_policy="omit")
    m[f"adaptive_avg_pool{sfx}_backward"](aa, x, 3, layout=layout, nan_policy="omit")


# =====================================================================================
# Docstrings of the 38 family functions: one template (poolkit._docs), filled in here.
# (max_pool2d and avg_pool2d have their own, written above.)
# =====================================================================================
def _summary(name):
    if name.endswith("_backward"):
        return (f"Gradient of :func:`poolkit.{name[:-9]}` w.r.t. ``x`` on a CUDA GPU: a gather, "
                "no atomics (deterministic).")
    if name.startswith(("max_pool1d", "avg_pool1d")):
        return f"``{name}`` on a CUDA GPU (the 2-D kernels on an H = 1 view)."
    if name.startswith("global"):
        return f"``{name}`` on a CUDA GPU (adaptive pooling to 1 x 1)."
    return f"``{name}`` on a CUDA GPU (generic naive kernel on 5-D views)."


document_twins(globals(), [n for n in G.OPS if n not in ("max_pool2d", "avg_pool2d")], "gpu", _summary,
               "``x`` (and ``grad_output``,\n    ``indices``) may be NumPy or GPU arrays "
               "(``__cuda_array_interface__``, or the\n    simulator's device arrays): GPU input gives "
               "Numba device arrays (nothing is\n    copied to the host), NumPy input NumPy arrays. Dtypes: "
               ":data:`ND_SUPPORTED_DTYPES`.\n    1-d max/avg pooling take ``kernel=\"optimized\"`` "
               "(shared-memory tiles) or\n    ``\"naive\"`` (keyword-only), like the 2-D ones. "
               "``nan_policy=\"omit\"`` on float input\n    runs on the generic kernels (``max3d_omit``, "
               "``adaptive_max_omit``, ``avg_omit``,\n    ``avg_gather_omit``) for every nd.")
