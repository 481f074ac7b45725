"""CPU kernels for the rest of the pooling family and every backward (Numba, serial and parallel).

:mod:`poolkit.cpu` has the tuned 2-D forward kernels; this module adds everything
else while reusing as much as it can:

* **1-d pooling runs on the 2-D kernels**: an ``(N, C, L)`` array is viewed as
  ``(N, C, 1, L)`` (``(N, L, C)`` as ``(N, 1, L, C)``), pooled with kernel
  ``(1, k)`` by :func:`poolkit.cpu.max_pool2d` / :func:`poolkit.cpu.avg_pool2d`,
  and viewed back. No copy, no separate 1-d kernel.
* **3-d pooling** has its own kernels (``max3d``/``avg3d``, channels-first and
  channels-last) written like the 2-D ones: channels-first kernels sweep whole
  output rows per kernel tap (vectorisable), channels-last kernels put the
  contiguous channel loop innermost.
* **Everything else is one generic kernel per reduction on 5-D views**: 1-d and
  2-d inputs get unit spatial dimensions (``(N, C, 1, 1, L)``, ``(N, C, 1, H, W)``)
  so a single 3-D loop nest serves all of them: adaptive max/avg, the
  index scatter (max backward, unpooling), the index gather (unpooling backward)
  and the average-pooling gather (avg, adaptive avg and Lp backward).

Backward kernels are **deterministic by construction**:

* max-type backward scatters ``grad_output`` to the argmax with one thread per
  ``(n, c)`` plane, walking the plane's outputs in scan order -- so each input
  cell sums its contributions in the same order on every run and for any thread
  count (and in the order PyTorch's CPU kernel does);
* average backward is a *gather*: every input cell sums ``grad / divisor`` over
  the windows that cover it (:func:`poolkit.geometry.covering_windows`), in
  increasing output order -- no two threads ever write the same cell.

Channels-last arrays go through the layout-free kernels (scatter, gathers) as
strided channels-first views (``np.moveaxis``, no copy). As in :mod:`poolkit.cpu`,
inputs under ``poolkit.cpu.PARALLEL_MIN_SIZE`` elements run the serial twin.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from . import cpu
from . import geometry as G
from .cpu import _njit_pair

__all__ = [
    "max_pool1d", "max_pool3d", "avg_pool1d", "avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "global_max_pool2d", "global_avg_pool2d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "adaptive_max_pool1d_backward", "adaptive_max_pool2d_backward", "adaptive_max_pool3d_backward",
    "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d_backward",
    "global_max_pool2d_backward", "global_avg_pool2d_backward",
    "lp_pool1d_backward", "lp_pool2d_backward", "lp_pool3d_backward",
    "max_unpool1d_backward", "max_unpool2d_backward", "max_unpool3d_backward",
    "KERNELS",
]


# ---------------------------------------------------------------- 3-d pooling kernels
def _max3d_cf(x, out, idx, want_idx, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
    """Max pooling over (N, C, D, H, W); parallel over (n, c); indices if ``want_idx``."""
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for od in range(OD):
            ds = od * SD - PD
            for oh in range(OH):
                hs = oh * SH - PH
                for ow in range(OW):
                    out[n, c, od, oh, ow] = init
                    if want_idx:
                        idx[n, c, od, oh, ow] = -1
                for kd in range(KD):
                    id_ = ds + kd * DD
                    if id_ < 0 or id_ >= D:
                        continue
                    for kh in range(KH):
                        ih = hs + kh * DH
                        if ih < 0 or ih >= H:
                            continue
                        base = (id_ * H + ih) * W
                        for kw in range(KW):
                            off = kw * DW - PW
                            # ow range with 0 <= ow*SW + off < W: one branch-free sweep
                            lo = 0 if off >= 0 else (-off + SW - 1) // SW
                            hi = (W - 1 - off) // SW + 1 if W - 1 - off >= 0 else 0
                            if hi > OW:
                                hi = OW
                            if want_idx:
                                for ow in range(lo, hi):
                                    iw = ow * SW + off
                                    v = x[n, c, id_, ih, iw]
                                    if v > out[n, c, od, oh, ow] or v != v or idx[n, c, od, oh, ow] < 0:
                                        out[n, c, od, oh, ow] = v
                                        idx[n, c, od, oh, ow] = base + iw
                            else:
                                for ow in range(lo, hi):
                                    v = x[n, c, id_, ih, ow * SW + off]
                                    if v > out[n, c, od, oh, ow] or v != v:
                                        out[n, c, od, oh, ow] = v


def _max3d_cl(x, out, idx, want_idx, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
    """Max pooling over (N, D, H, W, C); parallel over output rows; channels innermost."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        ds = od * SD - PD
        hs = oh * SH - PH
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, od, oh, ow, c] = init
                if want_idx:
                    idx[n, od, oh, ow, c] = -1
            for kd in range(KD):
                id_ = ds + kd * DD
                if id_ < 0 or id_ >= D:
                    continue
                for kh in range(KH):
                    ih = hs + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(KW):
                        iw = ws + kw * DW
                        if iw < 0 or iw >= W:
                            continue
                        flat = (id_ * H + ih) * W + iw
                        if want_idx:
                            for c in range(C):
                                v = x[n, id_, ih, iw, c]
                                if v > out[n, od, oh, ow, c] or v != v or idx[n, od, oh, ow, c] < 0:
                                    out[n, od, oh, ow, c] = v
                                    idx[n, od, oh, ow, c] = flat
                        else:
                            for c in range(C):
                                v = x[n, id_, ih, iw, c]
                                if v > out[n, od, oh, ow, c] or v != v:
                                    out[n, od, oh, ow, c] = v


