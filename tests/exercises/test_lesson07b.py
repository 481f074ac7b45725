"""Lesson 07b's checkers: a convolution's multiply-adds and the input cells no pooling
window reads. They accept a correct solution and reject (and explain) a wrong one; their
specifications agree with hand-worked values and with a brute-force count.

Each wrong solution is a mistake learners make: counting input instead of output
positions (ignoring the stride), forgetting the input channels (a depthwise count),
``k`` instead of ``k**2``; for the unread cells, the floor-mode leftover alone (which
misses the gaps of stride > kernel_size) and a float answer.
"""
from __future__ import annotations

import pytest

from poolkit.exercises import lesson07b


def run(checker, fn, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(fn)
    return ok, capsys.readouterr().out


# ------------------------------------------------------------------ exercise 1
def good_macs(H, W, C_in, C_out, kernel_size, stride=1, padding=0):
    oh = (H + 2 * padding - kernel_size) // stride + 1
    ow = (W + 2 * padding - kernel_size) // stride + 1
    return oh * ow * C_out * C_in * kernel_size ** 2


def test_macs_spec_hand_worked():
    assert lesson07b.conv2d_macs_spec(56, 56, 64, 64, 3, 1, 1) == 56 * 56 * 64 * 64 * 9
    assert lesson07b.conv2d_macs_spec(56, 56, 64, 64, 3, 1, 1) == 4 * lesson07b.conv2d_macs_spec(28, 28, 64, 64, 3, 1, 1)
    assert lesson07b.conv2d_macs_spec(56, 56, 64, 64, 3, 2, 1) == lesson07b.conv2d_macs_spec(28, 28, 64, 64, 3, 1, 1)
    assert lesson07b.conv2d_macs_spec(5, 5, 1, 1, 5) == 25


def test_macs_accepts_correct(capsys):
    ok, out = run(lesson07b.check_conv2d_macs, good_macs, capsys)
    assert ok, out
    assert "all cases pass" in out


@pytest.mark.parametrize("wrong, words", [
    (lambda H, W, C_in, C_out, k, stride=1, padding=0: H * W * C_out * C_in * k * k,
     "count the *output* positions"),
    (lambda H, W, C_in, C_out, k, stride=1, padding=0: good_macs(H, W, 1, C_out, k, stride, padding),
     "sums over the input channels"),
    (lambda H, W, C_in, C_out, k, stride=1, padding=0: good_macs(H, W, C_in, C_out, k, stride, padding) // k,
     "got"),
    (lambda H, W, C_in, C_out, k, stride=1, padding=0: float(good_macs(H, W, C_in, C_out, k, stride, padding)),
     "whole number"),
    (lambda *a: None, "returned None"),
])
def test_macs_rejects_wrong(wrong, words, capsys):
    ok, out = run(lesson07b.check_conv2d_macs, wrong, capsys)
    assert not ok
    assert words in out, out


# ------------------------------------------------------------------ exercise 2
def good_never(L, kernel_size, stride=None, padding=0, ceil_mode=False):
    s = kernel_size if stride is None else stride
    span = L + 2 * padding - kernel_size
    n_out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n_out - 1) * s >= L + padding:
        n_out -= 1
    read = set()
    for o in range(n_out):
        read.update(c for c in range(o * s - padding, o * s - padding + kernel_size) if 0 <= c < L)
    return L - len(read)


@pytest.mark.parametrize("L", [1, 5, 7, 10, 64])
@pytest.mark.parametrize("k, s, p", [(1, 1, 0), (2, None, 0), (3, None, 0), (2, 3, 0), (3, 1, 1),
                                     (3, 4, 1), (4, 2, 2), (5, 3, 2)])
@pytest.mark.parametrize("ceil", [False, True])
def test_never_spec_brute_force(L, k, s, p, ceil):
    if L + 2 * p < k or p > k // 2:
        return
    assert lesson07b.cells_never_read_spec(L, k, s, p, ceil) == good_never(L, k, s, p, ceil)


def test_never_spec_hand_worked():
    assert lesson07b.cells_never_read_spec(64, 2, 3) == 22     # lesson 07b: about a third of a row
    assert lesson07b.cells_never_read_spec(7, 2, 2) == 1
    assert lesson07b.cells_never_read_spec(7, 2, 2, 0, True) == 0


def test_never_accepts_correct(capsys):
    ok, out = run(lesson07b.check_cells_never_read, good_never, capsys)
    assert ok, out


def leftover_only(L, kernel_size, stride=None, padding=0, ceil_mode=False):
    s = kernel_size if stride is None else stride
    return 0 if ceil_mode else (L + 2 * padding - kernel_size) % s


@pytest.mark.parametrize("wrong, words", [
    (leftover_only, "stride - kernel_size cells between two windows"),
    (lambda L, k, stride=None, padding=0, ceil_mode=False: float(good_never(L, k, stride, padding, ceil_mode)),
     "whole number"),
    (lambda L, k, stride=None, padding=0, ceil_mode=False: good_never(L, k, stride, padding, False),
     "ceil_mode=True adds a last window"),
])
def test_never_rejects_wrong(wrong, words, capsys):
    ok, out = run(lesson07b.check_cells_never_read, wrong, capsys)
    assert not ok
    assert words in out, out
