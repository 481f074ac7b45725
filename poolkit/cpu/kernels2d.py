"""The 2-D CPU kernels (plain Python functions; :data:`KERNELS` holds them compiled).

Each kernel is written once and compiled twice by :func:`._jit.njit_pair`:
``njit(parallel=False)`` (``prange`` behaves as ``range``) and ``njit(parallel=True)``
(the outer ``prange`` is split across threads). They compile lazily on first call
and are cached on disk (``cache=True``). Host code that picks a kernel and
allocates its output is in :mod:`poolkit.cpu.ops`; how the kernels reach memory
speed is in the docstring of :mod:`poolkit.cpu`.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._jit import (add_valid_scalar, chunk, njit_pair, omit_mean, omit_row, omit_variant, rows_have_nan, sweep_add,
                   sweep_add_omit, take_max, take_max_next, vmax)

__all__ = ["max_nchw", "max_rows", "max_idx_nchw", "avg_nchw", "avg_omit_nchw", "max_nhwc", "max_idx_nhwc", "avg_nhwc",
           "avg_nhwc_small", "lp2_nchw", "global_max_flat", "global_sum_flat", "global_sum_omit_flat", "KERNELS"]


@njit(inline="always")
def _sweep_max(ring, slot, tmp, OW, SW, KW, DW, end):
    # Horizontal pass: ring[slot, ow] = max over kw (in kw order, first maximum kept)
    # of tmp[ow*SW + kw*DW], ``tmp`` being one input row padded with ``init``
    # (its cells end at ``end``: padding after that).
    # The common windows (2 and 3 wide at stride 2; k x k at stride k for k = 3, 4,
    # PyTorch's default stride) get loops with literal offsets, which LLVM turns into
    # vector loads plus shuffles (~3-5x faster than one strided tap at a time).
    # The ring row is indexed in place: a view per call would cost reference-count
    # updates in the hot loop.
    if SW == 2 and DW == 1 and KW == 2:
        for ow in range(OW):
            ring[slot, ow] = vmax(tmp[2 * ow + 1], tmp[2 * ow])
    elif SW == 2 and DW == 1 and KW == 3:
        for ow in range(OW):
            ring[slot, ow] = vmax(tmp[2 * ow + 2], vmax(tmp[2 * ow + 1], tmp[2 * ow]))
    elif SW == 3 and DW == 1 and KW == 3:
        for ow in range(OW):
            ring[slot, ow] = vmax(tmp[3 * ow + 2], vmax(tmp[3 * ow + 1], tmp[3 * ow]))
    elif SW == 4 and DW == 1 and KW == 4:
        for ow in range(OW):
            ring[slot, ow] = vmax(tmp[4 * ow + 3], vmax(tmp[4 * ow + 2], vmax(tmp[4 * ow + 1], tmp[4 * ow])))
    else:
        for ow in range(OW):
            ring[slot, ow] = tmp[ow * SW]
        for kw in range(1, KW):
            off = kw * DW
            if SW == 1:
                for ow in range(OW):
                    ring[slot, ow] = vmax(tmp[ow + off], ring[slot, ow])
            else:
                for ow in range(OW):
                    ring[slot, ow] = vmax(tmp[ow * SW + off], ring[slot, ow])
    _redo_right_edge(ring, slot, tmp, OW, SW, KW, DW, end)


@njit(inline="always")
def _redo_right_edge(ring, slot, tmp, OW, SW, KW, DW, end):
    # The windows that reach past the row's end (padding, ceil_mode's overhang),
    # again without their taps there. A padding cell holds ``init``, which the max
    # step treats as an identity on the left only: -inf under propagate (no harm
    # anywhere), NaN under omit, where a window of NaN cells followed by padding
    # would end on the padding's NaN instead of its own last one. Clipped, every
    # window gives the plain scan's answer (which never reads padding) under both
    # rules. A few windows per row; the padding *before* a row is an identity.
    for ow in range(OW - 1, -1, -1):
        j = ow * SW
        if j + (KW - 1) * DW < end:
            break
        m = tmp[j]  # (a window always has a cell in the row, so tmp[j] is before end)
        for kw in range(1, KW):
            t = j + kw * DW
            if t < end:
                m = vmax(tmp[t], m)
        ring[slot, ow] = m


@njit(inline="always")
def _fold_plane_rows_max(out, n, c, oh, ring, slots, nv, OW):
    # Vertical pass of the NCHW kernel: out[n, c, oh, :] = max of the ring rows
    # slots[0..nv) in that order (first maximum kept); the first two in one pass.
    a = slots[0]
    if nv == 1:
        for ow in range(OW):
            out[n, c, oh, ow] = ring[a, ow]
    else:
        b = slots[1]
        for ow in range(OW):
            out[n, c, oh, ow] = vmax(ring[b, ow], ring[a, ow])
        for k in range(2, nv):
            r = slots[k]
            for ow in range(OW):
                out[n, c, oh, ow] = vmax(ring[r, ow], out[n, c, oh, ow])


@njit(inline="always")
def _edge_max(out, n, c, oh, ow, x, ih, W, SW, PW, KW, DW, init):
    # One output cell whose window reaches past a row end: ``_sweep_max``'s steps on
    # its taps inside the row, from ``init`` (an identity on the left: see
    # ``_redo_right_edge`` for why padding after the row's cells must be skipped).
    m = init
    for kw in range(KW):
        iw = ow * SW - PW + kw * DW
        if 0 <= iw < W:
            m = vmax(x[n, c, ih, iw], m)
    out[n, c, oh, ow] = m


@njit(inline="always")
def _row_max(out, n, c, oh, x, ih, W, OW, SW, PW, KW, DW, init):
    # out[n, c, oh, :] = the window maxima along W of the input row x[n, c, ih, :],
    # read in place: the windows inside the row (ow in [lo, hi)) with ``_sweep_max``'s
    # loops and steps, unsigned indices (no negative-index wraparound code, so the
    # stride-2 loops vectorise), the few that reach past an end one by one.
    lo = min(OW, (PW + SW - 1) // SW)  # first window starting inside the row
    last = W - 1 - (KW - 1) * DW + PW  # a window inside the row starts at ow*SW - PW <= last - PW
    hi = max(lo, min(OW, last // SW + 1)) if last >= 0 else lo
    for ow in range(lo):
        _edge_max(out, n, c, oh, ow, x, ih, W, SW, PW, KW, DW, init)
    for ow in range(hi, OW):
        _edge_max(out, n, c, oh, ow, x, ih, W, SW, PW, KW, DW, init)
    b = np.uint64(lo * SW - PW)  # the first interior window's first tap
    J = np.uint64(hi - lo)
    ulo = np.uint64(lo)
    one, two = np.uint64(1), np.uint64(2)
    if SW == 2 and DW == 1 and KW == 3:
        for j in range(J):
            i = b + j + j
            out[n, c, oh, ulo + j] = vmax(x[n, c, ih, i + two], vmax(x[n, c, ih, i + one], x[n, c, ih, i]))
    elif SW == 2 and DW == 1 and KW == 2:
        for j in range(J):
            i = b + j + j
            out[n, c, oh, ulo + j] = vmax(x[n, c, ih, i + one], x[n, c, ih, i])
    elif SW == 3 and DW == 1 and KW == 3:
        for j in range(J):
            i = b + np.uint64(3) * j
            out[n, c, oh, ulo + j] = vmax(x[n, c, ih, i + two], vmax(x[n, c, ih, i + one], x[n, c, ih, i]))
    elif SW == 4 and DW == 1 and KW == 4:
        for j in range(J):
            i = b + np.uint64(4) * j
            out[n, c, oh, ulo + j] = vmax(x[n, c, ih, i + np.uint64(3)],
                                          vmax(x[n, c, ih, i + two], vmax(x[n, c, ih, i + one], x[n, c, ih, i])))
    else:
        uSW = np.uint64(SW)
        for j in range(J):
            out[n, c, oh, ulo + j] = x[n, c, ih, b + j * uSW]
        for kw in range(1, KW):
            off = b + np.uint64(kw * DW)
            for j in range(J):
                out[n, c, oh, ulo + j] = vmax(x[n, c, ih, off + j * uSW], out[n, c, oh, ulo + j])


@njit(inline="always")
def _sweep_max_idx(ring, ringi, slot, tmp, col, base, OW, SW, KW, DW, end):
    # ``_sweep_max`` with the index (``take_max``): ring[slot, ow] and ringi[slot, ow]
    # = the window's first maximum (or last NaN) along W and its flat index
    # ``base + iw``. ``col`` holds the column of each cell of ``tmp``, -1 for a
    # padding cell: a padding cell first in a window loses to any later cell
    # (``take_max``'s ``g < 0``), as in the plain scan, which never looks at it. The
    # taps are compared on these row-local columns and ``base`` is added after: every
    # window has a cell inside the row (geometry refuses windows that read none).
    # Literal offsets for 2 and 3 wide at stride 2, as in ``_sweep_max``.
    if SW == 2 and DW == 1 and KW == 2:
        for ow in range(OW):
            j = 2 * ow
            a, g = take_max(tmp[j + 1], tmp[j], col[j], col[j + 1])
            ring[slot, ow] = a
            ringi[slot, ow] = g + base
    elif SW == 2 and DW == 1 and KW == 3:
        for ow in range(OW):
            j = 2 * ow
            a, g = take_max(tmp[j + 1], tmp[j], col[j], col[j + 1])
            a, g = take_max(tmp[j + 2], a, g, col[j + 2])
            ring[slot, ow] = a
            ringi[slot, ow] = g + base
    else:
        for ow in range(OW):
            j = ow * SW
            a, g = tmp[j], col[j]
            for kw in range(1, KW):
                a, h = take_max(tmp[j + kw * DW], a, g, col[j + kw * DW])
                g = col.dtype.type(h)  # take_max widens; keep the loop's type
            ring[slot, ow] = a
            ringi[slot, ow] = g + base
    for ow in range(OW - 1, -1, -1):  # past the row's end: ``_redo_right_edge``, with the index
        j = ow * SW
        if j + (KW - 1) * DW < end:
            break
        a, g = tmp[j], col[j]
        for kw in range(1, KW):
            t = j + kw * DW
            if t < end:
                a, h = take_max(tmp[t], a, g, col[t])
                g = col.dtype.type(h)
        ring[slot, ow] = a
        ringi[slot, ow] = g + base


# ---------------------------------------------------------------- NCHW kernels
# Kernels that need scratch rows split the parallel loop into ``nchunks`` chunks
# and allocate the scratch once per chunk (allocating inside a hot prange loop
# costs more than pooling a small plane). The wrapper passes nchunks = 1 for the
# serial kernel and a few chunks per thread for the parallel one.

def max_nchw(x, out, nchunks, SH, SW, PH, PW, DH, DW, KH, KW, init):
    # Separable, horizontal pass first: each input row is copied into a padded row
    # ``tmp`` and its window maxima along W (``_sweep_max``) go to a ring of the R
    # rows one window spans, once per input row however many windows read it; an
    # output row is then the maximum of its valid ring rows, in kh order
    # (``_fold_plane_rows_max``). Both passes keep the first maximum of their scan,
    # so ties resolve exactly as PyTorch's row-by-row scan does (which matters for
    # +0.0 vs -0.0).
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    T = max(W + 2 * PW, (OW - 1) * SW + (KW - 1) * DW + 1)  # padded row length
    R = (KH - 1) * DH + 1
    uPW = np.uint64(PW)  # unsigned indices: no negative-index wraparound code
    for i in prange(nchunks):
        tmp = np.empty(T, dtype=out.dtype)
        tmp[:] = init  # the padding cells stay at init
        ring = np.empty((R, OW), dtype=out.dtype)
        held = np.empty(R, dtype=np.int64)  # the input row each ring slot holds
        slots = np.empty(KH, dtype=np.int64)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            held[:] = -1
            for oh in range(OH):
                hs = oh * SH - PH
                nv = 0
                for kh in range(KH):
                    ih = hs + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    slot = ih % R
                    if held[slot] != ih:
                        for iw in range(np.uint64(W)):
                            tmp[uPW + iw] = x[n, c, ih, iw]
                        _sweep_max(ring, slot, tmp, OW, SW, KW, DW, PW + W)
                        held[slot] = ih
                    slots[nv] = slot
                    nv += 1
                if nv:
                    _fold_plane_rows_max(out, n, c, oh, ring, slots, nv, OW)
                else:  # no row inside the input: cannot happen for a valid geometry
                    for ow in range(OW):
                        out[n, c, oh, ow] = init


def avg_nchw(x, out, nchunks, SH, SW, PH, PW, KH, KW, div_h, div_w, override):
    # Not separable on purpose: each valid window row is added to the whole output
    # row (``_jit.sweep_add``), so every window is summed row by row like PyTorch.
    # When columns need padding (or ceil_mode's overhang) the plane is first copied
    # once into a zero-padded scratch plane; adding +0.0 for a padded cell changes
    # no sum.
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    T = max(W + 2 * PW, (OW - 1) * SW + KW)
    direct = PW == 0 and T == W
    uPW = np.uint64(PW)
    for i in prange(nchunks):
        pad = np.zeros((1 if direct else H, T), dtype=out.dtype)  # pads stay zero
        acc = np.empty(OW, dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            if direct:
                plane = x[n, c]
            else:
                for ih in range(H):
                    for iw in range(np.uint64(W)):
                        pad[ih, uPW + iw] = x[n, c, ih, iw]
                plane = pad
            for oh in range(OH):
                acc[:] = 0
                hs = oh * SH - PH
                for kh in range(KH):
                    ih = hs + kh
                    if 0 <= ih < H:
                        sweep_add(acc, plane, ih, OW, SW, KW)
                if override != 0:  # divisor_override (PyTorch takes a negative one too)
                    for ow in range(OW):
                        out[n, c, oh, ow] = acc[ow] / override
                else:
                    dh = div_h[oh]
                    for ow in range(OW):
                        out[n, c, oh, ow] = acc[ow] / (dh * div_w[ow])


def lp2_nchw(x, out, nchunks, SH, SW, KH, KW, div_h, div_w, K):
    # ``lp_pool2d`` with ``norm_type=2`` in one pass over ``x``: ``avg_nchw``'s row sweeps
    # over window rows squared on the way, then ``sqrt(a * K)``. The same operations, in
    # the same order, as ``(avg_pool2d(x ** 2.0) * K) ** 0.5`` in NumPy: ``x ** 2.0`` is
    # ``x * x`` (np.power's fast path for a scalar 2.0; np.square on NumPy 1.x) and ``** 0.5``
    # is np.sqrt. Each window row is squared into a row buffer whose tail stays +0.0
    # (ceil_mode's overhang; adding +0.0 changes no sum); Lp pooling has no padding.
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    T = max(W, (OW - 1) * SW + KW)
    for i in prange(nchunks):
        row = np.zeros((1, T), dtype=out.dtype)
        acc = np.empty(OW, dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            for oh in range(OH):
                acc[:] = 0
                for kh in range(KH):
                    ih = oh * SH + kh
                    if ih < H:
                        for iw in range(W):
                            v = x[n, c, ih, iw]
                            row[0, iw] = v * v
                        sweep_add(acc, row, 0, OW, SW, KW)
                dh = div_h[oh]
                for ow in range(OW):
                    out[n, c, oh, ow] = np.sqrt(acc[ow] / (dh * div_w[ow]) * K)


def avg_omit_nchw(x, out, nchunks, SH, SW, PH, PW, KH, KW, full_h, full_w, in_h, in_w, override, proto):
    # ``avg_nchw`` with ``nan_policy="omit"``: the same row sweeps, over the valid
    # cells, with their count (``proto``'s dtype: x's where the window's cells fit
    # its mantissa; poolkit.cpu.ops picks). The divisor adds the padding cells that
    # count_include_pad counts, ``full - in`` from the int64 tables.
    #
    # 2-wide, stride-2 windows (each cell read once) skip NaN as they sum
    # (``sweep_add_omit``; padding is NaN in the scratch plane: neither summed nor
    # counted). Any other window reads a cell several times, or needs a general
    # per-tap loop whose selects x86 code generation turns into branches (7-28x
    # ``avg_nchw`` at 30% random NaN): there each input row is first prepared once
    # (``_jit.omit_row``): a copy with NaN as +0.0 in ``Z`` (adding +0.0 changes no
    # sum, bit for bit, see add_valid), summed by ``avg_nchw``'s own sweeps, and in
    # ``R`` the row's valid cells per output column, added over the window's rows.
    # ``Z`` and ``R`` are rings of KH rows (row ``ih`` in slot ``ih % KH``, ``tag``
    # says which row a slot holds): a window's rows are KH consecutive ones, and
    # the scratch stays small whatever the plane's size.
    #
    # A plane without NaN runs ``avg_nchw``'s loop, with the full divisor tables in
    # x's dtype, which are propagate's divisors: bit for bit the same answer, at about
    # propagate's speed (nodata rarely fills every plane). The loop looks at each
    # output row's sums before it divides them: a window holding a NaN has a NaN sum,
    # and only cells some window reads matter (a window holding +inf and -inf has a
    # NaN sum too, and is NaN under omit as well). At the first NaN sum it gives up;
    # the plane then starts over with the omit sweeps. (Testing each input cell as it
    # was read cost more: 4x4 s4 was 1.32x propagate, now 1.09x; a separate NaN pass
    # first, 0.4-0.7x more.) A plane whose first row holds a NaN (random nodata)
    # starts there and needs no padded plane: that scratch is allocated on the first
    # plane that tries. The loop
    # is written out here again: as an inline helper shared with ``avg_nchw`` it ran
    # 1.15-1.3x slower, in both kernels (measured; cause not found).
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    T = max(W + 2 * PW, (OW - 1) * SW + KW)
    pairs = SW == 2 and KW == 2
    direct = pairs and PW == 0 and T == W
    uPW = np.uint64(PW)
    zero = x.dtype.type(0)
    one = proto.dtype.type(1)
    czero = proto.dtype.type(0)
    clean_direct = PW == 0 and T == W
    for i in prange(nchunks):
        clean = np.zeros((1 if clean_direct else 0, T), dtype=out.dtype)  # a NaN-free plane's, pads 0
        div_h = np.empty(OH, dtype=out.dtype)  # its divisors: avg_nchw's tables
        div_w = np.empty(OW, dtype=out.dtype)
        for oh in range(OH):
            div_h[oh] = full_h[oh]
        for ow in range(OW):
            div_w[ow] = full_w[ow]
        pad = np.empty((1 if direct else H, T) if pairs else (0, T), dtype=out.dtype)
        pad[:] = np.nan  # padding cells: skipped, like NaN
        Z = np.zeros((0 if pairs else KH, T), dtype=out.dtype)  # pads stay zero
        R = np.empty((0 if pairs else KH, OW), dtype=proto.dtype)
        tag = np.empty(0 if pairs else KH, dtype=np.int64)
        valid = np.zeros((1, T), dtype=proto.dtype)  # one row of Z's valid cells (pads stay 0)
        acc = np.empty(OW, dtype=out.dtype)
        cnt = np.empty(OW, dtype=proto.dtype)
        div = np.empty(OW, dtype=out.dtype)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            plane = x[n, c]
            if not rows_have_nan(plane, 0, min(H, 1)):  # first row clean: try avg_nchw's loop
                if clean.shape[0] < (1 if clean_direct else H):  # its padded plane, on first use
                    clean = np.zeros((H, T), dtype=out.dtype)
                if clean_direct:
                    src = plane
                else:
                    for ih in range(H):
                        for iw in range(np.uint64(W)):
                            clean[ih, uPW + iw] = x[n, c, ih, iw]
                    src = clean
                ok = True
                for oh in range(OH):
                    acc[:] = 0
                    hs = oh * SH - PH
                    for kh in range(KH):
                        ih = hs + kh
                        if 0 <= ih < H:
                            sweep_add(acc, src, ih, OW, SW, KW)
                    m = False  # a window holding a NaN has a NaN sum
                    for ow in range(OW):
                        m |= acc[ow] != acc[ow]
                    if m:
                        ok = False
                        break
                    if override != 0:
                        for ow in range(OW):
                            out[n, c, oh, ow] = acc[ow] / override
                    else:
                        dh = div_h[oh]
                        for ow in range(OW):
                            out[n, c, oh, ow] = acc[ow] / (dh * div_w[ow])
                if ok:
                    continue
            if pairs and not direct:
                for ih in range(H):
                    for iw in range(np.uint64(W)):
                        pad[ih, uPW + iw] = x[n, c, ih, iw]
                plane = pad
            tag[:] = -1
            for oh in range(OH):
                acc[:] = 0
                cnt[:] = czero
                hs = oh * SH - PH
                for kh in range(KH):
                    ih = hs + kh
                    if 0 <= ih < H:
                        if pairs:
                            sweep_add_omit(acc, cnt, plane, ih, OW, SW, KW, zero, czero, one)
                        else:
                            slot = ih % KH
                            if tag[slot] != ih:
                                omit_row(x[n, c, ih], Z, R, slot, valid, OW, SW, KW, uPW, zero, one, czero)
                                tag[slot] = ih
                            sweep_add(acc, Z, slot, OW, SW, KW)
                            for ow in range(OW):
                                cnt[ow] += R[slot, ow]
                for ow in range(OW):
                    div[ow] = cnt[ow] + (full_h[oh] * full_w[ow] - in_h[oh] * in_w[ow])  # exact, cast
                    if override != 0:
                        div[ow] = override
                    out[n, c, oh, ow] = acc[ow] / div[ow]


def max_rows(x, out, SH, SW, PH, PW, DW, KW, init):
    # NCHW windows one row high (KH = 1: every 1-d max pool, run on H = 1 planes):
    # each output row is one input row's window maxima, computed straight from the
    # input into the output (``_row_max``); no padded copy, ring or fold, which is
    # what ``max_nchw`` spends most of its time on when a window spans one row.
    # One thread per output row.
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for q in prange(N * C * OH):
        n = q // (C * OH)
        r = q - n * (C * OH)
        c = r // OH
        oh = r - c * OH
        ih = oh * SH - PH
        if 0 <= ih < H:
            _row_max(out, n, c, oh, x, ih, W, OW, SW, PW, KW, DW, init)
        else:  # no row inside the input: cannot happen for a valid geometry
            for ow in range(OW):
                out[n, c, oh, ow] = init


def max_idx_nchw(x, out, idx, nchunks, SH, SW, PH, PW, DH, DW, KH, KW, init, iproto):
    # ``max_nchw`` with the indices, separable as it is: ``take_max`` of (value, index)
    # pairs with the earlier partial on the left is the plain scan's step, so row
    # maxima first (``_sweep_max_idx``) and then their maximum over the window's rows
    # in kh order give PyTorch's row-by-row scan exactly: the first maximum, the last
    # NaN, and their flat index. Indices are counted in ``iproto``'s dtype (int32
    # where a plane's flat positions fit: as wide as float32's lanes) and widened to
    # int64 as an output row is stored. (The kernel this replaced swept each of the
    # window's KH*KW taps over the output row, one strided tap at a time: 3.5x slower
    # on 3x3 s2 p1.)
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    T = max(W + 2 * PW, (OW - 1) * SW + (KW - 1) * DW + 1)
    R = (KH - 1) * DH + 1
    uPW = np.uint64(PW)
    ity = iproto.dtype
    for i in prange(nchunks):
        tmp = np.empty(T, dtype=out.dtype)
        tmp[:] = init  # the padding cells stay at init
        col = np.empty(T, dtype=ity)
        col[:] = -1  # padding
        for iw in range(W):
            col[PW + iw] = iw
        ring = np.empty((R, OW), dtype=out.dtype)
        ringi = np.empty((R, OW), dtype=ity)
        arg = np.empty(OW, dtype=ity)
        held = np.empty(R, dtype=np.int64)  # the input row each ring slot holds
        slots = np.empty(KH, dtype=np.int64)
        p0, p1 = chunk(i, nchunks, N * C)
        for p in range(p0, p1):
            n = p // C
            c = p - n * C
            held[:] = -1
            for oh in range(OH):
                hs = oh * SH - PH
                nv = 0
                for kh in range(KH):
                    ih = hs + kh * DH
                    if ih < 0 or ih >= H:
                        continue
                    slot = ih % R
                    if held[slot] != ih:
                        for iw in range(np.uint64(W)):
                            tmp[uPW + iw] = x[n, c, ih, iw]
                        _sweep_max_idx(ring, ringi, slot, tmp, col, ity.type(ih * W), OW, SW, KW, DW, PW + W)
                        held[slot] = ih
                    slots[nv] = slot
                    nv += 1
                if nv == 0:  # no row inside the input: cannot happen for a valid geometry
                    for ow in range(OW):
                        out[n, c, oh, ow] = init
                        idx[n, c, oh, ow] = -1
                    continue
                a = slots[0]
                for ow in range(OW):
                    out[n, c, oh, ow] = ring[a, ow]
                    arg[ow] = ringi[a, ow]
                for k in range(1, nv):
                    r = slots[k]
                    for ow in range(OW):
                        out[n, c, oh, ow], arg[ow] = take_max(ring[r, ow], out[n, c, oh, ow], arg[ow], ringi[r, ow])
                for ow in range(OW):  # (a row view here would cost refcount atomics)
                    idx[n, c, oh, ow] = arg[ow]


def global_max_flat(x, out, init):
    # x: (P, L) contiguous planes, out: (P,). Each plane is scanned front to back
    # (first maximum kept, as PyTorch: the sign of a tied zero follows it); eight
    # planes at a time give eight independent chains that the CPU overlaps.
    P, L = x.shape
    for b in prange((P + 7) // 8):
        p = 8 * b
        if p + 8 <= P:
            m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = init
            for i in range(L):
                m0 = vmax(x[p, i], m0)
                m1 = vmax(x[p + 1, i], m1)
                m2 = vmax(x[p + 2, i], m2)
                m3 = vmax(x[p + 3, i], m3)
                m4 = vmax(x[p + 4, i], m4)
                m5 = vmax(x[p + 5, i], m5)
                m6 = vmax(x[p + 6, i], m6)
                m7 = vmax(x[p + 7, i], m7)
            out[p] = m0
            out[p + 1] = m1
            out[p + 2] = m2
            out[p + 3] = m3
            out[p + 4] = m4
            out[p + 5] = m5
            out[p + 6] = m6
            out[p + 7] = m7
        else:
            for q in range(p, P):
                m = init
                for i in range(L):
                    m = vmax(x[q, i], m)
                out[q] = m


def global_sum_flat(x, out, d0, d1, d2):
    # Each plane is summed front to back (PyTorch's order, bitwise identical), then
    # divided by d0, d1 and d2 in turn (avg_pool2d: (divisor, 1, 1); adaptive average
    # to size 1: the bin sizes, as adaptive_avg_cf). Eight planes at a time give
    # eight independent add chains, so the adds overlap instead of waiting on each
    # other's latency.
    P, L = x.shape
    zero = x.dtype.type(0)
    for b in prange((P + 7) // 8):
        p = 8 * b
        if p + 8 <= P:
            _sum8(x, out, p, d0, d1, d2)
        else:
            for q in range(p, P):
                s = zero
                for i in range(L):
                    s += x[q, i]
                out[q] = s / d0 / d1 / d2


@njit(inline="always")
def _sum8(x, out, p, d0, d1, d2):
    # Planes p .. p+7 of ``global_sum_flat``: eight independent add chains.
    L = x.shape[1]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = x.dtype.type(0)
    for i in range(L):
        s0 += x[p, i]
        s1 += x[p + 1, i]
        s2 += x[p + 2, i]
        s3 += x[p + 3, i]
        s4 += x[p + 4, i]
        s5 += x[p + 5, i]
        s6 += x[p + 6, i]
        s7 += x[p + 7, i]
    out[p] = s0 / d0 / d1 / d2
    out[p + 1] = s1 / d0 / d1 / d2
    out[p + 2] = s2 / d0 / d1 / d2
    out[p + 3] = s3 / d0 / d1 / d2
    out[p + 4] = s4 / d0 / d1 / d2
    out[p + 5] = s5 / d0 / d1 / d2
    out[p + 6] = s6 / d0 / d1 / d2
    out[p + 7] = s7 / d0 / d1 / d2


@njit(inline="always")
def _sum8_if_clean(x, out, p, d0, d1, d2):
    # ``_sum8`` for ``nan_policy="omit"``, when planes p .. p+7 hold no NaN: then every
    # count is the plane's size and the omit mean is the propagate one, bit for bit.
    # Speculative: if the first four cells of each plane are numbers, sum the planes
    # as ``global_sum_flat`` does and look at the results; a NaN cell makes its sum
    # NaN (so does inf - inf: that group is redone as well, and agrees). False: redo.
    # A separate NaN test over the planes first cost 0.6x propagate (a memory pass).
    for q in range(p, p + 8):
        for i in range(min(x.shape[1], 4)):
            if x[q, i] != x[q, i]:
                return False
    _sum8(x, out, p, d0, d1, d2)
    ok = True
    for q in range(p, p + 8):
        ok &= out[q] == out[q]
    return ok


def global_sum_omit_flat(x, out, d0, d1, d2):
    # ``global_sum_flat`` with ``nan_policy="omit"``: eight planes at a time, each with
    # its int64 valid-cell count, a NaN adding +0.0 (see avg_omit_nchw); eight planes
    # without NaN take ``global_sum_flat``'s chains (``_sum8_if_clean``).
    P, L = x.shape
    zero = x.dtype.type(0)
    for b in prange((P + 7) // 8):
        p = 8 * b
        if p + 8 <= P and _sum8_if_clean(x, out, p, d0, d1, d2):
            continue
        if p + 8 <= P:
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
            k0 = k1 = k2 = k3 = k4 = k5 = k6 = k7 = 0
            for i in range(L):
                s0, k0 = add_valid_scalar(s0, k0, x[p, i], zero)
                s1, k1 = add_valid_scalar(s1, k1, x[p + 1, i], zero)
                s2, k2 = add_valid_scalar(s2, k2, x[p + 2, i], zero)
                s3, k3 = add_valid_scalar(s3, k3, x[p + 3, i], zero)
                s4, k4 = add_valid_scalar(s4, k4, x[p + 4, i], zero)
                s5, k5 = add_valid_scalar(s5, k5, x[p + 5, i], zero)
                s6, k6 = add_valid_scalar(s6, k6, x[p + 6, i], zero)
                s7, k7 = add_valid_scalar(s7, k7, x[p + 7, i], zero)
            out[p] = omit_mean(s0, k0, L, d0, d1, d2)
            out[p + 1] = omit_mean(s1, k1, L, d0, d1, d2)
            out[p + 2] = omit_mean(s2, k2, L, d0, d1, d2)
            out[p + 3] = omit_mean(s3, k3, L, d0, d1, d2)
            out[p + 4] = omit_mean(s4, k4, L, d0, d1, d2)
            out[p + 5] = omit_mean(s5, k5, L, d0, d1, d2)
            out[p + 6] = omit_mean(s6, k6, L, d0, d1, d2)
            out[p + 7] = omit_mean(s7, k7, L, d0, d1, d2)
        else:
            for q in range(p, P):
                s, k = zero, 0
                for i in range(L):
                    s, k = add_valid_scalar(s, k, x[q, i], zero)
                out[q] = omit_mean(s, k, L, d0, d1, d2)


# ---------------------------------------------------------------- NHWC kernels
@njit(inline="always")
def _sweep_max_cl(ring, slot, x, n, ih, W, OW, SW, PW, KW, DW, C):
    # ``_sweep_max`` on channel vectors, on the flat input row ``x[n, ih]`` (W*C),
    # indexed in place (a view per row would cost two atomic reference-count updates
    # on ``x``, which the threads share):
    # ring[slot, ow*C + c] = max over the window's columns iw = ow*SW - PW + kw*DW
    # inside [0, W), in kw order. Windows entirely inside the row fuse up to three
    # taps into one pass over the channels; the few at the edges (padding, ceil_mode
    # overhang) visit their valid columns only: skipping a padding tap is the same
    # as taking the max with the -inf it stands for.
    uC = np.uint64(C)
    span = (KW - 1) * DW
    for ow in range(OW):
        ws = ow * SW - PW
        o = np.uint64(ow * C)
        if ws >= 0 and ws + span < W:
            b = np.uint64(ws * C)
            d1 = np.uint64(DW * C)
            d2 = d1 + d1
            if KW == 1:
                for c in range(uC):
                    ring[slot, o + c] = x[n, ih, b + c]
            elif KW == 2:
                for c in range(uC):
                    ring[slot, o + c] = vmax(x[n, ih, b + d1 + c], x[n, ih, b + c])
            else:
                for c in range(uC):
                    ring[slot, o + c] = vmax(x[n, ih, b + d2 + c], vmax(x[n, ih, b + d1 + c], x[n, ih, b + c]))
                for kw in range(3, KW):
                    bk = b + np.uint64(kw * DW * C)
                    for c in range(uC):
                        ring[slot, o + c] = vmax(x[n, ih, bk + c], ring[slot, o + c])
        else:
            first = True
            for kw in range(KW):
                iw = ws + kw * DW
                if iw < 0 or iw >= W:
                    continue
                bk = np.uint64(iw * C)
                if first:
                    for c in range(uC):
                        ring[slot, o + c] = x[n, ih, bk + c]
                    first = False
                else:
                    for c in range(uC):
                        ring[slot, o + c] = vmax(x[n, ih, bk + c], ring[slot, o + c])


@njit(inline="always")
def _fold_rows_max(out, n, oh, ring, slots, nv, L):
    # Vertical pass: out[n, oh, :L] = max of the ring rows slots[0..nv) in that order
    # (first maximum kept); the first two rows in one pass.
    uL = np.uint64(L)
    a = slots[0]
    if nv == 1:
        for j in range(uL):
            out[n, oh, j] = ring[a, j]
    else:
        b = slots[1]
        for j in range(uL):
            out[n, oh, j] = vmax(ring[b, j], ring[a, j])
        for k in range(2, nv):
            r = slots[k]
            for j in range(uL):
                out[n, oh, j] = vmax(ring[r, j], out[n, oh, j])


def max_nhwc(x, out, nchunks, C, SH, SW, PH, PW, DH, DW, KH, KW, init):
    # The NCHW kernel's scheme on flat (W*C) rows: ``x`` is (N, H, W*C), ``out`` is
    # (N, OH, OW*C). Each input row's window maxima along W (over channel vectors,
    # ``_sweep_max_cl``) go to a ring of the R rows one window spans, once per input
    # row; an output row is the maximum of its valid ring rows in kh order, as
    # long contiguous loops (``_fold_rows_max``). Ties keep the first maximum of
    # PyTorch's scan order.
    N, H, WC = x.shape
    OH, OWC = out.shape[1], out.shape[2]
    W = WC // C
    OW = OWC // C
    R = (KH - 1) * DH + 1
    for i in prange(nchunks):
        ring = np.empty((R, OWC), dtype=out.dtype)
        held = np.empty(R, dtype=np.int64)  # the input row (n*H + ih) each slot holds
        held[:] = -1
        slots = np.empty(KH, dtype=np.int64)
        q0, q1 = chunk(i, nchunks, N * OH)
        for q in range(q0, q1):
            n = q // OH
            oh = q - n * OH
            hs = oh * SH - PH
            nv = 0
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                slot = ih % R
                if held[slot] != n * H + ih:
                    _sweep_max_cl(ring, slot, x, n, ih, W, OW, SW, PW, KW, DW, C)
                    held[slot] = n * H + ih
                slots[nv] = slot
                nv += 1
            if nv:
                _fold_rows_max(out, n, oh, ring, slots, nv, OWC)
            else:  # no row inside the input: cannot happen for a valid geometry
                out[n, oh] = init


@njit(inline="always")
def _add_taps(out, n, oh, ow, x, ih, iw, g, first, d, last, uC, zero):
    # out[n, oh, ow, :] = (out[...] or +0.0 when ``first``) + x[n, ih, iw, :] + ...
    # + x[n, ih, iw+g-1, :], added left to right (g <= 4 taps of one window row), and
    # divided by ``d`` when ``last``. Several taps per pass keep the running sums in
    # registers instead of loading and storing them once per tap; the branches are
    # outside the channel loops, so each loop is a plain vector loop.
    if last:
        if g == 4:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = ((((s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c])
                                      + x[n, ih, iw + 2, c]) + x[n, ih, iw + 3, c]) / d
        elif g == 3:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = (((s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c]) + x[n, ih, iw + 2, c]) / d
        elif g == 2:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = ((s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c]) / d
        else:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = (s + x[n, ih, iw, c]) / d
    else:
        if g == 4:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = (((s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c])
                                     + x[n, ih, iw + 2, c]) + x[n, ih, iw + 3, c]
        elif g == 3:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = ((s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c]) + x[n, ih, iw + 2, c]
        elif g == 2:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = (s + x[n, ih, iw, c]) + x[n, ih, iw + 1, c]
        else:
            for c in range(uC):
                s = zero if first else out[n, oh, ow, c]
                out[n, oh, ow, c] = s + x[n, ih, iw, c]


@njit(inline="always")
def _avg_cell(out, n, oh, ow, x, ih0, iw0, nw, T, d, uC, zero):
    # A window of T <= 4 valid cells in one pass: ((((+0.0 + a) + b) + c) + e) / d
    # per channel, the cells in scan order: one row (T == nw), one column (nw == 1)
    # or a 2x2 block.
    ha, wa = ih0, iw0
    if T == nw:
        hb, wb, hc, wc, he, we = ih0, iw0 + 1, ih0, iw0 + 2, ih0, iw0 + 3
    elif nw == 1:
        hb, wb, hc, wc, he, we = ih0 + 1, iw0, ih0 + 2, iw0, ih0 + 3, iw0
    else:
        hb, wb, hc, wc, he, we = ih0, iw0 + 1, ih0 + 1, iw0, ih0 + 1, iw0 + 1
    if T == 4:
        for c in range(uC):
            out[n, oh, ow, c] = ((((zero + x[n, ha, wa, c]) + x[n, hb, wb, c]) + x[n, hc, wc, c])
                                 + x[n, he, we, c]) / d
    elif T == 3:
        for c in range(uC):
            out[n, oh, ow, c] = (((zero + x[n, ha, wa, c]) + x[n, hb, wb, c]) + x[n, hc, wc, c]) / d
    elif T == 2:
        for c in range(uC):
            out[n, oh, ow, c] = ((zero + x[n, ha, wa, c]) + x[n, hb, wb, c]) / d
    else:
        for c in range(uC):
            out[n, oh, ow, c] = (zero + x[n, ha, wa, c]) / d


def avg_nhwc_small(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override):
    # ``avg_nhwc`` for windows of at most four cells (2x2 above all): each output
    # cell in one pass over the channels (``_avg_cell``). A kernel of its own: the
    # general kernel's bookkeeping made these memory-bound loops ~15% slower.
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    uC = np.uint64(C)
    zero = x.dtype.type(0)
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        ih0 = max(hs, 0)
        nh = min(hs + KH, H) - ih0
        for ow in range(OW):
            ws = ow * SW - PW
            iw0 = max(ws, 0)
            nw = min(ws + KW, W) - iw0
            d = override if override != 0 else div_h[oh] * div_w[ow]
            if nh > 0 and nw > 0:
                _avg_cell(out, n, oh, ow, x, ih0, iw0, nw, nh * nw, d, uC, zero)
            else:  # an empty window: a valid geometry has none
                for c in range(uC):
                    out[n, oh, ow, c] = zero / d


def avg_nhwc(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override):
    # For each output cell, its window's valid cells are added to the output's
    # channel vector in scan order (rows, then columns, from +0.0), up to four taps
    # per pass (``_add_taps``); the last pass divides. So every window is summed in
    # PyTorch's order, and the innermost loops run over contiguous channels.
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    uC = np.uint64(C)
    zero = x.dtype.type(0)
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        ih0 = max(hs, 0)
        ih1 = min(hs + KH, H)
        for ow in range(OW):
            ws = ow * SW - PW
            iw0 = max(ws, 0)
            iw1 = min(ws + KW, W)
            d = override if override != 0 else div_h[oh] * div_w[ow]
            if ih0 >= ih1 or iw0 >= iw1:  # an empty window: a valid geometry has none
                for c in range(uC):
                    out[n, oh, ow, c] = zero / d
            for ih in range(ih0, ih1):
                iw = iw0
                while iw < iw1:
                    g = min(4, iw1 - iw)
                    _add_taps(out, n, oh, ow, x, ih, iw, g, ih == ih0 and iw == iw0, d,
                              ih == ih1 - 1 and iw + g == iw1, uC, zero)
                    iw += g


def max_idx_nhwc(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init, iproto):
    # Max with indices, channels-last: per output cell, the running maxima and indices of
    # all C channels are kept in two thread-local rows (``m``, ``g``) and stored once at
    # the end. The indices are counted in ``iproto``'s dtype: int32 when a plane's flat
    # positions fit (host code picks), so that an index select is as wide as the float32
    # value select (8 lanes) instead of int64's 4, and the rows do not alias the output.
    # Each window starts from its first in-range cell (every window has one), so the
    # steps after it need no "nothing taken yet" test (``take_max_next``) and ``init``
    # is not read.
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    uC = np.uint64(C)
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        m = np.empty(C, dtype=out.dtype)
        g = np.empty(C, dtype=iproto.dtype)
        for ow in range(OW):
            ws = ow * SW - PW
            first = True
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ws + kw * DW
                    if iw < 0 or iw >= W:
                        continue
                    flat = iproto.dtype.type(ih * W + iw)
                    if first:  # the window's first in-range cell: taken as it is
                        for c in range(uC):
                            m[c] = x[n, ih, iw, c]
                            g[c] = flat
                        first = False
                    else:
                        for c in range(uC):
                            m[c], g[c] = take_max_next(x[n, ih, iw, c], m[c], g[c], flat)
            for c in range(uC):
                out[n, oh, ow, c] = m[c]
                idx[n, oh, ow, c] = g[c]


#: ``KERNELS[(name, parallel)]`` -> compiled kernel; the notebooks inspect these.
KERNELS = {}
for _name, _fn in [
    ("max_nchw", max_nchw), ("max_rows", max_rows), ("max_idx_nchw", max_idx_nchw), ("avg_nchw", avg_nchw),
    ("max_nhwc", max_nhwc), ("max_idx_nhwc", max_idx_nhwc), ("avg_nhwc", avg_nhwc),
    ("avg_nhwc_small", avg_nhwc_small),
    ("global_max", global_max_flat), ("global_sum", global_sum_flat),
]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = njit_pair(_fn)
#: ``nan_policy="omit"`` averages and Lp pooling: NumPy's error model (0/0 is NaN, not an exception).
for _name, _fn in [("avg_omit_nchw", avg_omit_nchw), ("global_sum_omit", global_sum_omit_flat), ("lp2_nchw", lp2_nchw)]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = njit_pair(_fn, error_model="numpy")
#: ``nan_policy="omit"``: the max kernels once more, same source, NaN-skipping steps
#: (:func:`._jit.omit_variant`); run with ``init = NaN`` ("no valid cell yet").
for _name, _fn in [("max_nchw", max_nchw), ("max_rows", max_rows), ("max_idx_nchw", max_idx_nchw), ("max_nhwc", max_nhwc),
                   ("max_idx_nhwc", max_idx_nhwc), ("global_max", global_max_flat)]:
    KERNELS[(_name + "_omit", False)], KERNELS[(_name + "_omit", True)] = njit_pair(omit_variant(_fn))
del _name, _fn
