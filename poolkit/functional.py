"""Public pooling functions: same names, arguments and semantics as ``torch.nn.functional``.

Each function looks at where ``x`` lives and hands it to a backend, untouched
(the backend's function checks the arguments, once):

* a GPU array -- anything with ``__cuda_array_interface__`` (Numba device arrays,
  CuPy arrays, PyTorch CUDA tensors) or a simulator ``FakeCUDAArray`` -- goes to
  :mod:`poolkit.gpu` and stays on the device;
* a ``dask.array.Array`` goes to :mod:`poolkit.dask` and stays lazy;
* anything else goes to :mod:`poolkit.cpu` (parallel kernels), which accepts
  NumPy arrays and names anything else in its ``TypeError``.

:data:`BACKENDS` says which operations each backend has. Backends are imported on
first use, so ``import poolkit`` never imports numba, CUDA or Dask; an
``ImportError`` of a backend surfaces with its own cause. ``max_pool2d`` and
``avg_pool2d`` document their arguments in full here; the docstrings of the rest
of the family are assembled at the end of this module from shared pieces.
"""
from __future__ import annotations

from .geometry import OPS

__all__ = list(OPS) + ["backend_for", "BACKENDS"]

#: The dispatch registry: where ``x`` lives -> the operations that backend runs.
BACKENDS = {
    "cpu": frozenset(OPS),
    "gpu": frozenset(OPS),
    "dask": frozenset({"max_pool2d", "avg_pool2d"}),
}


def _is_gpu_array(x) -> bool:
    if hasattr(x, "__cuda_array_interface__"):
        return True
    # Under NUMBA_ENABLE_CUDASIM=1, device arrays are FakeCUDAArray objects without
    # __cuda_array_interface__; recognise them so the simulator exercises this path.
    return type(x).__module__.startswith("numba.cuda.simulator")


def _is_dask_array(x) -> bool:
    return type(x).__module__.startswith("dask.array") and hasattr(x, "chunks")


def backend_for(x) -> str:
    """Name of the backend that handles ``x``: ``"gpu"``, ``"dask"`` or ``"cpu"``."""
    if _is_gpu_array(x):
        return "gpu"
    if _is_dask_array(x):
        return "dask"
    return "cpu"


#: Each kind of array in words, and how to bring it to NumPy (for a backend that lacks an op).
_KINDS = {"gpu": ("a GPU array", "x.copy_to_host() or cupy.asnumpy(x)"),
          "dask": ("a Dask array", "x.compute()"), "cpu": ("a NumPy array", "np.asarray(x)")}


def _on(x, name: str):
    """The backend module that runs ``name`` on ``x`` (a TypeError if it has no such op)."""
    kind = backend_for(x)
    if name not in BACKENDS[kind]:
        raise TypeError(
            f"{name}: x is {_KINDS[kind][0]}, but {name} runs on NumPy arrays only for now "
            f"(poolkit.{kind} has no {name}); pass a NumPy array, e.g. {_KINDS[kind][1]}"
        )
    module = _LOADED.get(kind)
    return _load(kind) if module is None else module


#: The backend modules imported so far (``import poolkit`` imports none of them).
_LOADED: dict = {}


