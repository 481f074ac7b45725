"""Reference pooling: plain Python loops, written to be read.

This module is the *specification*: every other backend (``poolkit.cpu``,
``poolkit.gpu``, ``poolkit.dask``) is tested against it. It is slow on purpose
-- one Python iteration per input cell read -- so use it on small arrays only.

The rules for window placement, output size and the average divisor come from
:mod:`poolkit.geometry`; the loops here only apply them.
"""
from __future__ import annotations

import numpy as np

from . import geometry as G

__all__ = ["max_pool2d", "avg_pool2d"]


def _prepare(x, op, nd, layout, allow_int):
    x = G.as_native_array(x, op)
    channels_last, batched, spatial = G.check_input(x.shape, x.dtype, nd, layout, op, allow_int=allow_int)
    if not batched:
        x = x[None]
    if channels_last:  # the reference works channels-first; view, no copy
        x = np.moveaxis(x, -1, 1)
    return x, channels_last, batched, spatial


def _finish(out, channels_last, batched):
    if channels_last:
        out = np.ascontiguousarray(np.moveaxis(out, 1, -1))
    return out if batched else out[0]


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW"):
    """2-D max pooling with plain loops (same arguments as :func:`poolkit.max_pool2d`).

    NaN is treated as larger than every number: a NaN in the window wins, and the
    index names the *last* NaN in scan order (PyTorch's ``val > max or isnan(val)``
    update). Among equal maxima the *first* in scan order wins.
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    x, cl, batched, (H, W) = _prepare(x, op, 2, layout, allow_int=True)
    g = G.make_geometry(op, (H, W), kernel_size, stride, padding, dilation, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = g.kernel, g.stride, g.padding, g.dilation
    OH, OW = g.out_size
    N, C = x.shape[:2]
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    idx = np.empty((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best, best_i = None, -1
                    for kh in range(KH):
                        ih = oh * SH - PH + kh * DH
                        if ih < 0 or ih >= H:
                            continue  # padding never wins a max
                        for kw in range(KW):
                            iw = ow * SW - PW + kw * DW
                            if iw < 0 or iw >= W:
                                continue
                            v = x[n, c, ih, iw]
                            if best is None or v > best or np.isnan(v):
                                best, best_i = v, ih * W + iw
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = best_i
    out = _finish(out, cl, batched)
    if return_indices:
        return out, _finish(idx, cl, batched)
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW"):
    """2-D average pooling with plain loops (same arguments as :func:`poolkit.avg_pool2d`).

    The sum is accumulated in the input dtype in scan order (row by row), then
    divided by the divisor from :func:`poolkit.geometry.avg_divisor_table`.
    """
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    x, cl, batched, (H, W) = _prepare(x, op, 2, layout, allow_int=False)
    g = G.make_geometry(op, (H, W), kernel_size, stride, padding, 1, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = g.kernel, g.stride, g.padding
    OH, OW = g.out_size
    div_h, div_w = G.avg_divisor_table(g, count_include_pad)
    N, C = x.shape[:2]
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    zero = x.dtype.type(0)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    total = zero
                    for kh in range(KH):
                        ih = oh * SH - PH + kh
                        if ih < 0 or ih >= H:
                            continue  # padding adds zero
                        for kw in range(KW):
                            iw = ow * SW - PW + kw
                            if 0 <= iw < W:
                                total = total + x[n, c, ih, iw]
                    divisor = override if override else div_h[oh] * div_w[ow]
                    out[n, c, oh, ow] = total / x.dtype.type(divisor)
    return _finish(out, cl, batched)
