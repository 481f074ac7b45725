"""Lesson 04's checkers: ``prange`` pooling (parallel=True *and* a prange) and the roofline floor."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange

from learner_code import nchw_loops_jit as _nchw_loops_jit
from learner_code import nchw_max
from learner_code import out_size as _out_size
from poolkit.exercises import lesson04


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


@njit(parallel=True)
def prange_max(x, k, s, p):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for q in prange(N * C):
        n, c = q // C, q % C
        for i in range(OH):
            for j in range(OW):
                m = -np.inf
                for a in range(k):
                    r = i * s - p + a
                    for b in range(k):
                        cc = j * s - p + b
                        if 0 <= r < H and 0 <= cc < W and x[n, c, r, cc] > m:
                            m = x[n, c, r, cc]
                out[n, c, i, j] = m
    return out


@njit(parallel=True)
def parallel_without_prange(x, k, s, p):
    return _nchw_loops_jit(x, k, s, p, 0)


def test_lesson04_prange(capsys):
    ok, out = run(lesson04.check_prange_max_pool, prange_max, capsys=capsys)
    assert ok and "FAIL" not in out
    ok, out = run(lesson04.check_prange_max_pool, njit(prange_max.py_func), capsys=capsys)
    assert not ok and "without parallel=True" in out
    ok, out = run(lesson04.check_prange_max_pool, parallel_without_prange, capsys=capsys)
    assert not ok and "no prange in the function" in out
    ok, out = run(lesson04.check_prange_max_pool, nchw_max, capsys=capsys)
    assert not ok and "not compiled" in out


def _roofline(shape, k, s, p, itemsize, bw):
    N, C, H, W = shape
    n_in = N * C * H * W
    n_out = N * C * _out_size(H, k, s, p) * _out_size(W, k, s, p)
    return (n_in + n_out) * itemsize / (bw * 1e9)


@pytest.mark.parametrize("wrong, why", [
    (lambda sh, k, s, p, i, bw: np.prod(sh) * i / (bw * 1e9), "input's bytes only"),
    (lambda *a: _roofline(*a[:4], 1, a[5]), "counts elements, not bytes"),
    (lambda *a: _roofline(*a) * 1e9, "1e9 bytes per second"),
    (lambda *a: _roofline(*a) * 1e3, "not milliseconds"),
])
def test_lesson04_roofline_mistakes_named(wrong, why, capsys):
    ok, out = run(lesson04.check_roofline_floor, wrong, capsys=capsys)
    assert not ok and why in out


def test_lesson04_roofline(capsys):
    ok, out = run(lesson04.check_roofline_floor, _roofline, capsys=capsys)
    assert ok and "FAIL" not in out
    assert lesson04.roofline_floor((1, 1, 4, 4), 2, 2, 0, 4, 1.0) == pytest.approx(80 / 1e9)
    ok, out = run(lesson04.check_roofline_floor, lambda *a: _roofline(*a) * 1.5, capsys=capsys)
    assert not ok and "FAIL" in out
