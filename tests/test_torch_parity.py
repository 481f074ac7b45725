"""The reference (and so every backend) against PyTorch itself, when torch is importable."""
import numpy as np
import pytest
from hypothesis import given, settings

from poolkit import cpu, reference
from strategies import pool2d_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_input(x, layout):
    t = torch.from_numpy(np.ascontiguousarray(x))
    if layout == "NHWC":  # torch wants NCHW shape; keep channels_last memory
        t = t.movedim(-1, -3)
    return t


def _to_layout(t, layout):
    a = t.movedim(-3, -1) if layout == "NHWC" else t
    return a.numpy()


@settings(max_examples=200, deadline=None)
@given(pool2d_problem(op="max", dtypes=("float32", "float64")))
def test_max_matches_torch(problem):
    x, kw, layout = problem
    want, want_idx = F.max_pool2d(_torch_input(x, layout), return_indices=True, **kw)
    got, idx = reference.max_pool2d(x, return_indices=True, layout=layout, **kw)
    np.testing.assert_array_equal(got, _to_layout(want, layout))
    np.testing.assert_array_equal(idx, _to_layout(want_idx, layout))
    got_cpu = cpu.max_pool2d(x, layout=layout, **kw)
    np.testing.assert_array_equal(got_cpu, got)


@settings(max_examples=200, deadline=None)
@given(pool2d_problem(op="avg"))
def test_avg_matches_torch(problem):
    x, kw, layout = problem
    want = _to_layout(F.avg_pool2d(_torch_input(x, layout), **kw), layout)
    got = reference.avg_pool2d(x, layout=layout, **kw)
    # the reference sums in PyTorch's order (row by row, input dtype): bitwise equal
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cpu.avg_pool2d(x, layout=layout, **kw), want)
