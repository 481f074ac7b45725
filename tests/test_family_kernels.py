"""The family's fast paths (issue 12), each against ``poolkit.reference`` bit for bit.

* 3-d max without indices on contiguous NCDHW input runs as two 2-D passes
  (``cpu.ops._max3d_separable``): depth slices over (H, W), then over D, in groups of
  planes bounded by ``_SEPARABLE_SCRATCH``. Forced here to one plane per group, so the
  group loop's edges run too.
* 3-d average (NCDHW) sweeps whole rows, through a zero-padded scratch row where
  padding or ceil_mode needs one.
* Adaptive max values of bins of 8 or more cells (channels-first) take each column's
  maximum over a bin's rows, then the bin's columns, and look zero and NaN maxima up
  again in scan order (``adaptive_max_cf_cols``).
* Adaptive average (channels-first) sums eight planes at a time (``_adaptive_avg_planes8``:
  a bin at a time over a table of its cells where the planes are contiguous and a bin row of
  the eight planes fits in L1, else row by row);
  omit too for runs of eight planes without NaN, other planes four at a time
  (``_adaptive_avg_omit_planes4``); the rest of a piece plane by plane.
* Adaptive average to size 1 on contiguous channels-first input reduces flat planes
  eight at a time (``global_sum`` / ``global_sum_omit``): plane counts that are and are
  not multiples of 8, both NaN policies, serial and parallel.

The broad property tests of every op are in test_forward_nd.py; these aim at the
branches the fast paths add.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from poolkit.cpu import ops
from strategies import nan_patterns, window_problem


def assert_bitwise(got, want):
    """Same shape, dtype and bits: signed zeros and NaN payloads included."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        bits = f"u{got.dtype.itemsize}"
        np.testing.assert_array_equal(np.ascontiguousarray(got).view(bits), np.ascontiguousarray(want).view(bits))


def _contiguous_ncdhw(x, layout):
    """The drawn input as a contiguous, batched NCDHW array."""
    if layout != "NCDHW":
        x = np.moveaxis(x, -1, x.ndim - 4)
    return np.ascontiguousarray(x if x.ndim == 5 else x[None])


@settings(max_examples=40, deadline=None)
@given(problem=window_problem(3, op="max", dtypes=("float32", "float64", "int16")), data=st.data(),
       policy=st.sampled_from(["propagate", "omit"]))
def test_max3d_separable_matches_reference(problem, data, policy):
    x, kwargs, layout = problem
    x = _contiguous_ncdhw(x, layout)
    if x.dtype.kind == "f" and data.draw(st.booleans()) and x.size:
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
        x = x.copy()
        x[rng.random(x.shape) < data.draw(st.sampled_from([0.3, 0.9]))] = np.nan
        x[rng.random(x.shape) < 0.2] = -0.0  # ties of signed zeros
    want = R.max_pool3d(x, **kwargs, nan_policy=policy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "_SEPARABLE_SCRATCH", data.draw(st.sampled_from([1, ops._SEPARABLE_SCRATCH])))
        got = cpu.max_pool3d(x, **kwargs, nan_policy=policy, parallel=False)
    assert_bitwise(got, want)


def test_max3d_separable_is_the_path_taken(monkeypatch):
    """Contiguous NCDHW values take the two 2-D passes; indices, channels-last and strided
    input take the 3-d kernel, with the same answer."""
    calls = []
    real = ops._max3d_separable
    monkeypatch.setattr(ops, "_max3d_separable", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(2, 3, 6, 7, 8)).astype(np.float32)
    want = R.max_pool3d(x, 3, 2, 1, ceil_mode=True)
    for parallel in (False, True):
        assert_bitwise(cpu.max_pool3d(x, 3, 2, 1, ceil_mode=True, parallel=parallel), want)
    assert len(calls) == 2
    assert_bitwise(cpu.max_pool3d(x[..., ::-1], 3, 2, 1, ceil_mode=True),
                   R.max_pool3d(x[..., ::-1], 3, 2, 1, ceil_mode=True))
    y, i = cpu.max_pool3d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    assert_bitwise(y, want)
    assert len(calls) == 2


@settings(max_examples=40, deadline=None)
@given(nd=st.integers(2, 3), planes=st.integers(1, 20), data=st.data(),
       policy=st.sampled_from(["propagate", "omit"]), parallel=st.booleans(),
       dtype=st.sampled_from(["float32", "float64", "int16"]))
