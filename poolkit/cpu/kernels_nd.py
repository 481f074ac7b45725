"""The CPU kernels of the rest of the family and of every backward (plain Python functions).

* **3-d pooling** (``max3d``/``avg3d``, channels-first and channels-last) is written
  like the 2-D kernels: channels-first kernels sweep whole output rows per kernel
  tap (vectorisable), channels-last kernels put the contiguous channel loop innermost.
* **Everything else is one generic kernel per reduction on 5-D views**: 1-d and
  2-d inputs get unit spatial dimensions (``(N, C, 1, 1, L)``, ``(N, C, 1, H, W)``)
  so a single 3-D loop nest serves all of them: adaptive max/avg, the index
  scatter (max backward, unpooling), the index gather (unpooling backward) and the
  average-pooling gather (avg, adaptive avg and Lp backward). Channels-first
  adaptive max of many small planes runs ``adaptive_max_cf_lanes``: LANES planes
  turned channels-last into a scratch, reduced with the planes as vector lanes.

Every max step is :func:`._jit.vmax` / :func:`._jit.take_max` (the one NaN-aware
max rule of the CPU backend). :data:`KERNELS` holds the compiled serial/parallel twins.

The channels-last 3-d kernels never visit a tap outside the input: :func:`._jit.tap_range`
gives each window's first and last in-range tap (the arithmetic of
:func:`poolkit.geometry.tap_range`), so a window of ``10**8`` taps over an 8-cell
input costs 8 steps. :mod:`poolkit.cpu.ops` runs them (on strided views, whatever
the layout) for every window :func:`poolkit.geometry.large_window` calls large, in
any nd. The channels-first kernels sweep every tap (bounded there by that rule:
at most ``2*L + 64`` per dimension), which keeps their vectorised row sweeps.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import (add_valid_scalar, chunk, njit_pair, omit_mean, omit_row, omit_variant, rows_have_nan, select,
                   sweep_add, sweep_add_omit, take_max, tap_range, vmax)

__all__ = ["max3d_cf", "max3d_cl", "avg3d_cf", "avg3d_cl", "avg3d_omit_cf", "avg3d_omit_cl",
           "adaptive_max_cf", "adaptive_max_cl", "adaptive_avg_cf", "adaptive_avg_cl",
           "adaptive_avg_omit_cf", "adaptive_avg_omit_cl", "adaptive_max_cf_lanes", "adaptive_max_cf_cols", "LANES", "scatter", "count_outside", "gather", "avg_gather", "avg_spread",
           "KERNELS", "CHECKS"]


# ---------------------------------------------------------------- 3-d pooling kernels
def max3d_cf(x, out, idx, want_idx, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
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
                                    out[n, c, od, oh, ow], idx[n, c, od, oh, ow] = take_max(
                                        x[n, c, id_, ih, iw], out[n, c, od, oh, ow],
                                        idx[n, c, od, oh, ow], base + iw)
                            else:
                                for ow in range(lo, hi):
                                    out[n, c, od, oh, ow] = vmax(x[n, c, id_, ih, ow * SW + off],
                                                                 out[n, c, od, oh, ow])


def max3d_cl(x, out, idx, want_idx, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
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
        kd0, kd1 = tap_range(ds, D, KD, DD)
        kh0, kh1 = tap_range(hs, H, KH, DH)
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, od, oh, ow, c] = init
                if want_idx:
                    idx[n, od, oh, ow, c] = -1
            kw0, kw1 = tap_range(ws, W, KW, DW)
            for kd in range(kd0, kd1):
                id_ = ds + kd * DD
                if id_ < 0 or id_ >= D:  # never taken: the bound tells LLVM the index is valid
                    continue
                for kh in range(kh0, kh1):
                    ih = hs + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(kw0, kw1):
                        iw = ws + kw * DW
                        if iw < 0 or iw >= W:
                            continue
                        flat = (id_ * H + ih) * W + iw
                        if want_idx:
                            for c in range(C):
                                out[n, od, oh, ow, c], idx[n, od, oh, ow, c] = take_max(
                                    x[n, id_, ih, iw, c], out[n, od, oh, ow, c], idx[n, od, oh, ow, c], flat)
                        else:
                            for c in range(C):
                                out[n, od, oh, ow, c] = vmax(x[n, id_, ih, iw, c], out[n, od, oh, ow, c])


def avg3d_cf(x, out, nchunks, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override):
    """Average pooling over (N, C, D, H, W): each valid (kd, kh) input row of a window row is
    added across the whole output row (:func:`._jit.sweep_add`, kw in order), so every window
    is summed in PyTorch's scan order, then divided once.

    A row that needs padding (or ceil_mode's overhang) is first copied into a zero-padded
    scratch row (adding +0.0 changes no sum). Parallel over ``nchunks`` pieces of the
    (n, c) planes, scratch allocated once per piece.
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    T = max(W + 2 * PW, (OW - 1) * SW + KW)
    direct = PW == 0 and T == W
    uPW = np.uint64(PW)
    for i in prange(nchunks):
        row = np.zeros((1, T), dtype=out.dtype)  # pads stay zero
        acc = np.empty(OW, dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            for od in range(OD):
                ds = od * SD - PD
                for oh in range(OH):
                    hs = oh * SH - PH
                    acc[:] = 0
                    for kd in range(KD):
                        id_ = ds + kd
                        if id_ < 0 or id_ >= D:
                            continue
                        for kh in range(KH):
                            ih = hs + kh
                            if ih < 0 or ih >= H:
                                continue
                            if direct:
                                sweep_add(acc, x[n, c, id_], ih, OW, SW, KW)
                            else:
                                for iw in range(np.uint64(W)):
                                    row[0, uPW + iw] = x[n, c, id_, ih, iw]
                                sweep_add(acc, row, 0, OW, SW, KW)
                    if override != 0:  # divisor_override (PyTorch takes a negative one too)
                        for ow in range(OW):
                            out[n, c, od, oh, ow] = acc[ow] / override
                    else:
                        dd = div_d[od] * div_h[oh]
                        for ow in range(OW):
                            out[n, c, od, oh, ow] = acc[ow] / (dd * div_w[ow])


def avg3d_cl(x, out, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override):
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
        kd0, kd1 = tap_range(ds, D, KD, 1)
        kh0, kh1 = tap_range(hs, H, KH, 1)
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, od, oh, ow, c] = 0
            kw0, kw1 = tap_range(ws, W, KW, 1)
            for kd in range(kd0, kd1):
                id_ = ds + kd
                if id_ < 0 or id_ >= D:  # never taken: the bound tells LLVM the index is valid
                    continue
                for kh in range(kh0, kh1):
                    ih = hs + kh
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(kw0, kw1):
                        iw = ws + kw
                        if iw < 0 or iw >= W:
                            continue
                        for c in range(C):
                            out[n, od, oh, ow, c] += x[n, id_, ih, iw, c]
            d = override if override != 0 else div_d[od] * div_h[oh] * div_w[ow]
            for c in range(C):
                out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / d


# ---------------------------------------------------------------- nan_policy="omit" averages
# The sum skips NaN cells by adding +0.0 in their place (the running sum starts at
# +0.0 and so is never -0.0: adding +0.0 changes nothing, bit for bit), and a count
# of the cells added goes into the divisor: ``valid + pads``, ``pads`` being the
# padding cells of the window when count_include_pad (``full - inside`` from the
# int64 divisor tables; 0 otherwise). No valid cell and no padding: 0/0 = NaN.
# The count has the dtype of ``proto`` (a 0-size array): ``x``'s float dtype, so that
# sums and counts vectorise together, wherever a window's cells fit its mantissa
# exactly (host code picks int64 beyond that: poolkit.cpu.ops._count_proto).
def avg3d_omit_cf(x, out, nchunks, SD, SH, SW, PD, PH, PW, KD, KH, KW, full_d, full_h, full_w,
                  in_d, in_h, in_w, override, proto):
    """``avg3d_cf`` with ``nan_policy="omit"`` (over (N, C, D, H, W)), as ``avg_omit_nchw``.

    2-wide, stride-2 windows: ``avg_omit_nchw``'s row sweeps (:func:`._jit.sweep_add_omit`)
    once per valid (kd, kh) input row of a window; a row that needs padding (or
    ceil_mode's overhang) is first copied into a NaN-padded scratch row (its pads are
    skipped like NaN). Other windows: each input row is prepared once
    (:func:`._jit.omit_row`: NaN as +0.0 in ``Z``, the row's valid counts per output
    column in ``R``), then summed with ``avg3d_cf``'s sweeps and counted from ``R``.
    ``Z`` and ``R`` hold a ring of KD depth slices (slice ``id`` in slot ``id % KD``,
    ``tag`` says which): a window's slices are KD consecutive ones, so the scratch is
    KD slices however deep the volume. Parallel over ``nchunks`` pieces of the (n, c)
    planes, scratch allocated once per piece.

    A plane without NaN runs ``avg3d_cf``'s loop with propagate's divisors (the full
    tables in x's dtype): bit for bit the same answer, at about propagate's speed. As
    in ``avg_omit_nchw`` it looks at each output row's sums before dividing and gives
    up at the first NaN sum (a window holding a NaN); the plane then starts over on
    the omit path. A plane whose first row holds a NaN starts there. That loop is
    ``avg3d_cf``'s written out again, not a helper both call: an inline helper holding
    ``avg_nchw``'s loop ran 1.15-1.3x slower (see ``avg_omit_nchw``).
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    T = max(W + 2 * PW, (OW - 1) * SW + KW)
    pairs = SW == 2 and KW == 2
    direct = pairs and PW == 0 and T == W
    clean_direct = PW == 0 and T == W
    uPW = np.uint64(PW)
    uW = np.uint64(W)
    zero = x.dtype.type(0)
    one = proto.dtype.type(1)
    czero = proto.dtype.type(0)
    for i in prange(nchunks):
        div_d = np.empty(OD, dtype=out.dtype)  # a NaN-free plane's divisors: avg3d_cf's tables
        div_h = np.empty(OH, dtype=out.dtype)
        div_w = np.empty(OW, dtype=out.dtype)
        for od in range(OD):
            div_d[od] = full_d[od]
        for oh in range(OH):
            div_h[oh] = full_h[oh]
        for ow in range(OW):
            div_w[ow] = full_w[ow]
        zrow = np.zeros((1, T), dtype=out.dtype)  # a NaN-free plane's padded row: pads stay zero
        row = np.empty((1, T), dtype=out.dtype)
        row[:] = np.nan  # padding cells: skipped, like NaN
        Z = np.zeros((0 if pairs else KD * H, T), dtype=out.dtype)  # pads stay zero
        R = np.empty((0 if pairs else KD * H, OW), dtype=proto.dtype)
        tag = np.empty(0 if pairs else KD, dtype=np.int64)
        valid = np.zeros((1, T), dtype=proto.dtype)
        acc = np.empty(OW, dtype=out.dtype)
        cnt = np.empty(OW, dtype=proto.dtype)
        div = np.empty(OW, dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            if not rows_have_nan(x[n, c, 0], 0, min(H, 1)):  # first row clean: try avg3d_cf's loop
                ok = True
                for od in range(OD):
                    ds = od * SD - PD
                    for oh in range(OH):
                        hs = oh * SH - PH
                        acc[:] = 0
                        for kd in range(KD):
                            id_ = ds + kd
                            if id_ < 0 or id_ >= D:
                                continue
                            for kh in range(KH):
                                ih = hs + kh
                                if ih < 0 or ih >= H:
                                    continue
                                if clean_direct:
                                    sweep_add(acc, x[n, c, id_], ih, OW, SW, KW)
                                else:
                                    for iw in range(uW):
                                        zrow[0, uPW + iw] = x[n, c, id_, ih, iw]
                                    sweep_add(acc, zrow, 0, OW, SW, KW)
                        m = False  # a window holding a NaN has a NaN sum
                        for ow in range(OW):
                            m |= acc[ow] != acc[ow]
                        if m:
                            ok = False
                            break
                        if override != 0:
                            for ow in range(OW):
                                out[n, c, od, oh, ow] = acc[ow] / override
                        else:
                            dd = div_d[od] * div_h[oh]
                            for ow in range(OW):
                                out[n, c, od, oh, ow] = acc[ow] / (dd * div_w[ow])
                    if not ok:
                        break
                if ok:
                    continue
            tag[:] = -1
            for od in range(OD):
                ds = od * SD - PD
                for kd in range(KD if not pairs else 0):  # the window's depth slices into the ring
                    id_ = ds + kd
                    if 0 <= id_ < D and tag[id_ % KD] != id_:
                        for ih in range(H):
                            omit_row(x[n, c, id_, ih], Z, R, (id_ % KD) * H + ih, valid, OW, SW, KW, uPW, zero,
                                     one, czero)
                        tag[id_ % KD] = id_
                for oh in range(OH):
                    hs = oh * SH - PH
                    acc[:] = 0
                    cnt[:] = czero
                    for kd in range(KD):
                        id_ = ds + kd
                        if id_ < 0 or id_ >= D:
                            continue
                        for kh in range(KH):
                            ih = hs + kh
                            if ih < 0 or ih >= H:
                                continue
                            if not pairs:
                                r = (id_ % KD) * H + ih
                                sweep_add(acc, Z, r, OW, SW, KW)
                                for ow in range(OW):
                                    cnt[ow] += R[r, ow]
                            elif direct:
                                sweep_add_omit(acc, cnt, x[n, c, id_], ih, OW, SW, KW, zero, czero, one)
                            else:
                                for iw in range(np.uint64(W)):
                                    row[0, uPW + iw] = x[n, c, id_, ih, iw]
                                sweep_add_omit(acc, cnt, row, 0, OW, SW, KW, zero, czero, one)
                    pad_dh = full_d[od] * full_h[oh]
                    in_dh = in_d[od] * in_h[oh]
                    for ow in range(OW):
                        div[ow] = cnt[ow] + (pad_dh * full_w[ow] - in_dh * in_w[ow])  # exact, cast
                        if override != 0:
                            div[ow] = override
                        out[n, c, od, oh, ow] = acc[ow] / div[ow]


def avg3d_omit_cl(x, out, SD, SH, SW, PD, PH, PW, KD, KH, KW, full_d, full_h, full_w,
                  in_d, in_h, in_w, override, proto):
    """``avg3d_cl`` with ``nan_policy="omit"`` (over (N, D, H, W, C); parallel over output rows)."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    zero = x.dtype.type(0)
    c0 = proto.dtype.type(0)
    c1 = proto.dtype.type(1)
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        ds = od * SD - PD
        hs = oh * SH - PH
        kd0, kd1 = tap_range(ds, D, KD, 1)
        kh0, kh1 = tap_range(hs, H, KH, 1)
        valid = np.empty(C, dtype=proto.dtype)
        div = np.empty(C, dtype=out.dtype)
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, od, oh, ow, c] = 0
                valid[c] = 0
            kw0, kw1 = tap_range(ws, W, KW, 1)
            for kd in range(kd0, kd1):
                id_ = ds + kd
                if id_ < 0 or id_ >= D:
                    continue
                for kh in range(kh0, kh1):
                    ih = hs + kh
                    if ih < 0 or ih >= H:
                        continue
                    for kw in range(kw0, kw1):
                        iw = ws + kw
                        if iw < 0 or iw >= W:
                            continue
                        for c in range(C):
                            v = x[n, id_, ih, iw, c]
                            out[n, od, oh, ow, c] += select(v == v, v, zero)
                            valid[c] += select(v == v, c1, c0)
            pads = full_d[od] * full_h[oh] * full_w[ow] - in_d[od] * in_h[oh] * in_w[ow]
            for c in range(C):
                div[c] = valid[c] + pads  # exact, cast to out's dtype
                if override != 0:
                    div[c] = override
                out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / div[c]


