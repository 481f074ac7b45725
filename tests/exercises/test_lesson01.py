"""Lesson 01's checkers: a learner's plain-loop max and average pooling of one plane.

Each wrong solution is a mistake learners make: zero padding in a max pool, an
off-by-one stride, a float64 output for float32 input, d2l's stride-1 scratch pool,
a divisor that counts only the valid cells.
"""
from __future__ import annotations

import numpy as np

from learner_code import out_size as _out_size
from poolkit.exercises import lesson01


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


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