def _avg3d_cf(x, out, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override):
    """Average pooling over (N, C, D, H, W): sum in scan order, one division (PyTorch's)."""
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for od in range(OD):
            ds = od * SD - PD
            for oh in range(OH):
                hs = oh * SH - PH
                for ow in range(OW):
                    out[n, c, od, oh, ow] = 0
                for kd in range(KD):
                    id_ = ds + kd
                    if id_ < 0 or id_ >= D:
                        continue
                    for kh in range(KH):
                        ih = hs + kh
                        if ih < 0 or ih >= H:
                            continue
                        for kw in range(KW):
                            off = kw - PW
                            lo = 0 if off >= 0 else (-off + SW - 1) // SW
                            hi = (W - 1 - off) // SW + 1 if W - 1 - off >= 0 else 0
                            if hi > OW:
                                hi = OW
                            for ow in range(lo, hi):
                                out[n, c, od, oh, ow] += x[n, c, id_, ih, ow * SW + off]
                for ow in range(OW):
                    d = override if override > 0 else div_d[od] * div_h[oh] * div_w[ow]
                    out[n, c, od, oh, ow] = out[n, c, od, oh, ow] / d


def _avg3d_cl(x, out, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override):
    """Average pooling over (N, D, H, W, C); parallel over output rows; channels innermost."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        ds = od * SD - PD
        hs = oh * SH - PH
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, od, oh, ow, c] = 0
            for kd in range(KD):
                id_ = ds + kd
                if id_ < 0 or id_ >= D:
                    continue
                for kh in range(KH):
                    ih = hs + kh
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(KW):
                        iw = ws + kw
                        if iw < 0 or iw >= W:
                            continue
                        for c in range(C):
                            out[n, od, oh, ow, c] += x[n, id_, ih, iw, c]
            d = override if override > 0 else div_d[od] * div_h[oh] * div_w[ow]
            for c in range(C):
                out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / d


# ---------------------------------------------------------------- adaptive kernels (5-D views)
def _adaptive_max_cf(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew, init):
    """Adaptive max over bins [s, e) per dimension; (N, C, D, H, W); parallel over (n, c)."""
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    m = init
                    mi = -1
                    for id_ in range(sd[od], ed[od]):
                        for ih in range(sh[oh], eh[oh]):
                            for iw in range(sw[ow], ew[ow]):
                                v = x[n, c, id_, ih, iw]
                                if v > m or v != v or mi < 0:
                                    m = v
                                    mi = (id_ * H + ih) * W + iw
                    out[n, c, od, oh, ow] = m
                    if want_idx:
                        idx[n, c, od, oh, ow] = mi


def _adaptive_max_cl(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew, init):
    """Adaptive max, channels-last (N, D, H, W, C); parallel over output rows."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        for ow in range(OW):
            for c in range(C):
                out[n, od, oh, ow, c] = init
                if want_idx:
                    idx[n, od, oh, ow, c] = -1
            first = True
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for iw in range(sw[ow], ew[ow]):
                        flat = (id_ * H + ih) * W + iw
                        for c in range(C):
                            v = x[n, id_, ih, iw, c]
                            if v > out[n, od, oh, ow, c] or v != v or first:
                                out[n, od, oh, ow, c] = v
                                if want_idx:
                                    idx[n, od, oh, ow, c] = flat
                        first = False