def _load(kind: str):
    """Import the backend ``kind`` on first use (an ``ImportError`` keeps its own cause)."""
    if kind == "gpu":
        from . import gpu as module
    elif kind == "dask":
        from . import dask as module
    else:
        from . import cpu as module
    _LOADED[kind] = module
    return module


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    """2-D max pooling over ``(N, C, H, W)`` / ``(C, H, W)`` (or NHWC) arrays.

    Parameters
    ----------
    x : array
        NumPy array (float32, float64 or integer), GPU array or Dask array;
        ``(N, C, H, W)`` or unbatched ``(C, H, W)``; with ``layout="NHWC"``,
        ``(N, H, W, C)`` or ``(H, W, C)``.
    kernel_size, stride, padding, dilation : int or (int, int)
        As in PyTorch. ``stride=None`` means ``stride=kernel_size``; padding is
        implicit ``-inf`` and at most half the kernel size.
        ``padding="same"`` (output ``ceil(L/stride)``, odd extra padding at the
        end) or ``"valid"`` (no padding) follow TensorFlow/Keras.
    ceil_mode : bool
        Use ceil instead of floor for the output size; a last window must start
        inside the input or the left padding.
    return_indices : bool
        Also return int64 indices of the maxima, flat per ``(H, W)`` plane.
    layout : {"NCHW", "NHWC"}
        Keyword-only. ``"NHWC"`` runs a channels-last kernel (no transposes).
    nan_policy : {"propagate", "omit"}
        Keyword-only. ``"propagate"`` (PyTorch's rule, the default) or ``"omit"``:
        NaN cells (nodata) are skipped.

    Returns
    -------
    out : array of the input's dtype (and ``indices`` if requested), on the input's device.

    Notes
    -----
    NaN propagates (a window with a NaN gives NaN; its index is the last NaN in
    scan order); ties go to the first maximum in scan order. With
    ``nan_policy="omit"`` the maximum is over the window's valid cells; a window
    with none gives what propagate gives there: its last NaN and that cell's index.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(1., 17.).reshape(1, 1, 4, 4)
    >>> poolkit.max_pool2d(x, 2, return_indices=True)[1][0, 0]
    array([[ 5,  7],
           [13, 15]])

    See Also
    --------
    poolkit.reference.max_pool2d, poolkit.cpu.max_pool2d, poolkit.gpu.max_pool2d
    """
    return _on(x, "max_pool2d").max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode,
                                  return_indices, layout=layout, nan_policy=nan_policy)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, layout="NCHW", nan_policy="propagate"):
    """2-D average pooling over ``(N, C, H, W)`` / ``(C, H, W)`` (or NHWC) float arrays.

    Parameters
    ----------
    x : array
        float32 or float64 NumPy, GPU or Dask array (layouts as :func:`max_pool2d`).
    kernel_size, stride, padding : int or (int, int)
        As in PyTorch; padding is implicit zeros, at most half the kernel size.
        ``padding="same"`` / ``"valid"`` follow TensorFlow/Keras (with "same",
        padded cells are never counted: ``count_include_pad`` is ignored).
    ceil_mode : bool
        As in :func:`max_pool2d`.
    count_include_pad : bool
        Count padding cells in the divisor. Cells of a ceil_mode window that lie
        past the right padding are never counted.
    divisor_override : int, optional
        Divide every sum by this instead.
    layout : {"NCHW", "NHWC"}
    nan_policy : {"propagate", "omit"}
        Keyword-only. ``"propagate"`` (PyTorch's rule, the default) or ``"omit"``:
        NaN cells (nodata) are left out of the sum and of the divisor, which counts
        the valid cells (and the padding cells when ``count_include_pad``); a
        window with nothing to count gives NaN.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(1., 17.).reshape(1, 1, 4, 4)
    >>> poolkit.avg_pool2d(x, 2)[0, 0]
    array([[ 3.5,  5.5],
           [11.5, 13.5]])

    See Also
    --------
    poolkit.reference.avg_pool2d, poolkit.cpu.avg_pool2d, poolkit.gpu.avg_pool2d
    """
    return _on(x, "avg_pool2d").avg_pool2d(x, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override, layout=layout, nan_policy=nan_policy)


# ---------------------------------------------------------------- docstring pieces
_SPATIAL = {1: ("L", "NCL", "NLC"), 2: ("H, W", "NCHW", "NHWC"), 3: ("D, H, W", "NCDHW", "NDHWC")}


def _x_doc(nd, ints):
    dims, first, last = _SPATIAL[nd]
    dtypes = "float32, float64 or integer" if ints else "float32 or float64"
    return (f"x : array\n        NumPy array ({dtypes}) or GPU array (``__cuda_array_interface__``; the\n"
            f"        result stays on the device), ``(N, C, {dims})`` or unbatched ``(C, {dims})``;\n"
            f"        with ``layout=\"{last}\"``, ``(N, {dims}, C)`` or ``({dims}, C)``.")


