"""The exercise checkers of lessons 00-04: they accept a correct solution and reject
(and explain) a wrong one.

Each wrong solution below is a mistake a learner actually makes: off-by-one
stride, zero padding in a max pool, a float64 output for float32 input, a
missing ``return``, ``/`` instead of ``//``, a missing ``@njit`` or ``prange``.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange
from numpy.lib.stride_tricks import sliding_window_view

from poolkit.exercises import (Case, check, compare, describe_output_size, describe_window,
                               lesson00, lesson01, lesson02, lesson03, lesson04)


# ------------------------------------------------------------------ helpers
def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


def _out_size(L, k, s, p):
    return (L + 2 * p - k) // s + 1


def _loop_pool_plane(x, k, s, p, *, op="max", zero_pad=False, out_dtype=None, stride_in_loop=None):
    """A learner's 2-D loop pool (one plane), with switchable mistakes."""
    H, W = x.shape
    OH, OW = _out_size(H, k, s, p), _out_size(W, k, s, p)
    out = np.empty((OH, OW), dtype=out_dtype or x.dtype)
    step = s if stride_in_loop is None else stride_in_loop
    for i in range(OH):
        for j in range(OW):
            vals = []
            for a in range(k):
                for b in range(k):
                    r, c = i * step - p + a, j * step - p + b
                    if 0 <= r < H and 0 <= c < W:
                        vals.append(x[r, c])
                    elif zero_pad or op == "avg":
                        vals.append(0)
            out[i, j] = max(vals) if op == "max" else sum(vals) / (k * k)
    return out


def _nchw_loops(x, k, s, p, op):
    N, C, H, W = x.shape
    OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    for q in prange(N * C):
        n, c = q // C, q % C
        for i in range(OH):
            for j in range(OW):
                m = -np.inf if op == 0 else 0.0
                for a in range(k):
                    r = i * s - p + a
                    if r < 0 or r >= H:
                        continue
                    for b in range(k):
                        cc = j * s - p + b
                        if cc < 0 or cc >= W:
                            continue
                        if op == 0:
                            if x[n, c, r, cc] > m:
                                m = x[n, c, r, cc]
                        else:
                            m += x[n, c, r, cc]
                out[n, c, i, j] = m if op == 0 else m / (k * k)
    return out


def nchw_max(x, k, s, p):
    return _nchw_loops(x, k, s, p, 0)


def nchw_avg(x, k, s):
    return _nchw_loops(x, k, s, 0, 1)


_nchw_loops_jit = njit(_nchw_loops)
_nchw_loops_par = njit(parallel=True)(_nchw_loops)


@njit
def njit_avg(x, k, s):
    return _nchw_loops_jit(x, k, s, 0, 1)


@njit
def njit_max(x, k, s, p):
    return _nchw_loops_jit(x, k, s, p, 0)


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


# ------------------------------------------------------------------ the framework
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


# ------------------------------------------------------------------ lesson 00
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


# ------------------------------------------------------------------ lesson 01
def test_lesson01_accepts_correct_loops(capsys):
    ok, out = run(lesson01.check_max_pool_loops, _loop_pool_plane, capsys=capsys)
    assert ok and "FAIL" not in out
    ok, out = run(lesson01.check_avg_pool_loops, lambda *a: _loop_pool_plane(*a, op="avg"), capsys=capsys)
    assert ok and "FAIL" not in out


def test_lesson01_zero_padding_is_explained(capsys):
    ok, out = run(lesson01.check_max_pool_loops, lambda *a: _loop_pool_plane(*a, zero_pad=True), capsys=capsys)
    assert not ok
    assert "FAIL  <lambda>: 5x5 all negative, kernel 3, stride 2, padding 1" in out
    assert "(1 of them padding)" in out and "never as 0" in out


