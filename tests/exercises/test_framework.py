"""The exercise framework (:mod:`poolkit.exercises`): ``compare``'s messages, ``check``'s
reports, and the window/output-size descriptions every lesson's hints use."""
from __future__ import annotations

import numpy as np

from poolkit.exercises import Case, check, compare, describe_output_size, describe_window


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


def test_compare_messages():
    want = np.arange(4, dtype=np.float32).reshape(2, 2)
    assert compare(want.copy(), want) is None
    assert "returned None" in compare(None, want)
    assert "shape (3,), expected (2, 2)" in compare(np.zeros(3, np.float32), want)
    assert "dtype int64" in compare(want.astype(np.int64), want)
    # float64 for float32 passes unless strict
    assert compare(want.astype(np.float64), want) is None
    assert "dtype float64, expected float32" in compare(want.astype(np.float64), want, strict_dtype=True)
    bad = want.copy()
    bad[1, 0] = 7
    msg = compare(bad, want)
    assert "1 of 4 values differ" in msg and "(1, 0)" in msg and "got 7.0, expected 2.0" in msg
    assert "ragged" in compare(np.array([[1, 2], [3]], dtype=object), want)
    assert "tuple of 2 items" in compare((want, want), want)
    # NaN equals NaN
    assert compare(np.array([np.nan]), np.array([np.nan])) is None


def test_check_reports_exceptions_and_hints(capsys):
    x = np.arange(16, dtype=np.float32).reshape(4, 4)

    def boom(x):
        raise IndexError("index 4 is out of bounds")

    cases = [Case("four by four", (x,), hint="look at the edges")]
    ok, out = run(lambda f: check(f, lambda x: x, cases), boom, capsys=capsys)
    assert not ok
    assert "FAIL  boom: four by four: raised IndexError: index 4 is out of bounds" in out
    assert "hint: look at the edges" in out
    assert out.strip().endswith("boom: some cases fail -- see above")


def test_check_copies_inputs(capsys):
    """A function that writes into its input must not change what the spec sees."""
    x = np.ones((2, 2))

    def scribble(x):
        x[:] = 5
        return x.copy()

    ok, out = run(lambda f: check(f, lambda x: x.copy(), [Case("c", (x,))]), scribble, capsys=capsys)
    assert not ok and np.all(x == 1)


def test_describe_window_and_output_size():
    assert describe_window((0, 0, 1, 0), (4, 4), 2) == "output cell (1, 0) pools input rows 2..3 and columns 0..1"
    msg = describe_window((0, 0), (5, 5), 3, 2, 1)
    assert "rows -1..1 (1 of them padding)" in msg
    assert "{0, 2}" in describe_window((0, 0), (5, 5), 2, 1, 0, 2)
    assert describe_output_size((5, 7), 2) == (
        "output rows = (5 + 2*0 - 2) // 2 + 1 = 2; output columns = (7 + 2*0 - 2) // 2 + 1 = 3")
