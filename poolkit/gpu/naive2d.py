"""The naive 2-D pooling kernels (lesson 05): one thread per output element.

Thread ``i = blockIdx.x * blockDim.x + threadIdx.x`` turns its global index into
``(n, c, oh, ow)`` (NCHW) or ``(n, oh, ow, c)`` (NHWC), walks its window in global
memory and writes one value. Easy to read and already correct; in NHWC its loads
are even coalesced (neighbouring threads read neighbouring channels). The
optimized kernels of :mod:`poolkit.gpu.tiled2d` are what lesson 06 makes of them.

Semantics are those of :mod:`poolkit.reference`: the max step is
:func:`poolkit.gpu.rules.max_wins` (first maximum wins ties, NaN propagates;
:func:`~poolkit.gpu.rules.max_index_wins` with indices, flat ``ih * W + iw`` per
plane); ``avg`` sums in the input dtype in scan order and divides once by a
divisor of the input dtype. Taps outside the input are padding and are skipped.
These kernels visit every tap of a window; a window far larger than the input
(:func:`poolkit.geometry.large_window`) runs on :func:`poolkit.gpu.kernels_nd.max3d` /
:func:`~poolkit.gpu.kernels_nd.avg3d` instead, which clip the taps to the input.

Kernels compile lazily, on first launch, for the argument types they see.
"""
from numba import cuda

from .rules import max_index_wins, max_wins

__all__ = ["max_nchw_naive", "max_idx_nchw_naive", "avg_nchw_naive",
           "max_nhwc_naive", "max_idx_nhwc_naive", "avg_nhwc_naive"]


@cuda.jit
def max_nchw_naive(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """One thread per output element of an NCHW max pool (global-memory reads).

    Thread ``i = blockIdx.x * blockDim.x + threadIdx.x`` computes
    ``out.flat[i]``: it unravels ``i`` into ``(n, c, oh, ow)`` (``ow`` fastest, like
    the memory order), then scans its window row by row. Taps outside the input
    are padding and never win. Threads past the end of ``out`` do nothing.
    """
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    m = init
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, c, ih, iw]
                    if max_wins(v, m):  # larger, or NaN: first max wins ties; NaN propagates
                        m = v
    out[n, c, oh, ow] = m


@cuda.jit
def max_idx_nchw_naive(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """Like :func:`max_nchw_naive`, also writing the flat ``ih * W + iw`` of the max."""
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    m = init
    mi = -1
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, c, ih, iw]
                    # mi < 0: the first real cell always counts (an all -inf window)
                    if max_index_wins(v, m, mi):
                        m = v
                        mi = ih * W + iw
    out[n, c, oh, ow] = m
    idx[n, c, oh, ow] = mi


@cuda.jit
def avg_nchw_naive(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero):
    """One thread per output element of an NCHW average pool.

    Sums the in-bounds cells in the input dtype in scan order, then divides by
    ``override`` (when not 0: PyTorch takes a negative one too) or
    ``div_h[oh] * div_w[ow]`` (from geometry's table).
    """
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH = out.shape[2]
    OW = out.shape[3]
    if i >= N * C * OH * OW:
        return
    ow = i % OW
    t = i // OW
    oh = t % OH
    t = t // OH
    c = t % C
    n = t // C
    s = zero
    for kh in range(KH):
        ih = oh * SH - PH + kh
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw
                if iw >= 0 and iw < W:
                    s += x[n, c, ih, iw]
    d = override if override != 0 else div_h[oh] * div_w[ow]
    out[n, c, oh, ow] = s / d


@cuda.jit
def max_nhwc_naive(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """One thread per output element of an NHWC max pool.

    ``c`` is the fastest index, so the 32 threads of a warp read 32 neighbouring
    channels of the same pixel: coalesced loads without any effort.
    """
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    m = init
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, ih, iw, c]
                    if max_wins(v, m):
                        m = v
    out[n, oh, ow, c] = m


@cuda.jit
def max_idx_nhwc_naive(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    """Like :func:`max_nhwc_naive`, also writing the flat ``ih * W + iw`` of the max."""
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    m = init
    mi = -1
    for kh in range(KH):
        ih = oh * SH - PH + kh * DH
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw * DW
                if iw >= 0 and iw < W:
                    v = x[n, ih, iw, c]
                    if max_index_wins(v, m, mi):
                        m = v
                        mi = ih * W + iw
    out[n, oh, ow, c] = m
    idx[n, oh, ow, c] = mi


@cuda.jit
def avg_nhwc_naive(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override, zero):
    """One thread per output element of an NHWC average pool."""
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH = out.shape[1]
    OW = out.shape[2]
    if i >= N * OH * OW * C:
        return
    c = i % C
    t = i // C
    ow = t % OW
    t = t // OW
    oh = t % OH
    n = t // OH
    s = zero
    for kh in range(KH):
        ih = oh * SH - PH + kh
        if ih >= 0 and ih < H:
            for kw in range(KW):
                iw = ow * SW - PW + kw
                if iw >= 0 and iw < W:
                    s += x[n, ih, iw, c]
    d = override if override != 0 else div_h[oh] * div_w[ow]
    out[n, oh, ow, c] = s / d