def test_adaptive_max_columns_match_reference(nd, planes, data, policy, parallel, dtype):
    """Channels-first adaptive max values of bins of at least COLUMNS_MIN_BIN cells run
    ``adaptive_max_cf_cols`` (each column's max over a bin's rows, then the bin's columns).
    Its answer can differ from scan order only for a zero maximum (-0.0 vs +0.0) or a NaN
    (whose payload): the values here are mostly -1, -0.0, +0.0 and NaNs of four bit
    patterns, so both look-ups run, on strided views, with bins that overlap."""
    spatial = tuple(data.draw(st.integers(3, 12)) for _ in range(nd))
    out_size = tuple(data.draw(st.integers(1, max(1, L // 3))) for L in spatial)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    top = data.draw(st.sampled_from([0, 1]))  # 0: most bins' maximum is a zero
    x = rng.choice(np.array([-1, -1, 0, 0, top], dtype=dtype), size=(2, planes) + spatial)
    if dtype != "int16":
        x[rng.random(x.shape) < 0.5] = -0.0
        x[rng.random(x.shape) < data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))] = np.nan
        nan = np.isnan(x)
        x[nan] = rng.choice(nan_patterns(dtype), size=int(nan.sum()))
    else:
        policy = "propagate"  # omit is for floats
    if data.draw(st.booleans()):
        x = x[:, ::-1, ..., ::-1]  # a strided view
    x = x[:1] if data.draw(st.booleans()) else x
    name = f"adaptive_max_pool{nd}d"
    taken = []
    real = ops._launch_planes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "_launch_planes", lambda kname, *a: taken.append(kname) or real(kname, *a))
        got = getattr(cpu, name)(x, out_size, nan_policy=policy, parallel=parallel)
    assert_bitwise(got, getattr(R, name)(x, out_size, nan_policy=policy))
    assert taken == [f"adaptive_max_cf_cols{'_omit' if policy == 'omit' else ''}"]


def test_adaptive_max_columns_look_up_zeros_and_nans_in_scan_order():
    """Bins where columns-first finds another zero or NaN than scan order: one 4x4 bin whose
    first zero in scan order is +0.0 at (0, 1) while column 0 holds -0.0 at (1, 0); and one
    whose last NaN in scan order is at (1, 0) while the columns' fold ends at column 1's."""
    for dtype in ["float32", "float64"]:
        a, b = nan_patterns(dtype)[1:]
        x = np.full((2, 1, 4, 4), -1, dtype)
        x[0, 0, 0, 1], x[0, 0, 1, 0] = 0.0, -0.0
        x[1, 0, 0, 1], x[1, 0, 1, 0] = a, b
        for parallel in (False, True):
            got = cpu.adaptive_max_pool2d(x, 1, parallel=parallel)
            assert_bitwise(got, R.adaptive_max_pool2d(x, 1))
            assert not np.signbit(got[0, 0, 0, 0]) and got[1].view(f"u{x.itemsize}") == b.view(f"u{x.itemsize}")
            omit = cpu.adaptive_max_pool2d(x, 1, nan_policy="omit", parallel=parallel)
            assert_bitwise(omit, R.adaptive_max_pool2d(x, 1, nan_policy="omit"))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(2, 3, 2), stride=(1, 2, 3), padding=(1, 1, 1),
                                         ceil_mode=True, count_include_pad=False),
                                    dict(kernel_size=3, stride=1, padding=1, divisor_override=-5)])
def test_avg3d_rows_match_reference(kwargs, parallel):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 3, 5, 6, 11)) * 4).astype(np.float32)
    for policy in ("propagate", "omit"):
        xx = x.copy()
        if policy == "omit":
            xx[rng.random(x.shape) < 0.4] = np.nan
        assert_bitwise(cpu.avg_pool3d(xx, **kwargs, nan_policy=policy, parallel=parallel),
                       R.avg_pool3d(xx, **kwargs, nan_policy=policy))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("planes", [1, 8, 13, 24])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_avg_to_one_flat(nd, planes, parallel):
    rng = np.random.default_rng(planes)
    spatial = {1: (9,), 2: (5, 7), 3: (3, 4, 5)}[nd]
    x = (rng.standard_normal((1, planes) + spatial) * 3).astype(np.float64 if planes == 13 else np.float32)
    x[0, 0] = np.nan  # one plane with nothing valid
    x[rng.random(x.shape) < 0.3] = np.nan
    x.flat[5] = np.inf  # a value, not nodata
    # every other plane with everything valid: divided by each bin size in turn
    x[0, 1::2] = rng.standard_normal((len(range(1, planes, 2)),) + spatial)
    name = f"adaptive_avg_pool{nd}d"
    for policy in ("propagate", "omit"):
        assert_bitwise(getattr(cpu, name)(x, 1, nan_policy=policy, parallel=parallel),
                       getattr(R, name)(x, 1, nan_policy=policy))


