"""Lesson 03's checkers: ``@njit`` pooling (compiled, padding never wins, float32 stays float32)."""
from __future__ import annotations

import numpy as np
from numba import njit

from learner_code import nchw_avg
from learner_code import nchw_loops_jit as _nchw_loops_jit
from poolkit.exercises import lesson03


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


@njit
def njit_avg(x, k, s):
    return _nchw_loops_jit(x, k, s, 0, 1)


@njit
def njit_max(x, k, s, p):
    return _nchw_loops_jit(x, k, s, p, 0)


def test_lesson03_accepts_njit_solutions(capsys):
    ok, out = run(lesson03.check_njit_avg_pool, njit_avg, capsys=capsys)
    assert ok and "FAIL" not in out
    ok, out = run(lesson03.check_njit_max_pool_padding, njit_max, capsys=capsys)
    assert ok and "FAIL" not in out


def test_lesson03_requires_njit(capsys):
    ok, out = run(lesson03.check_njit_avg_pool, nchw_avg, capsys=capsys)
    assert not ok
    assert "not compiled -- put @njit" in out and "the results are right" in out


def test_lesson03_zero_padding_rejected(capsys):
    @njit
    def zero_padded(x, k, s, p):
        N, C, H, W = x.shape
        xp = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=x.dtype)
        xp[:, :, p:p + H, p:p + W] = x
        return _nchw_loops_jit(xp, k, s, 0, 0)

    ok, out = run(lesson03.check_njit_max_pool_padding, zero_padded, capsys=capsys)
    assert not ok and "5x5 all negative" in out and "padding cells never win" in out
    assert "ok    zero_padded: seed 4x4" in out  # without padding it is right


def test_lesson03_float64_output_rejected(capsys):
    @njit
    def f64(x, k, s):
        return _nchw_loops_jit(x, k, s, 0, 1).astype(np.float64)

    ok, out = run(lesson03.check_njit_avg_pool, f64, capsys=capsys)
    assert not ok and "dtype float64, expected float32" in out
