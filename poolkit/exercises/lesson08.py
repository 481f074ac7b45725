"""Exercises for lesson 08, *Pooling on real data*.

Exercise 1 asks for a pooling pyramid (max, average or min, 2x2 windows);
exercise 2 asks for a template detector that finds its best match through a
max-pooled response map and ``return_indices``. :func:`correlate_valid` is
the small correlation helper the lesson and the detector share (SciPy is not
needed).

>>> import numpy as np
>>> from poolkit.exercises import lesson08
>>> [a.shape for a in lesson08.pyramid_spec(np.zeros((8, 10), np.float32), 2, "avg")]
[(8, 10), (4, 5), (2, 2)]
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import poolkit

from . import Case, compare

__all__ = [
    "correlate_valid",
    "pyramid_spec",
    "check_pyramid",
    "detect_spec",
    "check_detect",
]


def correlate_valid(image, template):
    """Cross-correlation of a 2-D ``image`` with a 2-D ``template``, 'valid' positions only.

    ``out[i, j] = sum(image[i:i+th, j:j+tw] * template)``; the output has shape
    ``(H - th + 1, W - tw + 1)`` and the dtype NumPy gives ``image * template``.
    Built on ``sliding_window_view`` (a view, no copy) and ``einsum``.

    >>> correlate_valid(np.arange(9.).reshape(3, 3), np.ones((2, 2)))
    array([[ 8., 12.],
           [20., 24.]])
    """
    image = np.asarray(image)
    template = np.asarray(template)
    windows = sliding_window_view(image, template.shape)
    return np.einsum("ijkl,kl->ij", windows, template)


# ------------------------------------------------------------------ exercise 1
def _pool_once(a, kind):
    if kind == "max":
        return poolkit.max_pool2d(a[None], 2)[0]
    if kind == "avg":
        return poolkit.avg_pool2d(a[None], 2)[0]
    if kind == "min":
        # -max(-a) reverses the order for floats; ~a (bitwise NOT) does it for
        # every integer type without overflow (~v == -v - 1).
        flip = np.invert if a.dtype.kind in "iu" else np.negative
        return flip(poolkit.max_pool2d(flip(a)[None], 2)[0])
    raise ValueError(f"pyramid: kind must be 'max', 'avg' or 'min', got {kind!r}")


def pyramid_spec(x, levels, kind):
    """Pooling pyramid: ``[x, pool(x), pool(pool(x)), ...]`` with ``levels`` + 1 entries.

    Each step is a 2x2 window with stride 2 (floor mode: an odd last row or
    column is dropped, as in ``poolkit.max_pool2d(x, 2)``). ``kind`` is
    ``"max"``, ``"avg"`` (float input) or ``"min"``. ``x`` is a 2-D ``(H, W)``
    array; level 0 is ``x`` itself.

    See Also
    --------
    check_pyramid : runs a learner's version against this one.
    """
    out = [np.asarray(x)]
    for _ in range(levels):
        out.append(_pool_once(out[-1], kind))
    return out


def _pyramid_cases() -> list[Case]:
    rng = np.random.default_rng(8)
    dem = (rng.integers(200, 1100, size=(27, 34))).astype(np.int16)
    img = rng.random((32, 48), dtype=np.float32)
    return [
        Case("float32 32x48, max, 3 levels", (img, 3, "max")),
        Case("float32 32x48, avg, 4 levels", (img, 4, "avg")),
        Case("float32 32x48, min, 2 levels", (img, 2, "min")),
        Case("int16 27x34 (odd sizes), max, 3 levels", (dem, 3, "max")),
        Case("int16 27x34 (odd sizes), min, 3 levels", (dem, 3, "min")),
        Case("float32, 0 levels (just the input)", (img, 0, "avg")),
    ]


def check_pyramid(fn) -> bool:
    """Check ``fn(x, levels, kind)`` level by level against :func:`pyramid_spec`.

    Prints one line per case (naming the first wrong level and what differs)
    and returns ``True`` when all pass.
    """
    return _run(fn, pyramid_spec, _pyramid_cases(), "pyramid", _compare_levels)


def _compare_levels(got, want, case=None) -> str | None:
    if got is None:
        return "your function returned None -- did you forget `return levels`?"
    if not isinstance(got, (list, tuple)):
        return f"your function returned a {type(got).__name__}, expected a list of arrays"
    if len(got) != len(want):
        return (f"{len(got)} levels, expected {len(want)} (level 0 is the input itself, "
                f"then one per pooling step)")
    for level, (g, w) in enumerate(zip(got, want)):
        problem = compare(g, w)
        if problem is not None:
            return f"level {level}: {problem}"
    return None


# ------------------------------------------------------------------ exercise 2
def detect_spec(image, template, pool_size):
    """Centre ``(row, col)`` of the best match of ``template`` in ``image``.

    The response is ``correlate_valid(image, template - template.mean())``
    (a zero-mean template ignores the local brightness); the best match is
    the response's largest value, found here with a plain ``argmax``. The
    response at ``(i, j)`` describes the window whose top-left corner is
    ``(i, j)``, so the centre is ``(i + th // 2, j + tw // 2)``. ``pool_size``
    is unused here: the learner's version pools with it and must find the
    same cell.

    Returns
    -------
    (2,) int64 array ``[row, col]``.

    See Also
    --------
    check_detect : runs a learner's version against this one.
    """
    template = np.asarray(template)
    resp = correlate_valid(image, template - template.mean())
    i, j = np.unravel_index(np.argmax(resp), resp.shape)
    th, tw = template.shape
    return np.array([i + th // 2, j + tw // 2], dtype=np.int64)


def _blob(size, sigma):
    r = np.arange(size) - size // 2
    return np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)


def _detect_cases() -> list[Case]:
    rng = np.random.default_rng(9)
    cases = []
    blob = _blob(7, 1.5)
    # (image size, blob centre, pool size): the last ones sit where a floor-mode
    # pooling grid would drop the response's last rows/columns.
    for (h, w), (r, c), k in [((40, 48), (12, 30), 4), ((40, 48), (30, 9), 8),
                              ((37, 45), (33, 41), 8), ((37, 45), (3, 41), 5)]:
        img = rng.normal(0.0, 0.2, size=(h, w)).astype(np.float32)
        img[r - 3:r + 4, c - 3:c + 4] += 2.0 * blob
        cases.append(Case(f"{h}x{w} noise, blob at ({r}, {c}), pool {k}", (img, blob, k)))
    return cases


def check_detect(fn) -> bool:
    """Check ``fn(image, template, pool_size)`` (returns ``(row, col)``) against :func:`detect_spec`.

    Prints one line per case and returns ``True`` when all pass. A result off
    by ``template.shape // 2`` means the top-left corner was returned instead
    of the centre; a miss near the bottom or right edge means the pooling
    dropped the last rows or columns of the response (see ``ceil_mode``).
    """
    return _run(fn, detect_spec, _detect_cases(), "detect", _judge_detect)


def _judge_detect(got, want, case) -> str | None:
    if _is_int_pair(got):
        got = np.asarray(got, dtype=np.int64)  # a tuple of Python ints is fine
    elif isinstance(got, (tuple, list)):
        got = np.asarray(got)  # compare() then explains the shape or dtype
    problem = compare(got, want)
    if problem is not None and _is_int_pair(got):
        half = np.array(case.args[1].shape) // 2
        image, template, pool_size = case.args
        resp_shape = np.array(image.shape) - np.array(template.shape) + 1
        covered = (resp_shape // pool_size) * pool_size  # what floor-mode windows read
        if np.array_equal(got + half, want):
            problem += " -- that is the window's top-left corner; add template.shape // 2"
        elif np.any(want - half >= covered):
            problem += (f" -- the best response sits in the last rows/columns of the "
                        f"{tuple(int(v) for v in resp_shape)} response, which floor-mode "
                        f"{pool_size}x{pool_size} windows never read; try ceil_mode=True")
    return problem


def _is_int_pair(got) -> bool:
    try:
        a = np.asarray(got)
    except Exception:  # pragma: no cover
        return False
    return a.shape == (2,) and a.dtype.kind in "iu"


def _run(fn, spec, cases, name, judge) -> bool:
    """Like :func:`poolkit.exercises.check`, with a lesson-specific ``judge(got, want, case)``."""
    ok = True
    for case in cases:
        want = spec(*case.args, **case.kwargs)
        try:
            # fresh copies: a function that writes into its input cannot spoil the next case
            args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in case.args)
            got = fn(*args, **case.kwargs)
            problem = judge(got, want, case)
        except Exception as exc:  # report, do not crash the lesson
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem is None:
            print(f"  ok    {name}: {case.name}")
        else:
            ok = False
            print(f"  FAIL  {name}: {case.name}: {problem}")
    print(f"{name}: {'all cases pass' if ok else 'some cases fail -- see above'}")
    return ok