@settings(max_examples=40, deadline=None)
@given(nd=st.integers(1, 3), shape=st.sampled_from([(1, 7), (1, 8), (2, 9), (3, 6), (1, 23), (4, 8)]),
       data=st.data(), parallel=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       policy=st.sampled_from(["propagate", "omit"]))
def test_adaptive_avg_groups_of_planes_match_reference(nd, shape, data, parallel, dtype, policy):
    """Channels-first adaptive average sums eight planes at a time (``_adaptive_avg_planes8``,
    eight named accumulators); omit does so for runs of eight planes without NaN and sums
    other planes four at a time (``_adaptive_avg_omit_planes4``), the rest of a piece plane
    by plane. Plane counts below, at and above 8 and groups that start mid-batch (N > 1), on
    views with the channels and the last axis reversed (so plane p is not at p's offset),
    NaN in no plane, a few planes or many cells, bins that overlap or repeat cells, values of
    very different sizes (the sum order shows in the last bits)."""
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(nd))
    out_size = tuple(data.draw(st.integers(1, 11)) for _ in range(nd))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = (rng.standard_normal(shape + spatial) * 10.0 ** rng.integers(-3, 4, shape + spatial)).astype(dtype)
    nan = data.draw(st.sampled_from(["none", "planes", "cells"]))
    if nan == "planes":  # one cell in a few planes: runs of clean planes of every length
        for q in rng.choice(shape[0] * shape[1], size=int(rng.integers(1, 4))):
            x.reshape(shape[0] * shape[1], -1)[q, rng.integers(math.prod(spatial))] = np.nan
    elif nan == "cells":
        x[rng.random(x.shape) < 0.3] = np.nan
    if data.draw(st.booleans()):
        x = x[:, ::-1, ..., ::-1]
    name = f"adaptive_avg_pool{nd}d"
    assert_bitwise(getattr(cpu, name)(x, out_size, parallel=parallel, nan_policy=policy),
                   getattr(R, name)(x, out_size, nan_policy=policy))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("policy", ["propagate", "omit"])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("spatial, out_size, small", [((30, 30), 7, True), ((9, 3, 5), (4, 2, 3), True),
                                                     ((40, 64), (3, 5), False)])
def test_adaptive_avg_eight_planes_by_cells_and_by_rows(spatial, out_size, small, contiguous, policy, parallel):
    """``_adaptive_avg_planes8`` goes a bin at a time over a table of each bin's cells
    (``_bin_cells``) where the planes are contiguous and the tallest bin row of eight planes
    fits in 16 KiB, else row by row with the partial sums in ``acc8``; both in scan order.
    30x30 -> 7: 6 rows x 30 x 8 planes x 4 B = 5.6 KiB; 40x64 -> (3, 5): 14 x 64 x 32 = 28 KiB;
    a 3-d case (cells over depth too). Two batches of 9 planes: groups of 8 start mid-batch,
    one plane is left over; the non-contiguous input (a view with the last axis reversed)
    goes row by row."""
    ag = G.make_adaptive_geometry("t", spatial, out_size)
    tall = int(np.prod([(e - s).max() for s, e in (ag.bins(i) for i in range(len(spatial) - 1))]))
    assert (tall * spatial[-1] * 8 * 4 <= 16384) == small
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2, 9) + spatial) * 10.0 ** rng.integers(-3, 4, (2, 9) + spatial)).astype(np.float32)
    if not contiguous:
        x = x[..., ::-1]
    assert len(ops._flat_planes(x)) == (18 if contiguous else 0)
    name = f"adaptive_avg_pool{len(spatial)}d"
    assert_bitwise(getattr(cpu, name)(x, out_size, parallel=parallel, nan_policy=policy),
                   getattr(R, name)(x, out_size, nan_policy=policy))


