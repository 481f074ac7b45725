"""Exercises for lesson 09, *Gradients through pooling*.

Exercise 1 asks for the gradient of 1-d average pooling written with loops
(*spreading*); exercise 2 for the gradient of 2-d max pooling from the forward
pass's indices (*routing*); exercise 3 for a central finite-difference gradient,
the tool that checks any backward. Each has a ``check_*`` function that runs the
learner's code on small cases with :func:`poolkit.exercises.check` and compares
with poolkit (or, for exercise 3, with the exact gradient of a known function).

>>> import numpy as np
>>> from poolkit.exercises import lesson09
>>> lesson09.avg_pool1d_backward_spec(np.ones((1, 1, 2)), np.zeros((1, 1, 4)), 2)
array([[[0.5, 0.5, 0.5, 0.5]]])
"""
from __future__ import annotations

import numpy as np

import poolkit

from . import Case, check

__all__ = [
    "avg_pool1d_backward_spec",
    "check_avg_pool1d_backward",
    "max_pool2d_backward_spec",
    "check_max_pool2d_backward",
    "numerical_gradient_spec",
    "check_numerical_gradient",
]


# ------------------------------------------------------------------ exercise 1
def avg_pool1d_backward_spec(grad_output, x, kernel_size, stride=None):
    """Gradient of ``poolkit.avg_pool1d(x, kernel_size, stride)`` (no padding) w.r.t. ``x``.

    Output ``o`` averages ``x[o*stride : o*stride + kernel_size]``, so each of those
    cells receives ``grad_output[..., o] / kernel_size``; cells read by several
    windows add up, cells read by none get 0.

    See Also
    --------
    check_avg_pool1d_backward : runs a learner's version against this one.
    poolkit.avg_pool1d_backward : the same, for every argument of avg_pool1d.
    """
    return poolkit.avg_pool1d_backward(grad_output, x, kernel_size, stride)


def _avg_cases() -> list[Case]:
    rng = np.random.default_rng(9)

    def case(name, shape, k, s, hint, dtype=np.float64):
        x = rng.standard_normal(shape).astype(dtype)
        out = poolkit.avg_pool1d(x, k, s)
        g = rng.standard_normal(out.shape).astype(dtype)
        return Case(name, (g, x, k, s), hint=hint)

    return [
        case("(1, 1, 4), kernel 2 (stride 2)", (1, 1, 4), 2, None,
             "each cell is read by one window: grad / 2 lands on both of its cells"),
        case("(2, 3, 9), kernel 3, stride 3", (2, 3, 9), 3, 3,
             "loop over every (n, c) plane, not just the first"),
        case("(1, 2, 8), kernel 3, stride 1: windows overlap", (1, 2, 8), 3, 1,
             "a cell read by several windows must receive the sum of their shares (use +=)"),
        case("(1, 1, 7), kernel 2, stride 3: cells nobody reads", (1, 1, 7), 2, 3,
             "start from zeros: cells no window reads get gradient 0"),
        case("(1, 1, 5), kernel 2, stride 2: the last cell is dropped", (1, 1, 5), 2, 2,
             "the output has floor((L - k) / s) + 1 cells; the gradient keeps x's shape"),
        case("float32 input", (1, 2, 6), 2, 1, "the gradient has x's dtype", dtype=np.float32),
    ]


