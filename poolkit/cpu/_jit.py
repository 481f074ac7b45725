"""The Numba pieces every CPU kernel shares: the serial/parallel twin compiler and the max step.

One place per rule: :func:`tap_range` is the geometry's in-range tap rule
compiled, :func:`vmax` is the NaN-aware max scan step of every CPU max
kernel (2-d and n-d; ties keep the first maximum, the last NaN wins, bit for bit as
PyTorch), and :func:`take_max` is the same step carrying the index. Kernel modules
(:mod:`.kernels2d`, :mod:`.kernels_nd`) import these; host code never does.
"""
from __future__ import annotations

import types

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types as nbtypes
from numba.extending import intrinsic

from .. import geometry as G

__all__ = ["njit_pair", "omit_variant", "select", "valid_bit", "vmax", "take_max", "take_max_next",
           "vmax_omit", "take_max_omit", "take_max_next_omit", "tap_range", "chunk", "sweep_add", "add_valid",
           "sweep_add_omit", "omit_row", "add_valid_scalar", "omit_mean"]

#: A window's in-range taps ``[j0, j1)``: :func:`poolkit.geometry.tap_range` itself,
#: compiled (one rule for the reference, the CPU and the GPU kernels).
tap_range = njit(inline="always")(G.tap_range)


def njit_pair(fn, **options):
    """Compile ``fn`` twice: serial and parallel (same source), cached on disk.

    Numba's on-disk cache keys entries by function name, signature and bytecode,
    not by the ``parallel`` flag, so the serial twin is a clone with its own
    ``__qualname__``; otherwise one twin would load the other's machine code.
    ``options`` go to both (e.g. ``error_model="numpy"``: x / 0 is inf or NaN, not an exception).
    The cache entries are also keyed by this module's source (see ``poolkit.cpu.ops.HELPERS``).
    """
    clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                               fn.__defaults__, fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + "_serial"
    clone.__doc__ = fn.__doc__
    serial = njit(cache=True, nogil=True, **options)(clone)
    parallel = njit(cache=True, nogil=True, parallel=True, **options)(fn)
    return serial, parallel


def _renamed(fn, globals_, suffix):
    clone = types.FunctionType(fn.__code__, globals_, fn.__name__ + suffix, fn.__defaults__,
                               fn.__closure__)
    clone.__qualname__ = fn.__qualname__ + suffix
    clone.__doc__ = fn.__doc__
    return clone


def omit_variant(fn):
    """``fn``'s own source with the NaN-skipping max steps: ``nan_policy="omit"``.

    The clone sees a copy of its module's globals in which :func:`vmax` and
    :func:`take_max` (and :func:`take_max_next`) are :func:`vmax_omit` and
    :func:`take_max_omit` (:func:`take_max_next_omit`); the module's
    inline helpers (``_sweep_max`` and so on) are cloned into that copy as well, so
    every step they take is the omit one. One source, two rules: the omit kernels
    cannot drift from the propagate ones. Renamed (``*_omit``) so that Numba's
    on-disk cache keeps the two apart, as :func:`njit_pair` does for its twins.
    """
    g = dict(fn.__globals__)
    g.update(vmax=vmax_omit, take_max=take_max_omit, take_max_next=take_max_next_omit)
    for name, value in list(g.items()):
        py = getattr(value, "py_func", None)
        if py is not None and py.__module__ == fn.__module__:
            options = {k: v for k, v in value.targetoptions.items() if k != "nopython"}
            g[name] = njit(**options)(_renamed(py, g, "_omit"))
    return _renamed(fn, g, "_omit")




# then reduce KW columns of ``tmp`` into the output row (pass 2: from L1). Pass 1
# never branches; pass 2 needs no bounds checks because ``tmp`` is padded with the
# identity (-inf / min int for max, 0 for sum) and long enough for ceil_mode's
# overhang. Max values are exactly the same in any order; sums are added column
# by column (sum over kw of the sum over kh), see ``avg_pool2d``'s notes.

