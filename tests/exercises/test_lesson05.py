"""Lesson 05's checkers: a learner's naive ``@cuda.jit`` kernels (one thread per output),
launched on small inputs -- on Numba's CUDA simulator or a real GPU.

The wrong kernels are mistakes learners make: a running max that starts at 0, no
bounds guard, OH where OW belongs while unravelling the thread index, a plain Python
function without ``@cuda.jit``.
"""
import pytest
from numba import cuda

from backends import GPU_MARKS, SIM
from poolkit.exercises import lesson05

pytestmark = list(GPU_MARKS)
simulator_only = pytest.mark.skipif(not SIM, reason="simulator-specific (NUMBA_ENABLE_CUDASIM=1)")


@cuda.jit
def _good_max_kernel(x, out, kernel_size, stride):
    i = cuda.grid(1)
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    if i >= out.size:
        return
    ow = i % OW
    oh = (i // OW) % OH
    c = (i // (OW * OH)) % C
    n = i // (OW * OH * C)
    m = x[n, c, oh * stride, ow * stride]
    for kh in range(kernel_size):
        for kw in range(kernel_size):
            v = x[n, c, oh * stride + kh, ow * stride + kw]
            if v > m:
                m = v
    out[n, c, oh, ow] = m


@cuda.jit
def _zero_init_max_kernel(x, out, kernel_size, stride):
    # a learner's mistake: the running max starts at 0, so all-negative windows give 0
    i = cuda.grid(1)
    OH, OW = out.shape[2], out.shape[3]
    if i < out.size:
        ow = i % OW
        oh = (i // OW) % OH
        c = (i // (OW * OH)) % out.shape[1]
        n = i // (OW * OH * out.shape[1])
        m = 0.0
        for kh in range(kernel_size):
            for kw in range(kernel_size):
                v = x[n, c, oh * stride + kh, ow * stride + kw]
                if v > m:
                    m = v
        out[n, c, oh, ow] = m


@cuda.jit
def _no_guard_max_kernel(x, out, kernel_size, stride):
    i = cuda.grid(1)
    OW = out.shape[3]
    OH = out.shape[2]
    ow = i % OW
    oh = (i // OW) % OH
    c = (i // (OW * OH)) % out.shape[1]
    n = i // (OW * OH * out.shape[1])
    out[n, c, oh, ow] = x[n, c, oh * stride, ow * stride]


@cuda.jit
def _good_avg_nhwc_kernel(x, out, kernel_size, stride, padding):
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    if i >= out.size:
        return
    c = i % C
    ow = (i // C) % OW
    oh = (i // (C * OW)) % OH
    n = i // (C * OW * OH)
    s = 0.0
    for kh in range(kernel_size):
        for kw in range(kernel_size):
            ih = oh * stride - padding + kh
            iw = ow * stride - padding + kw
            if 0 <= ih < H and 0 <= iw < W:
                s += x[n, ih, iw, c]
    out[n, oh, ow, c] = s / (kernel_size * kernel_size)


@cuda.jit
def _mixed_up_avg_kernel(x, out, kernel_size, stride, padding):
    # a learner's mistake: OH where OW belongs while unravelling (right for square outputs only)
    i = cuda.grid(1)
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    if i < out.size:
        c = i % C
        ow = (i // C) % OH
        oh = (i // (C * OW)) % OH
        n = i // (C * OW * OH)
        s = 0.0
        for kh in range(kernel_size):
            for kw in range(kernel_size):
                ih = oh * stride - padding + kh
                iw = ow * stride - padding + kw
                if 0 <= ih < H and 0 <= iw < W:
                    s += x[n, ih, iw, c]
        out[n, oh, ow, c] = s / (kernel_size * kernel_size)


def test_lesson05_checkers_accept_right_and_explain_wrong_kernels(capsys):
    assert lesson05.check_naive_max_kernel(_good_max_kernel)
    assert "all cases pass" in capsys.readouterr().out
    assert not lesson05.check_naive_max_kernel(_zero_init_max_kernel)
    out = capsys.readouterr().out
    assert "FAIL" in out and "all negative" in out and "-inf" in out
    assert not lesson05.check_naive_max_kernel(_good_max_kernel.py_func)  # forgot @cuda.jit
    assert "put @cuda.jit on the line above" in capsys.readouterr().out
    assert lesson05.check_naive_avg_nhwc_kernel(_good_avg_nhwc_kernel)
    assert not lesson05.check_naive_avg_nhwc_kernel(_mixed_up_avg_kernel)
    out = capsys.readouterr().out
    assert "FAIL" in out and "1x6x5x3" in out and "c = i % C, then ow" in out


@pytest.mark.cudasim
@simulator_only
def test_lesson05_missing_guard_is_reported_on_the_simulator(capsys):
    # On a GPU an out-of-bounds write is undefined behaviour; the simulator raises.
    assert not lesson05.check_naive_max_kernel(_no_guard_max_kernel)
    out = capsys.readouterr().out
    assert "raised" in out and "must return" in out