@pytest.mark.parametrize("parallel", [False, True])
def test_adaptive_avg_groups_divide_by_each_bin_size_in_turn(parallel):
    """Bins of 5 x 3 x 4 cells (no size a power of two): sum / 5 / 3 / 4 and sum / 3 / 5 / 4
    round differently for about a third of float32 sums, so a group that divides in another
    order than PyTorch's (depth, height, width) shows."""
    x = np.random.default_rng(5).standard_normal((1, 17, 9, 9, 7)).astype(np.float32)
    for view in (x, x[:, ::-1]):
        assert_bitwise(cpu.adaptive_avg_pool3d(view, (2, 3, 2), parallel=parallel),
                       R.adaptive_avg_pool3d(view, (2, 3, 2)))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_backward_of_one_window_is_a_broadcast(nd, layout):
    """Adaptive average to size 1 (and an average window over the whole input): every cell
    gets its plane's share, added to zero as the gather does (-0.0 arrives as +0.0)."""
    rng = np.random.default_rng(nd)
    spatial = {1: (9,), 2: (5, 7), 3: (3, 4, 5)}[nd]
    cl = layout == "NHWC"
    lay = {1: "NLC", 2: "NHWC", 3: "NDHWC"}[nd] if cl else {1: "NCL", 2: "NCHW", 3: "NCDHW"}[nd]
    x = rng.standard_normal((2, 3) + spatial).astype(np.float32)
    g = rng.standard_normal((2, 3) + (1,) * nd).astype(np.float32)
    g[0, 0] = -0.0
    if cl:
        x, g = np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)
    name = f"adaptive_avg_pool{nd}d_backward"
    assert_bitwise(getattr(cpu, name)(g, x, 1, layout=lay), getattr(R, name)(g, x, 1, layout=lay))
    x[..., 0] = np.nan
    assert_bitwise(getattr(cpu, name)(g, x, 1, layout=lay, nan_policy="omit"),
                   getattr(R, name)(g, x, 1, layout=lay, nan_policy="omit"))
    avg = f"avg_pool{nd}d_backward"
    k = spatial
    assert_bitwise(getattr(cpu, avg)(g, x, k, layout=lay), getattr(R, avg)(g, x, k, layout=lay))


@settings(max_examples=40, deadline=None)
@given(nd=st.integers(1, 3), planes=st.sampled_from([16, 17, 35, 48]), data=st.data(),
       policy=st.sampled_from(["propagate", "omit"]), parallel=st.booleans(),
       dtype=st.sampled_from(["float32", "float64", "int16"]))
def test_adaptive_max_lanes_match_reference(nd, planes, data, policy, parallel, dtype):
    """Channels-first adaptive max of at least LANES small planes runs ``adaptive_max_cf_lanes``
    (planes as lanes of a channels-last scratch): plane counts that do and do not fill the
    last group, both policies, with and without indices, on strided views, NaN, signed-zero
    ties, output sizes above and below the input's."""
    spatial = tuple(data.draw(st.integers(1, 9)) for _ in range(nd))
    out_size = tuple(data.draw(st.integers(1, 11)) for _ in range(nd))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-3, 4, size=(2, planes) + spatial).astype(dtype)
    if dtype != "int16":
        x[rng.random(x.shape) < data.draw(st.sampled_from([0.0, 0.3, 0.95]))] = np.nan
        x[rng.random(x.shape) < 0.2] = -0.0
    else:
        policy = "propagate"  # omit is for floats
    if data.draw(st.booleans()):
        x = x[:, ::-1, ..., ::-1]  # a strided view
    x = x[:1] if data.draw(st.booleans()) else x
    assert x.shape[0] * x.shape[1] >= ops.LANES
    name = f"adaptive_max_pool{nd}d"
    v, i = getattr(cpu, name)(x, out_size, True, nan_policy=policy, parallel=parallel)
    rv, ri = getattr(R, name)(x, out_size, True, nan_policy=policy)
    assert_bitwise(v, rv)
    np.testing.assert_array_equal(i, ri)
    assert_bitwise(getattr(cpu, name)(x, out_size, nan_policy=policy, parallel=parallel), rv)


def test_adaptive_max_lanes_are_the_path_taken(monkeypatch):
    """Many small channels-first planes take ``adaptive_max_cf_lanes``; fewer than LANES
    planes, or planes over ``LANES_MAX_CELLS``, the per-plane kernel; same bits."""
    taken = []
    real = ops._launch_lanes
    monkeypatch.setattr(ops, "_launch_lanes", lambda name, *a: taken.append(name) or real(name, *a))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 16, 9, 10)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = np.nan
    for cells, want in [(ops.LANES_MAX_CELLS, 2), (89, 0), (90, 2)]:
        monkeypatch.setattr(ops, "LANES_MAX_CELLS", cells)
        taken.clear()
        assert_bitwise(cpu.adaptive_max_pool2d(x, 4), R.adaptive_max_pool2d(x, 4))
        assert_bitwise(cpu.adaptive_max_pool2d(x, 4, nan_policy="omit"), R.adaptive_max_pool2d(x, 4, nan_policy="omit"))
        assert len(taken) == want, (cells, taken)
    taken.clear()
    assert_bitwise(cpu.adaptive_max_pool2d(x[:, :15], 4), R.adaptive_max_pool2d(x[:, :15], 4))
    assert_bitwise(cpu.adaptive_max_pool2d(x[:1, :15], 4), R.adaptive_max_pool2d(x[:1, :15], 4))
    assert_bitwise(cpu.adaptive_max_pool2d(np.moveaxis(x, 1, -1), 4, layout="NHWC"),
                   R.adaptive_max_pool2d(np.moveaxis(x, 1, -1), 4, layout="NHWC"))
    assert taken == ["adaptive_max_cf_lanes"]  # 2 x 15 planes: two groups; 15 planes, NHWC: not


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(3, 2), stride=1, padding=1, count_include_pad=False),
                                    dict(kernel_size=3, stride=2, ceil_mode=True),
                                    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0), divisor_override=-3)])