def _layout_doc(nd):
    _, first, last = _SPATIAL[nd]
    return (f"layout : {{\"{first}\", \"{last}\"}}\n        Keyword-only; ``\"{last}\"`` takes channels-last "
            f"arrays and runs a channels-last kernel (no transposes).")


_GRAD_DOC = ("grad_output : ndarray\n        Gradient w.r.t. the forward output: its shape, ``x``'s dtype.")
_BACKWARD_RETURNS = ("Returns\n    -------\n    grad_x : ndarray\n        Gradient w.r.t. ``x``: ``x``'s "
                     "shape and dtype. Deterministic: the same bits on every run, serial or parallel.")


def _document(fn, summary, params, returns, notes="", see=(), examples=""):
    name = fn.__name__
    twins = ", ".join([f"poolkit.reference.{name}", f"poolkit.cpu.{name}", *see])
    doc = f"{summary}\n\n    Parameters\n    ----------\n" + "\n".join(f"    {p}" for p in params)
    doc += f"\n\n    {returns}\n"
    if notes:
        doc += f"\n    Notes\n    -----\n    {notes}\n"
    if examples:
        doc += f"\n    Examples\n    --------\n{examples}\n"
    doc += f"\n    See Also\n    --------\n    {twins}\n    "
    fn.__doc__ = doc
    return fn


_WINDOW_DOC = ("kernel_size, stride, padding, dilation : int or tuple of ints\n        As in PyTorch; "
               "``stride=None`` means ``kernel_size``; integer padding is implicit ``-inf``,\n"
               "        at most half the kernel. ``padding=\"same\"`` / ``\"valid\"``: TensorFlow's rule "
               "(see :mod:`poolkit.geometry`).")
_AVG_WINDOW_DOC = ("kernel_size, stride, padding : int or tuple of ints\n        As in PyTorch; integer padding "
                   "is implicit zeros, at most half the kernel.\n        ``padding=\"same\"`` (never counts "
                   "padded cells) / ``\"valid\"`` as TensorFlow.")
_CEIL_DOC = ("ceil_mode : bool\n        Ceil instead of floor for the output size; a last window must "
             "start inside the input or the left padding.")
_RI_DOC = ("return_indices : bool\n        Also return int64 indices of the maxima, flat per spatial "
           "plane (as PyTorch).")
_CIP_DOC = ("count_include_pad : bool\n        Count padding cells in the divisor (never the ceil_mode "
            "overhang past the padding).")
_DIV_DOC = "divisor_override : int, optional\n        Divide every sum by this instead."
_OUTSIZE_DOC = ("output_size : int or tuple of ints (or None)\n        Output size per spatial dimension; "
                "``None`` keeps that input size. Bin ``i`` of ``L`` cells\n        is ``[floor(i*L/out), "
                "ceil((i+1)*L/out))``: uneven and overlapping exactly as PyTorch.")
_INDICES_BW_DOC = ("indices : ndarray, optional\n        Keyword-only: the indices a forward call with "
                   "``return_indices=True`` returned; skips the search.")
_RI_BW_DOC = ("return_indices : bool\n        Accepted (and ignored) so the forward call's arguments can be "
              "passed unchanged.")
_NORM_DOC = ("norm_type : float\n        The power ``p`` (non-zero); ``inf`` gives max of ``|x|``, ``-inf`` "
             "min of ``|x|``.")
_LP_WINDOW_DOC = ("kernel_size, stride : int or tuple of ints\n        As in PyTorch (no padding); "
                  "``stride=None`` means ``kernel_size``.")
_UNPOOL_DOC = ("indices : ndarray\n        int64 indices from the max pooling that produced ``x`` (same "
               "shape as ``x``).\n    kernel_size, stride, padding : int or tuple of ints\n        The max "
               "pooling's arguments (``stride=None`` means ``kernel_size``).\n    output_size : tuple of ints, "
               "optional\n        The spatial size to restore (``nd`` ints, or ``nd + 2`` in ``layout``'s order,\n"
               "        such as the shape of the array that was max-pooled; N and C are not read), strictly "
               "between\n"
               "        ``default - stride`` and ``default + stride`` where ``default = (L-1)*stride + kernel - "
               "2*padding``.")
