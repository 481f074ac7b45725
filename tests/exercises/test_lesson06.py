"""Lesson 06's checkers: a tile with its halo and the naive kernel's global loads (pure
arithmetic: no kernel runs, so these need neither a GPU nor the simulator), and the
shared-memory kernels (1-d max, 2-d average; ``gpu`` mark), whose race tracker is
simulator-only.

The wrong kernels are mistakes learners make: no ``cuda.syncthreads()`` between the
load and the pooling loops, a tile loaded without its halo, a naive kernel that never
touches shared memory, a plain Python function.
"""
import math

import numba
import pytest
from numba import cuda

from backends import GPU_MARKS, SIM
from poolkit.exercises import lesson06

needs_kernels = pytest.mark.parametrize("_gpu", [pytest.param(None, marks=GPU_MARKS)])
simulator_only = pytest.mark.skipif(not SIM, reason="simulator-specific (NUMBA_ENABLE_CUDASIM=1)")

MAX_TILE = 64


def _tiled_1d(sync=True, halo=True):
    """A learner's 1-d shared-memory max pool: right, or without the barrier, or without the halo."""
    @cuda.jit
    def tiled_max_pool_1d(x, out, kernel_size, stride):
        sh = cuda.shared.array(MAX_TILE, numba.float32)
        t = cuda.threadIdx.x
        T = cuda.blockDim.x
        first = cuda.blockIdx.x * T
        start = first * stride
        extent = (T - 1) * stride + kernel_size if halo else T * stride
        for j in range(t, extent, T):
            if start + j < x.size:
                sh[j] = x[start + j]
        if sync:
            cuda.syncthreads()
        o = first + t
        if o < out.size:
            m = -math.inf
            for a in range(kernel_size):
                v = sh[t * stride + a]
                if v > m:
                    m = v
            out[o] = m
    return tiled_max_pool_1d


def _tiled_2d(sync=True):
    @cuda.jit
    def tiled_avg_pool_2d(x, out, kernel_size, stride):
        sh = cuda.shared.array((16, 32), numba.float32)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        BX, BY = cuda.blockDim.x, cuda.blockDim.y
        oh0, ow0 = cuda.blockIdx.y * BY, cuda.blockIdx.x * BX
        r0, c0 = oh0 * stride, ow0 * stride
        rows = (BY - 1) * stride + kernel_size
        cols = (BX - 1) * stride + kernel_size
        H, W = x.shape
        for j in range(ty * BX + tx, rows * cols, BX * BY):
            r, c = j // cols, j % cols
            if r0 + r < H and c0 + c < W:
                sh[r, c] = x[r0 + r, c0 + c]
        if sync:
            cuda.syncthreads()
        oh, ow = oh0 + ty, ow0 + tx
        if oh < out.shape[0] and ow < out.shape[1]:
            s = 0.0
            for a in range(kernel_size):
                for b in range(kernel_size):
                    s += sh[ty * stride + a, tx * stride + b]
            out[oh, ow] = s / (kernel_size * kernel_size)
    return tiled_avg_pool_2d


def _grid_stride_1d(sync_before_load=True):
    """The 1-d kernel with a grid-stride loop over tiles; without the barrier at the top of the
    loop, a fast thread loads the next tile over cells its neighbours still pool from."""
    @cuda.jit
    def grid_stride_max_pool_1d(x, out, kernel_size, stride):
        sh = cuda.shared.array(MAX_TILE, numba.float32)
        t = cuda.threadIdx.x
        T = cuda.blockDim.x
        extent = (T - 1) * stride + kernel_size
        n_tiles = (out.size + T - 1) // T
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            first = tile * T
            start = first * stride
            if sync_before_load:
                cuda.syncthreads()
            for j in range(t, extent, T):
                if start + j < x.size:
                    sh[j] = x[start + j]
            cuda.syncthreads()
            o = first + t
            if o < out.size:
                m = -math.inf
                for a in range(kernel_size):
                    m = max(m, sh[t * stride + a])
                out[o] = m
    return grid_stride_max_pool_1d


