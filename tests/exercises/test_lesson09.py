"""Lesson 09's exercise checkers: they accept a correct solution and reject (and explain) a wrong one."""
import numpy as np

import poolkit
from poolkit.exercises import lesson09


def run(checker, fn, capsys):
    ok = checker(fn)
    return ok, capsys.readouterr().out


# ------------------------------------------------------------------ the specs are poolkit's rules
def test_max_spec_is_poolkit_routing():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 3, 7, 6)).astype(np.float64)  # many ties, overlapping windows
    out, idx = poolkit.max_pool2d(x, 3, 1, return_indices=True)
    g = rng.standard_normal(out.shape)
    np.testing.assert_array_equal(lesson09.max_pool2d_backward_spec(g, idx, x.shape),
                                  poolkit.max_pool2d_backward(g, x, 3, 1))


def test_numerical_gradient_spec_matches_backward():
    rng = np.random.default_rng(1)
    x = rng.permutation(20).reshape(1, 1, 4, 5) * 0.1
    g = rng.standard_normal((1, 1, 2, 2))
    want = poolkit.max_pool2d_backward(g, x, 2)
    got = lesson09.numerical_gradient_spec(lambda v: float(np.sum(poolkit.max_pool2d(v, 2) * g)), x)
    np.testing.assert_allclose(got, want, atol=1e-8)


# ------------------------------------------------------------------ exercise 1
def _avg_loops(grad_output, x, kernel_size, stride=None, *, mistake=None):
    stride = kernel_size if stride is None else stride
    gx = np.zeros_like(x)
    N, C, OL = grad_output.shape
    for n in range(N):
        for c in range(C):
            for o in range(OL):
                sl = slice(o * stride, o * stride + kernel_size)
                if mistake == "assign":
                    gx[n, c, sl] = grad_output[n, c, o] / kernel_size
                elif mistake == "no_divide":
                    gx[n, c, sl] += grad_output[n, c, o]
                else:
                    gx[n, c, sl] += grad_output[n, c, o] / kernel_size
    return gx


def test_avg_checker_accepts_loops(capsys):
    ok, out = run(lesson09.check_avg_pool1d_backward, _avg_loops, capsys)
    assert ok and "all cases pass" in out


def test_avg_checker_rejects_assignment_instead_of_sum(capsys):
    ok, out = run(lesson09.check_avg_pool1d_backward,
                  lambda *a: _avg_loops(*a, mistake="assign"), capsys)
    assert not ok and "windows overlap" in out and "use +=" in out


def test_avg_checker_rejects_missing_divisor(capsys):
    ok, out = run(lesson09.check_avg_pool1d_backward,
                  lambda *a: _avg_loops(*a, mistake="no_divide"), capsys)
    assert not ok and "FAIL" in out


# ------------------------------------------------------------------ exercise 2
def _route(grad_output, indices, input_shape, *, flat_plus_equals=False, divide_by_h=False):
    N, C, H, W = input_shape
    gx = np.zeros(input_shape, dtype=grad_output.dtype)
    for n in range(N):
        for c in range(C):
            if flat_plus_equals:
                gx[n, c].flat[indices[n, c].ravel()] += grad_output[n, c].ravel()
                continue
            for g, i in zip(grad_output[n, c].ravel(), indices[n, c].ravel()):
                row, col = divmod(int(i), H if divide_by_h else W)
                if row < H and col < W:
                    gx[n, c, row, col] += g
    return gx


def test_max_checker_accepts_routing(capsys):
    ok, out = run(lesson09.check_max_pool2d_backward, _route, capsys)
    assert ok and "all cases pass" in out


def test_max_checker_catches_lost_duplicate_writes(capsys):
    ok, out = run(lesson09.check_max_pool2d_backward,
                  lambda *a: _route(*a, flat_plus_equals=True), capsys)
    assert not ok and "one cell wins several windows" in out and "np.add.at" in out
    assert out.count("FAIL") == 1  # only the overlapping case: the hint points at the bug


def test_max_checker_catches_wrong_plane_width(capsys):
    ok, out = run(lesson09.check_max_pool2d_backward,
                  lambda *a: _route(*a, divide_by_h=True), capsys)
    assert not ok and "divide by W, not H" in out


# ------------------------------------------------------------------ exercise 3
def test_numerical_checker_accepts_central_differences(capsys):
    ok, out = run(lesson09.check_numerical_gradient, lesson09.numerical_gradient_spec, capsys)
    assert ok and "all cases pass" in out


def test_numerical_checker_rejects_perturbing_x_in_place(capsys):
    def in_place(f, x, h=1e-6):
        grad = np.empty_like(x, dtype=np.float64)
        for i in np.ndindex(*x.shape):
            x[i] += h
            up = f(x)
            x[i] -= 2 * h
            down = f(x)  # x is never restored: later cells see earlier perturbations
            grad[i] = (up - down) / (2 * h)
        return grad

    ok, out = run(lesson09.check_numerical_gradient, in_place, capsys)
    assert not ok and "perturb a copy of x" in out


def test_numerical_checker_rejects_a_wrong_step(capsys):
    def one_sided_wrong(f, x, h=1e-6):
        grad = np.empty_like(x, dtype=np.float64)
        for i in np.ndindex(*x.shape):
            up = x.copy()
            up[i] += h
            grad[i] = (f(up) - f(x)) / (2 * h)  # forward difference divided by 2h: half the slope
        return grad

    ok, out = run(lesson09.check_numerical_gradient, one_sided_wrong, capsys)
    assert not ok and "FAIL" in out