_NAN_DOC = ("nan_policy : {\"propagate\", \"omit\"}\n        Keyword-only. ``\"propagate\"`` (PyTorch's rule): "
            "a NaN in a window makes the result NaN.\n        ``\"omit\"``: NaN cells (nodata) are skipped; a "
            "max over no valid cell, or an average with nothing\n        to count (no valid cell, no counted "
            "padding, no divisor_override), gives NaN\n        (see :func:`poolkit.geometry.check_nan_policy`).")
_KEEPDIMS_DOC = ("keepdims : bool\n        Keep the pooled H and W as size-1 dimensions (like Keras' "
                 "``keepdims``).")


# ---------------------------------------------------------------- forward ops
def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCL", nan_policy="propagate"):
    return _on(x, "max_pool1d").max_pool1d(x, kernel_size, stride, padding, dilation, ceil_mode,
                                    return_indices, layout=layout, nan_policy=nan_policy)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "max_pool3d").max_pool3d(x, kernel_size, stride, padding, dilation, ceil_mode,
                                    return_indices, layout=layout, nan_policy=nan_policy)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, layout="NCL", nan_policy="propagate"):
    return _on(x, "avg_pool1d").avg_pool1d(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    layout=layout, nan_policy=nan_policy)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "avg_pool3d").avg_pool3d(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool1d(x, output_size, return_indices=False, *, layout="NCL", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool1d").adaptive_max_pool1d(x, output_size, return_indices, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool2d(x, output_size, return_indices=False, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool2d").adaptive_max_pool2d(x, output_size, return_indices, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool3d(x, output_size, return_indices=False, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool3d").adaptive_max_pool3d(x, output_size, return_indices, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool1d(x, output_size, *, layout="NCL", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool1d").adaptive_avg_pool1d(x, output_size, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool2d(x, output_size, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool2d").adaptive_avg_pool2d(x, output_size, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool3d(x, output_size, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool3d").adaptive_avg_pool3d(x, output_size, layout=layout, nan_policy=nan_policy)


def global_max_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "global_max_pool2d").global_max_pool2d(x, keepdims, layout=layout, nan_policy=nan_policy)


def global_avg_pool2d(x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "global_avg_pool2d").global_avg_pool2d(x, keepdims, layout=layout, nan_policy=nan_policy)


def lp_pool1d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCL"):
    return _on(x, "lp_pool1d").lp_pool1d(x, norm_type, kernel_size, stride, ceil_mode, layout=layout)


def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCHW"):
    return _on(x, "lp_pool2d").lp_pool2d(x, norm_type, kernel_size, stride, ceil_mode, layout=layout)


def lp_pool3d(x, norm_type, kernel_size, stride=None, ceil_mode=False, *, layout="NCDHW"):
    return _on(x, "lp_pool3d").lp_pool3d(x, norm_type, kernel_size, stride, ceil_mode, layout=layout)


def max_unpool1d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCL"):
    return _on(x, "max_unpool1d").max_unpool1d(x, indices, kernel_size, stride, padding, output_size,
                                      layout=layout)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCHW"):
    return _on(x, "max_unpool2d").max_unpool2d(x, indices, kernel_size, stride, padding, output_size,
                                      layout=layout)


def max_unpool3d(x, indices, kernel_size, stride=None, padding=0, output_size=None, *, layout="NCDHW"):
    return _on(x, "max_unpool3d").max_unpool3d(x, indices, kernel_size, stride, padding, output_size,
                                      layout=layout)


# ---------------------------------------------------------------- backward ops
def max_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCL", nan_policy="propagate"):
    return _on(x, "max_pool1d_backward").max_pool1d_backward(grad_output, x, kernel_size, stride, padding, dilation,
                                             ceil_mode, return_indices, indices=indices, layout=layout, nan_policy=nan_policy)


def max_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCHW", nan_policy="propagate"):
    return _on(x, "max_pool2d_backward").max_pool2d_backward(grad_output, x, kernel_size, stride, padding, dilation,
                                             ceil_mode, return_indices, indices=indices, layout=layout, nan_policy=nan_policy)


def max_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, return_indices=False, *, indices=None, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "max_pool3d_backward").max_pool3d_backward(grad_output, x, kernel_size, stride, padding, dilation,
                                             ceil_mode, return_indices, indices=indices, layout=layout, nan_policy=nan_policy)


def avg_pool1d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, layout="NCL", nan_policy="propagate"):
    return _on(x, "avg_pool1d_backward").avg_pool1d_backward(grad_output, x, kernel_size, stride, padding, ceil_mode,
                                             count_include_pad, layout=layout, nan_policy=nan_policy)


