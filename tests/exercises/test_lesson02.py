"""Lesson 02's checkers: average pooling by reshaping, max pooling with sliding windows."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from poolkit.exercises import lesson02


def run(checker, *args, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(*args)
    out = capsys.readouterr().out
    return ok, out


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