def _adaptive_avg_cf(x, out, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    """Adaptive average: sum in scan order, then divide by each bin size in turn (PyTorch's order).

    ``kd``, ``kh``, ``kw`` are the bin sizes in ``x``'s dtype (a float32 divided by
    an int64 would be computed in float64 by Numba and round differently).
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    out[n, c, od, oh, ow] = 0
                    for id_ in range(sd[od], ed[od]):
                        for ih in range(sh[oh], eh[oh]):
                            for iw in range(sw[ow], ew[ow]):
                                out[n, c, od, oh, ow] += x[n, c, id_, ih, iw]
                    out[n, c, od, oh, ow] = out[n, c, od, oh, ow] / kd[od] / kh[oh] / kw[ow]


def _adaptive_avg_cl(x, out, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    """Adaptive average, channels-last; parallel over output rows; channels innermost."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        for ow in range(OW):
            for c in range(C):
                out[n, od, oh, ow, c] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for iw in range(sw[ow], ew[ow]):
                        for c in range(C):
                            out[n, od, oh, ow, c] += x[n, id_, ih, iw, c]
            for c in range(C):
                out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / kd[od] / kh[oh] / kw[ow]


# ---------------------------------------------------------------- index scatter / gather, avg gather
def _scatter(src, idx, dst, accumulate):
    """``dst[n, c, idx[n, c, p]] (+)= src[n, c, p]`` over (N, C, P); one thread per (n, c) plane.

    Within a plane ``p`` runs in order, so accumulation order (max backward) and
    "last write wins" (unpooling with repeated indices) never depend on threads.
    """
    N, C, P = src.shape
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        if accumulate:
            for p in range(P):
                dst[n, c, idx[n, c, p]] += src[n, c, p]
        else:
            for p in range(P):
                dst[n, c, idx[n, c, p]] = src[n, c, p]


def _gather(src, idx, dst):
    """``dst[n, c, p] = src[n, c, idx[n, c, p]]`` over (N, C, P) (unpooling backward)."""
    N, C, P = dst.shape
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        for p in range(P):
            dst[n, c, p] = src[n, c, idx[n, c, p]]


def _avg_gather(share, gx, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, nw):
    """Average-pooling backward as a gather over (N, C, D, H, W); one thread per (n, c).

    ``share`` holds ``grad_output / divisor`` per output cell; input cell ``i``
    sums the shares of the windows ``[lo[i], hi[i])`` covering it, per dimension,
    in increasing output order -- the order in which a scatter in output scan order
    (PyTorch's CPU backward) adds them, so the result is bitwise the same.
    Row by row: for each covering (od, oh) pair and each of the at most ``nw``
    windows covering a cell along W, one sweep over the input row ``iw``.
    """
    N, C, D, H, W = gx.shape
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        for id_ in range(D):
            for ih in range(H):
                for iw in range(W):
                    gx[n, c, id_, ih, iw] = 0
                for od in range(lo_d[id_], hi_d[id_]):
                    for oh in range(lo_h[ih], hi_h[ih]):
                        for j in range(nw):
                            for iw in range(W):
                                ow = lo_w[iw] + j
                                if ow < hi_w[iw]:
                                    gx[n, c, id_, ih, iw] += share[n, c, od, oh, ow]


#: ``KERNELS[(name, parallel)]`` -> compiled kernel. The twins come from
#: :func:`poolkit.cpu._njit_pair` (the serial one is a renamed clone, so the two never
#: share an on-disk cache entry).
KERNELS = {}
for _name, _fn in [
    ("max3d_cf", _max3d_cf), ("max3d_cl", _max3d_cl), ("avg3d_cf", _avg3d_cf), ("avg3d_cl", _avg3d_cl),
    ("adaptive_max_cf", _adaptive_max_cf), ("adaptive_max_cl", _adaptive_max_cl),
    ("adaptive_avg_cf", _adaptive_avg_cf), ("adaptive_avg_cl", _adaptive_avg_cl),
    ("scatter", _scatter), ("gather", _gather), ("avg_gather", _avg_gather),
]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = _njit_pair(_fn)
del _name, _fn

_NO_INDEX = np.empty((1, 1, 1, 1, 1), dtype=np.int64)  # placeholder when indices are not wanted


def _kernel(name, parallel, size):
    """The serial or parallel twin: parallel only if asked and ``size`` (elements) reaches
    :data:`poolkit.cpu.PARALLEL_MIN_SIZE` (below it the thread pool costs more than the work)."""
    return KERNELS[(name, bool(parallel) and size >= cpu.PARALLEL_MIN_SIZE)]


# ---------------------------------------------------------------- shape helpers
def _shape(N, C, spatial, cl):
    """Batched array shape in the given layout."""
    return (N,) + tuple(spatial) + (C,) if cl else (N, C) + tuple(spatial)


def _nc(x, cl):
    return x.shape[0], (x.shape[-1] if cl else x.shape[1])


def _to5(a, nd, cl):
    """View a batched nd-spatial array as 5-D (unit spatial dims in front), same layout."""
    unit = (None,) * (3 - nd)
    return a[(slice(None),) + unit] if cl else a[(slice(None), slice(None)) + unit]


def _cf5(a, nd, cl):
    """View a batched array as channels-first 5-D (strided view for channels-last)."""
    a5 = _to5(a, nd, cl)
    return np.moveaxis(a5, -1, 1) if cl else a5


def _flat3(a, cl):
    """Batched array -> (N, C, P) with P the flattened spatial cells (a view when contiguous)."""
    if cl:
        return a.reshape(a.shape[0], -1, a.shape[-1]).swapaxes(1, 2)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _unbatch(a, batched):
    return a if batched else a[0]


def _grad(grad_output, x, shape, batched, op):
    """Check ``grad_output`` (forward output's shape, ``x``'s dtype); return it batched."""
    g = G.check_grad_output(grad_output, x, shape if batched else shape[1:], op)
    return g if batched else g[None]


def _user_indices(indices, shape, batched, op, n_cells):
    """Check indices given by the caller: shape, integer dtype, values inside one plane."""
    idx = G.check_indices(indices, shape if batched else shape[1:], op)
    if idx.size and (idx.min() < 0 or idx.max() >= n_cells):
        raise ValueError(f"{op}: indices must lie in [0, {n_cells}) (flat positions in one "
                         f"spatial plane), got values from {idx.min()} to {idx.max()}")
    return idx if batched else idx[None]


def _scatter_to(src, idx, dst, cl, accumulate, parallel):
    if src.size:
        s, i, d = _flat3(src, cl), _flat3(idx, cl), _flat3(dst, cl)
        _kernel("scatter", parallel, max(src.size, dst.size))(s, i, d, bool(accumulate))
    return dst


def _padding_1d_as_2d(padding):
    """1-d padding as the 2-D kernels' (H, W) padding: strings pass through (H is 1 cell)."""
    if isinstance(padding, str):
        return padding
    return (0,) + G.normalize_tuple(padding, 1, "padding", "max_pool1d", minimum=0)


# ---------------------------------------------------------------- max pooling
def _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
              layout, parallel):
    """Forward max pooling for any nd (x may be unbatched); returns out (and indices)."""
    return_indices = G.check_bool(return_indices, "return_indices", op)
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    if nd == 1:  # the 2-D kernels on an H = 1 view
        x4 = x[:, None] if cl else x[:, :, None]
        res = cpu.max_pool2d(x4, (1,) + g.kernel, (1,) + g.stride, _padding_1d_as_2d(padding),
                             (1,) + g.dilation, g.ceil_mode, return_indices,
                             layout="NHWC" if cl else "NCHW", parallel=parallel)
        res = tuple(r[:, 0] if cl else r[:, :, 0] for r in (res if return_indices else (res,)))
    elif nd == 2:
        res = cpu.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                             layout=G.LAYOUTS[2][cl], parallel=parallel)
        res = res if return_indices else (res,)
    else:
        N, C = _nc(x, cl)
        out = np.empty(_shape(N, C, g.out_size, cl), dtype=x.dtype)
        idx = np.empty(out.shape, dtype=np.int64) if return_indices else _NO_INDEX
        if out.size:
            _kernel("max3d_cl" if cl else "max3d_cf", parallel, x.size)(
                x, out, idx, return_indices, *g.stride, *g.padding, *g.dilation, *g.kernel,
                G.max_identity(x.dtype))
        res = (out, idx) if return_indices else (out,)
    res = tuple(_unbatch(r, batched) for r in res)
    return res if return_indices else res[0]


