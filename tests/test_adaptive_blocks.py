"""Adaptive pooling to a huge output size holds no bin table that grows with the output
(issue 12): the CPU backend runs the output in blocks of at most ``geometry.ADAPTIVE_BLOCK``
bins per dimension, each with its own (start, stop) tables, and an adaptive average's
backward finds the bins over each input cell in closed form (``geometry.adaptive_covering``).

The block size is lowered here (2 or 3 bins) so small problems run in many blocks; every
result must equal ``poolkit.reference`` bit for bit, as the one-block run does. Peak memory is
read with ``tracemalloc`` (NumPy reports its allocations to it) after a warm-up call.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import poolkit
from poolkit import cpu
from poolkit import geometry as G
from poolkit import reference as R
from strategies import adaptive_problem, assert_same, random_grad


# ------------------------------------------------------------------ the rules
@settings(max_examples=200, deadline=None)
@given(L=st.integers(0, 60), out=st.integers(1, 60), data=st.data())
def test_bins_of_a_block_are_the_whole_tables_slice(L, out, data):
    lo = data.draw(st.integers(0, out))
    hi = data.draw(st.integers(lo, out))
    start, stop = G.adaptive_bins(L, out)
    s, e = G.adaptive_bins(L, out, lo, hi)
    assert s.tolist() == start[lo:hi].tolist() and e.tolist() == stop[lo:hi].tolist()


@settings(max_examples=200, deadline=None)
@given(L=st.integers(0, 60), out=st.integers(0, 60))
def test_adaptive_covering_is_covering_windows_of_the_bins(L, out):
    lo, hi = G.adaptive_covering(L, out)
    want_lo, want_hi = G.covering_windows(*G.adaptive_bins(L, out), L)
    assert lo.tolist() == want_lo.tolist() and hi.tolist() == want_hi.tolist()


@pytest.mark.parametrize("block", [1, 2, 3, 5])
@pytest.mark.parametrize("out_size", [(0,), (1,), (5,), (6,), (7, 2), (4, 0, 3), (2, 3, 11)])
def test_blocks_cover_the_output_once(monkeypatch, block, out_size):
    monkeypatch.setattr(G, "ADAPTIVE_BLOCK", block)
    seen = np.zeros(out_size, np.int64)
    for ranges in G.adaptive_blocks(out_size):
        assert all(0 < b - a <= block for a, b in ranges)
        seen[tuple(slice(a, b) for a, b in ranges)] += 1
    assert (seen == 1).all()


# ------------------------------------------------------------------ every op in blocks
OPS = ["adaptive_max", "adaptive_max_idx", "adaptive_avg", "adaptive_avg_backward", "adaptive_max_backward"]


def _run(mod, op, nd, x, out, layout, policy, parallel=None):
    kw = dict(layout=layout, nan_policy=policy)
    if mod is cpu:
        kw["parallel"] = parallel
    if op.startswith("adaptive_max") and not op.endswith("backward"):
        return getattr(mod, f"adaptive_max_pool{nd}d")(x, out, return_indices=op.endswith("idx"), **kw)
    if op == "adaptive_avg":
        return getattr(mod, f"adaptive_avg_pool{nd}d")(x, out, **kw)
    y = getattr(poolkit.reference, f"{op[:-len('_backward')]}_pool{nd}d")(x, out, layout=layout, nan_policy=policy)
    g = random_grad((y[0] if isinstance(y, tuple) else y).shape, x.dtype, 3)
    return getattr(mod, f"{op[:-len('_backward')]}_pool{nd}d_backward")(g, x, out, **kw)


@pytest.mark.parametrize("op", OPS)
@settings(max_examples=25, deadline=None)
@given(nd=st.integers(1, 3), data=st.data(), block=st.integers(1, 3), parallel=st.booleans(),
       policy=st.sampled_from(["propagate", "omit"]))
def test_every_adaptive_op_in_blocks_matches_reference(op, nd, data, block, parallel, policy):
    """Each block reads its own slab of the input with tables counted from the slab's first
    cell (indices: all of it, counted from 0); NaN, ties, both layouts, unbatched and strided
    inputs, outputs smaller and larger than the input (bins that overlap or repeat cells)."""
    x, out, layout = data.draw(adaptive_problem(nd))
    want = _run(R, op, nd, x, out, layout, policy)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(G, "ADAPTIVE_BLOCK", block)
        got = _run(cpu, op, nd, x, out, layout, policy, parallel)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert_same(g, w)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_each_block_reads_only_its_slab(monkeypatch, layout):
    """A block's kernel gets the input cells its bins cover: a NaN outside them changes no
    other block (a kernel given the whole plane with slab-relative tables would read it),
    and max indices stay positions in the whole plane."""
    monkeypatch.setattr(G, "ADAPTIVE_BLOCK", 2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 12, 10)).astype(np.float32)
    x[:, :, 11, 9] = np.nan  # only the last bins (10 -> 5 rows, 2 cells each) cover it
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    for op in OPS[:3]:
        for policy in ("propagate", "omit"):
            got = _run(cpu, op, 2, x, (6, 5), layout, policy, True)
            want = _run(R, op, 2, x, (6, 5), layout, policy)
            for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                assert_same(g, w)


# ------------------------------------------------------------------ memory
def _peak(fn):
    fn()  # warm-up: compile and cache outside the measurement
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("op", ["adaptive_avg", "adaptive_max", "adaptive_max_idx"])
def test_a_huge_output_size_costs_no_table_per_bin(op, layout):
    """(1, 1, 8, 8) -> (4 * 10**6, 1): the output is 16 MB (indices 32 MB more). One table per
    bin (int64 start and stop, and the sizes) held 4.1x (max) to 5.65x (average) the output
    beside it; blocks of 65536 bins hold about 1.3 MB of tables each, at most two at a time."""
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    result, peak = _peak(lambda: _run(cpu, op, 2, x, (4 * 10**6, 1), layout, "propagate", True))
    size = sum(a.nbytes for a in (result if isinstance(result, tuple) else (result,)))
    assert peak - size < 4 << 20, (peak, size)  # was +66 MB to +90 MB


def test_an_adaptive_average_backward_from_a_huge_output_holds_one_share():
    """The backward of (1, 2, 8, 8) -> (10**6, 1) holds ``grad_output / sizes`` (8 MB) and
    input-sized tables: its peak was 11x grad_output (bin tables, their sizes, the share
    divided in two temporaries, the covering windows searched in the bin tables)."""
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    g = np.ones((1, 2, 10**6, 1), np.float32)
    for policy in ("propagate", "omit"):
        _, peak = _peak(lambda: poolkit.adaptive_avg_pool2d_backward(g, x, (10**6, 1), nan_policy=policy))
        assert peak < g.nbytes + (4 << 20), (policy, peak)  # was 11x g.nbytes