def test_omit_average_planes_without_nan_are_propagate_planes(kwargs, parallel):
    """``nan_policy="omit"`` averages sum a NaN-free plane (channels-first 2-D and 3-D windows,
    adaptive; flat planes eight at a time for global averages) with the propagate kernels: the
    same bits as the reference's omit and as propagate, plane by plane, between planes that hold
    NaN (the first cell, the last, in the middle, in the first column, all of them; a NaN past
    the first row makes the propagate step give up part way and the plane start over with the
    omit sweeps)."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 9, 7, 8)) * 3).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = -0.0
    x[0, 1, 0, 0] = x[0, 4, -1, -1] = x[1, 2, 3, 4] = x[0, 6, 4, 2] = np.nan  # first, last, odd, even row
    x[1, 7] = np.nan
    x[1, 5, 2, 0] = np.nan  # only the first window column reads it
    clean = np.ones((2, 9), bool)
    clean[0, 1] = clean[0, 4] = clean[1, 2] = clean[0, 6] = clean[1, 7] = clean[1, 5] = False
    got = cpu.avg_pool2d(x, **kwargs, nan_policy="omit", parallel=parallel)
    assert_bitwise(got, R.avg_pool2d(x, **kwargs, nan_policy="omit"))
    assert_bitwise(got[clean], cpu.avg_pool2d(x, **kwargs, parallel=parallel)[clean])
    x3 = np.stack([np.nan_to_num(x, nan=1.0), x], axis=2)  # adaptive: the NaN in the second depth slice
    got = cpu.adaptive_avg_pool3d(x3, (1, 3, 5), nan_policy="omit", parallel=parallel)
    assert_bitwise(got, R.adaptive_avg_pool3d(x3, (1, 3, 5), nan_policy="omit"))
    assert_bitwise(got[clean], cpu.adaptive_avg_pool3d(x3, (1, 3, 5), parallel=parallel)[clean])
    # 3-d windows (channels-first): NaN in the first depth slice's first row, the last slice's
    # last cell, a middle slice (odd row, even row, first column), a whole plane
    v = (rng.standard_normal((2, 9, 6, 7, 8)) * 3).astype(np.float32)
    v[v > 4] = -0.0
    v[0, 1, 0, 0, 3] = v[0, 4, -1, -1, -1] = v[1, 2, 3, 3, 4] = v[0, 6, 2, 4, 2] = np.nan
    v[1, 7] = np.nan
    v[1, 5, 2, 3, 0] = np.nan
    kw3 = {k: (val if k not in ("kernel_size", "stride", "padding") or isinstance(val, int)
               else (dict(kernel_size=2, stride=1, padding=1)[k], *val)) for k, val in kwargs.items()}
    got = cpu.avg_pool3d(v, **kw3, nan_policy="omit", parallel=parallel)
    assert_bitwise(got, R.avg_pool3d(v, **kw3, nan_policy="omit"))
    assert_bitwise(got[clean], cpu.avg_pool3d(v, **kw3, parallel=parallel)[clean])
    # global: groups of eight flat planes, one group clean, one not, and a tail of two
    for first, last in [(0, 0), (6, 0), (0, 6)]:  # NaN in the group's first or last plane's first or last cell
        y = (rng.standard_normal((1, 18, 5, 7)) * 3).astype(np.float32)
        y[0, 8 + last // 6 * 7].flat[-1 if last else 0] = np.nan
        if first:
            y[0, 8].flat[-1] = np.nan
        for name in ("adaptive_avg_pool2d", "global_avg_pool2d"):
            args = (1,) if name.startswith("adaptive") else ()
            got = getattr(cpu, name)(y, *args, nan_policy="omit", parallel=parallel)
            assert_bitwise(got, getattr(R, name)(y, *args, nan_policy="omit"))
            assert_bitwise(got[0, :8], getattr(cpu, name)(y, *args, parallel=parallel)[0, :8])