def _max_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices, indices, layout, parallel):
    G.check_bool(return_indices, "return_indices", op)  # accepted so F's arguments pass unchanged
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    N, C = _nc(x, cl)
    out_shape = _shape(N, C, g.out_size, cl)
    grad = _grad(grad_output, x, out_shape, batched, op)
    if indices is None:
        idx = _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, True,
                        G.LAYOUTS[nd][cl], parallel)[1]
    else:
        idx = _user_indices(indices, out_shape, batched, op, math.prod(spatial))
    gx = _scatter_to(grad, idx, np.zeros(x.shape, dtype=x.dtype), cl, True, parallel)
    return _unbatch(gx, batched)


# ---------------------------------------------------------------- average pooling
def _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
               divisor_override, layout):
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    return x, cl, batched, g, count_include_pad, override


def _avg_pool(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, layout, parallel):
    x, cl, batched, g, cip, override = _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode,
                                                  count_include_pad, divisor_override, layout)
    if nd == 1:
        x4 = x[:, None] if cl else x[:, :, None]
        out = cpu.avg_pool2d(x4, (1,) + g.kernel, (1,) + g.stride, _padding_1d_as_2d(padding),
                             g.ceil_mode, cip, divisor_override, layout="NHWC" if cl else "NCHW",
                             parallel=parallel)
        out = out[:, 0] if cl else out[:, :, 0]
    elif nd == 2:
        out = cpu.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, cip, divisor_override,
                             layout=G.LAYOUTS[2][cl], parallel=parallel)
    else:
        N, C = _nc(x, cl)
        out = np.empty(_shape(N, C, g.out_size, cl), dtype=x.dtype)
        if out.size:
            tables = G.avg_divisors(g, cip, x.dtype)
            _kernel("avg3d_cl" if cl else "avg3d_cf", parallel, x.size)(
                x, out, *g.stride, *g.padding, *g.kernel, *tables, x.dtype.type(override))
    return _unbatch(out, batched)


