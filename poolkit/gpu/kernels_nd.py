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

**nan_policy="omit"** (NaN cells are nodata, :func:`poolkit.geometry.check_nan_policy`)
runs on kernels of this module for every nd and layout (the 2-D kernels of
:mod:`~poolkit.gpu.naive2d` / :mod:`~poolkit.gpu.tiled2d` know propagate only):

* :data:`max3d_omit` / :data:`adaptive_max_omit` are :func:`max3d` / :func:`adaptive_max`
  themselves, their source compiled once more with the step
  :func:`~poolkit.gpu.rules.max_index_wins_omit` in place of ``max_index_wins``
  (:func:`_omit_variant`; started from NaN): one source, two rules, as on the CPU;
* :func:`avg_omit` -- every ``"omit"`` average (pooling, adaptive) over windows given
  as per-dimension ``[start, stop)`` tables, and (``backward``) the gradient's share
  ``grad / divisor`` per window, which :func:`avg_gather_omit` gathers: the divisor
  rule is written once for both passes.

:func:`copy_4d` / :func:`copy_5d` give the kernels a C-contiguous copy of a strided
device input. The max step and PyTorch's sign come from :mod:`poolkit.gpu.rules`;
the layout's index arithmetic (sizes, unravelling a thread index in memory order,
reads and writes at ``(n, c, d, h, w)``) from :mod:`poolkit.gpu.index5`.
Kernels compile lazily, on first launch; :data:`ND_KERNELS` names them.
"""
import types

from numba import cuda

from .index5 import load5, shape5, store5, store5_argmax, unravel3, unravel5
from .rules import max_index_wins, max_index_wins_omit, sign, tap_range

__all__ = ["max3d", "avg3d", "adaptive_max", "adaptive_avg", "max_gather", "avg_gather",
           "max3d_omit", "adaptive_max_omit", "avg_omit", "avg_gather_omit",
           "unpool_scatter", "index_gather", "ewise", "copy_5d", "copy_4d", "ND_KERNELS"]


@cuda.jit
def max3d(x, out, idx, want_idx, cl, SD, SH, SW, PD, PH, PW, DD, DH, DW, KD, KH, KW, init):
    """Max pooling over 5-D views: one thread per output; writes the flat argmax if ``want_idx``.

    Window scanned in (kd, kh, kw) order with :func:`~poolkit.gpu.rules.max_index_wins`: the
    first maximum wins ties, NaN propagates (last NaN's index), padding never wins. Only
    the taps inside the input are visited (:func:`tap_range`), so any window size costs
    what its in-range taps cost; 1-d/2-d windows far larger than the input run here too.
    """
    i = cuda.grid(1)
    N, C, D, H, W = shape5(x, cl)
    _, _, OD, OH, OW = shape5(out, cl)
    if i >= N * C * OD * OH * OW:
        return
    n, c, od, oh, ow = unravel5(i, C, OD, OH, OW, cl)
    m = init
    mi = -1
    ds = od * SD - PD
    hs = oh * SH - PH
    ws = ow * SW - PW
    kd0, kd1 = tap_range(ds, D, KD, DD)
    kh0, kh1 = tap_range(hs, H, KH, DH)
    kw0, kw1 = tap_range(ws, W, KW, DW)
    for kd in range(kd0, kd1):
        id_ = ds + kd * DD
        for kh in range(kh0, kh1):
            ih = hs + kh * DH
            for kw in range(kw0, kw1):
                iw = ws + kw * DW
                v = load5(x, n, c, id_, ih, iw, cl)
                if max_index_wins(v, m, mi):
                    m = v
                    mi = (id_ * H + ih) * W + iw
    store5_argmax(out, idx, want_idx, n, c, od, oh, ow, cl, m, mi)


@cuda.jit
def avg3d(x, out, cl, SD, SH, SW, PD, PH, PW, KD, KH, KW, div_d, div_h, div_w, override, zero):
    """Average pooling over 5-D views: sum in scan order in ``x``'s dtype, one division.

    The divisor is ``override`` (when not 0) or ``div_d[od] * div_h[oh] * div_w[ow]``
    from :func:`poolkit.geometry.avg_divisor_table` -- as on the CPU, bit for bit.
    """
    i = cuda.grid(1)
    N, C, D, H, W = shape5(x, cl)
    _, _, OD, OH, OW = shape5(out, cl)
    if i >= N * C * OD * OH * OW:
        return
    n, c, od, oh, ow = unravel5(i, C, OD, OH, OW, cl)
    s = zero
    ds = od * SD - PD
    hs = oh * SH - PH
    ws = ow * SW - PW
    kd0, kd1 = tap_range(ds, D, KD, 1)
    kh0, kh1 = tap_range(hs, H, KH, 1)
    kw0, kw1 = tap_range(ws, W, KW, 1)
    for kd in range(kd0, kd1):
        for kh in range(kh0, kh1):
            for kw in range(kw0, kw1):
                s += load5(x, n, c, ds + kd, hs + kh, ws + kw, cl)
    d = override if override != 0 else div_d[od] * div_h[oh] * div_w[ow]
    store5(out, n, c, od, oh, ow, cl, s / d)


@cuda.jit
def adaptive_max(x, out, idx, want_idx, cl, sd, ed, sh, eh, sw, ew, init):
    """Adaptive max over bins ``[s, e)`` per dimension (uneven, overlapping): one thread per output."""
    i = cuda.grid(1)
    N, C, _, H, W = shape5(x, cl)
    _, _, OD, OH, OW = shape5(out, cl)
    if i >= N * C * OD * OH * OW:
        return
    n, c, od, oh, ow = unravel5(i, C, OD, OH, OW, cl)
    m = init
    mi = -1
    for id_ in range(sd[od], ed[od]):
        for ih in range(sh[oh], eh[oh]):
            for iw in range(sw[ow], ew[ow]):
                v = load5(x, n, c, id_, ih, iw, cl)
                if max_index_wins(v, m, mi):
                    m = v
                    mi = (id_ * H + ih) * W + iw
    store5_argmax(out, idx, want_idx, n, c, od, oh, ow, cl, m, mi)


@cuda.jit
def adaptive_avg(x, out, cl, sd, ed, sh, eh, sw, ew, kd, kh, kw, zero):
    """Adaptive average: sum the bin in scan order, then divide by each bin size in turn (PyTorch's order)."""
    i = cuda.grid(1)
    N, C, _, _, _ = shape5(x, cl)
    _, _, OD, OH, OW = shape5(out, cl)
    if i >= N * C * OD * OH * OW:
        return
    n, c, od, oh, ow = unravel5(i, C, OD, OH, OW, cl)
    s = zero
    for id_ in range(sd[od], ed[od]):
        for ih in range(sh[oh], eh[oh]):
            for iw in range(sw[ow], ew[ow]):
                s += load5(x, n, c, id_, ih, iw, cl)
    store5(out, n, c, od, oh, ow, cl, s / kd[od] / kh[oh] / kw[ow])


@cuda.jit
def max_gather(grad, idx, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, zero):
    """Max-type backward as a gather: one thread per input cell, no atomics.

    The cell at flat position ``f`` adds ``grad[o]`` for every covering window ``o``
    (ranges ``[lo, hi)`` per dimension, increasing order) whose index is ``f``.
    """
    i = cuda.grid(1)
    N, C, D, H, W = shape5(gx, cl)
    if i >= N * C * D * H * W:
        return
    n, c, id_, ih, iw = unravel5(i, C, D, H, W, cl)
    f = (id_ * H + ih) * W + iw
    s = zero
    for od in range(lo_d[id_], hi_d[id_]):
        for oh in range(lo_h[ih], hi_h[ih]):
            for ow in range(lo_w[iw], hi_w[iw]):
                if load5(idx, n, c, od, oh, ow, cl) == f:
                    s += load5(grad, n, c, od, oh, ow, cl)
    store5(gx, n, c, id_, ih, iw, cl, s)


@cuda.jit
def avg_gather(grad, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, t_d, t_h, t_w, adaptive, override,
                zero):
    """Average-type backward as a gather: one thread per input cell, no atomics.

    Adds ``grad[o] / divisor[o]`` over the covering windows in increasing order. The
    divisor is ``override`` (not 0), ``t_d*t_h*t_w`` (pooling: the forward's divisor)
    or, with ``adaptive``, ``grad / t_d / t_h / t_w`` (bin sizes, PyTorch's order).
    """
    i = cuda.grid(1)
    N, C, D, H, W = shape5(gx, cl)
    if i >= N * C * D * H * W:
        return
    n, c, id_, ih, iw = unravel5(i, C, D, H, W, cl)
    s = zero
    for od in range(lo_d[id_], hi_d[id_]):
        for oh in range(lo_h[ih], hi_h[ih]):
            for ow in range(lo_w[iw], hi_w[iw]):
                g = load5(grad, n, c, od, oh, ow, cl)
                if override != 0:
                    s += g / override
                elif adaptive:
                    s += g / t_d[od] / t_h[oh] / t_w[ow]
                else:
                    s += g / (t_d[od] * t_h[oh] * t_w[ow])
    store5(gx, n, c, id_, ih, iw, cl, s)


@cuda.jit
def unpool_scatter(src, idx, dst, cl, zero):
    """Max unpooling: one thread per ``(n, c)`` plane; zero the plane, then place the inputs.

    Inputs are walked in scan order, so with repeated indices the last one wins --
    the same cell on every run (and as on the CPU).
    """
    q = cuda.grid(1)
    N, C, OD, OH, OW = shape5(dst, cl)
    _, _, D, H, W = shape5(src, cl)
    if q >= N * C:
        return
    n = q // C
    c = q - n * C
    for od in range(OD):
        for oh in range(OH):
            for ow in range(OW):
                store5(dst, n, c, od, oh, ow, cl, zero)
    for id_ in range(D):
        for ih in range(H):
            for iw in range(W):
                f = load5(idx, n, c, id_, ih, iw, cl)
                v = load5(src, n, c, id_, ih, iw, cl)
                od, oh, ow = unravel3(f, OH, OW)
                store5(dst, n, c, od, oh, ow, cl, v)


@cuda.jit
def index_gather(src, idx, dst, cl):
    """``dst[n, c, p] = src[n, c, idx[n, c, p]]`` (unpooling backward): one thread per ``dst`` cell."""
    i = cuda.grid(1)
    N, C, D, H, W = shape5(dst, cl)
    _, _, _, OH, OW = shape5(src, cl)
    if i >= N * C * D * H * W:
        return
    n, c, id_, ih, iw = unravel5(i, C, D, H, W, cl)
    od, oh, ow = unravel3(load5(idx, n, c, id_, ih, iw, cl), OH, OW)
    store5(dst, n, c, id_, ih, iw, cl, load5(src, n, c, od, oh, ow, cl))


@cuda.jit
def ewise(a, b, out, op, p1, p2, K, zero, one):
    """The element-wise steps of Lp pooling and its gradient, on flat arrays (one thread per element).

    ``op``: 0 ``a**p1``; 1 ``(a*K)**p1``; 2 ``p1*|a|``; 3 ``p1*a``;
    4 the gradient through ``(sign(a)*relu(|a|)*K)**(1/p)`` with ``b`` the
    upstream gradient, ``p1 = 1/p``, ``p2 = 1/p - 1``; 5 ``a*(p1*b**p2)``;
    6 ``a*sign(b)``. Each step computes what :mod:`poolkit.cpu` computes in
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
        a, b, c, d, e = unravel5(i, B, Cc, D, E, False)  # C order: the last axis fastest
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


# ---------------------------------------------------------------- nan_policy="omit"
def _omit_variant(kernel):
    """``kernel``'s own source, compiled with :func:`~poolkit.gpu.rules.max_index_wins_omit`
    as its max step: the ``nan_policy="omit"`` twin (run it with ``init`` NaN).

    The clone sees a copy of this module's globals in which ``max_index_wins`` is
    the omit step (the CPU's ``_jit.omit_variant`` does the same with its
    ``vmax``/``take_max``), so the two kernels cannot drift apart. Renamed
    ``*_omit`` so that profiles and error messages tell them apart. The simulator
    swaps ``cuda`` in the clone's globals as in the module's.
    """
    fn = kernel.py_func
    g = dict(fn.__globals__)
    g["max_index_wins"] = max_index_wins_omit
    clone = types.FunctionType(fn.__code__, g, fn.__name__ + "_omit", fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + "_omit"
    clone.__doc__ = fn.__doc__
    return cuda.jit(clone)


#: :func:`max3d` with ``nan_policy="omit"`` (any nd on 5-D views: 1-d/2-d omit runs here too).
max3d_omit = _omit_variant(max3d)
#: :func:`adaptive_max` with ``nan_policy="omit"``.
adaptive_max_omit = _omit_variant(adaptive_max)


@cuda.jit
def avg_omit(x, grad, out, cl, backward, sd, ed, sh, eh, sw, ew, full_d, full_h, full_w, in_d, in_h, in_w,
             override, adaptive, kd, kh, kw, zero):
    """``nan_policy="omit"`` average over windows ``[s, e)`` per dimension: one thread per output.

    The windows are given as in-range cells: a pooling window's span clipped to the
    input on the host, or an adaptive bin. The sum skips NaN cells, in scan order
    from +0.0 (the same bits as adding +0.0 in their place, the CPU's way), and
    counts the valid cells. The output is ``sum / divisor``, or with ``backward``
    the share ``grad[o] / divisor`` that :func:`avg_gather_omit` spreads (the
    same divisor, written once for both). The divisor
    (:func:`poolkit.geometry.check_nan_policy`):

    * ``override`` when not 0 (pooling only);
    * ``adaptive`` and no cell of the bin left out: the bin sizes ``kd``, ``kh``,
      ``kw`` (``x``'s dtype) one after the other, as :func:`adaptive_avg` divides;
    * otherwise ``valid`` plus the padding cells counted,
      ``full_d*full_h*full_w - in_d*in_h*in_w`` (int64 tables of
      :func:`poolkit.geometry.avg_divisor_table` with and without count_include_pad;
      the same tables for adaptive pooling: 0), rounded to ``out``'s dtype by storing
      it in the output cell and reading it back (as the CPU's divisor array). 0/0 is
      NaN (no valid cell, no padding).

    ``grad`` is read only with ``backward``, ``kd``/``kh``/``kw`` only with
    ``adaptive`` (else any array of the right type).
    """
    i = cuda.grid(1)
    N, C, _, _, _ = shape5(x, cl)
    _, _, OD, OH, OW = shape5(out, cl)
    if i >= N * C * OD * OH * OW:
        return
    n, c, od, oh, ow = unravel5(i, C, OD, OH, OW, cl)
    s = zero
    valid = 0
    for id_ in range(sd[od], ed[od]):
        for ih in range(sh[oh], eh[oh]):
            for iw in range(sw[ow], ew[ow]):
                v = load5(x, n, c, id_, ih, iw, cl)
                if v == v:
                    s += v
                    valid += 1
    if backward:
        s = load5(grad, n, c, od, oh, ow, cl)
    if adaptive and valid == (ed[od] - sd[od]) * (eh[oh] - sh[oh]) * (ew[ow] - sw[ow]):
        store5(out, n, c, od, oh, ow, cl, s / kd[od] / kh[oh] / kw[ow])
        return
    d = override
    if d == 0:
        d = valid + (full_d[od] * full_h[oh] * full_w[ow] - in_d[od] * in_h[oh] * in_w[ow])
    store5(out, n, c, od, oh, ow, cl, d)  # the divisor in out's dtype
    store5(out, n, c, od, oh, ow, cl, s / load5(out, n, c, od, oh, ow, cl))


@cuda.jit
def avg_gather_omit(share, x, gx, cl, lo_d, hi_d, lo_h, hi_h, lo_w, hi_w, zero):
    """``nan_policy="omit"`` average backward as a gather: one thread per input cell, no atomics.

    A NaN cell of ``x`` gets 0 (it took no part); a valid one adds ``share[o]``
    (:func:`avg_omit` with ``backward``: ``grad[o]`` over the forward's divisor) over
    its covering windows in increasing order.
    """
    i = cuda.grid(1)
    N, C, D, H, W = shape5(gx, cl)
    if i >= N * C * D * H * W:
        return
    n, c, id_, ih, iw = unravel5(i, C, D, H, W, cl)
    s = zero
    v = load5(x, n, c, id_, ih, iw, cl)
    if v == v:
        for od in range(lo_d[id_], hi_d[id_]):
            for oh in range(lo_h[ih], hi_h[ih]):
                for ow in range(lo_w[iw], hi_w[iw]):
                    s += load5(share, n, c, od, oh, ow, cl)
    store5(gx, n, c, id_, ih, iw, cl, s)


#: ``ND_KERNELS[name]`` -> the ``@cuda.jit`` dispatcher (notebooks show ``.py_func``).
ND_KERNELS = {
    "max3d": max3d, "avg3d": avg3d, "adaptive_max": adaptive_max, "adaptive_avg": adaptive_avg,
    "max_gather": max_gather, "avg_gather": avg_gather, "unpool_scatter": unpool_scatter,
    "index_gather": index_gather, "ewise": ewise, "copy_5d": copy_5d,
    "max3d_omit": max3d_omit, "adaptive_max_omit": adaptive_max_omit, "avg_omit": avg_omit,
    "avg_gather_omit": avg_gather_omit,
}
