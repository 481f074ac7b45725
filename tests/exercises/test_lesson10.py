"""Lesson 10's data (a lazily tiled elevation model) and checkers (input ranges with halos,
pooling in strips, a lazy pyramid): they accept a correct solution and reject (and
explain) a wrong one."""
import numpy as np
import pytest

import poolkit

pytest.importorskip("dask.array")

from poolkit.exercises import lesson10  # noqa: E402
from test_dask import CountTasks  # noqa: E402


def test_tiled_dem_is_lazy_c_ordered_and_mirrors_the_dem():
    with CountTasks() as counter:
        x = lesson10.tiled_dem(800, chunk=300, upsample=1)
    assert counter.n == 0 and x.shape == (1, 1, 800, 800) and x.chunks[2] == (300, 300, 200)
    assert x.blocks[0, 0, 1, 1].compute().flags.c_contiguous
    dem = lesson10._dem()
    full = x.compute()
    np.testing.assert_array_equal(full[0, 0, :344, :403], dem)  # upsample=1: the DEM itself
    np.testing.assert_array_equal(full[0, 0, 344:688, :403], dem[::-1])  # then its mirror image
    np.testing.assert_array_equal(full[0, 0, :344, 403:800], dem[:, ::-1][:, :397])
    up = lesson10.tiled_dem(1376, chunk=512, upsample=4).compute()
    assert dem.min() <= up.min() and up.max() <= dem.max()  # bilinear: never outside the data
    # 4x upsampled: 4x4 averages come back close to the DEM's first 344 columns
    np.testing.assert_allclose(poolkit.avg_pool2d(up, 4)[0, 0], dem[:, :344], atol=40)
    np.testing.assert_allclose(up.mean(), dem[:, :344].mean(), rtol=2e-3)


def test_lesson10_checkers_pass_solutions_and_catch_mistakes(capsys):
    def input_range(o0, o1, L, kernel_size, stride, padding=0, dilation=1):
        stop = (o1 - 1) * stride - padding + dilation * (kernel_size - 1) + 1
        return max(o0 * stride - padding, 0), min(stop, L)

    assert lesson10.check_input_range(input_range)
    assert not lesson10.check_input_range(lambda o0, o1, L, k, s, p=0, d=1: (o0 * s - p, (o1 - 1) * s - p + k))
    assert "cells before 0 are padding" in capsys.readouterr().out

    def pool_strips(x, strip, kernel_size, stride, halo=True):
        H = x.shape[1]
        n_out = (H - kernel_size) // stride + 1
        pieces = []
        for o0 in range(0, n_out, strip):
            o1 = min(o0 + strip, n_out)
            start, stop = input_range(o0, o1, H, kernel_size, stride)
            if not halo:  # the classic mistake: cut the input where the outputs are cut
                stop = min(o1 * stride, H)
            pieces.append(poolkit.max_pool2d(x[:, start:stop], kernel_size, stride))
        return np.concatenate(pieces, axis=1)

    assert lesson10.check_pool_strips(pool_strips)
    assert not lesson10.check_pool_strips(lambda *a: pool_strips(*a, halo=False))
    assert "halo" in capsys.readouterr().out

    def lazy_pyramid(x, levels, kind):
        pool = poolkit.max_pool2d if kind == "max" else poolkit.avg_pool2d
        out = [x]
        for _ in range(levels):
            out.append(pool(out[-1], 2))
        return out

    assert lesson10.check_lazy_pyramid(lazy_pyramid)
    assert not lesson10.check_lazy_pyramid(lambda x, n, k: [lvl.persist() for lvl in lazy_pyramid(x, n, k)])
    assert "ran" in capsys.readouterr().out
    assert not lesson10.check_lazy_pyramid(lambda x, n, k: [lvl.rechunk(-1) for lvl in lazy_pyramid(x, n, k)])
    assert "blocks" in capsys.readouterr().out
    assert not lesson10.check_lazy_pyramid(lambda x, n, k: [lvl.compute() for lvl in lazy_pyramid(x, n, k)])
    assert "not a Dask array" in capsys.readouterr().out
