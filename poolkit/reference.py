"""Reference pooling: plain Python loops, written to be read.

This module is the *specification*: every other backend (``poolkit.cpu``,
``poolkit.gpu``, ``poolkit.dask``) is tested against it. It is slow on purpose
-- one Python iteration per input cell read -- so use it on small arrays only.

The rules for window placement, output size and the average divisor come from
:mod:`poolkit.geometry`; the loops here only apply them.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from . import _layout as Lay
from . import geometry as G

#: The 40 operations, and the two loops lesson 09 shows (the specification of the backward passes).
__all__ = list(G.OPS) + ["scatter_indices", "avg_pool_nd_backward"]


def _prepare(x, op, nd, layout, allow_int):
    x, channels_last, batched, spatial = G.prepare_array(x, op, nd, layout, allow_int=allow_int)
    # the reference works channels-first; a view, no copy
    return Lay.channels_first(x, channels_last), channels_last, batched, spatial


def _finish(out, channels_last, batched):
    return Lay.unbatch(Lay.channels_last(out, channels_last), batched)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    """2-D max pooling with plain loops (same arguments as :func:`poolkit.max_pool2d`).

    NaN is treated as larger than every number: a NaN in the window wins, and the
    index names the *last* NaN in scan order (PyTorch's ``val > max or isnan(val)``
    update). Among equal maxima the *first* in scan order wins. With
    ``nan_policy="omit"`` NaN cells are skipped: a window with a valid cell gives its
    first valid maximum; a window with none gives what propagate gives there, its
    last NaN (bits included) and that cell's index.
    """
    op = "max_pool2d"
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
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
                            if best is None or v > best or (np.isnan(best) if omit else np.isnan(v)):
                                # propagate: NaN wins (the last NaN is kept); omit: NaN loses
                                # to a number, and anything replaces a NaN (so, with no valid
                                # cell, the last NaN is kept too)
                                best, best_i = v, ih * W + iw
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = best_i
    out = _finish(out, cl, batched)
    if return_indices:
        return out, _finish(idx, cl, batched)
    return out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW", nan_policy="propagate"):
    """2-D average pooling with plain loops (same arguments as :func:`poolkit.avg_pool2d`).

    The sum is accumulated in the input dtype in scan order (row by row), then
    divided by the divisor from :func:`poolkit.geometry.avg_divisor_table`. With
    ``nan_policy="omit"`` NaN cells are left out of the sum and of the divisor
    (:func:`poolkit.geometry.check_nan_policy` states the divisor).
    """
    op = "avg_pool2d"
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, (H, W) = _prepare(x, op, 2, layout, allow_int=False)
    g = G.make_geometry(op, (H, W), kernel_size, stride, padding, 1, ceil_mode)
    (KH, KW), (SH, SW), (PH, PW) = g.kernel, g.stride, g.padding
    OH, OW = g.out_size
    div_h, div_w = G.avg_divisor_table(g, count_include_pad)
    in_h, in_w = G.avg_divisor_table(g, False)  # the in-range cells of each window
    N, C = x.shape[:2]
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    zero = x.dtype.type(0)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    total, valid = zero, 0
                    # the rows and columns inside the input (padding adds zero), in scan order
                    for ih in G.window_range(oh, H, KH, SH, PH)[1]:
                        for iw in G.window_range(ow, W, KW, SW, PW)[1]:
                            v = x[n, c, ih, iw]
                            if omit and np.isnan(v):
                                continue  # a NaN cell is left out
                            total, valid = total + v, valid + 1
                    divisor = override if override else int(div_h[oh] * div_w[ow])
                    if omit and not override:  # the valid cells, and the padding cells counted
                        divisor = valid + divisor - int(in_h[oh] * in_w[ow])
                    out[n, c, oh, ow] = _divide(total, divisor)
    return _finish(out, cl, batched)


# =====================================================================================
# The rest of the family, for any number of spatial dimensions (1-d, 2-d, 3-d).
#
# The loops below are written once for ``nd`` spatial dimensions: an output cell is
# a tuple ``o`` of ``nd`` indices, a kernel tap a tuple ``t`` (``np.ndindex`` walks
# them in scan order: last dimension fastest), and the input cell a tap reads is
# ``o*s - p + t*d`` per dimension. Flat indices are per (spatial) plane/volume.
# Each backward is the plain chain rule of its forward, written as a *scatter*:
# every output cell hands its gradient to the input cells it read, in output scan
# order (this is also the order PyTorch's CPU kernels accumulate in).
# =====================================================================================



def _planes(x):
    """All ``(n, c)`` pairs of a channels-first array."""
    return itertools.product(range(x.shape[0]), range(x.shape[1]))


def _taps(o, g):
    """Input positions read by output cell ``o`` of geometry ``g`` (scan order), padding skipped.

    Per dimension the in-range taps come from :func:`poolkit.geometry.window_range`
    (arithmetic: a window of 10**8 taps over 8 cells costs 8 steps, not 10**8).
    """
    per_dim = [G.window_range(o[i], g.in_size[i], g.kernel[i], g.stride[i], g.padding[i],
                              g.dilation[i])[1] for i in range(g.nd)]
    return itertools.product(*per_dim)


def _bin_cells(o, ag):
    """Input positions in adaptive bin ``o`` of adaptive geometry ``ag`` (scan order)."""
    return itertools.product(*(range(*ag.bin(i, o[i])) for i in range(ag.nd)))


def _bin_size(ag, i, o):
    """The number of cells of bin ``o`` along dimension ``i``."""
    start, stop = ag.bin(i, o)
    return stop - start


def _max_step(best, best_i, v, i, omit):
    """One step of a max scan: the running ``(best, best_i)`` against cell ``i`` of value ``v``.

    ``"propagate"`` (PyTorch): ``v`` wins if it is larger or NaN, so a NaN wins and
    the last NaN is kept; ties keep the first maximum. ``"omit"``: a NaN never wins
    against a number, and anything wins against a NaN; so a window with a valid cell
    gives its first valid maximum, and a window with none gives its last NaN and that
    cell's index: what propagate gives there.
    """
    if best is None or v > best or (np.isnan(best) if omit else np.isnan(v)):
        return v, i
    return best, best_i


def _divide(total, divisor):
    """``total / divisor`` in ``total``'s dtype; 0/0 (an all-NaN window, omitted) is NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / total.dtype.type(divisor)


