"""Checkers for lesson 00 (welcome): an output size by hand, and a pooled 4x4 predicted by eye."""
from __future__ import annotations

import numpy as np

from .. import geometry as G
from .. import max_pool2d, avg_pool2d
from . import Case, check, compare, describe_window

__all__ = ["check_output_size", "check_predictions", "PREDICT_X"]

#: The 4x4 input of the "predict the pooled output" exercise (read it, then pool it in your head).
PREDICT_X = np.array([[1, 5, 2, 0],
                      [3, 2, 8, 1],
                      [0, 4, 1, 1],
                      [7, 2, 3, 9]], dtype=np.float32)
PREDICT_X.setflags(write=False)


def _size_spec(L, kernel_size, stride, padding):
    return G.pool_output_size(L, kernel_size, stride, padding, 1, False)


def check_output_size(fn) -> bool:
    """Check ``fn(L, kernel_size, stride, padding) -> int``: windows along one dimension.

    The answer must equal :func:`poolkit.geometry.pool_output_size` with
    ``dilation=1`` and ``ceil_mode=False`` on sizes from a 4-cell toy input to
    ResNet's 224-pixel stem, with and without padding, and with strides that do
    not divide the input (the last partial window is dropped). A float answer
    (``/`` instead of ``//``) fails with a dtype message.
    """
    floor_hint = ("windows that would run past the (padded) input are dropped: "
                  "floor((L + 2*padding - kernel_size) / stride) + 1")
    cases = [
        Case("L=4, kernel 2, stride 2, no padding", (4, 2, 2, 0)),
        Case("L=5, kernel 2, stride 2: one cell left over", (5, 2, 2, 0), hint=floor_hint),
        Case("L=5, kernel 3, stride 1: overlapping windows", (5, 3, 1, 0),
             hint="with stride 1 a window starts at every cell that leaves room for it: L - kernel_size + 1"),
        Case("L=7, kernel 3, stride 2, padding 1", (7, 3, 2, 1),
             hint="padding adds `padding` cells on BOTH sides: L + 2*padding"),
        Case("L=224, kernel 3, stride 2, padding 1 (ResNet stem)", (224, 3, 2, 1), hint=floor_hint),
        Case("L=6, kernel 4, stride 4, padding 2", (6, 4, 4, 2), hint=floor_hint),
        Case("L=1, kernel 1, stride 1", (1, 1, 1, 0)),
    ]
    return check(fn, _size_spec, cases, name=getattr(fn, "__name__", "output_size"), strict_dtype=True)


def check_predictions(max_pred, avg_pred) -> bool:
    """Check two 2x2 predictions for ``PREDICT_X`` pooled with a 2x2 window, stride 2.

    ``max_pred`` should be ``poolkit.max_pool2d`` of :data:`PREDICT_X` and
    ``avg_pred`` ``poolkit.avg_pool2d`` of it (nested lists are fine). Wrong
    cells are named together with the input window they pool.
    """
    x = PREDICT_X[None, None]
    ok = True
    for label, pred, want in [("max prediction", max_pred, max_pool2d(x, 2)[0, 0]),
                              ("avg prediction", avg_pred, avg_pool2d(x, 2)[0, 0])]:
        if pred is None:
            ok = False
            print(f"  FAIL  {label}: still None -- replace it with your 2x2 prediction")
            continue
        try:
            got = np.asarray(pred, dtype=np.float64)
        except (TypeError, ValueError):
            got = np.asarray(pred, dtype=object)
        problem = compare(got, want.astype(np.float64))
        if problem is None:
            print(f"  ok    {label}")
            continue
        ok = False
        print(f"  FAIL  {label}: {problem}")
        if got is not None and got.shape == want.shape:
            for i, j in zip(*np.nonzero(~np.isclose(got, want))):
                print(f"        {describe_window((int(i), int(j)), (4, 4), 2)}")
    print(f"predictions: {'all correct' if ok else 'some cells are wrong -- see above'}")
    return ok
