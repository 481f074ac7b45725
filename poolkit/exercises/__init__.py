"""Exercise checkers for the course notebooks (GPU-Puzzles style).

Each lesson's exercises live in ``poolkit.exercises.lessonNN`` and are built on
:func:`check`: it runs the learner's function on a few small cases, compares the
result with poolkit's answer and explains the first difference it finds in
words a learner can act on (wrong shape, wrong dtype, which output cell, which
window). It prints one line per case and returns ``True`` when all pass, so a
stored notebook's output is stable under nbval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Case", "check", "compare"]


@dataclass
class Case:
    """One test case: positional ``args`` and keyword ``kwargs`` for both functions."""

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


def compare(got: Any, want: np.ndarray, *, rtol: float = 1e-6, atol: float = 1e-6) -> str | None:
    """Return ``None`` if ``got`` matches ``want``, else a sentence saying what differs."""
    if got is None:
        return "your function returned None -- did you forget `return out`?"
    try:
        got = np.asarray(got)
    except Exception:  # pragma: no cover - exotic return values
        return f"your function returned a {type(got).__name__}, expected an array"
    want = np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if got.dtype != want.dtype and not (got.dtype.kind == want.dtype.kind == "f"):
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind == "f":
        same = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        same = got == want
    if same.all():
        return None
    bad = np.argwhere(~same)
    first = tuple(int(i) for i in bad[0])
    return (f"{len(bad)} of {want.size} values differ; first at index {first}: "
            f"got {got[first]!r}, expected {want[first]!r}")


def check(fn: Callable, spec: Callable, cases: list[Case], *, name: str | None = None,
          rtol: float = 1e-6, atol: float = 1e-6) -> bool:
    """Run ``fn`` and ``spec`` on each case and report, one line per case.

    ``spec`` is poolkit's answer (e.g. ``poolkit.max_pool2d``). Exceptions raised
    by ``fn`` are caught and reported, so a notebook keeps running.
    """
    name = name or getattr(fn, "__name__", "your function")
    ok = True
    for case in cases:
        want = spec(*case.args, **case.kwargs)
        try:
            got = fn(*case.args, **case.kwargs)
            problem = compare(got, want, rtol=rtol, atol=atol)
        except Exception as exc:  # report, do not crash the lesson
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem is None:
            print(f"  ok    {name}: {case.name}")
        else:
            ok = False
            print(f"  FAIL  {name}: {case.name}: {problem}")
    print(f"{name}: {'all cases pass' if ok else 'some cases fail -- see above'}")
    return ok
