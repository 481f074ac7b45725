"""The semantic rules of the CUDA kernels, written once as inline device functions.

Every kernel in :mod:`poolkit.gpu` that takes a maximum or a sign calls these, so
the rule a reader has to trust lives in one place (the CPU backend has its own
twin, the reference loops define them):

* :func:`max_wins` -- the NaN-aware max step: ``v`` replaces the running maximum
  ``m`` when it is larger or NaN (``v != v``). Strictly larger, so the *first*
  maximum in scan order wins a tie; NaN propagates (and a later NaN replaces an
  earlier one, so an index points at the last NaN).
* :func:`max_index_wins` -- the same, with indices: ``mi < 0`` (no cell taken yet)
  makes the first real cell count, so an all ``-inf`` window still gets the index
  of its first in-bounds cell (padding never wins: kernels skip it).
* :func:`max_index_wins_omit` -- the ``nan_policy="omit"`` step (with indices): a NaN
  never beats a number, anything beats a NaN running value (kernels start from NaN,
  "no valid cell yet"), ties keep the first maximum -- so a window with no valid cell
  gives what propagate gives there, its last NaN and that cell's index (the CPU's
  ``take_max_omit``). The omit kernels of :mod:`poolkit.gpu.kernels_nd`
  are the propagate ones' own source compiled with this step in its place.
* :func:`sign` -- PyTorch's sign: ``0`` for ``0`` *and* for NaN.
* :func:`tap_range` -- the in-range taps of a window (:func:`poolkit.geometry.tap_range`).

``inline="always"`` inlines them at Numba's IR level: the PTX has no call (and the
same instructions as the rule written out in each kernel). ``from numba import
cuda`` stays at module level so the CUDA simulator swaps it.
"""
from numba import cuda

from .. import geometry as G

__all__ = ["max_wins", "max_index_wins", "max_index_wins_omit", "sign", "tap_range"]

#: A window's in-range taps ``[j0, j1)``: :func:`poolkit.geometry.tap_range` itself,
#: compiled as a device function (one rule for the reference, the CPU and the GPU).
tap_range = cuda.jit(device=True, inline="always")(G.tap_range)


@cuda.jit(device=True, inline="always")
def max_wins(v, m):
    """True when ``v`` becomes the running maximum ``m``: larger, or NaN (first max wins ties)."""
    return v > m or v != v


@cuda.jit(device=True, inline="always")
def max_index_wins(v, m, mi):
    """:func:`max_wins`, or no cell taken yet (``mi < 0``): the first real cell always counts."""
    return v > m or v != v or mi < 0


@cuda.jit(device=True, inline="always")
def max_index_wins_omit(v, m, mi):
    """``nan_policy="omit"``: ``v`` wins when larger or when ``m`` is NaN, so a NaN ``v`` never
    beats a number (an all-NaN window ends on its last NaN and index, as under propagate)."""
    return mi < 0 or m != m or v > m


@cuda.jit(device=True, inline="always")
def sign(v, zero, one):
    """PyTorch's ``sign``: ``1``, ``-1``, or ``0`` for zero and NaN (``zero``/``one`` in ``v``'s dtype)."""
    return one if v > zero else (-one if v < zero else zero)