@intrinsic
def select(typingctx, cond, a, b):
    """``a if cond else b`` as one LLVM ``select`` instruction, never a branch."""
    if not (isinstance(cond, nbtypes.Boolean) and a == b):
        return None

    def codegen(context, builder, signature, args):
        return builder.select(args[0], args[1], args[2])
    return a(cond, a, b), codegen


@intrinsic
def valid_bit(typingctx, v):
    """1 if the float ``v`` is not NaN, else 0, as an int64 decided on ``v``'s bits.

    A ``nan_policy="omit"`` count in a scalar loop. ``select(v == v, 1, 0)`` beside
    the sum's ``select(v == v, v, 0)`` shares its compare, and x86 code generation
    then turns one of the two into a branch, mispredicted at every random NaN (4-5x
    slower at 30% NaN). An integer compare of the bits (``|bits| <= bits of inf``)
    is a different condition, and its ``setcc`` never branches.
    """
    if not isinstance(v, nbtypes.Float):
        return None
    width = v.bitwidth
    inf_bits = 0x7F800000 if width == 32 else 0x7FF0000000000000

    def codegen(context, builder, signature, args):
        it = ir.IntType(width)
        magnitude = builder.and_(builder.bitcast(args[0], it), ir.Constant(it, (1 << (width - 1)) - 1))
        return builder.zext(builder.icmp_unsigned("<=", magnitude, ir.Constant(it, inf_bits)), ir.IntType(64))
    return nbtypes.int64(v), codegen


@njit(inline="always")
def vmax(v, a):
    # One scan step of a NaN-aware max: candidate ``v`` (later in scan order)
    # against the running maximum ``a``. ``v`` wins if it is larger or NaN, as in
    # PyTorch's kernels: ties keep the first maximum (+0.0 before -0.0 stays +0.0)
    # and of several NaNs the last one is kept, bit for bit. Combining partial
    # results this way (earlier on the left) gives the same answer in any
    # grouping, which is what lets the kernels below sweep rows first.
    #
    # How it is written matters. Python's ``v if v > a or v != v else a`` is
    # lowered to branches; a single ``select(wins, v, a)`` is no better: in a loop
    # ``t[i] = vmax(x[i], t[i])`` LLVM turns a store of a select between a new
    # value and the value loaded from the same place into a *masked store*
    # (``vmaskmovps``), microcoded on AMD Zen, which made these loops 2-5x
    # slower. Nested selects (NaN case, ordered case; the shape of NumPy's own
    # ``maximum``) store a blend of blends, which stays a plain store. Integers:
    # the NaN tests fold away and LLVM emits ``vpmaxs*``.
    return select((a != a) | (v != v), select(v != v, v, a), select(a >= v, a, v))


@njit(inline="always")
def take_max(v, a, g, flat):
    # ``vmax`` with the index: the running (value ``a``, index ``g``) takes the
    # candidate ``v`` and its flat index ``flat`` where ``v`` wins, so the index
    # names the first maximum or the last NaN, as PyTorch's. ``g < 0``: no cell
    # seen yet (needed for integer inputs equal to the identity; ``vmax`` gives
    # ``v`` then, since ``a`` is still the identity). The index is a bit-mask
    # select, for the same masked-store reason as in ``vmax``.
    m = -type(g)((v > a) | (v != v) | (g < 0))  # all ones where v wins, in g's width
    return vmax(v, a), (flat & m) | (g & ~m)


@njit(inline="always")
def take_max_next(v, a, g, flat):
    # ``take_max`` once the window's first cell has been taken (``g`` is an index):
    # for kernels that start each window from its first in-range cell instead of
    # from the identity, and so need no ``g < 0`` test per step.
    m = -type(g)((v > a) | (v != v))
    return vmax(v, a), (flat & m) | (g & ~m)