def adaptive_avg_omit_cf(x, out, nchunks, xf, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    """Adaptive average with ``nan_policy="omit"``: the valid cells' sum over their count (one
    division), or, for a bin with every cell valid, ``adaptive_avg_cf``'s three divisions.

    Eight planes in a row without NaN (:func:`._jit.rows_have_nan`, a vectorised pass over
    a plane the sums then read from cache) go through ``adaptive_avg_cf``'s
    :func:`_adaptive_avg_planes8`; otherwise the next four planes go through the omit
    sums together (:func:`_adaptive_avg_omit_planes4`), and the last one to three of a
    piece one by one. Parallel over ``nchunks`` pieces of the (n, c) planes; ``xf`` as for
    ``adaptive_avg_cf``.
    """
    N, C = x.shape[0], x.shape[1]
    offs, first = _bin_cells(x, out, xf.shape[0] == N * C and _bin_rows_fit_l1(x, sd, ed, sh, eh),
                             sd, ed, sh, eh, sw, ew)
    for i in prange(nchunks):
        acc = np.empty(out.shape[4], dtype=out.dtype)
        cnt = np.empty(out.shape[4], dtype=np.int64)
        acc8 = np.empty((out.shape[4], 8), dtype=out.dtype)
        cnt4 = np.empty((out.shape[4], 4), dtype=np.int64)
        p0, p1 = chunk(i, nchunks, N * C)
        p = p0
        while p < p1:
            k = 0  # planes p, p+1, ... without NaN, up to 8
            while k < 8 and p + k < p1 and _plane_is_clean(x, p + k, C):
                k += 1
            if k == 8:
                _adaptive_avg_planes8(x, xf, out, p, C, acc8, offs, first, sd, ed, sh, eh, sw, ew, kd, kh, kw)
                p += 8
                continue
            if p + 4 <= p1:  # no run of 8 clean planes: four planes through the omit sums
                _adaptive_avg_omit_planes4(x, out, p, C, acc8, cnt4, sd, ed, sh, eh, sw, ew, kd, kh, kw)
                p += 4
            else:
                n = p // C
                _adaptive_avg_omit_plane(x, out, n, p - n * C, acc, cnt, sd, ed, sh, eh, sw, ew, kd, kh, kw)
                p += 1


@njit(inline="always")
def _plane_is_clean(x, p, C):
    # Whether plane p (flat (n, c) index) of the 5-D ``x`` holds no NaN.
    n = p // C
    c = p - n * C
    for id_ in range(x.shape[2]):
        if rows_have_nan(x[n, c, id_], 0, x.shape[3]):
            return False
    return True


@njit(inline="always")
def _adaptive_avg_omit_planes4(x, out, p, C, acc, cnt, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    # Planes p .. p+3 of ``adaptive_avg_omit_cf``: each plane's sums and counts are
    # exactly :func:`_adaptive_avg_omit_plane`'s (a plane without NaN counts every cell,
    # and omit_mean then divides as propagate does); only the loops are shared. Four
    # planes, not eight: a sum and a count each, eight accumulators in registers.
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    zero = x.dtype.type(0)
    n0, n1, n2, n3 = p // C, (p + 1) // C, (p + 2) // C, (p + 3) // C
    c0, c1, c2, c3 = p - n0 * C, p + 1 - n1 * C, p + 2 - n2 * C, p + 3 - n3 * C
    for od in range(OD):
        for oh in range(OH):
            acc[:] = 0
            cnt[:] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for ow in range(OW):
                        a0, a1, a2, a3 = acc[ow, 0], acc[ow, 1], acc[ow, 2], acc[ow, 3]
                        k0, k1, k2, k3 = cnt[ow, 0], cnt[ow, 1], cnt[ow, 2], cnt[ow, 3]
                        for iw in range(sw[ow], ew[ow]):
                            a0, k0 = add_valid_scalar(a0, k0, x[n0, c0, id_, ih, iw], zero)
                            a1, k1 = add_valid_scalar(a1, k1, x[n1, c1, id_, ih, iw], zero)
                            a2, k2 = add_valid_scalar(a2, k2, x[n2, c2, id_, ih, iw], zero)
                            a3, k3 = add_valid_scalar(a3, k3, x[n3, c3, id_, ih, iw], zero)
                        acc[ow, 0], acc[ow, 1], acc[ow, 2], acc[ow, 3] = a0, a1, a2, a3
                        cnt[ow, 0], cnt[ow, 1], cnt[ow, 2], cnt[ow, 3] = k0, k1, k2, k3
            size_dh = (ed[od] - sd[od]) * (eh[oh] - sh[oh])
            for ow in range(OW):
                L = size_dh * (ew[ow] - sw[ow])
                out[n0, c0, od, oh, ow] = omit_mean(acc[ow, 0], cnt[ow, 0], L, kd[od], kh[oh], kw[ow])
                out[n1, c1, od, oh, ow] = omit_mean(acc[ow, 1], cnt[ow, 1], L, kd[od], kh[oh], kw[ow])
                out[n2, c2, od, oh, ow] = omit_mean(acc[ow, 2], cnt[ow, 2], L, kd[od], kh[oh], kw[ow])
                out[n3, c3, od, oh, ow] = omit_mean(acc[ow, 3], cnt[ow, 3], L, kd[od], kh[oh], kw[ow])


@njit(inline="always")
def _adaptive_avg_omit_plane(x, out, n, c, acc, cnt, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    # One (n, c) plane of ``adaptive_avg_omit_cf`` (the last one to three of a piece):
    # valid cells summed in scan order and counted (int64: scalar chains, see
    # :func:`._jit.valid_bit`).
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    zero = x.dtype.type(0)
    for od in range(OD):
        for oh in range(OH):
            acc[:] = 0
            cnt[:] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for ow in range(OW):
                        a, k = acc[ow], cnt[ow]
                        for iw in range(sw[ow], ew[ow]):
                            a, k = add_valid_scalar(a, k, x[n, c, id_, ih, iw], zero)
                        acc[ow], cnt[ow] = a, k
            size_dh = (ed[od] - sd[od]) * (eh[oh] - sh[oh])
            for ow in range(OW):
                out[n, c, od, oh, ow] = omit_mean(acc[ow], cnt[ow], size_dh * (ew[ow] - sw[ow]),
                                                   kd[od], kh[oh], kw[ow])


def adaptive_avg_omit_cl(x, out, sd, ed, sh, eh, sw, ew, kd, kh, kw, proto):
    """Adaptive average with ``nan_policy="omit"``, channels-last; parallel over output rows."""
    N, D, H, W, C = x.shape
    OD, OH, OW = out.shape[1], out.shape[2], out.shape[3]
    zero = x.dtype.type(0)
    c0 = proto.dtype.type(0)
    c1 = proto.dtype.type(1)
    for q in prange(N * OD * OH):
        n = q // (OD * OH)
        r = q - n * (OD * OH)
        od = r // OH
        oh = r - od * OH
        valid = np.empty(C, dtype=proto.dtype)
        div = np.empty(C, dtype=out.dtype)
        for ow in range(OW):
            for c in range(C):
                out[n, od, oh, ow, c] = 0
                valid[c] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for iw in range(sw[ow], ew[ow]):
                        for c in range(C):
                            v = x[n, id_, ih, iw, c]
                            out[n, od, oh, ow, c] += select(v == v, v, zero)
                            valid[c] += select(v == v, c1, c0)
            size = (ed[od] - sd[od]) * (eh[oh] - sh[oh]) * (ew[ow] - sw[ow])
            for c in range(C):
                if valid[c] < size:
                    div[c] = valid[c]  # cast to out's dtype
                    out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / div[c]
                else:
                    out[n, od, oh, ow, c] = out[n, od, oh, ow, c] / kd[od] / kh[oh] / kw[ow]


# ---------------------------------------------------------------- adaptive kernels (5-D views)
def adaptive_max_cf(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew, init):
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
                                m, mi = take_max(x[n, c, id_, ih, iw], m, mi, (id_ * H + ih) * W + iw)
                    out[n, c, od, oh, ow] = m
                    if want_idx:
                        idx[n, c, od, oh, ow] = mi


def adaptive_max_cf_cols(x, out, nchunks, sd, ed, sh, eh, sw, ew, init):
    """Adaptive max values (no indices) of channels-first planes, columns first.

    For each output row, the ``vmax`` of every input column over the bin's rows
    (``col``: whole rows at once, vectorised), then each bin's columns of ``col``.
    That is not scan order, but a maximum's *value* does not depend on the order
    except in two cases, both recognisable in the result: a maximum of zero
    (-0.0 and +0.0 tie; the first zero in scan order is kept) and a NaN
    (the scan keeps the last NaN, whose payload may differ from the one the
    columns found: under propagate any NaN of the bin, under omit a bin with no
    valid cell). Those bins are looked up again in scan order
    (:func:`_first_zero`, :func:`_last_nan`), each stopping at the cell it wants.
    Bit for bit ``adaptive_max_cf``'s values, under both rules.
    Parallel over ``nchunks`` pieces of the (n, c) planes.
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for i in prange(nchunks):
        col = np.empty(W, dtype=x.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            for od in range(OD):
                for oh in range(OH):
                    for iw in range(W):
                        col[iw] = init
                    for id_ in range(sd[od], ed[od]):
                        for ih in range(sh[oh], eh[oh]):
                            for iw in range(W):
                                col[iw] = vmax(x[n, c, id_, ih, iw], col[iw])
                    for ow in range(OW):
                        m = init
                        for iw in range(sw[ow], ew[ow]):
                            m = vmax(col[iw], m)
                        if m == 0:
                            m = _first_zero(x, n, c, sd[od], ed[od], sh[oh], eh[oh], sw[ow], ew[ow])
                        elif m != m:
                            m = _last_nan(x, n, c, sd[od], ed[od], sh[oh], eh[oh], sw[ow], ew[ow])
                        out[n, c, od, oh, ow] = m


@njit(inline="always")
def _first_zero(x, n, c, d0, d1, h0, h1, w0, w1):
    # The first cell equal to zero (-0.0 or +0.0) of a bin, in scan order: the
    # maximum of a bin whose maximum is zero, with the sign PyTorch's scan keeps.
    for id_ in range(d0, d1):
        for ih in range(h0, h1):
            for iw in range(w0, w1):
                if x[n, c, id_, ih, iw] == 0:
                    return x[n, c, id_, ih, iw]
    return x[n, c, d0, h0, w0]  # not reached: the caller found a zero


@njit(inline="always")
def _last_nan(x, n, c, d0, d1, h0, h1, w0, w1):
    # The last NaN of a bin in scan order (looked for from the end): the maximum
    # of a bin holding a NaN under propagate, or holding nothing else under omit,
    # payload and all.
    for id_ in range(d1 - 1, d0 - 1, -1):
        for ih in range(h1 - 1, h0 - 1, -1):
            for iw in range(w1 - 1, w0 - 1, -1):
                if x[n, c, id_, ih, iw] != x[n, c, id_, ih, iw]:
                    return x[n, c, id_, ih, iw]
    return x[n, c, d0, h0, w0]  # not reached: the caller found a NaN


def adaptive_max_cl(x, out, idx, want_idx, sd, ed, sh, eh, sw, ew, init):
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
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for iw in range(sw[ow], ew[ow]):
                        flat = (id_ * H + ih) * W + iw
                        if want_idx:
                            for c in range(C):
                                out[n, od, oh, ow, c], idx[n, od, oh, ow, c] = take_max(
                                    x[n, id_, ih, iw, c], out[n, od, oh, ow, c], idx[n, od, oh, ow, c], flat)
                        else:
                            for c in range(C):
                                out[n, od, oh, ow, c] = vmax(x[n, id_, ih, iw, c], out[n, od, oh, ow, c])


def adaptive_avg_cf(x, out, nchunks, xf, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    """Adaptive average: sum in scan order, then divide by each bin size in turn (PyTorch's order).

    Eight planes go through the bins together (:func:`_adaptive_avg_planes8`): eight
    independent add chains per step and one pass of loop control for all eight (2x the
    one-plane loop on 30x30 -> 7; 4 planes at a time was 10-20% slower, 16 was 1.3-1.5x
    slower). What is left of a piece goes plane by plane (:func:`_adaptive_avg_plane`):
    each input row of a (od, oh) bin row is swept once across every output of the row,
    independent sums the CPU overlaps. Either way a bin's cells go in scan order.
    ``xf`` is ``x`` as (N*C, D*H*W) flat planes where ``x`` is contiguous (else a 0-row
    array): the eight planes then go a bin at a time, over a table of each bin's cells
    (:func:`_bin_cells`) where its rows fit in L1. ``kd``, ``kh``, ``kw`` are the bin sizes
    in ``x``'s dtype (a float32 divided by an int64 would be computed in float64 by Numba
    and round differently). Parallel over ``nchunks`` pieces of the (n, c) planes.
    """
    N, C = x.shape[0], x.shape[1]
    offs, first = _bin_cells(x, out, xf.shape[0] == N * C and _bin_rows_fit_l1(x, sd, ed, sh, eh),
                             sd, ed, sh, eh, sw, ew)
    for i in prange(nchunks):
        acc = np.empty(out.shape[4], dtype=out.dtype)
        acc8 = np.empty((out.shape[4], 8), dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        p = p0
        while p + 8 <= p1:
            _adaptive_avg_planes8(x, xf, out, p, C, acc8, offs, first, sd, ed, sh, eh, sw, ew, kd, kh, kw)
            p += 8
        for q in range(p, p1):
            n = q // C
            _adaptive_avg_plane(x, out, n, q - n * C, acc, sd, ed, sh, eh, sw, ew, kd, kh, kw)


@njit(inline="always")
def _adaptive_avg_planes8(x, xf, out, p, C, acc8, offs, first, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    # Planes p .. p+7 (flat (n, c) index) of ``adaptive_avg_cf``: each plane's sums
    # are exactly ``_adaptive_avg_plane``'s, in the same order; only the loops are
    # shared. Eight named accumulators: eight independent add chains per step.
    if len(first) > 1:
        _adaptive_avg_planes8_cells(xf, out, p, C, offs, first, kd, kh, kw)
    else:
        _adaptive_avg_planes8_rows(x, out, p, C, acc8, sd, ed, sh, eh, sw, ew, kd, kh, kw)


@njit(inline="always")
def _bin_rows_fit_l1(x, sd, ed, sh, eh):
    # Whether the tallest (od, oh) bin row of eight planes (its depth x height x W
    # cells) takes at most 16 KiB: then a bin at a time reads it from L1. A/B, one
    # process, 2 threads, bins / rows: 0.8-0.95 on 7x7 to 30x30 -> 3..7 planes and
    # 16x20x20 -> (3, 6, 6) (0.7-15 KiB); 4.3x on 112x112 -> 7 (56 KiB: each bin's
    # 16 short row pieces per plane come from L2, past the prefetchers).
    tall = 0
    for od in range(len(sd)):
        for oh in range(len(sh)):
            tall = max(tall, (ed[od] - sd[od]) * (eh[oh] - sh[oh]))
    return tall * x.shape[4] * 8 * x.itemsize <= 16384


@njit(inline="always")
def _bin_cells(x, out, want, sd, ed, sh, eh, sw, ew):
    # Where ``want``: every bin's cells as flat offsets into a plane, bins and cells in
    # scan order -- bin b's are ``offs[first[b]:first[b + 1]]`` -- so a bin is one loop
    # (one loop exit per bin, not one per bin row: 0.8x the time on 30x30 -> 7). Else
    # empty tables (``first`` of length 1). uint32 offsets: no negative-index check.
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    H, W = x.shape[3], x.shape[4]
    nb = OD * OH * OW if want else 0
    first = np.zeros(nb + 1, dtype=np.int64)
    b = 0
    for od in range(OD if want else 0):
        for oh in range(OH):
            for ow in range(OW):
                first[b + 1] = first[b] + (ed[od] - sd[od]) * (eh[oh] - sh[oh]) * (ew[ow] - sw[ow])
                b += 1
    offs = np.empty(first[nb], dtype=np.uint32)
    j = 0
    for od in range(OD if want else 0):
        for oh in range(OH):
            for ow in range(OW):
                for id_ in range(sd[od], ed[od]):
                    for ih in range(sh[oh], eh[oh]):
                        for iw in range(sw[ow], ew[ow]):
                            offs[j] = (id_ * H + ih) * W + iw
                            j += 1
    return offs, first


@njit(inline="always")
def _adaptive_avg_planes8_cells(xf, out, p, C, offs, first, kd, kh, kw):
    # ``_adaptive_avg_planes8`` for small bin rows of contiguous planes (rows ``p`` ..
    # ``p+7`` of ``xf``): a bin at a time over its table of cells, its eight sums in named
    # registers from its first cell to its last (an array of them would not stay in
    # registers); the bin row of the eight planes is read from L1 (:func:`_bin_rows_fit_l1`).
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    n0, n1, n2, n3, n4, n5, n6, n7 = p // C, (p + 1) // C, (p + 2) // C, (p + 3) // C, \
        (p + 4) // C, (p + 5) // C, (p + 6) // C, (p + 7) // C
    c0, c1, c2, c3, c4, c5, c6, c7 = p - n0 * C, p + 1 - n1 * C, p + 2 - n2 * C, p + 3 - n3 * C, \
        p + 4 - n4 * C, p + 5 - n5 * C, p + 6 - n6 * C, p + 7 - n7 * C
    x0, x1, x2, x3, x4, x5, x6, x7 = xf[p], xf[p + 1], xf[p + 2], xf[p + 3], \
        xf[p + 4], xf[p + 5], xf[p + 6], xf[p + 7]
    zero = xf.dtype.type(0)
    b = 0
    for od in range(OD):
        for oh in range(OH):
            for ow in range(OW):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
                for j in range(first[b], first[b + 1]):
                    o = offs[j]
                    a0 += x0[o]
                    a1 += x1[o]
                    a2 += x2[o]
                    a3 += x3[o]
                    a4 += x4[o]
                    a5 += x5[o]
                    a6 += x6[o]
                    a7 += x7[o]
                b += 1
                d0, d1, d2 = kd[od], kh[oh], kw[ow]
                out[n0, c0, od, oh, ow] = a0 / d0 / d1 / d2
                out[n1, c1, od, oh, ow] = a1 / d0 / d1 / d2
                out[n2, c2, od, oh, ow] = a2 / d0 / d1 / d2
                out[n3, c3, od, oh, ow] = a3 / d0 / d1 / d2
                out[n4, c4, od, oh, ow] = a4 / d0 / d1 / d2
                out[n5, c5, od, oh, ow] = a5 / d0 / d1 / d2
                out[n6, c6, od, oh, ow] = a6 / d0 / d1 / d2
                out[n7, c7, od, oh, ow] = a7 / d0 / d1 / d2


@njit(inline="always")
def _adaptive_avg_planes8_rows(x, out, p, C, acc8, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    # ``_adaptive_avg_planes8`` for large bin rows: each input row of a (od, oh) bin row
    # is read once, front to back, across every bin of the row; the eight planes' partial
    # sums of each bin wait in ``acc8`` between rows (a load and a store per plane, bin
    # and row, but the rows stream from memory).
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    n0, n1, n2, n3, n4, n5, n6, n7 = p // C, (p + 1) // C, (p + 2) // C, (p + 3) // C, \
        (p + 4) // C, (p + 5) // C, (p + 6) // C, (p + 7) // C
    c0, c1, c2, c3, c4, c5, c6, c7 = p - n0 * C, p + 1 - n1 * C, p + 2 - n2 * C, p + 3 - n3 * C, \
        p + 4 - n4 * C, p + 5 - n5 * C, p + 6 - n6 * C, p + 7 - n7 * C
    for od in range(OD):
        for oh in range(OH):
            acc8[:] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for ow in range(OW):
                        a0, a1, a2, a3 = acc8[ow, 0], acc8[ow, 1], acc8[ow, 2], acc8[ow, 3]
                        a4, a5, a6, a7 = acc8[ow, 4], acc8[ow, 5], acc8[ow, 6], acc8[ow, 7]
                        for iw in range(sw[ow], ew[ow]):
                            a0 += x[n0, c0, id_, ih, iw]
                            a1 += x[n1, c1, id_, ih, iw]
                            a2 += x[n2, c2, id_, ih, iw]
                            a3 += x[n3, c3, id_, ih, iw]
                            a4 += x[n4, c4, id_, ih, iw]
                            a5 += x[n5, c5, id_, ih, iw]
                            a6 += x[n6, c6, id_, ih, iw]
                            a7 += x[n7, c7, id_, ih, iw]
                        acc8[ow, 0], acc8[ow, 1], acc8[ow, 2], acc8[ow, 3] = a0, a1, a2, a3
                        acc8[ow, 4], acc8[ow, 5], acc8[ow, 6], acc8[ow, 7] = a4, a5, a6, a7
            for ow in range(OW):
                d = (kd[od], kh[oh], kw[ow])
                out[n0, c0, od, oh, ow] = acc8[ow, 0] / d[0] / d[1] / d[2]
                out[n1, c1, od, oh, ow] = acc8[ow, 1] / d[0] / d[1] / d[2]
                out[n2, c2, od, oh, ow] = acc8[ow, 2] / d[0] / d[1] / d[2]
                out[n3, c3, od, oh, ow] = acc8[ow, 3] / d[0] / d[1] / d[2]
                out[n4, c4, od, oh, ow] = acc8[ow, 4] / d[0] / d[1] / d[2]
                out[n5, c5, od, oh, ow] = acc8[ow, 5] / d[0] / d[1] / d[2]
                out[n6, c6, od, oh, ow] = acc8[ow, 6] / d[0] / d[1] / d[2]
                out[n7, c7, od, oh, ow] = acc8[ow, 7] / d[0] / d[1] / d[2]


@njit(inline="always")
def _adaptive_avg_plane(x, out, n, c, acc, sd, ed, sh, eh, sw, ew, kd, kh, kw):
    # One (n, c) plane of ``adaptive_avg_cf``.
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    for od in range(OD):
        for oh in range(OH):
            acc[:] = 0
            for id_ in range(sd[od], ed[od]):
                for ih in range(sh[oh], eh[oh]):
                    for ow in range(OW):
                        a = acc[ow]
                        for iw in range(sw[ow], ew[ow]):
                            a += x[n, c, id_, ih, iw]
                        acc[ow] = a
            for ow in range(OW):
                out[n, c, od, oh, ow] = acc[ow] / kd[od] / kh[oh] / kw[ow]


def adaptive_avg_cl(x, out, sd, ed, sh, eh, sw, ew, kd, kh, kw):
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


# ---------------------------------------------------------------- adaptive kernels on lanes of planes
#: Planes per lane group of the ``*_lanes`` kernels: one AVX-512 float32 vector.
LANES = 16


@njit(inline="always")
def _to_lanes(x, buf, p0, nl):
    # Planes p0 .. p0+nl-1 of the (N, C, D, H, W) view ``x`` (flat plane index over
    # (n, c)) into the channels-last scratch ``buf`` (D, H, W, LANES): plane l is
    # lane l. Each plane is read contiguously; lanes past ``nl`` keep what they held.
    C = x.shape[1]
    D, H, W = x.shape[2], x.shape[3], x.shape[4]
    for l in range(nl):
        n = (p0 + l) // C
        c = p0 + l - n * C
        for id_ in range(D):
            for ih in range(H):
                for iw in range(W):
                    buf[id_, ih, iw, l] = x[n, c, id_, ih, iw]


def adaptive_max_cf_lanes(x, out, nchunks, idx, want_idx, sd, ed, sh, eh, sw, ew, init):
    """``adaptive_max_cf`` for many small planes: LANES planes at a time, turned channels-last
    into a scratch (:func:`_to_lanes`), then every bin reduced in scan order with the planes
    as lanes, as ``adaptive_max_cl`` reduces channels. Each plane's bin sees the same
    ``vmax``/``take_max`` steps in the same order, so values, ties, NaNs and indices are
    ``adaptive_max_cf``'s bit for bit; LANES independent chains instead of one per bin.
    Parallel over ``nchunks`` pieces of the lane groups.

    Only max gains from it: with the turn included, the same scheme for averages measured
    0.45-0.8x ``adaptive_avg_cf`` on 30x30 -> 7 and 64x64 -> 7 planes (its scalar rows
    already overlap their add chains).
    """
    N, C, D, H, W = x.shape
    OD, OH, OW = out.shape[2], out.shape[3], out.shape[4]
    P = N * C
    for i in prange(nchunks):
        buf = np.zeros((D, H, W, LANES), dtype=x.dtype)
        acc = np.empty(LANES, dtype=out.dtype)
        arg = np.empty(LANES, dtype=np.int64)
        g0, g1 = chunk(i, nchunks, (P + LANES - 1) // LANES)
        for g in range(g0, g1):
            p0 = g * LANES
            nl = min(LANES, P - p0)
            _to_lanes(x, buf, p0, nl)
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        for l in range(LANES):
                            acc[l] = init
                            arg[l] = -1
                        for id_ in range(sd[od], ed[od]):
                            for ih in range(sh[oh], eh[oh]):
                                for iw in range(sw[ow], ew[ow]):
                                    if want_idx:
                                        flat = (id_ * H + ih) * W + iw
                                        for l in range(LANES):
                                            acc[l], arg[l] = take_max(buf[id_, ih, iw, l], acc[l], arg[l], flat)
                                    else:
                                        for l in range(LANES):
                                            acc[l] = vmax(buf[id_, ih, iw, l], acc[l])
                        for l in range(nl):
                            n = (p0 + l) // C
                            out[n, p0 + l - n * C, od, oh, ow] = acc[l]
                            if want_idx:
                                idx[n, p0 + l - n * C, od, oh, ow] = arg[l]


# ---------------------------------------------------------------- index scatter / gather, avg gather
def scatter(src, idx, dst, accumulate):
    """``dst[n, c, idx[n, c, p]] (+)= src[n, c, p]`` over (N, C, P), ``dst`` zeroed first;
    one thread per (n, c) plane.

    Within a plane ``p`` runs in order, so accumulation order (max backward) and
    "last write wins" (unpooling with repeated indices) never depend on threads. Each
    plane of ``dst`` (``np.empty`` will do) is zeroed by the thread that scatters into
    it: the plane is then in that core's cache, where a separate ``np.zeros`` leaves
    fresh pages to fault in at random writes.
    """
    N, C, P = src.shape
    Q = dst.shape[2]
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        for j in range(Q):
            dst[n, c, j] = 0
        if accumulate:
            for p in range(P):
                dst[n, c, idx[n, c, p]] += src[n, c, p]
        else:
            for p in range(P):
                dst[n, c, idx[n, c, p]] = src[n, c, p]


def count_outside(idx, Q):
    """How many of the int64 ``idx`` (N, C, P) lie outside ``[0, Q)``: the range check of
    caller-given indices, one parallel pass (NumPy's ``min`` and ``max`` are two serial
    ones). A check, not a kernel: host code runs it before any kernel."""
    N, C, P = idx.shape
    uQ = np.uint64(Q)
    bad = 0
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        nb = 0
        for p in range(P):
            nb += np.uint64(idx[n, c, p]) >= uQ  # i < 0 wraps to a huge unsigned value
        bad += nb
    return bad


def gather(src, idx, dst):
    """``dst[n, c, p] = src[n, c, idx[n, c, p]]`` over (N, C, P) (unpooling backward)."""
    N, C, P = dst.shape
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        for p in range(P):
            dst[n, c, p] = src[n, c, idx[n, c, p]]


def avg_spread(share, gx, SD, SH, SW, PD, PH, PW, KD, KH, KW):
    """Average-pooling backward for windows that never overlap (``K <= S`` in every
    dimension) over (N, C, D, H, W); one thread per (n, c).

    Every input cell lies in at most one window, so it gets ``share + 0`` of that
    window (what :func:`avg_gather` adds to zero: the same bits, -0.0 becoming +0.0)
    or 0, and no order is left to keep: each window's share is written straight into
    its cells, whole input rows at a time (2-wide, stride 2: two stores per output, a
    vector loop), instead of each cell looking its windows up.
    """
    N, C, D, H, W = gx.shape
    OD, OH, OW = share.shape[2], share.shape[3], share.shape[4]
    zero = gx.dtype.type(0)
    pairs = SW == 2 and KW == 2 and PW == 0 and 2 * OW <= W
    for q in prange(N * C):
        n = q // C
        c = q - n * C
        gx[n, c] = zero
        for od in range(OD):
            for kd in range(KD):
                id_ = od * SD - PD + kd
                if id_ < 0 or id_ >= D:
                    continue
                for oh in range(OH):
                    for kh in range(KH):
                        ih = oh * SH - PH + kh
                        if ih < 0 or ih >= H:
                            continue
                        if pairs:
                            for ow in range(OW):
                                v = share[n, c, od, oh, ow] + zero
                                gx[n, c, id_, ih, 2 * ow] = v
                                gx[n, c, id_, ih, 2 * ow + 1] = v
                        else:
                            for ow in range(OW):
                                for kw in range(KW):
                                    iw = ow * SW - PW + kw
                                    if 0 <= iw < W:
                                        gx[n, c, id_, ih, iw] = share[n, c, od, oh, ow] + zero


def avg_gather(share, gx, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, nw):
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


#: ``KERNELS[(name, parallel)]`` -> compiled kernel (serial twin a renamed clone, see
#: :func:`._jit.njit_pair`, so the two never share an on-disk cache entry).
KERNELS = {}
for _name, _fn in [
    ("max3d_cf", max3d_cf), ("max3d_cl", max3d_cl), ("avg3d_cf", avg3d_cf), ("avg3d_cl", avg3d_cl),
    ("adaptive_max_cf", adaptive_max_cf), ("adaptive_max_cl", adaptive_max_cl),
    ("adaptive_avg_cf", adaptive_avg_cf), ("adaptive_avg_cl", adaptive_avg_cl),
    ("adaptive_max_cf_lanes", adaptive_max_cf_lanes), ("adaptive_max_cf_cols", adaptive_max_cf_cols),
    ("scatter", scatter), ("gather", gather), ("avg_gather", avg_gather), ("avg_spread", avg_spread),
]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = njit_pair(_fn)
#: The ``nan_policy="omit"`` averages divide 0 by 0 for a window with no valid cell:
#: NumPy's error model gives NaN where Python's would raise ZeroDivisionError.
for _name, _fn in [("avg3d_omit_cf", avg3d_omit_cf), ("avg3d_omit_cl", avg3d_omit_cl),
                   ("adaptive_avg_omit_cf", adaptive_avg_omit_cf), ("adaptive_avg_omit_cl", adaptive_avg_omit_cl)]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = njit_pair(_fn, error_model="numpy")
#: ``nan_policy="omit"`` max kernels: same source, NaN-skipping steps (:func:`._jit.omit_variant`).
for _name, _fn in [("max3d_cf", max3d_cf), ("max3d_cl", max3d_cl), ("adaptive_max_cf", adaptive_max_cf),
                   ("adaptive_max_cl", adaptive_max_cl), ("adaptive_max_cf_lanes", adaptive_max_cf_lanes),
                   ("adaptive_max_cf_cols", adaptive_max_cf_cols)]:
    KERNELS[(_name + "_omit", False)], KERNELS[(_name + "_omit", True)] = njit_pair(omit_variant(_fn))
del _name, _fn
#: ``CHECKS[(name, parallel)]`` -> compiled argument checks (validation, run before any kernel).
CHECKS = {}
CHECKS[("count_outside", False)], CHECKS[("count_outside", True)] = njit_pair(count_outside)