def _argmax(x, n, c, cells, spatial, omit=False):
    """Max and its flat index over ``cells``, in scan order (:func:`_max_step`)."""
    best, best_i = None, -1
    for pos in cells:
        best, best_i = _max_step(best, best_i, x[(n, c) + pos], int(np.ravel_multi_index(pos, spatial)),
                                 omit)
    return best, best_i


def _grad_prepare(grad_output, x, out_shape_cf, op, cl, batched):
    """Check ``grad_output`` against the forward output and return it channels-first, batched."""
    want = out_shape_cf
    if cl:
        want = (want[0],) + want[2:] + (want[1],)
    if not batched:
        want = want[1:]
    g = G.check_grad_output(grad_output, x, want, op)
    if not batched:
        g = g[None]
    return np.moveaxis(g, -1, 1) if cl else g


def _user_indices(indices, out_shape_cf, op, cl, batched, n_cells):
    """Check user-given indices (forward output's shape, values inside the plane)."""
    want = out_shape_cf
    if cl:
        want = (want[0],) + want[2:] + (want[1],)
    if not batched:
        want = want[1:]
    idx = G.check_indices(indices, want, op)
    if idx.size:
        G.check_index_range(idx.min(), idx.max(), n_cells, op)
    if not batched:
        idx = idx[None]
    return np.moveaxis(idx, -1, 1) if cl else idx


def scatter_indices(grad, idx, x_shape_cf, dtype):
    """Route each output gradient to the input cell its index names (output scan order)."""
    gx = np.zeros(x_shape_cf, dtype=dtype)
    spatial = x_shape_cf[2:]
    for n, c in _planes(gx):
        for o in np.ndindex(*grad.shape[2:]):
            pos = np.unravel_index(idx[(n, c) + o], spatial)
            gx[(n, c) + pos] += grad[(n, c) + o]
    return gx