@njit(inline="always")
def vmax_omit(v, a):
    # ``nan_policy="omit"``: a NaN candidate never beats a number, and a NaN running
    # value (the kernels start from NaN, "no valid cell yet") always loses to the
    # candidate, NaN or not; ties keep the first maximum. So a window with a valid
    # cell gives its first valid maximum, and a window with none gives what
    # ``vmax`` gives there: its last NaN, bit for bit. Like ``vmax`` it is
    # associative with earlier partial results on the left, so the separable
    # kernels give the plain scan's answer. A starting NaN is an identity on the
    # left only: a NaN *after* the window's cells would win, so the kernels never
    # scan padding past a row's end (see ``_sweep_max``). Written in ``vmax``'s
    # shape (a blend of blends: no masked stores), with the NaN case turned round.
    return select((a != a) | (v != v), select(a != a, v, a), select(a >= v, a, v))


@njit(inline="always")
def take_max_omit(v, a, g, flat):
    # ``vmax_omit`` with the index: the first valid maximum's; a window with no
    # valid cell gets its last in-range cell's (all NaN: propagate's index).
    m = -type(g)((v > a) | (a != a) | (g < 0))
    return vmax_omit(v, a), (flat & m) | (g & ~m)


@njit(inline="always")
def take_max_next_omit(v, a, g, flat):
    # ``take_max_next`` under omit: ``take_max_omit`` without the ``g < 0`` test.
    m = -type(g)((v > a) | (a != a))
    return vmax_omit(v, a), (flat & m) | (g & ~m)


# ---------------------------------------------------------------- shared steps of the average kernels
@njit(inline="always")
def chunk(i, nchunks, total):
    # Piece ``i`` of ``nchunks`` of ``range(total)``: kernels with scratch rows run their
    # parallel loop over pieces and allocate the scratch once per piece.
    return i * total // nchunks, (i + 1) * total // nchunks


@njit(inline="always")
def sweep_add(acc, t, r, OW, SW, KW):
    # Add row ``r`` of the 2-D array ``t`` (one window row) to every output of the
    # row, terms in kw order: acc[ow] += t[r, ow*SW] + ... + t[r, ow*SW + KW-1],
    # one term at a time, so a window is summed in PyTorch's scan order (row by
    # row) and the result is bitwise identical. Common shapes get literal offsets
    # (vectorised); 2-D indexing avoids creating a row view per call.
    if SW == 2 and KW == 2:
        for ow in range(OW):
            acc[ow] = (acc[ow] + t[r, 2 * ow]) + t[r, 2 * ow + 1]
    elif SW == 2 and KW == 3:
        for ow in range(OW):
            acc[ow] = ((acc[ow] + t[r, 2 * ow]) + t[r, 2 * ow + 1]) + t[r, 2 * ow + 2]
    elif SW == 1 and KW == 3:
        for ow in range(OW):
            acc[ow] = ((acc[ow] + t[r, ow]) + t[r, ow + 1]) + t[r, ow + 2]
    elif SW == 1 and KW == 2:
        for ow in range(OW):
            acc[ow] = (acc[ow] + t[r, ow]) + t[r, ow + 1]
    elif SW == 3 and KW == 3:
        for ow in range(OW):
            acc[ow] = ((acc[ow] + t[r, 3 * ow]) + t[r, 3 * ow + 1]) + t[r, 3 * ow + 2]
    elif SW == 4 and KW == 4:
        for ow in range(OW):
            acc[ow] = (((acc[ow] + t[r, 4 * ow]) + t[r, 4 * ow + 1]) + t[r, 4 * ow + 2]) + t[r, 4 * ow + 3]
    else:
        for ow in range(OW):
            v = acc[ow]
            for kw in range(KW):
                v += t[r, ow * SW + kw]
            acc[ow] = v


@njit(inline="always")
def add_valid(acc, cnt, v, zero, czero, one):
    # One ``nan_policy="omit"`` term: a NaN adds +0.0 to the sum (which changes no sum,
    # bit for bit: a running sum from +0.0 is never -0.0) and 0 to the count.
    return acc + select(v == v, v, zero), cnt + select(v == v, one, czero)