@cuda.jit
def _naive_avg_2d(x, out, kernel_size, stride):   # right values, but no shared memory
    ow, oh = cuda.grid(2)
    if oh < out.shape[0] and ow < out.shape[1]:
        s = 0.0
        for a in range(kernel_size):
            for b in range(kernel_size):
                s += x[oh * stride + a, ow * stride + b]
        out[oh, ow] = s / (kernel_size * kernel_size)


def test_lesson06_checkers_accept_right_and_explain_wrong_answers(capsys):
    def tile(tr, tc, k, s, d):
        span = (k - 1) * d + 1
        return ((tr - 1) * s + span, (tc - 1) * s + span)

    assert lesson06.check_tile_with_halo(tile)
    assert not lesson06.check_tile_with_halo(lambda tr, tc, k, s, d: (tr * s + k - 1, tc * s + k - 1))
    out = capsys.readouterr().out
    assert "FAIL" in out and "dilation" in out

    def loads(H, W, k, s, p):
        def taps(L):
            return sum(min(o * s - p + k, L) - max(o * s - p, 0) for o in range((L + 2 * p - k) // s + 1))
        return taps(H) * taps(W)

    def loads_with_padding(H, W, k, s, p):  # counts padding taps as loads
        return ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1) * k * k

    assert lesson06.check_naive_loads(loads)
    assert not lesson06.check_naive_loads(loads_with_padding)
    out = capsys.readouterr().out
    assert "FAIL" in out and "padding taps are skipped" in out


@needs_kernels
def test_lesson06_tiled_checkers_accept_right_kernels(_gpu, capsys):
    assert lesson06.check_tiled_max_pool_1d(_tiled_1d())
    assert lesson06.check_tiled_avg_pool_2d(_tiled_2d())
    assert lesson06.check_grid_stride_max_pool_1d(_grid_stride_1d())
    assert "FAIL" not in capsys.readouterr().out


@needs_kernels
def test_lesson06_tiled_checkers_reject_kernels_without_shared_memory(_gpu, capsys):
    def plain(x, out, kernel_size, stride):
        pass

    assert not lesson06.check_tiled_max_pool_1d(plain)
    assert "not a CUDA kernel" in capsys.readouterr().out
    assert not lesson06.check_tiled_avg_pool_2d(_naive_avg_2d)
    assert "no cuda.shared.array" in capsys.readouterr().out


@needs_kernels
@simulator_only
def test_lesson06_missing_syncthreads_is_caught_every_time(_gpu, capsys):
    """The race verdict depends on the program, not on how the simulator's Python threads
    happened to interleave: the same report, word for word, run after run."""
    racy = _tiled_1d(sync=False)
    reports = set()
    for _ in range(25):
        assert not lesson06.check_tiled_max_pool_1d(racy)
        reports.add(capsys.readouterr().out)
    assert len(reports) == 1
    out = reports.pop()
    assert out.count("FAIL") == 5
    assert ("race in block 0: thread 0 reads shared cell 1, which thread 1 writes, with no "
            "cuda.syncthreads()") in out
    for _ in range(5):
        assert not lesson06.check_tiled_avg_pool_2d(_tiled_2d(sync=False))
        out = capsys.readouterr().out
        assert out.count("FAIL") == 4
        assert "race in block (0, 0): thread (0, 0) reads shared cell (0, 1), which thread (1, 0)" in out


@needs_kernels
@simulator_only
def test_lesson06_missing_halo_is_named(_gpu, capsys):
    assert not lesson06.check_tiled_max_pool_1d(_tiled_1d(halo=False))
    out = capsys.readouterr().out
    assert "which no thread of the block wrote" in out and "halo" in out


@needs_kernels
@simulator_only
def test_lesson06_missing_barrier_before_the_next_tile_is_caught_every_time(_gpu, capsys):
    racy = _grid_stride_1d(sync_before_load=False)
    reports = set()
    for _ in range(10):
        assert not lesson06.check_grid_stride_max_pool_1d(racy)
        reports.add(capsys.readouterr().out)
    assert len(reports) == 1
    out = reports.pop()
    assert out.count("FAIL") == 3 and "race in block 0" in out and "before a new load" in out