def _divisor_array(g, count_include_pad, override, dtype):
    """The divisor of every output cell (the product of per-dimension counts), as ``dtype``."""
    if override:
        return dtype.type(override)
    div = np.ones((1,) * g.nd, dtype=np.int64)
    for i, t in enumerate(G.avg_divisor_table(g, count_include_pad)):
        div = div * t.reshape((1,) * i + (-1,) + (1,) * (g.nd - i - 1))
    return div.astype(dtype)


def _spread(share, x_shape, dtype, starts_stops, in_size, nd, cl, parallel):
    """Gather ``share`` (per output cell) back over the windows given per dimension as (start, stop)."""
    gx = np.zeros(x_shape, dtype=dtype)
    if gx.size and share.size:
        tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - nd)
        tables += [G.covering_windows(a, b, L) for (a, b), L in zip(starts_stops, in_size)]
        lo_w, hi_w = tables[-1]
        _kernel("avg_gather", parallel, max(gx.size, share.size))(
            _cf5(share, nd, cl), _cf5(gx, nd, cl), *(t for pair in tables for t in pair),
            int((hi_w - lo_w).max()))
    return gx


def _channels_axis_shape(a, nd, cl):
    """Shape that broadcasts a per-output-cell (spatial only) array against a batched array."""
    return (1,) + a.shape + (1,) if cl else (1, 1) + a.shape


def _avg_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, layout, parallel):
    x, cl, batched, g, cip, override = _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode,
                                                  count_include_pad, divisor_override, layout)
    N, C = _nc(x, cl)
    grad = _grad(grad_output, x, _shape(N, C, g.out_size, cl), batched, op)
    div = _divisor_array(g, cip, override, x.dtype)
    if isinstance(div, np.ndarray):
        div = div.reshape(_channels_axis_shape(div, nd, cl))
    share = grad / div  # PyTorch: grad_delta = grad_output / divide_factor, once per output cell
    gx = _spread(share, x.shape, x.dtype, G.window_extents(g), g.in_size, nd, cl, parallel)
    return _unbatch(gx, batched)