def check_avg_pool1d_backward(fn) -> bool:
    """Check ``fn(grad_output, x, kernel_size, stride=None)`` against poolkit's gradient."""
    return check(fn, avg_pool1d_backward_spec, _avg_cases(), name="avg_pool1d_backward",
                 rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ exercise 2
def max_pool2d_backward_spec(grad_output, indices, input_shape):
    """Gradient of max pooling w.r.t. ``x``, from the forward call's ``indices``.

    ``indices[n, c, i, j]`` is the flat position (in the ``H x W`` plane) of the
    maximum that output ``(i, j)`` took; that cell receives ``grad_output[n, c, i, j]``.
    A cell that is the maximum of several windows receives the sum.

    See Also
    --------
    check_max_pool2d_backward : runs a learner's version against this one.
    poolkit.max_pool2d_backward : the same, with ``indices=`` or searching itself.
    """
    n, c, h, w = input_shape
    gx = np.zeros((n, c, h * w), dtype=grad_output.dtype)
    # np.add.at adds every write, also repeated ones (gx[...][idx] += g would keep only one)
    np.add.at(gx, (np.arange(n)[:, None, None], np.arange(c)[None, :, None], indices.reshape(n, c, -1)),
              grad_output.reshape(n, c, -1))
    return gx.reshape(input_shape)


def _max_cases() -> list[Case]:
    rng = np.random.default_rng(21)

    def case(name, x, k, s, hint):
        out, idx = poolkit.max_pool2d(x, k, s, return_indices=True)
        g = rng.standard_normal(out.shape).astype(x.dtype)
        return Case(name, (g, idx, x.shape), hint=hint)

    seed = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    return [
        case("the 4x4 seed example, kernel 2", seed, 2, 2,
             "indices are flat positions in the H x W plane: row = idx // W, column = idx % W"),
        case("(2, 3, 6, 6), kernel 2", rng.standard_normal((2, 3, 6, 6)), 2, 2,
             "every (n, c) plane has its own indices"),
        case("(1, 2, 5, 5), kernel 3, stride 1: one cell wins several windows",
             np.pad(np.ones((1, 2, 1, 1)) * 9, ((0, 0), (0, 0), (2, 2), (2, 2))), 3, 1,
             "gx.flat[idx] += g keeps only one of several writes to the same cell; sum them "
             "(np.add.at, or a loop)"),
        case("(1, 1, 5, 7), kernel (2, 3)", rng.standard_normal((1, 1, 5, 7)), (2, 3), None,
             "the plane is H x W = 5 x 7: divide by W, not H"),
        case("float32", rng.standard_normal((1, 2, 4, 4)).astype(np.float32), 2, 2,
             "the gradient has grad_output's dtype"),
    ]


def check_max_pool2d_backward(fn) -> bool:
    """Check ``fn(grad_output, indices, input_shape)`` against :func:`max_pool2d_backward_spec`.

    (poolkit's tests check that spec against :func:`poolkit.max_pool2d_backward`.)
    """
    return check(fn, max_pool2d_backward_spec, _max_cases(), name="max_pool2d_backward",
                 rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ exercise 3
def numerical_gradient_spec(f, x, h=1e-6):
    """Central differences: ``grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2 h)`` for every cell ``i``.

    ``f`` maps an array like ``x`` to a float; ``x`` is not modified.
    """
    x = np.asarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    return grad


def _quadratic(v):
    return float(np.sum(v ** 2) / 2)  # exact gradient: v


def _square_of_sum(v):
    return float(np.sum(v)) ** 2 / 2  # exact gradient: sum(v) in every cell


def _pooled_sum(v):
    return float(np.sum(poolkit.avg_pool2d(v, 2, 1) * np.arange(1.0, 1.0 + 9).reshape(1, 1, 3, 3)))


def _numerical_cases() -> list[Case]:
    rng = np.random.default_rng(5)
    return [
        Case("sum(x**2)/2 on a (3,) vector: gradient x", (_quadratic, rng.standard_normal(3)),
             hint="(f(x + h e_i) - f(x - h e_i)) / (2 h), one cell i at a time"),
        Case("sum(x**2)/2 on a (2, 3) array", (_quadratic, rng.standard_normal((2, 3))),
             hint="loop over every index of a multi-dimensional x (np.ndindex(*x.shape))"),
        Case("sum(x)**2/2 on a (2, 3) array: every cell's slope depends on all cells",
             (_square_of_sum, rng.standard_normal((2, 3))),
             hint="perturb a copy of x, never x itself, or later cells see earlier perturbations"),
        Case("weighted average pooling on (1, 1, 4, 4)", (_pooled_sum, rng.standard_normal((1, 1, 4, 4))),
             hint="f takes the whole (1, 1, 4, 4) array: perturb one cell of a copy and call f on it"),
    ]


def _gradient_of_case(f, x, h=1e-6):
    """The exact gradients of the case functions (so the check does not test the spec with itself)."""
    if f is _quadratic:
        return np.asarray(x, dtype=np.float64)
    if f is _square_of_sum:
        return np.full(np.shape(x), float(np.sum(x)))
    w = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    return poolkit.avg_pool2d_backward(w, np.asarray(x, dtype=np.float64), 2, 1)


def check_numerical_gradient(fn) -> bool:
    """Check ``fn(f, x, h=1e-6)`` against exact gradients (tolerance 1e-6)."""
    return check(fn, _gradient_of_case, _numerical_cases(), name="numerical_gradient", rtol=1e-6, atol=1e-6)
