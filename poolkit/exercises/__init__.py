"""Exercise checkers for the course notebooks (GPU-Puzzles style).

Each lesson's exercises live in ``poolkit.exercises.lessonNN`` and are built on
:func:`check`: it runs the learner's function on a few small cases, compares the
result with poolkit's answer and explains the first difference it finds in
words a learner can act on (wrong shape, wrong dtype, which output cell, which
window). It prints one line per case and returns ``True`` when all pass, so a
stored notebook's output is stable under nbval.

Building a checker for a new exercise::

    from poolkit.exercises import Case, check, pool_window_explainer

    def check_my_pool(fn):                      # fn(x, kernel_size, stride)
        x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
        cases = [Case("4x4, kernel 2, stride 2", (x, 2, 2),
                      hint="window (i, j) starts at row i*stride, column j*stride")]
        return check(fn, poolkit.max_pool2d, cases, strict_dtype=True,
                     explain=pool_window_explainer(x_arg=0, kernel_arg=1, stride_arg=2))

A failing case prints what differs (shape, dtype, or the first wrong cell and
the input window it pools), then the case's hint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import geometry as G

__all__ = ["Case", "check", "compare", "describe_window", "describe_output_size",
           "pool_window_explainer"]


@dataclass
class Case:
    """One test case: positional ``args`` and keyword ``kwargs`` for both functions.

    ``hint`` (optional) is printed under a case that fails on shape or values or
    raises: what this case exercises and the usual mistake it catches (e.g.
    "padding cells must never win a max"). Dtype problems carry their own advice.
    """

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    hint: str = ""


def _difference(got: Any, want: Any, *, rtol: float, atol: float,
                strict_dtype: bool) -> tuple[str | None, tuple | None, str]:
    """``(message, first differing index, kind)``; ``message`` is None when ``got`` matches.

    ``kind`` is one of ``"ok"``, ``"type"`` (None, a tuple, not numeric),
    ``"shape"``, ``"dtype"`` and ``"values"``.
    """
    if got is None:
        return "your function returned None -- is its `return` missing (or is it still the skeleton)?", None, "type"
    if isinstance(got, tuple) and not isinstance(want, tuple):
        return (f"your function returned a tuple of {len(got)} items, expected one array "
                "-- return just the pooled array"), None, "type"
    try:
        got = np.asarray(got)
    except Exception:  # ragged lists and other exotic return values
        return f"your function returned a {type(got).__name__} that is not an array of numbers", None, "type"
    want = np.asarray(want)
    if got.dtype == object:
        return ("the answer is not a numeric array (ragged nested lists, or items that are not numbers?)",
                None, "type")
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}", None, "shape"
    kinds_ok = got.dtype.kind == want.dtype.kind == "f" and not strict_dtype
    if got.dtype != want.dtype and not kinds_ok:
        if want.ndim == 0 and want.dtype.kind in "iu" and got.dtype.kind == "f":
            why = "a count is a whole number: use // (floor division) rather than /"
        elif want.ndim == 0:
            why = f"return a {want.dtype.kind in 'iu' and 'whole number' or 'float'}"
        else:
            why = "pooling keeps the input's dtype: create the output with dtype=x.dtype"
        return f"dtype {got.dtype}, expected {want.dtype} ({why})", None, "dtype"
    if want.dtype.kind == "f":
        same = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        same = got == want
    if same.all():
        return None, None, "ok"
    if want.ndim == 0:
        return f"got {got.item()!r}, expected {want.item()!r}", None, "values"
    bad = np.argwhere(~same)
    first = tuple(int(i) for i in bad[0])
    return (f"{len(bad)} of {want.size} values differ; first at index {first}: "
            f"got {got[first].item()!r}, expected {want[first].item()!r}"), first, "values"


def compare(got: Any, want: np.ndarray, *, rtol: float = 1e-6, atol: float = 1e-6,
            strict_dtype: bool = False) -> str | None:
    """Return ``None`` if ``got`` matches ``want``, else a sentence saying what differs.

    Shapes must match exactly. Dtypes must match, except that any float dtype is
    accepted for a float answer unless ``strict_dtype`` is true. Floats are
    compared with ``np.isclose`` (NaN equals NaN); everything else exactly.
    """
    return _difference(got, want, rtol=rtol, atol=atol, strict_dtype=strict_dtype)[0]


def _copy_args(args):
    """Fresh copies of array arguments, so a function that writes into its input
    cannot change the next call's data."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _short(exc: BaseException, max_lines: int = 6) -> str:
    """An exception's message, cut to a few lines (Numba's typing errors run long)."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= max_lines:
        return "\n".join(lines)
    return "\n".join(lines[:max_lines] + ["(... cut: call your function directly to see the whole message)"])


def check(fn: Callable, spec: Callable, cases: list[Case], *, name: str | None = None,
          rtol: float = 1e-6, atol: float = 1e-6, strict_dtype: bool = False,
          explain: Callable[[Case, tuple], str | None] | None = None) -> bool:
    """Run ``fn`` and ``spec`` on each case and report, one line per case.

    Parameters
    ----------
    fn : callable
        The learner's function.
    spec : callable
        poolkit's answer (e.g. ``poolkit.max_pool2d``), called with the same arguments.
    cases : list of Case
    name : str, optional
        Name used in the report (default: ``fn.__name__``).
    rtol, atol : float
        Tolerances for float results.
    strict_dtype : bool
        Also require the exact float dtype (float32 stays float32).
    explain : callable, optional
        ``explain(case, index)`` returns an extra sentence (or None): for a value
        mismatch at output ``index`` (for example which input window that output
        cell pools), and with ``index=None`` for a shape mismatch (for example how
        the expected output size comes about). See :func:`pool_window_explainer`.

    Returns
    -------
    bool
        True when every case passes. Exceptions raised by ``fn`` are caught and
        reported, so a notebook keeps running.
    """
    name = name or getattr(fn, "__name__", "your function")
    ok = True
    for case in cases:
        want = spec(*_copy_args(case.args), **case.kwargs)
        index = None
        try:
            got = fn(*_copy_args(case.args), **case.kwargs)
            problem, index, kind = _difference(got, want, rtol=rtol, atol=atol, strict_dtype=strict_dtype)
        except Exception as exc:  # report, do not crash the lesson
            problem, kind = f"raised {type(exc).__name__}: {_short(exc)}", "raised"
        if problem is None:
            print(f"  ok    {name}: {case.name}")
            continue
        ok = False
        print(f"  FAIL  {name}: {case.name}: {problem}")
        if explain is not None and kind in ("shape", "values"):
            extra = explain(case, index)
            if extra:
                print(f"        {extra}")
        if case.hint and kind in ("shape", "values", "raised"):
            print(f"        hint: {case.hint}")
    print(f"{name}: {'all cases pass' if ok else 'some cases fail -- see above'}")
    return ok


def _span(o: int, L: int, k: int, s: int, p: int, d: int) -> str:
    start = o * s - p
    taps = [start + j * d for j in range(k)]
    inside = [t for t in taps if 0 <= t < L]
    outside = len(taps) - len(inside)
    if d == 1:
        txt = f"{start}..{start + k - 1}"
    else:
        txt = "{" + ", ".join(map(str, taps)) + "}"
    if outside:
        txt += f" ({outside} of them padding)"
    return txt


def describe_window(index, in_hw, kernel_size, stride=None, padding=0, dilation=1) -> str:
    """Say which input rows and columns an output cell pools, in words.

    ``index`` is an output index whose last two entries are (row, column);
    ``in_hw`` the input's (H, W). Indices below 0 or past the input are padding.

    >>> describe_window((0, 0, 1, 0), (4, 4), 2)
    'output cell (1, 0) pools input rows 2..3 and columns 0..1'
    """


    H, W = in_hw
    kh, kw = G.normalize_tuple(kernel_size, 2, "kernel_size", "describe_window", minimum=1)
    if stride is None:
        sh, sw = kh, kw
    else:
        sh, sw = G.normalize_tuple(stride, 2, "stride", "describe_window", minimum=1)
    ph, pw = G.normalize_tuple(padding, 2, "padding", "describe_window", minimum=0)
    dh, dw = G.normalize_tuple(dilation, 2, "dilation", "describe_window", minimum=1)
    oh, ow = index[-2], index[-1]
    return (f"output cell ({oh}, {ow}) pools input rows {_span(oh, H, kh, sh, ph, dh)} "
            f"and columns {_span(ow, W, kw, sw, pw, dw)}")


def describe_output_size(in_hw, kernel_size, stride=None, padding=0, dilation=1) -> str:
    """Show the output-size arithmetic (floor mode) for an input of spatial size ``in_hw``.

    >>> describe_output_size((5, 7), 2)
    'output rows = (5 + 2*0 - 2) // 2 + 1 = 2; output columns = (7 + 2*0 - 2) // 2 + 1 = 3'
    """


    k = G.normalize_tuple(kernel_size, 2, "kernel_size", "describe_output_size", minimum=1)
    s = k if stride is None else G.normalize_tuple(stride, 2, "stride", "describe_output_size", minimum=1)
    p = G.normalize_tuple(padding, 2, "padding", "describe_output_size", minimum=0)
    d = G.normalize_tuple(dilation, 2, "dilation", "describe_output_size", minimum=1)
    parts = []
    for axis, L, ki, si, pi, di in zip(("rows", "columns"), in_hw, k, s, p, d):
        span = str(ki) if di == 1 else f"{di}*({ki}-1)+1"
        out = G.pool_output_size(L, ki, si, pi, di, False)
        parts.append(f"output {axis} = ({L} + 2*{pi} - {span}) // {si} + 1 = {out}")
    return "; ".join(parts)


def pool_window_explainer(x_arg: int = 0, kernel_arg: int = 1, stride_arg: int | None = 2,
                          padding_arg: int | None = None, dilation_arg: int | None = None,
                          channels_last: bool = False):
    """Build an ``explain`` callback for :func:`check` from the positions of the arguments.

    Each ``*_arg`` is the position of that argument in ``Case.args`` (``None``:
    not passed, so its default applies). For a value mismatch the callback names
    the input window the wrong output cell pools (see :func:`describe_window`);
    for a shape mismatch it shows how the expected output size is computed.
    """
    def get(case, pos, default):
        if pos is None or pos >= len(case.args):
            return default
        return case.args[pos]

    def explain(case: Case, index: tuple | None) -> str | None:
        x = np.asarray(case.args[x_arg])
        if x.ndim < 2:
            return None
        hw = x.shape[-3:-1] if channels_last else x.shape[-2:]
        geo = (get(case, kernel_arg, None), get(case, stride_arg, None),
               get(case, padding_arg, 0), get(case, dilation_arg, 1))
        try:
            if index is None:
                return describe_output_size(hw, *geo)
            idx = index[:-1] if channels_last else index
            return describe_window(idx, hw, *geo)
        except (TypeError, ValueError):  # pragma: no cover - a malformed case
            return None

    return explain
