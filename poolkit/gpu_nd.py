"""CUDA kernels for the rest of the pooling family and every backward (the GPU twin of ``cpu_nd``).

:mod:`poolkit.gpu` has the naive and tiled 2-D forward kernels; this module adds the
other forward ops and all the gradients on the GPU, with the same names, arguments
and results as :mod:`poolkit.cpu_nd` (minus ``parallel=``). It reuses as much as it
can:

* **1-d and 2-d max/avg pooling run on the 2-D kernels** of :mod:`poolkit.gpu`
  (an ``(N, C, L)`` array is an ``(N, C, 1, L)`` view pooled with kernel ``(1, k)``),
  so they get the tiled kernels too (keyword ``kernel="optimized"``/``"naive"``).
* **Everything else is one generic kernel per reduction on 5-D views.** 1-d and 2-d
  inputs get unit spatial dimensions (``(N, C, 1, 1, L)``, ``(N, C, 1, H, W)``; for
  channels-last ``(N, 1, 1, L, C)``...), and a runtime flag ``cl`` says where the
  channel axis is, so one kernel serves 1-d/2-d/3-d and both layouts: 3-d max/avg
  pooling, adaptive max/avg, the backward gathers, unpooling and the element-wise
  steps of Lp pooling. These are *naive* kernels (one thread per output element,
  global-memory reads); in channels-last the thread index runs fastest over ``C``,
  so a warp's loads are coalesced.

Gradients are **deterministic by construction: gathers, never atomics.** One thread
per input cell sums the contributions of the windows that contain it
(:func:`poolkit.geometry.covering_windows`), in increasing output order -- the
order in which :mod:`poolkit.cpu_nd`'s scan-order scatter adds them -- so GPU and
CPU gradients are the same bits, on every run:

* max-type backward: the cell adds ``grad_output[o]`` for each covering window ``o``
  whose argmax index names it (indices from a forward pass, or computed here).
  Indices passed with ``indices=`` must come from that forward call: an index
  outside its own window is never matched (the CPU scatter would still route it);
* average backward: the cell adds ``grad_output[o] / divisor[o]`` (the divisor the
  forward used; adaptive: ``grad / kd / kh / kw`` like PyTorch);
* unpooling backward is a plain gather ``grad[idx]``; unpooling itself (a scatter
  where a repeated index means "last write wins") runs one thread per ``(n, c)``
  plane walking the input in scan order, which fixes the winner.

Inputs: GPU arrays (Numba device arrays, anything with ``__cuda_array_interface__``,
the simulator's ``FakeCUDAArray``) stay on the device and give device arrays; NumPy
input is copied in and the result copied back. A non-contiguous device input is
first copied to a contiguous device array. ``grad_output`` and ``indices`` may be
NumPy or device arrays. User-given indices are range-checked like on the CPU,
which copies them to the host once.

Dtypes: max-type forward ops and unpooling take float32, float64, int32 and uint8
(:data:`SUPPORTED_DTYPES`); average, adaptive average, Lp pooling and every
backward take float32 and float64. Kernels compile lazily on first launch.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import config
from . import geometry as G
from . import gpu as _gpu

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
    "ND_KERNELS", "ND_SUPPORTED_DTYPES", "nd_kernel_specializations",
]

_MAXLIKE = ("float32", "float64", "int32", "uint8")
_FLOATS = ("float32", "float64")
#: dtypes per kind of op: ``"max"`` (max-type forward, unpooling) and ``"float"`` (the rest).
ND_SUPPORTED_DTYPES = {"max": _MAXLIKE, "float": _FLOATS}


# =====================================================================================
# Kernels: one thread per output (or per input cell for gathers), 5-D arrays, flag cl.
# =====================================================================================
@cuda.jit
def _max3d(x, out, idx, want_idx, cl, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
    """Max pooling over 5-D views: one thread per output; writes the flat argmax if ``want_idx``.

    Window scanned in (kd, kh, kw) order with ``v > m or v != v or mi < 0``: the
    first maximum wins ties, NaN propagates (last NaN's index), padding never wins.
    """
    i = cuda.grid(1)
    if cl:
        C = x.shape[4]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
    else:
        C = x.shape[1]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        D, H, W = x.shape[2], x.shape[3], x.shape[4]
    if i >= x.shape[0] * C * OD * OH * OW:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        ow = t % OW
        t = t // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
    else:
        ow = i % OW
        t = i // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        t = t // OD
        c = t % C
        n = t // C
    m = init
    mi = -1
    for kd in range(KD):
        id_ = od * SD - PD + kd * DD
        if id_ >= 0 and id_ < D:
            for kh in range(KH):
                ih = oh * SH - PH + kh * DH
                if ih >= 0 and ih < H:
                    for kw in range(KW):
                        iw = ow * SW - PW + kw * DW
                        if iw >= 0 and iw < W:
                            v = x[n, id_, ih, iw, c] if cl else x[n, c, id_, ih, iw]
                            if v > m or v != v or mi < 0:
                                m = v
                                mi = (id_ * H + ih) * W + iw
    if cl:
        out[n, od, oh, ow, c] = m
        if want_idx:
            idx[n, od, oh, ow, c] = mi
    else:
        out[n, c, od, oh, ow] = m
        if want_idx:
            idx[n, c, od, oh, ow] = mi


@cuda.jit
def _avg3d(x, out, cl, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override, zero):
    """Average pooling over 5-D views: sum in scan order in ``x``'s dtype, one division.

    The divisor is ``override`` (when > 0) or ``div_d[od] * div_h[oh] * div_w[ow]``
    from :func:`poolkit.geometry.avg_divisor_table` -- as on the CPU, bit for bit.
    """
    i = cuda.grid(1)
    if cl:
        C = x.shape[4]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        D, H, W = x.shape[1], x.shape[2], x.shape[3]
    else:
        C = x.shape[1]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        D, H, W = x.shape[2], x.shape[3], x.shape[4]
    if i >= x.shape[0] * C * OD * OH * OW:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        ow = t % OW
        t = t // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
    else:
        ow = i % OW
        t = i // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        t = t // OD
        c = t % C
        n = t // C
    s = zero
    for kd in range(KD):
        id_ = od * SD - PD + kd
        if id_ >= 0 and id_ < D:
            for kh in range(KH):
                ih = oh * SH - PH + kh
                if ih >= 0 and ih < H:
                    for kw in range(KW):
                        iw = ow * SW - PW + kw
                        if iw >= 0 and iw < W:
                            s += x[n, id_, ih, iw, c] if cl else x[n, c, id_, ih, iw]
    d = override if override > 0 else div_d[od] * div_h[oh] * div_w[ow]
    if cl:
        out[n, od, oh, ow, c] = s / d
    else:
        out[n, c, od, oh, ow] = s / d


@cuda.jit
def _adaptive_max_k(x, out, idx, want_idx, cl, sd, ed, sh, eh, sw, ew, init):
    """Adaptive max over bins ``[s, e)`` per dimension (uneven, overlapping): one thread per output."""
    i = cuda.grid(1)
    if cl:
        C = x.shape[4]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
        H, W = x.shape[2], x.shape[3]
    else:
        C = x.shape[1]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
        H, W = x.shape[3], x.shape[4]
    if i >= x.shape[0] * C * OD * OH * OW:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        ow = t % OW
        t = t // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
    else:
        ow = i % OW
        t = i // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        t = t // OD
        c = t % C
        n = t // C
    m = init
    mi = -1
    for id_ in range(sd[od], ed[od]):
        for ih in range(sh[oh], eh[oh]):
            for iw in range(sw[ow], ew[ow]):
                v = x[n, id_, ih, iw, c] if cl else x[n, c, id_, ih, iw]
                if v > m or v != v or mi < 0:
                    m = v
                    mi = (id_ * H + ih) * W + iw
    if cl:
        out[n, od, oh, ow, c] = m
        if want_idx:
            idx[n, od, oh, ow, c] = mi
    else:
        out[n, c, od, oh, ow] = m
        if want_idx:
            idx[n, c, od, oh, ow] = mi


@cuda.jit
def _adaptive_avg_k(x, out, cl, sd, ed, sh, eh, sw, ew, kd, kh, kw, zero):
    """Adaptive average: sum the bin in scan order, then divide by each bin size in turn (PyTorch's order)."""
    i = cuda.grid(1)
    if cl:
        C = x.shape[4]
        OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    else:
        C = x.shape[1]
        OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    if i >= x.shape[0] * C * OD * OH * OW:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        ow = t % OW
        t = t // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        n = t // OD
    else:
        ow = i % OW
        t = i // OW
        oh = t % OH
        t = t // OH
        od = t % OD
        t = t // OD
        c = t % C
        n = t // C
    s = zero
    for id_ in range(sd[od], ed[od]):
        for ih in range(sh[oh], eh[oh]):
            for iw in range(sw[ow], ew[ow]):
                s += x[n, id_, ih, iw, c] if cl else x[n, c, id_, ih, iw]
    r = s / kd[od] / kh[oh] / kw[ow]
    if cl:
        out[n, od, oh, ow, c] = r
    else:
        out[n, c, od, oh, ow] = r


@cuda.jit
def _max_gather(grad, idx, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, zero):
    """Max-type backward as a gather: one thread per input cell, no atomics.

    The cell at flat position ``f`` adds ``grad[o]`` for every covering window ``o``
    (ranges ``[lo, hi)`` per dimension, increasing order) whose index is ``f``.
    """
    i = cuda.grid(1)
    if cl:
        C = gx.shape[4]
        D, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    else:
        C = gx.shape[1]
        D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    if i >= gx.shape[0] * C * D * H * W:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        iw = t % W
        t = t // W
        ih = t % H
        t = t // H
        id_ = t % D
        n = t // D
    else:
        iw = i % W
        t = i // W
        ih = t % H
        t = t // H
        id_ = t % D
        t = t // D
        c = t % C
        n = t // C
    f = (id_ * H + ih) * W + iw
    s = zero
    for od in range(lo_d[id_], hi_d[id_]):
        for oh in range(lo_h[ih], hi_h[ih]):
            for ow in range(lo_w[iw], hi_w[iw]):
                if cl:
                    if idx[n, od, oh, ow, c] == f:
                        s += grad[n, od, oh, ow, c]
                else:
                    if idx[n, c, od, oh, ow] == f:
                        s += grad[n, c, od, oh, ow]
    if cl:
        gx[n, id_, ih, iw, c] = s
    else:
        gx[n, c, id_, ih, iw] = s


@cuda.jit
def _avg_gather(grad, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, t_d, t_h, t_w, adaptive, override,
                zero):
    """Average-type backward as a gather: one thread per input cell, no atomics.

    Adds ``grad[o] / divisor[o]`` over the covering windows in increasing order. The
    divisor is ``override`` (> 0), ``t_d*t_h*t_w`` (pooling: the forward's divisor)
    or, with ``adaptive``, ``grad / t_d / t_h / t_w`` (bin sizes, PyTorch's order).
    """
    i = cuda.grid(1)
    if cl:
        C = gx.shape[4]
        D, H, W = gx.shape[1], gx.shape[2], gx.shape[3]
    else:
        C = gx.shape[1]
        D, H, W = gx.shape[2], gx.shape[3], gx.shape[4]
    if i >= gx.shape[0] * C * D * H * W:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        iw = t % W
        t = t // W
        ih = t % H
        t = t // H
        id_ = t % D
        n = t // D
    else:
        iw = i % W
        t = i // W
        ih = t % H
        t = t // H
        id_ = t % D
        t = t // D
        c = t % C
        n = t // C
    s = zero
    for od in range(lo_d[id_], hi_d[id_]):
        for oh in range(lo_h[ih], hi_h[ih]):
            for ow in range(lo_w[iw], hi_w[iw]):
                g = grad[n, od, oh, ow, c] if cl else grad[n, c, od, oh, ow]
                if override > 0:
                    s += g / override
                elif adaptive:
                    s += g / t_d[od] / t_h[oh] / t_w[ow]
                else:
                    s += g / (t_d[od] * t_h[oh] * t_w[ow])
    if cl:
        gx[n, id_, ih, iw, c] = s
    else:
        gx[n, c, id_, ih, iw] = s


@cuda.jit
def _unpool_scatter(src, idx, dst, cl, zero):
    """Max unpooling: one thread per ``(n, c)`` plane; zero the plane, then place the inputs.

    Inputs are walked in scan order, so with repeated indices the last one wins --
    the same cell on every run (and as on the CPU).
    """
    q = cuda.grid(1)
    if cl:
        C = dst.shape[4]
        D, H, W = src.shape[1], src.shape[2], src.shape[3]
        OD, OH, OW = dst.shape[1], dst.shape[2], dst.shape[3]
    else:
        C = dst.shape[1]
        D, H, W = src.shape[2], src.shape[3], src.shape[4]
        OD, OH, OW = dst.shape[2], dst.shape[3], dst.shape[4]
    if q >= dst.shape[0] * C:
        return
    n = q // C
    c = q - n * C
    for od in range(OD):
        for oh in range(OH):
            for ow in range(OW):
                if cl:
                    dst[n, od, oh, ow, c] = zero
                else:
                    dst[n, c, od, oh, ow] = zero
    for id_ in range(D):
        for ih in range(H):
            for iw in range(W):
                if cl:
                    f = idx[n, id_, ih, iw, c]
                    v = src[n, id_, ih, iw, c]
                else:
                    f = idx[n, c, id_, ih, iw]
                    v = src[n, c, id_, ih, iw]
                ow = f % OW
                t = f // OW
                oh = t % OH
                od = t // OH
                if cl:
                    dst[n, od, oh, ow, c] = v
                else:
                    dst[n, c, od, oh, ow] = v


@cuda.jit
def _index_gather(src, idx, dst, cl):
    """``dst[n, c, p] = src[n, c, idx[n, c, p]]`` (unpooling backward): one thread per ``dst`` cell."""
    i = cuda.grid(1)
    if cl:
        C = dst.shape[4]
        D, H, W = dst.shape[1], dst.shape[2], dst.shape[3]
        OH, OW = src.shape[2], src.shape[3]
    else:
        C = dst.shape[1]
        D, H, W = dst.shape[2], dst.shape[3], dst.shape[4]
        OH, OW = src.shape[3], src.shape[4]
    if i >= dst.shape[0] * C * D * H * W:
        return
    # unravel i in memory order (no device function: compile_ptx needs none)
    if cl:
        c = i % C
        t = i // C
        iw = t % W
        t = t // W
        ih = t % H
        t = t // H
        id_ = t % D
        n = t // D
    else:
        iw = i % W
        t = i // W
        ih = t % H
        t = t // H
        id_ = t % D
        t = t // D
        c = t % C
        n = t // C
    f = idx[n, id_, ih, iw, c] if cl else idx[n, c, id_, ih, iw]
    ow = f % OW
    t = f // OW
    oh = t % OH
    od = t // OH
    if cl:
        dst[n, id_, ih, iw, c] = src[n, od, oh, ow, c]
    else:
        dst[n, c, id_, ih, iw] = src[n, c, od, oh, ow]


@cuda.jit
def _ewise(a, b, out, op, p1, p2, K, zero, one):
    """The element-wise steps of Lp pooling and its gradient, on flat arrays (one thread per element).

    ``op``: 0 ``a**p1``; 1 ``(a*K)**p1``; 2 ``p1*|a|``; 3 ``p1*a``;
    4 the gradient through ``(sign(a)*relu(|a|)*K)**(1/p)`` with ``b`` the
    upstream gradient, ``p1 = 1/p``, ``p2 = 1/p - 1``; 5 ``a*(p1*b**p2)``;
    6 ``a*sign(b)``. Each step computes what :mod:`poolkit.cpu_nd` computes in
    NumPy, in the same dtype and order.
    """
    i = cuda.grid(1)
    if i >= out.shape[0]:
        return
    v = a[i]
    if op == 0:
        r = v ** p1
    elif op == 1:
        r = (v * K) ** p1
    elif op == 2:
        r = p1 * abs(v)
    elif op == 3:
        r = p1 * v
    elif op == 4:
        gt = b[i] * (p1 * (v * K) ** p2) * K
        sa = one if v > zero else (-one if v < zero else zero)  # PyTorch's sign (0 for NaN)
        r = zero if v == zero else gt * sa * sa
    elif op == 5:
        r = v * (p1 * b[i] ** p2)
    else:
        w = b[i]
        r = v * (one if w > zero else (-one if w < zero else zero))
    out[i] = r


@cuda.jit
def _copy_5d(src, dst):
    """``dst[...] = src[...]``: a strided 5-D device array into a C-contiguous one (grid-stride)."""
    A, B, Cc, D, E = dst.shape
    for i in range(cuda.grid(1), A * B * Cc * D * E, cuda.gridsize(1)):
        e = i % E
        t = i // E
        d = t % D
        t = t // D
        c = t % Cc
        t = t // Cc
        b = t % B
        a = t // B
        dst[a, b, c, d, e] = src[a, b, c, d, e]


#: ``ND_KERNELS[name]`` -> the ``@cuda.jit`` dispatcher (notebooks show ``.py_func``).
ND_KERNELS = {
    "max3d": _max3d, "avg3d": _avg3d, "adaptive_max": _adaptive_max_k, "adaptive_avg": _adaptive_avg_k,
    "max_gather": _max_gather, "avg_gather": _avg_gather, "unpool_scatter": _unpool_scatter,
    "index_gather": _index_gather, "ewise": _ewise, "copy_5d": _copy_5d,
}
_KERNEL_NAMES = {v: k for k, v in ND_KERNELS.items()}


# =====================================================================================
# Host side: device movement, 5-D views, launches (and a recording mode for the PTX list).
# =====================================================================================
#: When a dict, launches record ``(name, argument types) -> py_func`` instead of running,
#: and device arrays are NumPy stand-ins (see :func:`nd_kernel_specializations`).
_RECORD = None


def _alloc(shape, dtype):
    if _RECORD is not None:
        return np.zeros(shape, dtype=dtype)
    return cuda.device_array(tuple(shape), dtype=dtype)


def _put(a):
    a = np.ascontiguousarray(a)
    return a if _RECORD is not None else cuda.to_device(a)


def _launch(kernel, total, *args):
    """One thread per item (``total`` items) with ``config.GPU_THREADS_PER_BLOCK`` threads per block."""
    if _RECORD is not None:
        import numba

        _RECORD[(_KERNEL_NAMES[kernel], tuple(numba.typeof(a) for a in args))] = kernel.py_func
        return
    if total <= 0:
        return
    tpb = max(1, min(1024, int(config.GPU_THREADS_PER_BLOCK)))
    kernel[_gpu._cdiv(total, tpb), tpb](*args)


def _require_device(op):
    if _RECORD is None:
        _gpu._require_device(op)


def _shape_dtype(a, op, name="x"):
    try:
        return _gpu._shape_dtype(a, op)
    except TypeError as exc:
        if name == "x":
            raise
        raise TypeError(str(exc).replace(": x must", f": {name} must")) from None


def _device_view(a):
    """A Numba (or simulator) device array for any accepted GPU array (zero-copy)."""
    if _gpu._is_fake(a) or type(a).__module__.startswith("numba.cuda"):
        return a
    return cuda.as_cuda_array(a)


def _shape5(shape, nd, cl, batched):
    """Batched 5-D shape (unit spatial dims in front) of an array with ``shape``."""
    full = tuple(shape) if batched else (1,) + tuple(shape)
    unit = (1,) * (3 - nd)
    if cl:
        return (full[0],) + unit + full[1:]
    return full[:2] + unit + full[2:]


def _to5(a, nd, cl, batched, op):
    """``a`` (NumPy or device) as a batched, C-contiguous 5-D device array (a view when possible)."""
    shape, _ = _shape_dtype(a, op)
    s5 = _shape5(shape, nd, cl, batched)
    if isinstance(a, np.ndarray):
        return _put(G.as_native_array(a, op).reshape(s5))
    d = _device_view(a)
    if d.is_c_contiguous():
        return d.reshape(s5)
    # strided: view with unit axes inserted, then one device-side copy
    if _gpu._is_fake(d):
        full = d if batched else d[None]
        idx = (slice(None),) + (None,) * (3 - nd) if cl else (slice(None), slice(None)) + (None,) * (3 - nd)
        src = full[idx]
    else:
        strides = tuple(d.strides)
        if not batched:
            strides = (0,) + strides
        item = np.dtype(d.dtype).itemsize
        pos = 1 if cl else 2
        strides = strides[:pos] + (item,) * (3 - nd) + strides[pos:]
        src = cuda.as_cuda_array(_gpu._CAIView(d, s5, strides))
    dst = cuda.device_array(s5, dtype=d.dtype)
    if dst.size:
        tpb = max(1, min(1024, int(config.GPU_THREADS_PER_BLOCK)))
        _copy_5d[max(1, min(_gpu._cdiv(dst.size, tpb), _gpu._max_blocks())), tpb](src, dst)
    return dst


def _result(a5, shape, host, batched):
    """Device 5-D result -> ``shape`` (batched nd shape), unbatched if needed, on the host for NumPy input."""
    shape = tuple(int(v) for v in shape)
    if _RECORD is not None:
        r = np.asarray(a5).reshape(shape)
        return r if batched else r[0]
    if host:
        r = a5.copy_to_host().reshape(shape)
        return r if batched else r[0]
    return a5.reshape(shape if batched else shape[1:])


def _out_shape(N, C, spatial, cl):
    return (N,) + tuple(spatial) + (C,) if cl else (N, C) + tuple(spatial)


def _sp5(spatial):
    return (1,) * (3 - len(spatial)) + tuple(spatial)


def _input(x, op, nd, layout, kind):
    """Validate ``x`` (before any launch); return ``(shape, dtype, cl, batched, spatial, N, C, host)``."""
    shape, dtype = _shape_dtype(x, op)
    allow_int = kind == "max"
    cl, batched, spatial = G.check_input(shape, dtype, nd, layout, op, allow_int=allow_int)
    allowed = ND_SUPPORTED_DTYPES[kind]
    if dtype.name not in allowed:
        raise TypeError(f"{op}: the GPU kernels support dtypes {', '.join(allowed)}; got {dtype} "
                        "(cast with x.astype(...), or use the CPU functions)")
    full = tuple(shape) if batched else (1,) + tuple(shape)
    N, C = full[0], (full[-1] if cl else full[1])
    return shape, dtype, cl, batched, tuple(spatial), N, C, isinstance(x, np.ndarray)


def _grad5(grad_output, out_shape_batched, dtype, nd, cl, batched, op):
    """Check ``grad_output`` (forward output's shape, ``x``'s dtype); return it 5-D on the device."""
    shape, gdt = _shape_dtype(grad_output, op, "grad_output")
    want = out_shape_batched if batched else out_shape_batched[1:]
    if tuple(shape) != tuple(want):
        raise ValueError(f"{op}: grad_output must have the forward output's shape {tuple(want)}, "
                         f"got {tuple(shape)}")
    if gdt.newbyteorder("=") != np.dtype(dtype):
        raise TypeError(f"{op}: grad_output must have x's dtype {dtype}, got {gdt}")
    return _to5(grad_output, nd, cl, batched, op)


def _indices5(indices, out_shape_batched, nd, cl, batched, op, n_cells):
    """Check user indices (shape, integer dtype, values in one plane); return int64 5-D on the device."""
    shape, idt = _shape_dtype(indices, op, "indices")
    want = out_shape_batched if batched else out_shape_batched[1:]
    if idt.kind not in "iu":
        raise TypeError(f"{op}: indices must have an integer dtype, got {idt}")
    if tuple(shape) != tuple(want):
        raise ValueError(f"{op}: indices must have shape {tuple(want)}, got {tuple(shape)}")
    host = indices if isinstance(indices, np.ndarray) else _device_view(indices).copy_to_host()
    if host.size and (host.min() < 0 or host.max() >= n_cells):
        raise ValueError(f"{op}: indices must lie in [0, {n_cells}) (flat positions in one "
                         f"spatial plane), got values from {host.min()} to {host.max()}")
    if idt == np.int64 and not isinstance(indices, np.ndarray):
        return _to5(indices, nd, cl, batched, op)
    return _put(host.astype(np.int64).reshape(_shape5(shape, nd, cl, batched)))


# ---------------------------------------------------------------- forward building blocks (5-D in/out)
def _pool2d_call(kind, x4, args, layout, kernel, return_indices=False):
    """The 2-D kernels of :mod:`poolkit.gpu` (the CPU twin while recording kernel types)."""
    if _RECORD is not None:
        from . import cpu

        fn = cpu.max_pool2d if kind == "max" else cpu.avg_pool2d
        if kind == "max":
            return fn(np.asarray(x4), *args, return_indices, layout=layout)
        return fn(np.asarray(x4), *args, layout=layout)
    fn = _gpu.max_pool2d if kind == "max" else _gpu.avg_pool2d
    if kind == "max":
        return fn(x4, *args, return_indices, layout=layout, kernel=kernel)
    return fn(x4, *args, layout=layout, kernel=kernel)


def _as4(x5, cl):
    s = tuple(x5.shape)
    return x5.reshape((s[0], s[2], s[3], s[4]) if cl else (s[0], s[1], s[3], s[4]))


def _as5(a4, cl):
    s = tuple(a4.shape)
    return a4.reshape((s[0], 1) + s[1:] if cl else (s[0], s[1], 1) + s[2:])


def _padding_2d(padding, nd, op):
    if isinstance(padding, str) or nd == 2:
        return padding
    return (0,) + G.normalize_tuple(padding, 1, "padding", op, minimum=0)


def _max5(x5, g, nd, cl, padding, want_idx, kernel):
    """Max pooling of a 5-D device array with geometry ``g``; returns ``(out5, idx5 or None)``."""
    N = x5.shape[0]
    C = x5.shape[4] if cl else x5.shape[1]
    if nd < 3:
        k, s, d = ((1,) * (2 - nd) + g.kernel, (1,) * (2 - nd) + g.stride, (1,) * (2 - nd) + g.dilation)
        lay = "NHWC" if cl else "NCHW"
        res = _pool2d_call("max", _as4(x5, cl), (k, s, _padding_2d(padding, nd, g.op), d, g.ceil_mode),
                           lay, kernel, want_idx)
        if want_idx:
            return _as5(res[0], cl), _as5(res[1], cl)
        return _as5(res, cl), None
    out = _alloc(_out_shape(N, C, g.out_size, cl), x5.dtype)
    idx = _alloc(out.shape, np.int64) if want_idx else _alloc((1, 1, 1, 1, 1), np.int64)
    _launch(_max3d, int(np.prod(out.shape)), x5, out, idx, bool(want_idx), bool(cl), *g.stride,
            *g.padding, *g.dilation, *g.kernel, G.max_identity(x5.dtype))
    return out, (idx if want_idx else None)


def _avg5(x5, g, nd, cl, padding, cip, override, divisor_override, kernel):
    N = x5.shape[0]
    C = x5.shape[4] if cl else x5.shape[1]
    if nd < 3:
        k, s = (1,) * (2 - nd) + g.kernel, (1,) * (2 - nd) + g.stride
        lay = "NHWC" if cl else "NCHW"
        res = _pool2d_call("avg", _as4(x5, cl), (k, s, _padding_2d(padding, nd, g.op), g.ceil_mode, cip,
                                                 divisor_override), lay, kernel)
        return _as5(res, cl)
    dtype = np.dtype(x5.dtype)
    out = _alloc(_out_shape(N, C, g.out_size, cl), dtype)
    tables = [_put(t.astype(dtype)) for t in G.avg_divisor_table(g, cip)]
    _launch(_avg3d, int(np.prod(out.shape)), x5, out, bool(cl), *g.stride, *g.padding, *g.kernel,
            *tables, dtype.type(override), dtype.type(0))
    return out


def _ewise_run(op_code, a, b, dtype, p1=0.0, p2=0.0, K=1.0):
    """Element-wise step on same-shape contiguous 5-D arrays (``b`` may be None)."""
    dtype = np.dtype(dtype)
    shape = tuple(a.shape)
    size = int(np.prod(shape))
    out = _alloc(shape, dtype)
    af = a.reshape(size)
    bf = b.reshape(size) if b is not None else af
    _launch(_ewise, size, af, bf, out.reshape(size), np.int64(op_code), dtype.type(p1), dtype.type(p2),
            dtype.type(K), dtype.type(0), dtype.type(1))
    return out


# ---------------------------------------------------------------- op implementations
def _max_pool(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout,
              kernel):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    kernel = _gpu._check_kernel(kernel, op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "max")
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    _require_device(op)
    oshape = _out_shape(N, C, g.out_size, cl)
    if N == 0:
        return _empty(oshape, dtype, host, batched, return_indices)
    x5 = _to5(x, nd, cl, batched, op)
    out, idx = _max5(x5, g, nd, cl, padding, return_indices, kernel)
    res = _result(out, oshape, host, batched)
    return (res, _result(idx, oshape, host, batched)) if return_indices else res


def _empty(oshape, dtype, host, batched, with_idx=False):
    make = np.empty if host else (lambda s, d: cuda.device_array(s, dtype=d))
    res = [make(oshape, dtype)] + ([make(oshape, np.int64)] if with_idx else [])
    return tuple(res) if with_idx else res[0]


def _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
               divisor_override, layout):
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    return dtype, cl, batched, N, C, host, g, count_include_pad, override


def _avg_pool(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
              layout, kernel):
    kernel = _gpu._check_kernel(kernel, op)
    dtype, cl, batched, N, C, host, g, cip, override = _avg_setup(
        op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layout)
    _require_device(op)
    oshape = _out_shape(N, C, g.out_size, cl)
    if N == 0:
        return _empty(oshape, dtype, host, batched)
    x5 = _to5(x, nd, cl, batched, op)
    out = _avg5(x5, g, nd, cl, padding, cip, override, divisor_override, kernel)
    return _result(out, oshape, host, batched)


def _covering(starts_stops, in_size):
    """Per dimension (unit dims first) the covering output ranges as device int64 arrays."""
    nd = len(in_size)
    tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - nd)
    tables += [G.covering_windows(a, b, L) for (a, b), L in zip(starts_stops, in_size)]
    return [_put(t) for pair in tables for t in pair]


