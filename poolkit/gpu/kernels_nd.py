"""The CUDA kernels of the rest of the pooling family: 3-d, adaptive, gathers, unpooling, copies.

**One generic kernel per reduction on 5-D views.** 1-d and 2-d inputs get unit
spatial dimensions (``(N, C, 1, 1, L)``, ``(N, C, 1, H, W)``; for channels-last
``(N, 1, 1, L, C)``...), and a runtime flag ``cl`` says where the channel axis is,
so one kernel serves 1-d/2-d/3-d and both layouts: 3-d max/avg pooling, adaptive
max/avg, the backward gathers, unpooling and the element-wise steps of Lp pooling.
These are *naive* kernels (one thread per output element, global-memory reads);
in channels-last the thread index runs fastest over ``C``, so a warp's loads are
coalesced. (1-d and 2-d max/avg pooling forward run on the 2-D kernels of
:mod:`poolkit.gpu.naive2d` / :mod:`poolkit.gpu.tiled2d` instead.)

Gradients are **deterministic by construction: gathers, never atomics.** One thread
per input cell sums the contributions of the windows that contain it
(:func:`poolkit.geometry.covering_windows`), in increasing output order -- the
order in which the CPU backend's scan-order scatter adds them -- so GPU and CPU
gradients are the same bits, on every run:

* max-type backward (:func:`max_gather`): the cell adds ``grad_output[o]`` for each
  covering window ``o`` whose argmax index names it;
* average backward (:func:`avg_gather`): the cell adds ``grad_output[o] / divisor[o]``
  (the divisor the forward used; adaptive: ``grad / kd / kh / kw`` like PyTorch);
* unpooling backward is a plain gather ``grad[idx]`` (:func:`index_gather`);
  unpooling itself (:func:`unpool_scatter`, a scatter where a repeated index means
  "last write wins") runs one thread per ``(n, c)`` plane walking the input in
  scan order, which fixes the winner.

:func:`copy_4d` / :func:`copy_5d` give the kernels a C-contiguous copy of a strided
device input. The max step and PyTorch's sign come from :mod:`poolkit.gpu.rules`.
Kernels compile lazily, on first launch; :data:`ND_KERNELS` names them.
"""
from numba import cuda

from .rules import max_index_wins, sign

__all__ = ["max3d", "avg3d", "adaptive_max", "adaptive_avg", "max_gather", "avg_gather",
           "unpool_scatter", "index_gather", "ewise", "copy_5d", "copy_4d", "ND_KERNELS"]


@cuda.jit
def max3d(x, out, idx, want_idx, cl, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
    """Max pooling over 5-D views: one thread per output; writes the flat argmax if ``want_idx``.

    Window scanned in (kd, kh, kw) order with :func:`~poolkit.gpu.rules.max_index_wins`: the
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
    # unravel i in memory order
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
                            if max_index_wins(v, m, mi):
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
def avg3d(x, out, cl, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override, zero):
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
    # unravel i in memory order
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
def adaptive_max(x, out, idx, want_idx, cl, sd, ed, sh, eh, sw, ew, init):
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
    # unravel i in memory order
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
                if max_index_wins(v, m, mi):
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
def adaptive_avg(x, out, cl, sd, ed, sh, eh, sw, ew, kd, kh, kw, zero):
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
    # unravel i in memory order
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
def max_gather(grad, idx, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, zero):
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
    # unravel i in memory order
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
def avg_gather(grad, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, t_d, t_h, t_w, adaptive, override,
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
    # unravel i in memory order
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
def unpool_scatter(src, idx, dst, cl, zero):
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
def index_gather(src, idx, dst, cl):
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
    # unravel i in memory order
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
def ewise(a, b, out, op, p1, p2, K, zero, one):
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
        sa = sign(v, zero, one)  # PyTorch's sign (0 for NaN)
        r = zero if v == zero else gt * sa * sa
    elif op == 5:
        r = v * (p1 * b[i] ** p2)
    else:
        r = v * sign(b[i], zero, one)
    out[i] = r


@cuda.jit
def copy_5d(src, dst):
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


@cuda.jit
def copy_4d(src, dst):
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


#: ``ND_KERNELS[name]`` -> the ``@cuda.jit`` dispatcher (notebooks show ``.py_func``).
ND_KERNELS = {
    "max3d": max3d, "avg3d": avg3d, "adaptive_max": adaptive_max, "adaptive_avg": adaptive_avg,
    "max_gather": max_gather, "avg_gather": avg_gather, "unpool_scatter": unpool_scatter,
    "index_gather": index_gather, "ewise": ewise, "copy_5d": copy_5d,
}