def avg_pool2d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "avg_pool2d_backward").avg_pool2d_backward(grad_output, x, kernel_size, stride, padding, ceil_mode,
                                             count_include_pad, divisor_override, layout=layout, nan_policy=nan_policy)


def avg_pool3d_backward(grad_output, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "avg_pool3d_backward").avg_pool3d_backward(grad_output, x, kernel_size, stride, padding, ceil_mode,
                                             count_include_pad, divisor_override, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCL", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool1d_backward").adaptive_max_pool1d_backward(grad_output, x, output_size, return_indices,
                                                      indices=indices, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCHW", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool2d_backward").adaptive_max_pool2d_backward(grad_output, x, output_size, return_indices,
                                                      indices=indices, layout=layout, nan_policy=nan_policy)


def adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices=False, *, indices=None,
                                 layout="NCDHW", nan_policy="propagate"):
    return _on(x, "adaptive_max_pool3d_backward").adaptive_max_pool3d_backward(grad_output, x, output_size, return_indices,
                                                      indices=indices, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool1d_backward(grad_output, x, output_size, *, layout="NCL", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool1d_backward").adaptive_avg_pool1d_backward(grad_output, x, output_size, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool2d_backward(grad_output, x, output_size, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool2d_backward").adaptive_avg_pool2d_backward(grad_output, x, output_size, layout=layout, nan_policy=nan_policy)


def adaptive_avg_pool3d_backward(grad_output, x, output_size, *, layout="NCDHW", nan_policy="propagate"):
    return _on(x, "adaptive_avg_pool3d_backward").adaptive_avg_pool3d_backward(grad_output, x, output_size, layout=layout, nan_policy=nan_policy)


def global_max_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "global_max_pool2d_backward").global_max_pool2d_backward(grad_output, x, keepdims, layout=layout, nan_policy=nan_policy)


def global_avg_pool2d_backward(grad_output, x, keepdims=False, *, layout="NCHW", nan_policy="propagate"):
    return _on(x, "global_avg_pool2d_backward").global_avg_pool2d_backward(grad_output, x, keepdims, layout=layout, nan_policy=nan_policy)


def lp_pool1d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCL"):
    return _on(x, "lp_pool1d_backward").lp_pool1d_backward(grad_output, x, norm_type, kernel_size, stride, ceil_mode,
                                            layout=layout)


def lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCHW"):
    return _on(x, "lp_pool2d_backward").lp_pool2d_backward(grad_output, x, norm_type, kernel_size, stride, ceil_mode,
                                            layout=layout)


def lp_pool3d_backward(grad_output, x, norm_type, kernel_size, stride=None, ceil_mode=False, *,
                       layout="NCDHW"):
    return _on(x, "lp_pool3d_backward").lp_pool3d_backward(grad_output, x, norm_type, kernel_size, stride, ceil_mode,
                                            layout=layout)


def max_unpool1d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCL"):
    return _on(x, "max_unpool1d_backward").max_unpool1d_backward(grad_output, x, indices, kernel_size, stride, padding,
                                               output_size, layout=layout)


def max_unpool2d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCHW"):
    return _on(x, "max_unpool2d_backward").max_unpool2d_backward(grad_output, x, indices, kernel_size, stride, padding,
                                               output_size, layout=layout)


def max_unpool3d_backward(grad_output, x, indices, kernel_size, stride=None, padding=0,
                          output_size=None, *, layout="NCDHW"):
    return _on(x, "max_unpool3d_backward").max_unpool3d_backward(grad_output, x, indices, kernel_size, stride, padding,
                                               output_size, layout=layout)


