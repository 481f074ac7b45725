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


def test_lesson10_omit_mean_checker_passes_a_solution_and_catches_mistakes(capsys):
    import warnings

    def blocks(x, fill=np.nan):
        H, W = x.shape
        padded = np.pad(x, ((0, H % 2), (0, W % 2)), constant_values=fill)
        return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2)

    def omit_mean_2x2(x, fill=np.nan):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window: "Mean of empty slice"
            return np.nanmean(blocks(x, fill), axis=(1, 3))

    assert lesson10.check_omit_mean(omit_mean_2x2)
    assert "all cases pass" in capsys.readouterr().out
    # dividing by 4 whatever the number of valid cells
    assert not lesson10.check_omit_mean(lambda x: (np.nansum(blocks(x), axis=(1, 3)) / 4).astype(x.dtype))
    out = capsys.readouterr().out
    assert "not by 4" in out and "3 valid cells" in out and "rows 0..1 and columns 0..1" in out
    # PyTorch's rule instead of omit
    assert not lesson10.check_omit_mean(lambda x: blocks(x).mean(axis=(1, 3)))
    assert "got nan" in capsys.readouterr().out
    # an empty window as 0 instead of NaN
    def zero_when_empty(x):
        b = blocks(x)
        n = np.count_nonzero(~np.isnan(b), axis=(1, 3))
        return (np.nansum(b, axis=(1, 3)) / np.maximum(n, 1)).astype(x.dtype)
    assert not lesson10.check_omit_mean(zero_when_empty)
    out = capsys.readouterr().out
    assert "got 0.0, expected nan" in out and "0 valid cells" in out and "not 0" in out
    # odd sides padded with zeros (counted as data) or dropped (floor mode)
    assert not lesson10.check_omit_mean(lambda x: omit_mean_2x2(x, fill=0.0))
    assert "(1 of them padding)" in capsys.readouterr().out
    def floor_mode(x):
        H, W = x.shape
        return omit_mean_2x2(x[:H // 2 * 2, :W // 2 * 2])
    assert not lesson10.check_omit_mean(floor_mode)
    assert "ceil(5/2) x ceil(7/2) = 3x4" in capsys.readouterr().out
    # float64 out of a float32 raster
    assert not lesson10.check_omit_mean(lambda x: omit_mean_2x2(x).astype(np.float64))
    assert "dtype float64, expected float32" in capsys.readouterr().out
    # the skeleton
    assert not lesson10.check_omit_mean(lambda x: None)
    assert "returned None" in capsys.readouterr().out
