"""CPU pooling kernels compiled with Numba: serial ``@njit`` and ``prange``-parallel.

Each kernel is written once as a plain Python function and compiled twice:
``njit(parallel=False)`` (``prange`` behaves as ``range``) and
``njit(parallel=True)`` (the outer ``prange`` is split across threads). Kernels
compile lazily on first call and are cached on disk (``cache=True``).

Why these kernels are fast (pooling is memory-bound: the goal is to read each
input byte once and keep everything else in L1):

* **NCHW** -- parallel over (n, c) planes. For each output row the kernel walks
  the window row by row and, for each kernel column ``kw``, sweeps the *whole
  output row* at once: ``out[ow] = max(out[ow], x[ih, ow*s + off])``. The bounds
  for ``ow`` are computed once per ``kw``, so the inner loop has no branches
  except the NaN-aware select, and LLVM vectorises it (strided loads).
* **NHWC** -- parallel over (n, output row). For each output cell the innermost
  loop runs over channels, which are contiguous: a plain vector loop.
* ``max`` updates with ``v > m or v != v``: the first maximum wins ties and
  NaN propagates (the last NaN's index is kept), exactly as PyTorch.
* ``avg`` sums in the input dtype in scan order and divides by a divisor of the
  same dtype, as PyTorch's CPU kernels do.
* No ``fastmath``: it would let LLVM assume no NaN/inf.

The public entry points :func:`max_pool2d` and :func:`avg_pool2d` validate
arguments with :mod:`poolkit.geometry` before any kernel runs.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import geometry as G

__all__ = ["max_pool2d", "avg_pool2d", "KERNELS"]


def _njit_pair(fn):
    """Compile ``fn`` twice: serial and parallel (same source)."""
    serial = njit(cache=True, nogil=True)(fn)
    parallel = njit(cache=True, nogil=True, parallel=True)(fn)
    return serial, parallel


# ---------------------------------------------------------------- NCHW kernels
def _max_nchw(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            for ow in range(OW):
                out[n, c, oh, ow] = init
            hs = oh * SH - PH
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    off = kw * DW - PW
                    # ow range with 0 <= ow*SW + off < W
                    lo = 0 if off >= 0 else (-off + SW - 1) // SW
                    hi = (W - 1 - off) // SW + 1 if W - 1 - off >= 0 else 0
                    if hi > OW:
                        hi = OW
                    for ow in range(lo, hi):
                        v = x[n, c, ih, ow * SW + off]
                        if v > out[n, c, oh, ow] or v != v:
                            out[n, c, oh, ow] = v


def _max_idx_nchw(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            for ow in range(OW):
                out[n, c, oh, ow] = init
                idx[n, c, oh, ow] = -1
            hs = oh * SH - PH
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    off = kw * DW - PW
                    lo = 0 if off >= 0 else (-off + SW - 1) // SW
                    hi = (W - 1 - off) // SW + 1 if W - 1 - off >= 0 else 0
                    if hi > OW:
                        hi = OW
                    for ow in range(lo, hi):
                        iw = ow * SW + off
                        v = x[n, c, ih, iw]
                        # idx < 0: first cell seen (needed for integer inputs equal to init)
                        if v > out[n, c, oh, ow] or v != v or idx[n, c, oh, ow] < 0:
                            out[n, c, oh, ow] = v
                            idx[n, c, oh, ow] = ih * W + iw


def _avg_nchw(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override):
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    for p in prange(N * C):
        n = p // C
        c = p - n * C
        for oh in range(OH):
            for ow in range(OW):
                out[n, c, oh, ow] = 0
            hs = oh * SH - PH
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
                        out[n, c, oh, ow] += x[n, c, ih, ow * SW + off]
            if override > 0:
                for ow in range(OW):
                    out[n, c, oh, ow] = out[n, c, oh, ow] / override
            else:
                for ow in range(OW):
                    out[n, c, oh, ow] = out[n, c, oh, ow] / (div_h[oh] * div_w[ow])


# ---------------------------------------------------------------- NHWC kernels
def _max_nhwc(x, out, SH, SW, PH, PW, DH, DW, KH, KW, init):
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, oh, ow, c] = init
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ws + kw * DW
                    if iw < 0 or iw >= W:
                        continue
                    for c in range(C):
                        v = x[n, ih, iw, c]
                        if v > out[n, oh, ow, c] or v != v:
                            out[n, oh, ow, c] = v


def _max_idx_nhwc(x, out, idx, SH, SW, PH, PW, DH, DW, KH, KW, init):
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, oh, ow, c] = init
                idx[n, oh, ow, c] = -1
            for kh in range(KH):
                ih = hs + kh * DH
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ws + kw * DW
                    if iw < 0 or iw >= W:
                        continue
                    for c in range(C):
                        v = x[n, ih, iw, c]
                        if v > out[n, oh, ow, c] or v != v or idx[n, oh, ow, c] < 0:
                            out[n, oh, ow, c] = v
                            idx[n, oh, ow, c] = ih * W + iw


def _avg_nhwc(x, out, SH, SW, PH, PW, KH, KW, div_h, div_w, override):
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    for q in prange(N * OH):
        n = q // OH
        oh = q - n * OH
        hs = oh * SH - PH
        for ow in range(OW):
            ws = ow * SW - PW
            for c in range(C):
                out[n, oh, ow, c] = 0
            for kh in range(KH):
                ih = hs + kh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = ws + kw
                    if iw < 0 or iw >= W:
                        continue
                    for c in range(C):
                        out[n, oh, ow, c] += x[n, ih, iw, c]
            d = override if override > 0 else div_h[oh] * div_w[ow]
            for c in range(C):
                out[n, oh, ow, c] = out[n, oh, ow, c] / d


#: ``KERNELS[(name, parallel)]`` -> compiled kernel; the notebooks inspect these.
KERNELS = {}
for _name, _fn in [
    ("max_nchw", _max_nchw), ("max_idx_nchw", _max_idx_nchw), ("avg_nchw", _avg_nchw),
    ("max_nhwc", _max_nhwc), ("max_idx_nhwc", _max_idx_nhwc), ("avg_nhwc", _avg_nhwc),
]:
    KERNELS[(_name, False)], KERNELS[(_name, True)] = _njit_pair(_fn)
del _name, _fn


# ---------------------------------------------------------------- public API
def _init_value(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(-np.inf)
    return dtype.type(np.iinfo(dtype).min)


def _prepare(x, op, layout, allow_int):
    x = G.as_native_array(x, op)
    channels_last, batched, spatial = G.check_input(x.shape, x.dtype, 2, layout, op, allow_int=allow_int)
    if not batched:
        x = x[None]
    return x, channels_last, batched, spatial


def _out_shape(x, g, channels_last):
    if channels_last:
        return (x.shape[0],) + g.out_size + (x.shape[-1],)
    return x.shape[:2] + g.out_size


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", parallel=True):
    """2-D max pooling on the CPU with Numba (NumPy in, NumPy out).

    Same arguments and results as :func:`poolkit.max_pool2d`; ``parallel=False``
    selects the serial kernel.

    See Also
    --------
    poolkit.reference.max_pool2d : the plain-loop specification.
    poolkit.gpu.max_pool2d : the CUDA twin.
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    x, cl, batched, spatial = _prepare(x, op, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.empty(_out_shape(x, g, cl), dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64) if return_indices else None
    if out.size:
        args = (*g.stride, *g.padding, *g.dilation, *g.kernel, _init_value(x.dtype))
        tag = "nhwc" if cl else "nchw"
        if return_indices:
            KERNELS[(f"max_idx_{tag}", bool(parallel))](x, out, idx, *args)
        else:
            KERNELS[(f"max_{tag}", bool(parallel))](x, out, *args)
    if not batched:
        out = out[0]
        idx = idx[0] if idx is not None else None
    return (out, idx) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW", parallel=True):
    """2-D average pooling on the CPU with Numba (NumPy in, NumPy out).

    Same arguments and results as :func:`poolkit.avg_pool2d`; ``parallel=False``
    selects the serial kernel.

    See Also
    --------
    poolkit.reference.avg_pool2d : the plain-loop specification.
    poolkit.gpu.avg_pool2d : the CUDA twin.
    """
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    x, cl, batched, spatial = _prepare(x, op, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    out = np.empty(_out_shape(x, g, cl), dtype=x.dtype)
    if out.size:
        div_h, div_w = (t.astype(x.dtype) for t in G.avg_divisor_table(g, count_include_pad))
        tag = "nhwc" if cl else "nchw"
        KERNELS[(f"avg_{tag}", bool(parallel))](
            x, out, *g.stride, *g.padding, *g.kernel, div_h, div_w, x.dtype.type(override))
    return out if batched else out[0]