# ---------------------------------------------------------------- adaptive pooling
def _bins5(ag):
    """Per-dimension (start, stop) int64 arrays, unit dims first, for the 5-D kernels."""
    tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - ag.nd)
    return tables + [ag.bins(i) for i in range(ag.nd)]


def _adaptive_max(op, nd, x, output_size, return_indices, layout, parallel):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=True)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    N, C = _nc(x, cl)
    out = np.empty(_shape(N, C, ag.out_size, cl), dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64) if return_indices else None
    if out.size:
        _kernel("adaptive_max_cl" if cl else "adaptive_max_cf", parallel, max(x.size, out.size))(
            _to5(x, nd, cl), _to5(out, nd, cl), _to5(idx, nd, cl) if return_indices else _NO_INDEX,
            return_indices, *(t for pair in _bins5(ag) for t in pair), G.max_identity(x.dtype))
    if return_indices:
        return _unbatch(out, batched), _unbatch(idx, batched)
    return _unbatch(out, batched)


def _adaptive_avg(op, nd, x, output_size, layout, parallel):
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    N, C = _nc(x, cl)
    out = np.empty(_shape(N, C, ag.out_size, cl), dtype=x.dtype)
    if out.size:
        bins = _bins5(ag)
        sizes = [(b - a).astype(x.dtype) for a, b in bins]
        _kernel("adaptive_avg_cl" if cl else "adaptive_avg_cf", parallel, max(x.size, out.size))(
            _to5(x, nd, cl), _to5(out, nd, cl), *(t for pair in bins for t in pair), *sizes)
    return _unbatch(out, batched)


def _adaptive_max_backward(op, nd, grad_output, x, output_size, return_indices, indices, layout,
                           parallel):
    G.check_bool(return_indices, "return_indices", op)
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    N, C = _nc(x, cl)
    out_shape = _shape(N, C, ag.out_size, cl)
    grad = _grad(grad_output, x, out_shape, batched, op)
    if indices is None:
        idx = _adaptive_max(op, nd, x, output_size, True, G.LAYOUTS[nd][cl], parallel)[1]
    else:
        idx = _user_indices(indices, out_shape, batched, op, math.prod(spatial))
    gx = _scatter_to(grad, idx, np.zeros(x.shape, dtype=x.dtype), cl, True, parallel)
    return _unbatch(gx, batched)


def _adaptive_avg_backward(op, nd, grad_output, x, output_size, layout, parallel):
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    N, C = _nc(x, cl)
    share = _grad(grad_output, x, _shape(N, C, ag.out_size, cl), batched, op)
    for i in range(nd):  # PyTorch: grad / kd / kh / kw, one bin size after the other
        start, stop = ag.bins(i)
        size = (stop - start).astype(x.dtype)
        share = share / size.reshape((1,) * (i + (1 if cl else 2)) + (-1,) + (1,) * (nd - i - 1 + cl))
    gx = _spread(share, x.shape, x.dtype, [ag.bins(i) for i in range(nd)], ag.in_size, nd, cl, parallel)
    return _unbatch(gx, batched)


# ---------------------------------------------------------------- global pooling
def _keepdims(op, keepdims):
    return G.check_bool(keepdims, "keepdims", op)


def _drop_unit(out, keepdims, cl):
    if keepdims:
        return out
    return out[..., 0, 0, :] if cl else out[..., 0, 0]


def _add_unit(grad_output, keepdims, cl):
    if keepdims or not isinstance(grad_output, np.ndarray):
        return grad_output
    return grad_output[..., None, None, :] if cl else grad_output[..., None, None]


# ---------------------------------------------------------------- Lp pooling
def _sign(a):
    """PyTorch's sign: 0 for NaN (NumPy's gives NaN); used in the Lp gradients."""
    return np.where(np.isnan(a), a.dtype.type(0), np.sign(a))


def _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, 0, 1, ceil_mode)
    return p, x, cl, batched, g


def _lp_pool(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout, parallel):
    p, x, cl, batched, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    lay = G.LAYOUTS[nd][cl]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isinf(p):  # PyTorch: max_pool(|x|) for inf, -max_pool(-|x|) for -inf
            s = 1 if p > 0 else -1
            out = s * _max_pool(op, nd, s * np.abs(x), g.kernel, g.stride, 0, 1, g.ceil_mode, False,
                                lay, parallel)
        else:
            a = _avg_pool(op, nd, x ** p, g.kernel, g.stride, 0, g.ceil_mode, True, None, lay, parallel)
            out = (a * math.prod(g.kernel)) ** (1.0 / p)
    return _unbatch(out.astype(x.dtype, copy=False), batched)