def _max_gather_run(grad5, idx5, x_shape5, dtype, cl, starts_stops, in_size):
    gx = _alloc(x_shape5, dtype)
    _launch(_max_gather, int(np.prod(x_shape5)), grad5, idx5, gx, bool(cl),
            *_covering(starts_stops, in_size), np.dtype(dtype).type(0))
    return gx


def _avg_gather_run(grad5, x_shape5, dtype, cl, starts_stops, in_size, tables, adaptive, override):
    dtype = np.dtype(dtype)
    gx = _alloc(x_shape5, dtype)
    t = [np.ones(1, dtype)] * (3 - len(in_size)) + [np.asarray(v).astype(dtype) for v in tables]
    _launch(_avg_gather, int(np.prod(x_shape5)), grad5, gx, bool(cl), *_covering(starts_stops, in_size),
            *[_put(v) for v in t], bool(adaptive), dtype.type(override), dtype.type(0))
    return gx


def _max_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices, indices, layout):
    G.check_bool(return_indices, "return_indices", op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    oshape = _out_shape(N, C, g.out_size, cl)
    xshape = _out_shape(N, C, spatial, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    idx5 = None
    if indices is not None:
        idx5 = _indices5(indices, oshape, nd, cl, batched, op, math.prod(spatial))
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    if idx5 is None:
        idx5 = _max5(_to5(x, nd, cl, batched, op), g, nd, cl, padding, True, "optimized")[1]
    gx = _max_gather_run(grad5, idx5, _shape5(xshape, nd, cl, True), dtype, cl, G.window_extents(g),
                         g.in_size)
    return _result(gx, xshape, host, batched)


def _avg_pool_backward(op, nd, grad_output, x, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, layout):
    dtype, cl, batched, N, C, host, g, cip, override = _avg_setup(
        op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, layout)
    oshape = _out_shape(N, C, g.out_size, cl)
    xshape = _out_shape(N, C, g.in_size, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    gx = _avg_gather_run(grad5, _shape5(xshape, nd, cl, True), dtype, cl, G.window_extents(g), g.in_size,
                         G.avg_divisor_table(g, cip), False, override)
    return _result(gx, xshape, host, batched)


def _bins5(ag):
    tables = [(np.zeros(1, np.int64), np.ones(1, np.int64))] * (3 - ag.nd)
    return tables + [ag.bins(i) for i in range(ag.nd)]


def _adaptive_max5(x5, ag, cl, want_idx):
    N = x5.shape[0]
    C = x5.shape[4] if cl else x5.shape[1]
    out = _alloc(_out_shape(N, C, _sp5(ag.out_size), cl), x5.dtype)
    idx = _alloc(out.shape, np.int64) if want_idx else _alloc((1, 1, 1, 1, 1), np.int64)
    _launch(_adaptive_max_k, int(np.prod(out.shape)), x5, out, idx, bool(want_idx), bool(cl),
            *[_put(t) for pair in _bins5(ag) for t in pair], G.max_identity(x5.dtype))
    return out, idx


def _adaptive_max(op, nd, x, output_size, return_indices, layout):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "max")
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    _require_device(op)
    oshape = _out_shape(N, C, ag.out_size, cl)
    if int(np.prod(oshape)) == 0:
        return _empty(oshape, dtype, host, batched, return_indices)
    out, idx = _adaptive_max5(_to5(x, nd, cl, batched, op), ag, cl, return_indices)
    res = _result(out, oshape, host, batched)
    return (res, _result(idx, oshape, host, batched)) if return_indices else res


def _adaptive_avg(op, nd, x, output_size, layout):
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    _require_device(op)
    oshape = _out_shape(N, C, ag.out_size, cl)
    if int(np.prod(oshape)) == 0:
        return _empty(oshape, dtype, host, batched)
    x5 = _to5(x, nd, cl, batched, op)
    out = _alloc(_shape5(oshape, nd, cl, True), dtype)
    bins = _bins5(ag)
    sizes = [_put((b - a).astype(dtype)) for a, b in bins]
    _launch(_adaptive_avg_k, int(np.prod(oshape)), x5, out, bool(cl), *[_put(t) for pair in bins for t in pair],
            *sizes, dtype.type(0))
    return _result(out, oshape, host, batched)


def _adaptive_max_backward(op, nd, grad_output, x, output_size, return_indices, indices, layout):
    G.check_bool(return_indices, "return_indices", op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    oshape = _out_shape(N, C, ag.out_size, cl)
    xshape = _out_shape(N, C, spatial, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    idx5 = None
    if indices is not None:
        idx5 = _indices5(indices, oshape, nd, cl, batched, op, math.prod(spatial))
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    if int(np.prod(oshape)) == 0:  # empty output: nothing flows back
        return _result(_put(np.zeros(_shape5(xshape, nd, cl, True), dtype)), xshape, host, batched)
    if idx5 is None:
        idx5 = _adaptive_max5(_to5(x, nd, cl, batched, op), ag, cl, True)[1]
    gx = _max_gather_run(grad5, idx5, _shape5(xshape, nd, cl, True), dtype, cl,
                         [ag.bins(i) for i in range(nd)], ag.in_size)
    return _result(gx, xshape, host, batched)


def _adaptive_avg_backward(op, nd, grad_output, x, output_size, layout):
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    oshape = _out_shape(N, C, ag.out_size, cl)
    xshape = _out_shape(N, C, spatial, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    sizes = [b - a for a, b in (ag.bins(i) for i in range(nd))]
    gx = _avg_gather_run(grad5, _shape5(xshape, nd, cl, True), dtype, cl, [ag.bins(i) for i in range(nd)],
                         ag.in_size, sizes, True, 0)
    return _result(gx, xshape, host, batched)


# ---------------------------------------------------------------- global pooling
def _drop_unit(out, keepdims, cl):
    if keepdims:
        return out
    s = tuple(out.shape)
    return out.reshape(s[:-3] + s[-1:] if cl else s[:-2])


def _add_unit(grad_output, keepdims, cl):
    if keepdims:
        return grad_output
    try:
        shape, _ = _gpu._shape_dtype(grad_output, "global")
    except TypeError:
        return grad_output  # reported by the backward's own check
    if isinstance(grad_output, np.ndarray):
        return grad_output[..., None, None, :] if cl else grad_output[..., None, None]
    d = _device_view(grad_output)
    new = shape[:-1] + (1, 1, shape[-1]) if cl else tuple(shape) + (1, 1)
    if d.is_c_contiguous():
        return d.reshape(new)
    return cuda.to_device(np.ascontiguousarray(d.copy_to_host()).reshape(new))  # rare: strided grads


# ---------------------------------------------------------------- Lp pooling
def _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, "float")
    g = G.make_geometry(op, spatial, kernel_size, stride, 0, 1, ceil_mode)
    return p, dtype, cl, batched, N, C, host, g


def _lp_pool(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p, dtype, cl, batched, N, C, host, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride,
                                                      ceil_mode, layout)
    _require_device(op)
    oshape = _out_shape(N, C, g.out_size, cl)
    if N == 0:
        return _empty(oshape, dtype, host, batched)
    x5 = _to5(x, nd, cl, batched, op)
    if math.isinf(p):  # PyTorch: max_pool(|x|) for inf, -max_pool(-|x|) for -inf
        s = 1.0 if p > 0 else -1.0
        m = _max5(_ewise_run(2, x5, None, dtype, s), g, nd, cl, 0, False, "optimized")[0]
        out = _ewise_run(3, m, None, dtype, s)
    else:
        a = _avg5(_ewise_run(0, x5, None, dtype, p), g, nd, cl, 0, True, 0, None, "optimized")
        out = _ewise_run(1, a, None, dtype, 1.0 / p, K=math.prod(g.kernel))
    return _result(out, oshape, host, batched)


def _lp_pool_backward(op, nd, grad_output, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p, dtype, cl, batched, N, C, host, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride,
                                                      ceil_mode, layout)
    oshape = _out_shape(N, C, g.out_size, cl)
    xshape = _out_shape(N, C, g.in_size, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    x5 = _to5(x, nd, cl, batched, op)
    xs5 = _shape5(xshape, nd, cl, True)
    if math.isinf(p):
        s = 1.0 if p > 0 else -1.0
        idx = _max5(_ewise_run(2, x5, None, dtype, s), g, nd, cl, 0, True, "optimized")[1]
        g_abs = _max_gather_run(grad5, idx, xs5, dtype, cl, G.window_extents(g), g.in_size)
        gx = _ewise_run(6, g_abs, x5, dtype)
    else:
        K = math.prod(g.kernel)
        a = _avg5(_ewise_run(0, x5, None, dtype, p), g, nd, cl, 0, True, 0, None, "optimized")
        ga = _ewise_run(4, a, grad5, dtype, 1.0 / p, 1.0 / p - 1.0, K)
        g_pow = _avg_gather_run(ga, xs5, dtype, cl, G.window_extents(g), g.in_size,
                                G.avg_divisor_table(g, True), False, 0)
        gx = _ewise_run(5, g_pow, x5, dtype, p, p - 1.0)
    return _result(gx, xshape, host, batched)


# ---------------------------------------------------------------- max unpooling
def _unpool_setup(op, nd, x, indices, kernel_size, stride, padding, output_size, layout, kind):
    shape, dtype, cl, batched, spatial, N, C, host = _input(x, op, nd, layout, kind)
    size = G.unpool_output_size(op, spatial, kernel_size, stride, padding, output_size)
    xshape = _out_shape(N, C, spatial, cl)
    idx5 = _indices5(indices, xshape, nd, cl, batched, op, math.prod(size))
    return dtype, cl, batched, N, C, host, spatial, size, idx5


def _max_unpool(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    dtype, cl, batched, N, C, host, spatial, size, idx5 = _unpool_setup(
        op, nd, x, indices, kernel_size, stride, padding, output_size, layout, "max")
    _require_device(op)
    oshape = _out_shape(N, C, size, cl)
    if N == 0:
        return _empty(oshape, dtype, host, batched)
    out = _alloc(_shape5(oshape, nd, cl, True), dtype)
    _launch(_unpool_scatter, N * C, _to5(x, nd, cl, batched, op), idx5, out, bool(cl), dtype.type(0))
    return _result(out, oshape, host, batched)


def _max_unpool_backward(op, nd, grad_output, x, indices, kernel_size, stride, padding, output_size,
                         layout):
    dtype, cl, batched, N, C, host, spatial, size, idx5 = _unpool_setup(
        op, nd, x, indices, kernel_size, stride, padding, output_size, layout, "max")
    oshape = _out_shape(N, C, size, cl)
    xshape = _out_shape(N, C, spatial, cl)
    grad5 = _grad5(grad_output, oshape, dtype, nd, cl, batched, op)
    _require_device(op)
    if N == 0:
        return _empty(xshape, dtype, host, batched)
    gx = _alloc(_shape5(xshape, nd, cl, True), dtype)
    _launch(_index_gather, int(np.prod(xshape)), grad5, idx5, gx, bool(cl))
    return _result(gx, xshape, host, batched)


# ================================================================ public functions
def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", kernel="optimized"):
    return _max_pool("max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, kernel)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW"):
    return _max_pool("max_pool3d", 3, x, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices, layout, "naive")


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", kernel="optimized"):
    return _avg_pool("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     None, layout, kernel)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW"):
    return _avg_pool("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, layout, "naive")


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL"):
    return _adaptive_max("adaptive_max_pool1d", 1, x, output_size, return_indices, layout)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW"):
    return _adaptive_max("adaptive_max_pool2d", 2, x, output_size, return_indices, layout)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW"):
    return _adaptive_max("adaptive_max_pool3d", 3, x, output_size, return_indices, layout)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL"):
    return _adaptive_avg("adaptive_avg_pool1d", 1, x, output_size, layout)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW"):
    return _adaptive_avg("adaptive_avg_pool2d", 2, x, output_size, layout)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW"):
    return _adaptive_avg("adaptive_avg_pool3d", 3, x, output_size, layout)


def global_max_pool2d(x, keepdims=False, *, layout="NCHW"):
    op = "global_max_pool2d"
    keepdims = G.check_bool(keepdims, "keepdims", op)
    cl = G.check_layout(layout, 2, op)
    return _drop_unit(_adaptive_max(op, 2, x, 1, False, layout), keepdims, cl)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW"):
    op = "global_avg_pool2d"
    keepdims = G.check_bool(keepdims, "keepdims", op)
    cl = G.check_layout(layout, 2, op)
    return _drop_unit(_adaptive_avg(op, 2, x, 1, layout), keepdims, cl)


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
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCL"):
    return _max_pool_backward("max_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW"):
    return _max_pool_backward("max_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW"):
    return _max_pool_backward("max_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              dilation, ceil_mode, return_indices, indices, layout)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL"):
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, None, layout)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW"):
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW"):
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, x, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override, layout)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCL"):
    return _adaptive_max_backward("adaptive_max_pool1d_backward", 1, grad_output, x, output_size,
                                  return_indices, indices, layout)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCHW"):
    return _adaptive_max_backward("adaptive_max_pool2d_backward", 2, grad_output, x, output_size,
                                  return_indices, indices, layout)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCDHW"):
    return _adaptive_max_backward("adaptive_max_pool3d_backward", 3, grad_output, x, output_size,
                                  return_indices, indices, layout)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL"):
    return _adaptive_avg_backward("adaptive_avg_pool1d_backward", 1, grad_output, x, output_size, layout)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW"):
    return _adaptive_avg_backward("adaptive_avg_pool2d_backward", 2, grad_output, x, output_size, layout)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW"):
    return _adaptive_avg_backward("adaptive_avg_pool3d_backward", 3, grad_output, x, output_size, layout)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW"):
    op = "global_max_pool2d_backward"
    keepdims = G.check_bool(keepdims, "keepdims", op)
    cl = G.check_layout(layout, 2, op)
    return _adaptive_max_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, False, None, layout)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW"):
    op = "global_avg_pool2d_backward"
    keepdims = G.check_bool(keepdims, "keepdims", op)
    cl = G.check_layout(layout, 2, op)
    return _adaptive_avg_backward(op, 2, _add_unit(grad_output, keepdims, cl), x, 1, layout)


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


# ================================================================ every compiled specialization
def nd_kernel_specializations():
    """``[(name, python function, argument types)]`` for every kernel this module launches.

    Runs every public function in a recording mode on small NumPy stand-ins (no
    device needed): each launch records the exact argument types instead of
    running, so the PTX tests compile what the functions really pass -- for both
    layouts, 1-d/2-d/3-d, every op and every supported dtype. The 1-d/2-d forward
    paths use :mod:`poolkit.gpu`'s kernels (covered by
    :func:`poolkit.gpu.kernel_specializations`); the strided-input copy
    ``copy_5d`` is added for each dtype.
    """
    import numba
    from numba import types

    global _RECORD
    rec = {}
    _RECORD = rec
    try:
        for nd in (1, 2, 3):
            first, last = G.LAYOUTS[nd]
            for layout in (first, last):
                shape = (1, 2) + (4,) * nd if layout == first else (1,) + (4,) * nd + (2,)
                for dt in _MAXLIKE:
                    x = np.ones(shape, dtype=dt)
                    _record_ops(nd, x, layout, floats=dt in _FLOATS)
    finally:
        _RECORD = None
    for dt in _MAXLIKE:
        nb = numba.from_dtype(np.dtype(dt))
        rec[("copy_5d", (types.Array(nb, 5, "A"), types.Array(nb, 5, "C")))] = _copy_5d.py_func
    return [(name, fn, sig) for (name, sig), fn in rec.items()]


def _record_ops(nd, x, layout, floats):
    """Call every op once (recording mode) on ``x``."""
    m = globals()
    sfx = f"{nd}d"

    def mp(x, return_indices=False):  # 2-D max/avg forward are poolkit.gpu's; same path for all nd
        return _max_pool(f"max_pool{sfx}", nd, x, 2, 1, 1, 1, False, return_indices, layout, "optimized")

    def ap(x):
        return _avg_pool(f"avg_pool{sfx}", nd, x, 2, 1, 1, False, True, None, layout, "optimized")

    out, idx = mp(x, True)
    m[f"adaptive_max_pool{sfx}"](x, 3, True, layout=layout)
    up = m[f"max_unpool{sfx}"](out, idx, 2, 1, 1, layout=layout)
    m[f"max_unpool{sfx}_backward"](up, out, idx, 2, 1, 1, layout=layout)
    if not floats:
        return
    ap(x)
    m[f"adaptive_avg_pool{sfx}"](x, 3, layout=layout)
    for p in (2.0, float("inf")):
        lp = m[f"lp_pool{sfx}"](x, p, 2, layout=layout)
        m[f"lp_pool{sfx}_backward"](lp, x, p, 2, layout=layout)
    m[f"max_pool{sfx}_backward"](out, x, 2, 1, 1, layout=layout)
    m[f"max_pool{sfx}_backward"](out, x, 2, 1, 1, indices=idx, layout=layout)
    m[f"avg_pool{sfx}_backward"](ap(x), x, 2, 1, 1, layout=layout)
    am = m[f"adaptive_max_pool{sfx}"](x, 3, layout=layout)
    m[f"adaptive_max_pool{sfx}_backward"](am, x, 3, layout=layout)
    m[f"adaptive_avg_pool{sfx}_backward"](am, x, 3, layout=layout)


def _document():
    """numpydoc docstrings for the public functions (arguments are documented on the public API)."""
    import inspect

    for name in __all__:
        if name.isupper() or name.startswith("nd_"):
            continue
        f = globals()[name]
        if name.endswith("_backward"):
            summary = (f"Gradient of :func:`poolkit.{name[:-9]}` w.r.t. ``x`` on a CUDA GPU: a gather, "
                       "no atomics (deterministic).")
        elif name.startswith(("max_pool1d", "avg_pool1d")):
            summary = f"``{name}`` on a CUDA GPU (the 2-D kernels of :mod:`poolkit.gpu` on an H = 1 view)."
        else:
            summary = f"``{name}`` on a CUDA GPU (generic naive kernel on 5-D views)."
        params = [q for q in inspect.signature(f).parameters if q not in ("x", "grad_output", "kernel")]
        lines = []
        if name.endswith("_backward"):
            lines.append("grad_output : array\n        Gradient w.r.t. the forward output (NumPy or GPU): "
                         "its shape, ``x``'s dtype.")
        lines.append("x : array\n        A GPU array (``__cuda_array_interface__``, or the simulator's device "
                     "array)\n        or a NumPy array; dtypes in :data:`ND_SUPPORTED_DTYPES`.")
        where = " (``indices`` may be a NumPy or GPU array)" if "indices" in params else ""
        lines.append(f"{', '.join(params)}\n        As in :func:`poolkit.{name}`{where}.")
        if name in ("max_pool1d", "avg_pool1d"):
            lines.append('kernel : {"optimized", "naive"}\n        Keyword-only: which 2-D kernel stage of '
                         ":mod:`poolkit.gpu` runs.")
        body = "\n".join("    " + ln for ln in lines)
        if name.endswith("_backward"):
            ret = "grad_x : array\n        Gradient w.r.t. ``x``: ``x``'s shape and dtype; the same bits on every run."
        elif "return_indices" in params:
            ret = "out : array (and ``indices``, int64, if ``return_indices``)"
        else:
            ret = "out : array"
        f.__doc__ = f"""{summary}

    Same arguments, results and errors as :func:`poolkit.cpu_nd.{name}` (no ``parallel``).

    Parameters
    ----------
{body}

    Returns
    -------
    {ret}
        A Numba device array for GPU input (nothing is copied to the host), a NumPy
        array for NumPy input.

    See Also
    --------
    poolkit.cpu_nd.{name} : the CPU twin.
    poolkit.reference.{name} : the plain-loop specification.
    poolkit.{name} : dispatches here for GPU arrays.
    """


_document()