# ------------------------------------------------------------------ max pooling
def _max_pool_nd(op, nd, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, layout,
                 nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=True)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    out = np.empty(x.shape[:2] + g.out_size, dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64)
    for n, c in _planes(x):
        for o in np.ndindex(*g.out_size):
            out[(n, c) + o], idx[(n, c) + o] = _argmax(x, n, c, _taps(o, g), spatial, omit)
    out = _finish(out, cl, batched)
    return (out, _finish(idx, cl, batched)) if return_indices else out


def _max_pool_nd_backward(op, nd, grad_output, x, kernel_size, stride, padding, dilation,
                          ceil_mode, return_indices, indices, layout, nan_policy):
    G.check_bool(return_indices, "return_indices", op)  # accepted so F's arguments pass unchanged
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, dilation, ceil_mode)
    out_shape = x.shape[:2] + g.out_size
    grad = _grad_prepare(grad_output, x, out_shape, op, cl, batched)
    if indices is None:  # the forward's argmax
        idx = np.empty(out_shape, dtype=np.int64)
        for n, c in _planes(x):
            for o in np.ndindex(*g.out_size):
                idx[(n, c) + o] = _argmax(x, n, c, _taps(o, g), spatial, omit)[1]
    else:
        idx = _user_indices(indices, out_shape, op, cl, batched, math.prod(spatial))
    return _finish(scatter_indices(grad, idx, x.shape, x.dtype), cl, batched)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", nan_policy="propagate"):
    """1-D max pooling with plain loops (same arguments as :func:`poolkit.max_pool1d`)."""
    return _max_pool_nd("max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices, layout, nan_policy)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    """3-D max pooling with plain loops (same arguments as :func:`poolkit.max_pool3d`)."""
    return _max_pool_nd("max_pool3d", 3, x, kernel_size, stride, padding, dilation, ceil_mode,
                        return_indices, layout, nan_policy)


def max_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCL",
                        nan_policy="propagate"):
    """Gradient of :func:`max_pool1d` w.r.t. ``x``: each output gradient goes to its argmax."""
    return _max_pool_nd_backward("max_pool1d_backward", 1, grad_output, x, kernel_size, stride,
                                 padding, dilation, ceil_mode, return_indices, indices, layout, nan_policy)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW",
                        nan_policy="propagate"):
    """Gradient of :func:`max_pool2d` w.r.t. ``x``: each output gradient goes to its argmax."""
    return _max_pool_nd_backward("max_pool2d_backward", 2, grad_output, x, kernel_size, stride,
                                 padding, dilation, ceil_mode, return_indices, indices, layout, nan_policy)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW",
                        nan_policy="propagate"):
    """Gradient of :func:`max_pool3d` w.r.t. ``x``: each output gradient goes to its argmax."""
    return _max_pool_nd_backward("max_pool3d_backward", 3, grad_output, x, kernel_size, stride,
                                 padding, dilation, ceil_mode, return_indices, indices, layout, nan_policy)


# ------------------------------------------------------------------ average pooling
def _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
               divisor_override, layout, nan_policy):
    count_include_pad = G.check_bool(count_include_pad, "count_include_pad", op)
    override = G.check_divisor_override(divisor_override, op)
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, padding, 1, ceil_mode)
    tables = G.avg_divisor_table(g, count_include_pad)
    inside = G.avg_divisor_table(g, False)

    def divisor(o, valid):
        """The divisor of output cell ``o`` whose window holds ``valid`` non-NaN cells."""
        if override:
            return override
        full = math.prod(int(tables[i][o[i]]) for i in range(nd))
        if not omit:
            return full
        return valid + full - math.prod(int(inside[i][o[i]]) for i in range(nd))

    def counted(v):
        """Whether cell value ``v`` enters the sum (all do, unless omitted as NaN)."""
        return not (omit and np.isnan(v))

    return x, cl, batched, g, divisor, counted


def _avg_pool_nd(op, nd, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                 divisor_override, layout, nan_policy):
    x, cl, batched, g, divisor, counted = _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode,
                                                     count_include_pad, divisor_override, layout,
                                                     nan_policy)
    out = np.empty(x.shape[:2] + g.out_size, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*g.out_size):
            total, valid = x.dtype.type(0), 0
            for pos in _taps(o, g):  # padding adds zero
                if counted(x[(n, c) + pos]):
                    total, valid = total + x[(n, c) + pos], valid + 1
            out[(n, c) + o] = _divide(total, divisor(o, valid))
    return _finish(out, cl, batched)


def avg_pool_nd_backward(op, nd, grad_output, x, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override, layout, nan_policy="propagate"):
    x, cl, batched, g, divisor, counted = _avg_setup(op, nd, x, kernel_size, stride, padding, ceil_mode,
                                                     count_include_pad, divisor_override, layout,
                                                     nan_policy)
    grad = _grad_prepare(grad_output, x, x.shape[:2] + g.out_size, op, cl, batched)
    gx = np.zeros(x.shape, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*g.out_size):
            cells = [pos for pos in _taps(o, g) if counted(x[(n, c) + pos])]
            share = _divide(grad[(n, c) + o], divisor(o, len(cells)))  # the same divisor as forward
            for pos in cells:  # an omitted NaN cell gets no gradient
                gx[(n, c) + pos] += share
    return _finish(gx, cl, batched)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", nan_policy="propagate"):
    """1-D average pooling with plain loops (same arguments as :func:`poolkit.avg_pool1d`)."""
    return _avg_pool_nd("avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode,
                        count_include_pad, None, layout, nan_policy)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW", nan_policy="propagate"):
    """3-D average pooling with plain loops (same arguments as :func:`poolkit.avg_pool3d`)."""
    return _avg_pool_nd("avg_pool3d", 3, x, kernel_size, stride, padding, ceil_mode,
                        count_include_pad, divisor_override, layout, nan_policy)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL",
                        nan_policy="propagate"):
    """Gradient of :func:`avg_pool1d`: each output spreads ``grad / divisor`` over its window."""
    return avg_pool_nd_backward("avg_pool1d_backward", 1, grad_output, x, kernel_size, stride,
                                padding, ceil_mode, count_include_pad, None, layout, nan_policy)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW",
                        nan_policy="propagate"):
    """Gradient of :func:`avg_pool2d`: each output spreads ``grad / divisor`` over its window."""
    return avg_pool_nd_backward("avg_pool2d_backward", 2, grad_output, x, kernel_size, stride,
                                padding, ceil_mode, count_include_pad, divisor_override, layout, nan_policy)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW",
                        nan_policy="propagate"):
    """Gradient of :func:`avg_pool3d`: each output spreads ``grad / divisor`` over its window."""
    return avg_pool_nd_backward("avg_pool3d_backward", 3, grad_output, x, kernel_size, stride,
                                padding, ceil_mode, count_include_pad, divisor_override, layout, nan_policy)


# ------------------------------------------------------------------ adaptive pooling
def _adaptive_max_nd(op, nd, x, output_size, return_indices, layout, nan_policy):
    return_indices = G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=True)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    out = np.empty(x.shape[:2] + ag.out_size, dtype=x.dtype)
    idx = np.empty(out.shape, dtype=np.int64)
    for n, c in _planes(x):
        for o in np.ndindex(*ag.out_size):
            out[(n, c) + o], idx[(n, c) + o] = _argmax(x, n, c, _bin_cells(o, ag), spatial, omit)
    out = _finish(out, cl, batched)
    return (out, _finish(idx, cl, batched)) if return_indices else out


def _adaptive_max_nd_backward(op, nd, grad_output, x, output_size, return_indices, indices, layout,
                              nan_policy):
    G.check_bool(return_indices, "return_indices", op)
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    out_shape = x.shape[:2] + ag.out_size
    grad = _grad_prepare(grad_output, x, out_shape, op, cl, batched)
    if indices is None:
        idx = np.empty(out_shape, dtype=np.int64)
        for n, c in _planes(x):
            for o in np.ndindex(*ag.out_size):
                idx[(n, c) + o] = _argmax(x, n, c, _bin_cells(o, ag), spatial, omit)[1]
    else:
        idx = _user_indices(indices, out_shape, op, cl, batched, math.prod(spatial))
    return _finish(scatter_indices(grad, idx, x.shape, x.dtype), cl, batched)


def _adaptive_avg_nd(op, nd, x, output_size, layout, nan_policy):
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    out = np.empty(x.shape[:2] + ag.out_size, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*ag.out_size):
            total, valid = x.dtype.type(0), 0
            for pos in _bin_cells(o, ag):
                if not (omit and np.isnan(x[(n, c) + pos])):
                    total, valid = total + x[(n, c) + pos], valid + 1
            if valid < math.prod(_bin_size(ag, i, o[i]) for i in range(nd)):
                total = _divide(total, valid)  # omit, some cell left out: one division by the count
            else:
                for i in range(nd):  # PyTorch divides by one bin size after the other
                    total = total / x.dtype.type(_bin_size(ag, i, o[i]))
            out[(n, c) + o] = total
    return _finish(out, cl, batched)


def _adaptive_avg_nd_backward(op, nd, grad_output, x, output_size, layout, nan_policy):
    omit = G.check_nan_policy(nan_policy, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    ag = G.make_adaptive_geometry(op, spatial, output_size)
    grad = _grad_prepare(grad_output, x, x.shape[:2] + ag.out_size, op, cl, batched)
    gx = np.zeros(x.shape, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*ag.out_size):
            share = grad[(n, c) + o]
            cells = [pos for pos in _bin_cells(o, ag) if not (omit and np.isnan(x[(n, c) + pos]))]
            if len(cells) < math.prod(_bin_size(ag, i, o[i]) for i in range(nd)):
                share = _divide(share, len(cells))  # as the forward: one division by the count
            else:
                for i in range(nd):
                    share = share / x.dtype.type(_bin_size(ag, i, o[i]))
            for pos in cells:
                gx[(n, c) + pos] += share
    return _finish(gx, cl, batched)


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL", nan_policy="propagate"):
    """1-D adaptive max pooling with plain loops (see :func:`poolkit.adaptive_max_pool1d`)."""
    return _adaptive_max_nd("adaptive_max_pool1d", 1, x, output_size, return_indices, layout,
                            nan_policy)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    """2-D adaptive max pooling with plain loops (see :func:`poolkit.adaptive_max_pool2d`)."""
    return _adaptive_max_nd("adaptive_max_pool2d", 2, x, output_size, return_indices, layout,
                            nan_policy)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    """3-D adaptive max pooling with plain loops (see :func:`poolkit.adaptive_max_pool3d`)."""
    return _adaptive_max_nd("adaptive_max_pool3d", 3, x, output_size, return_indices, layout,
                            nan_policy)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL", nan_policy="propagate"):
    """1-D adaptive average pooling with plain loops (see :func:`poolkit.adaptive_avg_pool1d`)."""
    return _adaptive_avg_nd("adaptive_avg_pool1d", 1, x, output_size, layout, nan_policy)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW", nan_policy="propagate"):
    """2-D adaptive average pooling with plain loops (see :func:`poolkit.adaptive_avg_pool2d`)."""
    return _adaptive_avg_nd("adaptive_avg_pool2d", 2, x, output_size, layout, nan_policy)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW", nan_policy="propagate"):
    """3-D adaptive average pooling with plain loops (see :func:`poolkit.adaptive_avg_pool3d`)."""
    return _adaptive_avg_nd("adaptive_avg_pool3d", 3, x, output_size, layout, nan_policy)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *,
                                 indices=None, layout="NCL", nan_policy="propagate"):
    """Gradient of :func:`adaptive_max_pool1d`: each bin's gradient goes to its argmax."""
    return _adaptive_max_nd_backward("adaptive_max_pool1d_backward", 1, grad_output, x, output_size,
                                     return_indices, indices, layout, nan_policy)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *,
                                 indices=None, layout="NCHW", nan_policy="propagate"):
    """Gradient of :func:`adaptive_max_pool2d`: each bin's gradient goes to its argmax."""
    return _adaptive_max_nd_backward("adaptive_max_pool2d_backward", 2, grad_output, x, output_size,
                                     return_indices, indices, layout, nan_policy)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *,
                                 indices=None, layout="NCDHW", nan_policy="propagate"):
    """Gradient of :func:`adaptive_max_pool3d`: each bin's gradient goes to its argmax."""
    return _adaptive_max_nd_backward("adaptive_max_pool3d_backward", 3, grad_output, x, output_size,
                                     return_indices, indices, layout, nan_policy)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL",
                                 nan_policy="propagate"):
    """Gradient of :func:`adaptive_avg_pool1d`: each bin spreads ``grad / size`` over its cells."""
    return _adaptive_avg_nd_backward("adaptive_avg_pool1d_backward", 1, grad_output, x, output_size,
                                     layout, nan_policy)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW",
                                 nan_policy="propagate"):
    """Gradient of :func:`adaptive_avg_pool2d`: each bin spreads ``grad / size`` over its cells."""
    return _adaptive_avg_nd_backward("adaptive_avg_pool2d_backward", 2, grad_output, x, output_size,
                                     layout, nan_policy)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW",
                                 nan_policy="propagate"):
    """Gradient of :func:`adaptive_avg_pool3d`: each bin spreads ``grad / size`` over its cells."""
    return _adaptive_avg_nd_backward("adaptive_avg_pool3d_backward", 3, grad_output, x, output_size,
                                     layout, nan_policy)