def _lp_pool_backward(op, nd, grad_output, x, norm_type, kernel_size, stride, ceil_mode, layout,
                      parallel):
    p, x, cl, batched, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    N, C = _nc(x, cl)
    grad = _grad(grad_output, x, _shape(N, C, g.out_size, cl), batched, op)
    lay = G.LAYOUTS[nd][cl]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if math.isinf(p):
            s = 1 if p > 0 else -1
            idx = _max_pool(op, nd, s * np.abs(x), g.kernel, g.stride, 0, 1, g.ceil_mode, True, lay,
                            parallel)[1]
            g_abs = _scatter_to(grad, idx, np.zeros(x.shape, dtype=x.dtype), cl, True, parallel)
            return _unbatch(g_abs * _sign(x), batched)
        # PyTorch's autograd chain for (sign(a) * relu(|a|) * K) ** (1/p), a = avg_pool(x**p)
        K = math.prod(g.kernel)
        a = _avg_pool(op, nd, x ** p, g.kernel, g.stride, 0, g.ceil_mode, True, None, lay, parallel)
        b = a * K
        gt = grad * ((1.0 / p) * b ** (1.0 / p - 1.0)) * K
        sa = _sign(a)  # through sign(a) * relu(|a|): relu masks |a| <= 0, sign(a) enters twice
        ga = np.where(a == 0, x.dtype.type(0), gt * sa * sa)  # zero sum -> zero gradient
        div = _divisor_array(g, True, 0, x.dtype)
        share = ga / div.reshape(_channels_axis_shape(div, nd, cl))
        g_pow = _spread(share, x.shape, x.dtype, G.window_extents(g), g.in_size, nd, cl, parallel)
        gx = g_pow * (p * x ** (p - 1.0))
    return _unbatch(gx.astype(x.dtype, copy=False), batched)


# ---------------------------------------------------------------- max unpooling
def _unpool_setup(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    x, cl, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=True)
    size = G.unpool_output_size(op, spatial, kernel_size, stride, padding, output_size)
    idx = _user_indices(indices, x.shape, batched, op, math.prod(size))
    return x, cl, batched, size, idx


def _max_unpool(op, nd, x, indices, kernel_size, stride, padding, output_size, layout, parallel):
    x, cl, batched, size, idx = _unpool_setup(op, nd, x, indices, kernel_size, stride, padding,
                                              output_size, layout)
    N, C = _nc(x, cl)
    out = np.zeros(_shape(N, C, size, cl), dtype=x.dtype)
    return _unbatch(_scatter_to(x, idx, out, cl, False, parallel), batched)


def _max_unpool_backward(op, nd, grad_output, x, indices, kernel_size, stride, padding, output_size,
                         layout, parallel):
    x, cl, batched, size, idx = _unpool_setup(op, nd, x, indices, kernel_size, stride, padding,
                                              output_size, layout)
    N, C = _nc(x, cl)
    grad = _grad(grad_output, x, _shape(N, C, size, cl), batched, op)
    gx = np.empty(x.shape, dtype=x.dtype)
    if gx.size:
        _kernel("gather", parallel, max(gx.size, grad.size))(_flat3(grad, cl), _flat3(idx, cl), _flat3(gx, cl))
    return _unbatch(gx, batched)


# ================================================================ public functions
_SEE = ("Same arguments and results as :func:`poolkit.{0}`; ``parallel=False`` runs the serial kernel\n"
        "    (inputs under ``poolkit.cpu.PARALLEL_MIN_SIZE`` elements always do).")


