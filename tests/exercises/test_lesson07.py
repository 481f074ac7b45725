"""Lesson 07's checkers: shift sensitivity and min pooling. They accept a correct solution
and reject (and explain) a wrong one; their specifications agree with hand-worked values
and with poolkit's reference loops.

Each wrong solution is a mistake learners make: ``np.roll`` instead of a sliding crop
(content wraps around instead of leaving the view), ``-x`` on unsigned or extreme
signed integers.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import poolkit
from poolkit import reference
from poolkit.exercises import lesson07
from strategies import pool2d_problem


def run(checker, fn, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(fn)
    return ok, capsys.readouterr().out


# ------------------------------------------------------------------ lesson 07, exercise 1
def good_shift_sensitivity(image, kernel_size, max_shift, mode="max"):
    pool = poolkit.max_pool2d if mode == "max" else poolkit.avg_pool2d
    w = image.shape[1] - max_shift
    views = [np.ascontiguousarray(image[None, :, s:s + w]) for s in range(max_shift + 1)]
    pooled = [pool(v, kernel_size)[0] for v in views]  # float32 arithmetic is fine
    return np.array([np.linalg.norm(p - pooled[0]) / np.linalg.norm(pooled[0]) for p in pooled])


def rolled_shift_sensitivity(image, kernel_size, max_shift, mode="max"):
    pool = poolkit.max_pool2d if mode == "max" else poolkit.avg_pool2d
    base = pool(image[None], kernel_size)[0]
    return np.array([np.linalg.norm(pool(np.roll(image, -s, axis=1)[None], kernel_size)[0] - base)
                     / np.linalg.norm(base) for s in range(max_shift + 1)])


def unnormalised_shift_sensitivity(image, kernel_size, max_shift, mode="max"):
    r = good_shift_sensitivity(image, kernel_size, max_shift, mode)
    pool = poolkit.max_pool2d if mode == "max" else poolkit.avg_pool2d
    w = image.shape[1] - max_shift
    return r * np.linalg.norm(pool(np.ascontiguousarray(image[None, :, :w]), kernel_size))


def test_shift_spec_hand_worked():
    # One spike at column 2, 4x4 windows: shifts 1 and 2 keep it in the first
    # window (no change); shift 3 pushes it out of the view (the pooled map
    # loses its only non-zero cell: relative change 1).
    x = np.zeros((8, 12), np.float32)
    x[2, 2] = 1.0
    np.testing.assert_array_equal(lesson07.shift_sensitivity_spec(x, 4, 3), [0, 0, 0, 1])
    # 2x2 windows: the spike crosses into the neighbouring window at shift 1
    # (columns 2 -> 1): old cell loses 1/4, new cell gains 1/4 -> sqrt(2).
    r = lesson07.shift_sensitivity_spec(x, 2, 3, mode="avg")
    np.testing.assert_allclose(r, [0, np.sqrt(2), 0 + np.sqrt(2), 1.0])


def test_shift_accepts_correct(capsys):
    ok, out = run(lesson07.check_shift_sensitivity, good_shift_sensitivity, capsys)
    assert ok, out
    assert "FAIL" not in out and "all cases pass" in out


@pytest.mark.parametrize("wrong, words", [
    (rolled_shift_sensitivity, "values differ"),
    (unnormalised_shift_sensitivity, "values differ"),
    (lambda image, k, m, mode="max": good_shift_sensitivity(image, k, m, mode)[1:], "shape"),
    (lambda image, k, m, mode="max": None, "returned None"),
    (lambda image, k, m, mode="max": good_shift_sensitivity(image, k, m, "max"), "values differ"),
])
def test_shift_rejects_wrong(wrong, words, capsys):
    ok, out = run(lesson07.check_shift_sensitivity, wrong, capsys)
    assert not ok
    assert "FAIL" in out and words in out and "some cases fail" in out


# ------------------------------------------------------------------ lesson 07, exercise 2
def good_min_pool2d(x, kernel_size, stride=None, padding=0):
    flip = np.invert if x.dtype.kind in "iu" else np.negative
    return flip(poolkit.max_pool2d(flip(x), kernel_size, stride, padding))


@settings(max_examples=60, deadline=None)
@given(pool2d_problem(op="max", dtypes=("float32", "float64", "int16", "uint8")))
def test_min_spec_matches_reference(problem):
    """min over a window == -max(-x) of the reference loops, for any kernel/stride/padding."""
    x, kw, layout = problem
    if layout == "NHWC":  # the spec is channels-first; dilation 1 and floor mode fit any drawn problem
        x = np.moveaxis(x, -1, -3)
    got = lesson07.min_pool2d_spec(x, kw["kernel_size"], kw["stride"], kw["padding"])
    if x.dtype.kind == "f":
        want = -reference.max_pool2d(-x, kw["kernel_size"], kw["stride"], kw["padding"])
    else:
        wide = x.astype(np.int64)
        want = (-reference.max_pool2d(-wide, kw["kernel_size"], kw["stride"], kw["padding"])).astype(x.dtype)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


def test_min_accepts_correct(capsys):
    ok, out = run(lesson07.check_min_pool2d, good_min_pool2d, capsys)
    assert ok, out


@pytest.mark.parametrize("wrong, case, words", [
    (lambda x, k, s=None, p=0: -poolkit.max_pool2d(-x, k, s, p), "uint8", "values differ"),
    (lambda x, k, s=None, p=0: -poolkit.max_pool2d(-x, k, s, p), "int16", "got -179, expected -32768"),
    (lambda x, k, s=None, p=0: -poolkit.max_pool2d(-x.astype(np.float64), k, s, p), "uint8", "dtype float64"),
    (lambda x, k, s=None, p=0: poolkit.max_pool2d(x, k, s, p), "float32", "values differ"),
    (lambda x, k, s=None, p=0: -poolkit.max_pool2d(-x, k, 1, p), "2x2 window", "shape"),
])
def test_min_rejects_wrong(wrong, case, words, capsys):
    ok, out = run(lesson07.check_min_pool2d, wrong, capsys)
    assert not ok
    lines = [ln for ln in out.splitlines() if "FAIL" in ln and case in ln]
    assert lines and any(words in ln for ln in lines), out