@njit(inline="always")
def sweep_add_omit(acc, cnt, t, r, OW, SW, KW, zero, czero, one):
    # ``sweep_add`` over the valid cells only, counting them in ``cnt`` (same dtype:
    # the sums and the counts vectorise together). Terms in kw order, as ``sweep_add``.
    if SW == 2 and KW == 2:
        for ow in range(OW):
            a, c = add_valid(acc[ow], cnt[ow], t[r, 2 * ow], zero, czero, one)
            acc[ow], cnt[ow] = add_valid(a, c, t[r, 2 * ow + 1], zero, czero, one)
    elif SW == 1 and KW == 3:
        for ow in range(OW):
            a, c = add_valid(acc[ow], cnt[ow], t[r, ow], zero, czero, one)
            a, c = add_valid(a, c, t[r, ow + 1], zero, czero, one)
            acc[ow], cnt[ow] = add_valid(a, c, t[r, ow + 2], zero, czero, one)
    elif SW == 2 and KW == 3:
        for ow in range(OW):
            a, c = add_valid(acc[ow], cnt[ow], t[r, 2 * ow], zero, czero, one)
            a, c = add_valid(a, c, t[r, 2 * ow + 1], zero, czero, one)
            acc[ow], cnt[ow] = add_valid(a, c, t[r, 2 * ow + 2], zero, czero, one)
    else:  # a scalar inner loop: count with ``valid_bit`` (two selects on one compare become a branch)
        for ow in range(OW):
            a = acc[ow]
            k = 0
            for kw in range(KW):
                a, k = add_valid_scalar(a, k, t[r, ow * SW + kw], zero)
            acc[ow] = a
            cnt[ow] += k  # exact: k <= KW



@njit(inline="always")
def omit_row(src, Z, R, r, valid, OW, SW, KW, uPW, zero, one, czero):
    # The ``nan_policy="omit"`` averages with overlapping (or wide) windows read each
    # cell several times, so each input row ``src`` is prepared once: row ``r`` of
    # ``Z``, its copy with NaN as +0.0 (cells at ``uPW + iw``; the pads stay 0), which
    # the propagate sweeps (``sweep_add``) then sum; and row ``r`` of ``R``, each output
    # column's count of valid cells in this row, integers (exact in any order) that
    # the kernels add over a window's rows. ``valid`` is a (1, T) scratch row, pads 0.
    for iw in range(np.uint64(src.shape[0])):
        v = src[iw]
        Z[r, uPW + iw] = select(v == v, v, zero)
        valid[0, uPW + iw] = select(v == v, one, czero)
    row = R[r]
    row[:] = czero
    sweep_add(row, valid, 0, OW, SW, KW)


@njit(inline="always")
def rows_have_nan(a, r0, r1):
    # Whether rows ``r0 .. r1-1`` of the 2-D array ``a`` hold a NaN: per row one
    # vectorised OR of compares, stopping after the first row that has one. The
    # ``nan_policy="omit"`` averages sum NaN-free planes with the propagate sweeps
    # (without NaN the two policies agree bit for bit): ``avg_omit_nchw`` and
    # ``avg3d_omit_cf`` ask it of a plane's first row before they try (then they look
    # at the sums), ``adaptive_avg_omit_cf`` of a whole plane first. At 30% random NaN
    # the answer comes in the first row.
    for r in range(r0, r1):
        m = False
        for j in range(a.shape[1]):
            m |= a[r, j] != a[r, j]
        if m:
            return True
    return False


@njit(inline="always")
def add_valid_scalar(s, k, v, zero):
    # ``add_valid`` for scalar chains: the count is an int64 from ``valid_bit``
    # (a float count's select would share the sum's compare and become a branch).
    return s + select(v == v, v, zero), k + valid_bit(v)


@njit(inline="always")
def omit_mean(s, k, L, d0, d1, d2):
    # An "omit" adaptive mean: the valid cells' sum over their count (cast to the
    # sum's dtype) if a cell was lost, else the propagate divisions (so NaN-free
    # data gives the propagate result bit for bit).
    if k < L:
        return s / type(s)(k)
    return s / d0 / d1 / d2
