"""Lesson 00's checkers: the output-size formula and the predicted pooled values."""
from __future__ import annotations

import pytest

from learner_code import out_size as _out_size
from poolkit.exercises import lesson00


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


def test_lesson00_output_size(capsys):
    ok, out = run(lesson00.check_output_size, _out_size, capsys=capsys)
    assert ok and "FAIL" not in out
    ok, out = run(lesson00.check_output_size, lambda L, k, s, p: (L + 2 * p - k) / s + 1, capsys=capsys)
    assert not ok and "use // (floor division)" in out
    ok, out = run(lesson00.check_output_size, lambda L, k, s, p: (L + p - k) // s + 1, capsys=capsys)
    assert not ok and "L=7, kernel 3, stride 2, padding 1: got 3, expected 4" in out
    assert "BOTH sides" in out
    ok, out = run(lesson00.check_output_size, lambda L, k, s, p: None, capsys=capsys)
    assert not ok and "returned None" in out


def test_lesson00_predictions(capsys):
    x = lesson00.PREDICT_X
    right_max = [[x[:2, :2].max(), x[:2, 2:].max()], [x[2:, :2].max(), x[2:, 2:].max()]]
    right_avg = [[x[:2, :2].mean(), x[:2, 2:].mean()], [x[2:, :2].mean(), x[2:, 2:].mean()]]
    ok, out = run(lesson00.check_predictions, right_max, right_avg, capsys=capsys)
    assert ok and "all correct" in out
    wrong = [row[:] for row in right_max]
    wrong[1][1] = 8
    ok, out = run(lesson00.check_predictions, wrong, None, capsys=capsys)
    assert not ok
    assert "output cell (1, 1) pools input rows 2..3 and columns 2..3" in out
    assert "still None" in out
    with pytest.raises(ValueError):
        lesson00.PREDICT_X[0, 0] = 1  # read-only: the exercise data cannot drift