# ------------------------------------------------------------------ global pooling
def _global_out(out, keepdims, layout):
    """Drop the unit spatial dims of an adaptive (1, 1) result unless ``keepdims``."""
    return Lay.drop_unit(out, keepdims, G.check_layout(layout, 2, "global pooling"))


def _global_grad(grad_output, keepdims, layout, op):
    return Lay.add_unit(grad_output, keepdims, G.check_layout(layout, 2, op))


def global_max_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    """Max over all of H and W with plain loops (see :func:`poolkit.global_max_pool2d`)."""
    G.check_bool(keepdims, "keepdims", "global_max_pool2d")
    return _global_out(_adaptive_max_nd("global_max_pool2d", 2, x, 1, False, layout, nan_policy), keepdims,
                       layout)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    """Mean over all of H and W with plain loops (see :func:`poolkit.global_avg_pool2d`)."""
    G.check_bool(keepdims, "keepdims", "global_avg_pool2d")
    return _global_out(_adaptive_avg_nd("global_avg_pool2d", 2, x, 1, layout, nan_policy), keepdims, layout)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    """Gradient of :func:`global_max_pool2d`."""
    op = "global_max_pool2d_backward"
    G.check_bool(keepdims, "keepdims", op)
    return _adaptive_max_nd_backward(op, 2, _global_grad(grad_output, keepdims, layout, op), x, 1,
                                     False, None, layout, nan_policy)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    """Gradient of :func:`global_avg_pool2d`."""
    op = "global_avg_pool2d_backward"
    G.check_bool(keepdims, "keepdims", op)
    return _adaptive_avg_nd_backward(op, 2, _global_grad(grad_output, keepdims, layout, op), x, 1, layout,
                                     nan_policy)