def test_lesson01_off_by_one_stride_is_explained(capsys):
    # windows placed with stride 1 while the output has the strided size
    ok, out = run(lesson01.check_max_pool_loops, lambda *a: _loop_pool_plane(*a, stride_in_loop=1),
                  capsys=capsys)
    assert not ok
    assert "FAIL  <lambda>: seed 4x4 (1..16), kernel 2, stride 2: 3 of 4 values differ" in out
    assert "output cell (0, 1) pools input rows 0..1 and columns 2..3" in out


def test_lesson01_wrong_dtype_and_shape(capsys):
    ok, out = run(lesson01.check_max_pool_loops, lambda *a: _loop_pool_plane(*a, out_dtype=np.float64),
                  capsys=capsys)
    assert not ok and "dtype float64, expected float32" in out and "dtype float64, expected int32" in out

    def d2l_style(x, k, s, p):  # ignores stride and padding: d2l's scratch pool2d
        return _loop_pool_plane(x, k, 1, 0)

    ok, out = run(lesson01.check_max_pool_loops, d2l_style, capsys=capsys)
    assert not ok and "shape (3, 3), expected (2, 2)" in out
    assert "output rows = (4 + 2*0 - 2) // 2 + 1 = 2" in out


def test_lesson01_avg_divisor(capsys):
    def count_valid_only(x, k, s, p):
        H, W = x.shape
        OH, OW = _out_size(H, k, s, p), _out_size(W, k, s, p)
        out = np.empty((OH, OW), x.dtype)
        for i in range(OH):
            for j in range(OW):
                r0, c0 = max(i * s - p, 0), max(j * s - p, 0)
                out[i, j] = x[r0:i * s - p + k, c0:j * s - p + k].mean()
        return out

    ok, out = run(lesson01.check_avg_pool_loops, count_valid_only, capsys=capsys)
    assert not ok and "count_include_pad=True" in out
    ok, out = run(lesson01.check_avg_pool_loops, lambda x, k, s, p: None, capsys=capsys)
    assert not ok and out.count("returned None") == 6


# ------------------------------------------------------------------ lesson 02
def _reshape_avg(x, k, crop=True):
    N, C, H, W = x.shape
    if crop:
        x = x[:, :, :H // k * k, :W // k * k]
    return x.reshape(N, C, H // k, k, W // k, k).mean(axis=(3, 5))


def _windows_max(x, k, s):
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s].max(axis=(-2, -1))


def test_lesson02_reshape_avg(capsys):
    ok, out = run(lesson02.check_avg_pool_reshape, _reshape_avg, capsys=capsys)
    assert ok and "FAIL" not in out
    ok, out = run(lesson02.check_avg_pool_reshape, lambda x, k: _reshape_avg(x, k, crop=False), capsys=capsys)
    assert not ok and "raised ValueError: cannot reshape" in out and "crop first" in out
    ok, out = run(lesson02.check_avg_pool_reshape, lambda x, k: _reshape_avg(x, k).astype(np.float64),
                  capsys=capsys)
    assert not ok and "dtype float64, expected float32" in out


def test_lesson02_windows_max(capsys):
    ok, out = run(lesson02.check_max_pool_windows, _windows_max, capsys=capsys)
    assert ok and "FAIL" not in out
    # forgot to subsample by the stride
    ok, out = run(lesson02.check_max_pool_windows, lambda x, k, s: _windows_max(x, k, 1), capsys=capsys)
    assert not ok and "shape (1, 1, 3, 3), expected (1, 1, 2, 2)" in out and "::stride" in out
    # off by one: started the subsampling at the second window
    ok, out = run(lesson02.check_max_pool_windows,
                  lambda x, k, s: sliding_window_view(x, (k, k), axis=(2, 3))[:, :, 1::s, 1::s].max(axis=(-2, -1)),
                  capsys=capsys)
    assert not ok and "FAIL" in out


# ------------------------------------------------------------------ lesson 03
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


# ------------------------------------------------------------------ lesson 04
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