def _doc(name, summary):
    return f"""{summary}

    {_SEE.format(name)}

    See Also
    --------
    poolkit.{name} : the public function (documents the arguments).
    poolkit.reference.{name} : the plain-loop specification.
    """


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", parallel=True):
    return _max_pool("max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, parallel)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW", parallel=True):
    return _max_pool("max_pool3d", 3, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, parallel)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", parallel=True):
    return _avg_pool("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     None, layout, parallel)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW", parallel=True):
    return _avg_pool("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, parallel)


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL", parallel=True):
    return _adaptive_max("adaptive_max_pool1d", 1, x, output_size, return_indices, layout, parallel)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW", parallel=True):
    return _adaptive_max("adaptive_max_pool2d", 2, x, output_size, return_indices, layout, parallel)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW", parallel=True):
    return _adaptive_max("adaptive_max_pool3d", 3, x, output_size, return_indices, layout, parallel)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL", parallel=True):
    return _adaptive_avg("adaptive_avg_pool1d", 1, x, output_size, layout, parallel)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW", parallel=True):
    return _adaptive_avg("adaptive_avg_pool2d", 2, x, output_size, layout, parallel)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW", parallel=True):
    return _adaptive_avg("adaptive_avg_pool3d", 3, x, output_size, layout, parallel)


def global_max_pool2d(x, keepdims=False, *, layout="NCHW", parallel=True):
    op = "global_max_pool2d"
    keepdims = _keepdims(op, keepdims)
    cl = G.check_layout(layout, 2, op)
    return _drop_unit(_adaptive_max(op, 2, x, 1, False, layout, parallel), keepdims, cl)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW", parallel=True):
    op = "global_avg_pool2d"
    keepdims = _keepdims(op, keepdims)
    cl = G.check_layout(layout, 2, op)
    return _drop_unit(_adaptive_avg(op, 2, x, 1, layout, parallel), keepdims, cl)


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
                        parallel=True):
    return _max_pool_backward("max_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW",
                        parallel=True):
    return _max_pool_backward("max_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW",
                        parallel=True):
    return _max_pool_backward("max_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout, parallel)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL", parallel=True):
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, None, layout, parallel)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW", parallel=True):
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, parallel)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW", parallel=True):
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout, parallel)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCL", parallel=True):
    return _adaptive_max_backward("adaptive_max_pool1d_backward", 1, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCHW", parallel=True):
    return _adaptive_max_backward("adaptive_max_pool2d_backward", 2, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCDHW", parallel=True):
    return _adaptive_max_backward("adaptive_max_pool3d_backward", 3, grad_output, x, output_size,
                                  return_indices, indices, layout, parallel)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL", parallel=True):
    return _adaptive_avg_backward("adaptive_avg_pool1d_backward", 1, grad_output, x, output_size,
                                  layout, parallel)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW", parallel=True):
    return _adaptive_avg_backward("adaptive_avg_pool2d_backward", 2, grad_output, x, output_size,
                                  layout, parallel)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW", parallel=True):
    return _adaptive_avg_backward("adaptive_avg_pool3d_backward", 3, grad_output, x, output_size,
                                  layout, parallel)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", parallel=True):
    op = "global_max_pool2d_backward"
    keepdims = _keepdims(op, keepdims)
    cl = G.check_layout(layout, 2, op)
    return _adaptive_max_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, False, None,
                                  layout, parallel)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", parallel=True):
    op = "global_avg_pool2d_backward"
    keepdims = _keepdims(op, keepdims)
    cl = G.check_layout(layout, 2, op)
    return _adaptive_avg_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, layout, parallel)


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


_SUMMARIES = {
    "max_pool1d": "1-D max pooling on the CPU (runs the 2-D kernels on an H = 1 view).",
    "max_pool3d": "3-D max pooling on the CPU with Numba.",
    "avg_pool1d": "1-D average pooling on the CPU (runs the 2-D kernels on an H = 1 view).",
    "avg_pool3d": "3-D average pooling on the CPU with Numba.",
    "global_max_pool2d": "Max over all of H and W on the CPU (adaptive max to 1 x 1).",
    "global_avg_pool2d": "Mean over all of H and W on the CPU (adaptive average to 1 x 1).",
}
for _name in __all__:
    if _name == "KERNELS":
        continue
    _f = globals()[_name]
    if _name.endswith("_backward"):
        _summary = f"Gradient of :func:`poolkit.{_name[:-9]}` w.r.t. ``x`` on the CPU (deterministic)."
    elif _name.startswith(("adaptive", "lp_pool", "max_unpool")):
        _summary = f"``{_name}`` on the CPU with Numba (generic kernel on 5-D views)."
    else:
        _summary = _SUMMARIES[_name]
    _f.__doc__ = _doc(_name, _summary)
del _name, _f, _summary