# ------------------------------------------------------------------ power-average (Lp) pooling
# PyTorch: lp_pool(x) = (sign(a) * relu(|a|) * prod(kernel)) ** (1/p) with
# a = avg_pool(x**p, kernel, stride, padding=0, ceil_mode) -- so a ceil_mode window
# that overhangs the input is averaged over its real cells and then multiplied by
# the *full* kernel size. norm_type = inf is max_pool(|x|), -inf is -max_pool(-|x|).
def _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p = G.check_norm_type(norm_type, op)
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=False)
    g = G.make_geometry(op, spatial, kernel_size, stride, 0, 1, ceil_mode)
    return p, x, cl, batched, g


def _sign(v):
    """PyTorch's sign: -1, 0 or 1, and 0 for NaN (NumPy's gives NaN)."""
    return v.dtype.type(0) if np.isnan(v) else np.sign(v)


def _lp_pool_nd(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p, x, cl, batched, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    t = x.dtype.type
    div = G.avg_divisor_table(g, True)
    K = math.prod(g.kernel)
    out = np.empty(x.shape[:2] + g.out_size, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*g.out_size):
            if math.isinf(p):
                sign = 1 if p > 0 else -1
                best = None
                for pos in _taps(o, g):  # max of sign*|x|, NaN wins
                    v = sign * abs(x[(n, c) + pos])
                    if best is None or v > best or np.isnan(v):
                        best = v
                out[(n, c) + o] = sign * best
                continue
            total = t(0)
            for pos in _taps(o, g):
                total = total + x[(n, c) + pos] ** p
            a = total / t(math.prod(int(div[i][o[i]]) for i in range(nd)))
            # PyTorch writes sign(a) * relu(|a|) * K: that is a * K in value (it only
            # changes the gradient at a == 0, see the backward)
            out[(n, c) + o] = (a * K) ** (1.0 / p)
    return _finish(out, cl, batched)


def _lp_pool_nd_backward(op, nd, grad_output, x, norm_type, kernel_size, stride, ceil_mode, layout):
    p, x, cl, batched, g = _lp_setup(op, nd, x, norm_type, kernel_size, stride, ceil_mode, layout)
    grad = _grad_prepare(grad_output, x, x.shape[:2] + g.out_size, op, cl, batched)
    t = x.dtype.type
    div = G.avg_divisor_table(g, True)
    K = math.prod(g.kernel)
    # First the gradient w.r.t. |x| (inf norms) or x**p (finite p), summed over the
    # windows in output scan order; then the elementwise last step of the chain.
    g_inner = np.zeros(x.shape, dtype=x.dtype)
    for n, c in _planes(x):
        for o in np.ndindex(*g.out_size):
            gy = grad[(n, c) + o]
            if math.isinf(p):
                # y = s * max(s*|x|) with s = +-1: the gradient goes to the argmax of s*|x|
                s = 1 if p > 0 else -1
                best, best_pos = None, None
                for pos in _taps(o, g):
                    v = s * abs(x[(n, c) + pos])
                    if best is None or v > best or np.isnan(v):
                        best, best_pos = v, pos
                g_inner[(n, c) + best_pos] += gy
                continue
            total = t(0)
            for pos in _taps(o, g):
                total = total + x[(n, c) + pos] ** p
            divisor = t(math.prod(int(div[i][o[i]]) for i in range(nd)))
            a = total / divisor
            b = a * K
            # d/db b**(1/p), then *K; a zero sum gives a zero gradient (PyTorch's rule)
            gt = gy * ((1.0 / p) * b ** (1.0 / p - 1.0)) * K
            # through sign(a) * relu(|a|): relu's gradient is masked out where |a| <= 0, the
            # rest is multiplied by sign(a) twice -- 1, or 0 for NaN (PyTorch's sign(NaN) = 0)
            ga = t(0) if a == 0 else gt * _sign(a) * _sign(a)
            share = ga / divisor  # average pooling's backward
            for pos in _taps(o, g):
                g_inner[(n, c) + pos] += share
    gx = np.empty(x.shape, dtype=x.dtype)
    for cell in np.ndindex(*x.shape):
        v = x[cell]
        if math.isinf(p):
            gx[cell] = g_inner[cell] * _sign(v)  # d|v|/dv, 0 at 0
        else:
            gx[cell] = g_inner[cell] * (p * v ** (p - 1.0))  # d(v**p)/dv
    return _finish(gx, cl, batched)


def lp_pool1d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCL"):
    """1-D power-average pooling with plain loops (see :func:`poolkit.lp_pool1d`)."""
    return _lp_pool_nd("lp_pool1d", 1, x, norm_type, kernel_size, stride, ceil_mode, layout)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCHW"):
    """2-D power-average pooling with plain loops (see :func:`poolkit.lp_pool2d`)."""
    return _lp_pool_nd("lp_pool2d", 2, x, norm_type, kernel_size, stride, ceil_mode, layout)


def lp_pool3d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCDHW"):
    """3-D power-average pooling with plain loops (see :func:`poolkit.lp_pool3d`)."""
    return _lp_pool_nd("lp_pool3d", 3, x, norm_type, kernel_size, stride, ceil_mode, layout)


def lp_pool1d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCL"):
    """Gradient of :func:`lp_pool1d` (PyTorch's autograd chain, written out)."""
    return _lp_pool_nd_backward("lp_pool1d_backward", 1, grad_output, x, norm_type, kernel_size,
                                stride, ceil_mode, layout)


def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCHW"):
    """Gradient of :func:`lp_pool2d` (PyTorch's autograd chain, written out)."""
    return _lp_pool_nd_backward("lp_pool2d_backward", 2, grad_output, x, norm_type, kernel_size,
                                stride, ceil_mode, layout)


def lp_pool3d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCDHW"):
    """Gradient of :func:`lp_pool3d` (PyTorch's autograd chain, written out)."""
    return _lp_pool_nd_backward("lp_pool3d_backward", 3, grad_output, x, norm_type, kernel_size,
                                stride, ceil_mode, layout)


# ------------------------------------------------------------------ max unpooling
def _unpool_setup(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    x, cl, batched, spatial = _prepare(x, op, nd, layout, allow_int=True)
    size = G.unpool_output_size(op, spatial, kernel_size, stride, padding, output_size, channels_last=cl)
    idx = _user_indices(indices, x.shape, op, cl, batched, math.prod(size))
    return x, cl, batched, size, idx


def _max_unpool_nd(op, nd, x, indices, kernel_size, stride, padding, output_size, layout):
    x, cl, batched, size, idx = _unpool_setup(op, nd, x, indices, kernel_size, stride, padding,
                                              output_size, layout)
    out = np.zeros(x.shape[:2] + size, dtype=x.dtype)
    for n, c in _planes(x):
        for i in np.ndindex(*x.shape[2:]):  # scan order: with repeated indices the last write wins
            out[(n, c) + np.unravel_index(idx[(n, c) + i], size)] = x[(n, c) + i]
    return _finish(out, cl, batched)


def _max_unpool_nd_backward(op, nd, grad_output, x, indices, kernel_size, stride, padding,
                            output_size, layout):
    x, cl, batched, size, idx = _unpool_setup(op, nd, x, indices, kernel_size, stride, padding,
                                              output_size, layout)
    grad = _grad_prepare(grad_output, x, x.shape[:2] + size, op, cl, batched)
    gx = np.empty(x.shape, dtype=x.dtype)
    for n, c in _planes(x):
        for i in np.ndindex(*x.shape[2:]):  # a gather: each input reads where it was written
            gx[(n, c) + i] = grad[(n, c) + np.unravel_index(idx[(n, c) + i], size)]
    return _finish(gx, cl, batched)


def max_unpool1d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCL"):
    """1-D max unpooling with plain loops (see :func:`poolkit.max_unpool1d`)."""
    return _max_unpool_nd("max_unpool1d", 1, x, indices, kernel_size, stride, padding, output_size, layout)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCHW"):
    """2-D max unpooling with plain loops (see :func:`poolkit.max_unpool2d`)."""
    return _max_unpool_nd("max_unpool2d", 2, x, indices, kernel_size, stride, padding, output_size, layout)


def max_unpool3d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCDHW"):
    """3-D max unpooling with plain loops (see :func:`poolkit.max_unpool3d`)."""
    return _max_unpool_nd("max_unpool3d", 3, x, indices, kernel_size, stride, padding, output_size, layout)


def max_unpool1d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCL"):
    """Gradient of :func:`max_unpool1d` w.r.t. ``x``: ``grad_output`` read at ``indices``."""
    return _max_unpool_nd_backward("max_unpool1d_backward", 1, grad_output, x, indices, kernel_size,
                                   stride, padding, output_size, layout)


def max_unpool2d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCHW"):
    """Gradient of :func:`max_unpool2d` w.r.t. ``x``: ``grad_output`` read at ``indices``."""
    return _max_unpool_nd_backward("max_unpool2d_backward", 2, grad_output, x, indices, kernel_size,
                                   stride, padding, output_size, layout)


def max_unpool3d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCDHW"):
    """Gradient of :func:`max_unpool3d` w.r.t. ``x``: ``grad_output`` read at ``indices``."""
    return _max_unpool_nd_backward("max_unpool3d_backward", 3, grad_output, x, indices, kernel_size,
                                   stride, padding, output_size, layout)
