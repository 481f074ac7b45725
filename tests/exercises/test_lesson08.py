"""Lesson 08's checkers: image pyramids and blob detection with max pooling's indices.

Each wrong solution is a mistake learners make: a pyramid without level 0 or with
growing windows instead of repeated 2x2 steps, the top-left corner of the best window
instead of its centre, floor-mode pooling that never reads the response's last rows.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit
from poolkit.exercises import lesson08


def run(checker, fn, capsys):
    """Call a checker; return (its verdict, what it printed)."""
    ok = checker(fn)
    return ok, capsys.readouterr().out


# ------------------------------------------------------------------ lesson 08, exercise 1
def good_pyramid(x, levels, kind):
    out = [x]
    for _ in range(levels):
        a = out[-1][None]
        if kind == "max":
            b = poolkit.max_pool2d(a, 2)
        elif kind == "avg":
            b = poolkit.avg_pool2d(a, 2)
        else:
            b = -poolkit.max_pool2d(-a, 2)
        out.append(b[0])
    return out


def test_pyramid_spec_shapes_and_values():
    x = np.arange(8 * 10, dtype=np.float32).reshape(8, 10)
    levels = lesson08.pyramid_spec(x, 3, "max")
    assert [a.shape for a in levels] == [(8, 10), (4, 5), (2, 2), (1, 1)]
    assert levels[0] is x or np.array_equal(levels[0], x)
    assert levels[3][0, 0] == x[:8, :8].max()          # floor mode drops columns 8, 9
    assert lesson08.pyramid_spec(x, 3, "min")[3][0, 0] == 0
    np.testing.assert_allclose(lesson08.pyramid_spec(x, 1, "avg")[1], x.reshape(4, 2, 5, 2).mean(axis=(1, 3)))
    z = np.array([[-32768, 5], [7, 32767]], np.int16)
    assert lesson08.pyramid_spec(z, 1, "min")[1][0, 0] == -32768
    assert lesson08.pyramid_spec(z, 1, "max")[1][0, 0] == 32767
    with pytest.raises(ValueError, match="kind"):
        lesson08.pyramid_spec(x, 1, "median")


def test_pyramid_accepts_correct(capsys):
    ok, out = run(lesson08.check_pyramid, good_pyramid, capsys)
    assert ok, out


@pytest.mark.parametrize("wrong, words", [
    (lambda x, levels, kind: good_pyramid(x, levels, kind)[1:], "levels, expected"),
    (lambda x, levels, kind: [x] + [poolkit.max_pool2d(x[None], 2 ** i)[0] for i in range(1, levels + 1)],
     "level 1: "),
    (lambda x, levels, kind: np.stack([x, x]), "expected a list of arrays"),
    (lambda x, levels, kind: None, "returned None"),
    (lambda x, levels, kind: [a.astype(np.float64) if a.dtype.kind in "iu" else a
                              for a in good_pyramid(x, levels, kind)], "dtype float64"),
])
def test_pyramid_rejects_wrong(wrong, words, capsys):
    ok, out = run(lesson08.check_pyramid, wrong, capsys)
    assert not ok
    assert words in out, out


def test_pyramid_checker_protects_inputs(capsys):
    def scribbler(x, levels, kind):
        x[...] = 0  # writes into its input
        return good_pyramid(x, levels, kind)
    ok, out = run(lesson08.check_pyramid, scribbler, capsys)
    assert not ok and "level 0" in out
    ok, out = run(lesson08.check_pyramid, good_pyramid, capsys)
    assert ok, out  # the next run still sees the original data


# ------------------------------------------------------------------ lesson 08, exercise 2
def good_detect(image, template, pool_size):
    resp = lesson08.correlate_valid(image, template - template.mean())
    coarse, idx = poolkit.max_pool2d(resp[None], pool_size, ceil_mode=True, return_indices=True)
    r, c = divmod(int(idx[0].flat[np.argmax(coarse[0])]), resp.shape[1])
    return r + template.shape[0] // 2, c + template.shape[1] // 2


def test_correlate_valid():
    img = np.arange(20.0).reshape(4, 5)
    t = np.array([[1.0, -1.0], [2.0, 0.5]])
    want = np.array([[sum(img[i + a, j + b] * t[a, b] for a in range(2) for b in range(2))
                      for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(lesson08.correlate_valid(img, t), want)


def test_detect_spec_finds_planted_blob():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.1, (30, 40)).astype(np.float32)
    blob = lesson08._blob(5, 1.0)
    img[20 - 2:20 + 3, 7 - 2:7 + 3] += blob
    np.testing.assert_array_equal(lesson08.detect_spec(img, blob, 4), [20, 7])


def test_detect_accepts_correct(capsys):
    ok, out = run(lesson08.check_detect, good_detect, capsys)
    assert ok, out
    ok, out = run(lesson08.check_detect, lambda *a: list(good_detect(*a)), capsys)
    assert ok, out  # a list of ints is as good as a tuple


def top_left(image, template, pool_size):
    r, c = good_detect(image, template, pool_size)
    return r - template.shape[0] // 2, c - template.shape[1] // 2


def floor_mode(image, template, pool_size):
    resp = lesson08.correlate_valid(image, template - template.mean())
    coarse, idx = poolkit.max_pool2d(resp[None], pool_size, return_indices=True)
    r, c = divmod(int(idx[0].flat[np.argmax(coarse[0])]), resp.shape[1])
    return r + template.shape[0] // 2, c + template.shape[1] // 2


@pytest.mark.parametrize("wrong, words", [
    (top_left, "top-left corner"),
    (floor_mode, "try ceil_mode=True"),
    (lambda image, template, pool_size: tuple(float(v) for v in good_detect(image, template, pool_size)),
     "dtype float64"),
    (lambda image, template, pool_size: None, "returned None"),
    (lambda image, template, pool_size: good_detect(image, template, pool_size)[0], "shape"),
])
def test_detect_rejects_wrong(wrong, words, capsys):
    ok, out = run(lesson08.check_detect, wrong, capsys)
    assert not ok
    assert words in out, out