# ---------------------------------------------------------------- their docstrings
def _document_family():
    g = globals()
    out_doc = "Returns\n    -------\n    out : ndarray\n        Same dtype as ``x``, same layout."
    max_out = ("Returns\n    -------\n    out : ndarray (and indices : int64 ndarray if ``return_indices``)\n"
               "        Same dtype and layout as ``x``.")
    for nd in (1, 2, 3):
        s = f"{nd}d"
        if nd != 2:
            _document(g[f"max_pool{s}"], f"{nd}-D max pooling (PyTorch's ``max_pool{s}``).",
                      [_x_doc(nd, True), _WINDOW_DOC, _CEIL_DOC, _RI_DOC, _layout_doc(nd), _NAN_DOC], max_out,
                      "NaN propagates (the index names the last NaN); ties go to the first maximum.",
                      see=[f"poolkit.max_pool{s}_backward"],
                      examples=("    >>> import numpy as np, poolkit\n"
                                "    >>> poolkit.max_pool1d(np.array([[[1., 3, 2, 5, 4]]]), 2, 1, padding='same')\n"
                                "    array([[[3., 3., 5., 5., 4.]]])") if nd == 1 else "")
            avg_params = [_x_doc(nd, False), _AVG_WINDOW_DOC, _CEIL_DOC, _CIP_DOC]
            if nd == 3:
                avg_params.append(_DIV_DOC)
            _document(g[f"avg_pool{s}"], f"{nd}-D average pooling (PyTorch's ``avg_pool{s}``).",
                      avg_params + [_layout_doc(nd), _NAN_DOC], out_doc,
                      "Sums in the input dtype in scan order, then one division (as PyTorch's CPU kernels).",
                      see=[f"poolkit.avg_pool{s}_backward"])
        _document(g[f"adaptive_max_pool{s}"], f"{nd}-D adaptive max pooling to a fixed output size.",
                  [_x_doc(nd, True), _OUTSIZE_DOC, _RI_DOC, _layout_doc(nd), _NAN_DOC], max_out,
                  see=[f"poolkit.adaptive_max_pool{s}_backward", "poolkit.geometry.adaptive_bins"])
        _document(g[f"adaptive_avg_pool{s}"], f"{nd}-D adaptive average pooling to a fixed output size.",
                  [_x_doc(nd, False), _OUTSIZE_DOC, _layout_doc(nd), _NAN_DOC], out_doc,
                  "Each bin's sum is divided by its sizes one dimension after the other (PyTorch's order);\n"
                  "    with ``nan_policy=\"omit\"``, once by its number of valid cells.",
                  see=[f"poolkit.adaptive_avg_pool{s}_backward", "poolkit.geometry.adaptive_bins"])
        _document(g[f"lp_pool{s}"], f"{nd}-D power-average pooling (PyTorch's ``lp_pool{s}``).",
                  [_x_doc(nd, False), _NORM_DOC, _LP_WINDOW_DOC, _CEIL_DOC, _layout_doc(nd)], out_doc,
                  "Exactly PyTorch's formula: ``(sign(a) * relu(|a|) * prod(kernel_size)) ** (1/p)`` with\n"
                  "    ``a = avg_pool(x**p)`` -- a ceil_mode window that overhangs the input is averaged "
                  "over its real\n    cells and then scaled by the full kernel size; negative sums with "
                  "non-integer ``1/p`` give NaN.",
                  see=[f"poolkit.lp_pool{s}_backward", f"poolkit.avg_pool{s}"])
        _document(g[f"max_unpool{s}"], f"{nd}-D max unpooling: a partial inverse of ``max_pool{s}``.",
                  [_x_doc(nd, True), _UNPOOL_DOC, _layout_doc(nd)],
                  "Returns\n    -------\n    out : ndarray\n        Zeros except ``x`` at ``indices`` "
                  "(the last write wins where indices repeat).",
                  see=[f"poolkit.max_unpool{s}_backward", f"poolkit.max_pool{s}"])
        # backward
        _document(g[f"max_pool{s}_backward"], f"Gradient of :func:`max_pool{s}` w.r.t. ``x``.",
                  [_GRAD_DOC, _x_doc(nd, False), _WINDOW_DOC, _CEIL_DOC, _RI_BW_DOC, _INDICES_BW_DOC,
                   _layout_doc(nd), _NAN_DOC], _BACKWARD_RETURNS,
                  "Each output's gradient goes to the input cell its index names (PyTorch's routing:\n"
                  "    first maximum on ties, last NaN); overlapping windows add up.",
                  see=[f"poolkit.max_pool{s}"])
        avg_params = [_GRAD_DOC, _x_doc(nd, False), _AVG_WINDOW_DOC, _CEIL_DOC, _CIP_DOC]
        if nd != 1:
            avg_params.append(_DIV_DOC)
        _document(g[f"avg_pool{s}_backward"], f"Gradient of :func:`avg_pool{s}` w.r.t. ``x``.",
                  avg_params + [_layout_doc(nd), _NAN_DOC], _BACKWARD_RETURNS,
                  "Each output spreads ``grad / divisor`` (the divisor the forward used) over the cells of "
                  "its window;\n    computed as a gather (each input sums over the windows covering it).",
                  see=[f"poolkit.avg_pool{s}"])
        _document(g[f"adaptive_max_pool{s}_backward"], f"Gradient of :func:`adaptive_max_pool{s}`.",
                  [_GRAD_DOC, _x_doc(nd, False), _OUTSIZE_DOC, _RI_BW_DOC, _INDICES_BW_DOC, _layout_doc(nd),
                   _NAN_DOC],
                  _BACKWARD_RETURNS, see=[f"poolkit.adaptive_max_pool{s}"])
        _document(g[f"adaptive_avg_pool{s}_backward"], f"Gradient of :func:`adaptive_avg_pool{s}`.",
                  [_GRAD_DOC, _x_doc(nd, False), _OUTSIZE_DOC, _layout_doc(nd), _NAN_DOC],
                  _BACKWARD_RETURNS, see=[f"poolkit.adaptive_avg_pool{s}"])
        _document(g[f"lp_pool{s}_backward"], f"Gradient of :func:`lp_pool{s}` (PyTorch's autograd values).",
                  [_GRAD_DOC, _x_doc(nd, False), _NORM_DOC, _LP_WINDOW_DOC, _CEIL_DOC, _layout_doc(nd)],
                  _BACKWARD_RETURNS, "A window whose sum of ``x**p`` is zero gets a zero gradient "
                  "(as PyTorch).", see=[f"poolkit.lp_pool{s}"])
        _document(g[f"max_unpool{s}_backward"], f"Gradient of :func:`max_unpool{s}` w.r.t. ``x``.",
                  [_GRAD_DOC, _x_doc(nd, False), _UNPOOL_DOC, _layout_doc(nd)], _BACKWARD_RETURNS,
                  "A gather: each input cell reads ``grad_output`` where it was written. Where indices "
                  "repeat, every\n    duplicate gets that gradient (PyTorch's values), although only the "
                  "last write reached the output.",
                  see=[f"poolkit.max_unpool{s}"])
    for kind, what in (("max", "maximum"), ("avg", "mean")):
        _document(g[f"global_{kind}_pool2d"], f"The {what} over all of H and W (adaptive pooling to 1 x 1).",
                  [_x_doc(2, kind == "max"), _KEEPDIMS_DOC, _layout_doc(2), _NAN_DOC],
                  "Returns\n    -------\n    out : ndarray\n        ``(N, C)`` (``(N, C, 1, 1)`` / "
                  "``(N, 1, 1, C)`` with ``keepdims``); same dtype as ``x``.",
                  see=[f"poolkit.adaptive_{kind}_pool2d", f"poolkit.global_{kind}_pool2d_backward"])
        _document(g[f"global_{kind}_pool2d_backward"], f"Gradient of :func:`global_{kind}_pool2d`.",
                  [_GRAD_DOC, _x_doc(2, False), _KEEPDIMS_DOC, _layout_doc(2), _NAN_DOC], _BACKWARD_RETURNS,
                  see=[f"poolkit.global_{kind}_pool2d"])


_document_family()
del _document_family
