"""Index arithmetic on 5-D views in either layout, written once as inline device functions.

The kernels of :mod:`poolkit.gpu.kernels_nd` work on 5-D views whose channel axis
is second (channels-first, ``(N, C, D, H, W)``) or last (channels-last,
``(N, D, H, W, C)``), chosen by a runtime flag ``cl``. These helpers take the
logical coordinates ``(n, c, d, h, w)`` and the flag, and do the layout's part:

* :func:`shape5` -- ``(N, C, D, H, W)`` of a view;
* :func:`unravel5` -- a flat index in *memory order* (channels-last: ``c`` fastest,
  so a warp's accesses are coalesced) to ``(n, c, d, h, w)``;
* :func:`unravel3` -- a flat spatial index (as argmax indices store it) to ``(d, h, w)``;
* :func:`load5` / :func:`store5` -- read or write the element at ``(n, c, d, h, w)``;
  :func:`store5_argmax` writes a maximum and, if wanted, its index.

``inline="always"`` inlines them at Numba's IR level: the PTX has no call, and
the same instructions as the arithmetic written out in each kernel.
``from numba import cuda`` stays at module level so the CUDA simulator swaps it.
"""
from numba import cuda

__all__ = ["shape5", "unravel5", "unravel3", "load5", "store5", "store5_argmax"]


@cuda.jit(device=True, inline="always")
def shape5(a, cl):
    """``(N, C, D, H, W)`` of the 5-D view ``a`` (channels-last if ``cl``)."""
    # One tuple, built after the branch: returning a tuple from each branch makes LLVM
    # merge whole tuples and lose the div/rem pairing of the unravelling (~200 more
    # PTX instructions per kernel); scalars merged per branch give the written-out PTX.
    if cl:
        C = a.shape[4]
        D, H, W = a.shape[1], a.shape[2], a.shape[3]
    else:
        C = a.shape[1]
        D, H, W = a.shape[2], a.shape[3], a.shape[4]
    return a.shape[0], C, D, H, W


@cuda.jit(device=True, inline="always")
def unravel5(i, C, D, H, W, cl):
    """``(n, c, d, h, w)`` of the flat index ``i`` in the memory order of the layout."""
    if cl:
        c = i % C
        t = i // C
        w = t % W
        t = t // W
        h = t % H
        t = t // H
        d = t % D
        n = t // D
    else:
        w = i % W
        t = i // W
        h = t % H
        t = t // H
        d = t % D
        t = t // D
        c = t % C
        n = t // C
    return n, c, d, h, w


@cuda.jit(device=True, inline="always")
def unravel3(f, H, W):
    """``(d, h, w)`` of the flat spatial index ``f = (d * H + h) * W + w``."""
    w = f % W
    t = f // W
    h = t % H
    d = t // H
    return d, h, w


@cuda.jit(device=True, inline="always")
def load5(a, n, c, d, h, w, cl):
    """The element of ``a`` at logical ``(n, c, d, h, w)``."""
    return a[n, d, h, w, c] if cl else a[n, c, d, h, w]


@cuda.jit(device=True, inline="always")
def store5(a, n, c, d, h, w, cl, v):
    """``a[n, c, d, h, w] = v`` at the logical position (cast to ``a``'s dtype)."""
    if cl:
        a[n, d, h, w, c] = v
    else:
        a[n, c, d, h, w] = v


@cuda.jit(device=True, inline="always")
def store5_argmax(out, idx, want_idx, n, c, d, h, w, cl, m, mi):
    """``out[n, c, d, h, w] = m`` and, if ``want_idx``, ``idx[n, c, d, h, w] = mi``."""
    # One layout branch around both writes (two store5 calls would test ``cl`` twice).
    if cl:
        out[n, d, h, w, c] = m
        if want_idx:
            idx[n, d, h, w, c] = mi
    else:
        out[n, c, d, h, w] = m
        if want_idx:
            idx[n, c, d, h, w] = mi
