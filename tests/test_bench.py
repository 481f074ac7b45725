"""The CPU benchmark's plumbing (``python -m poolkit.bench``) on tiny cases; no timing is asserted."""
import numba
import pytest

from poolkit import bench

TINY = [("max 3x3 s2 p1", "max", (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1), True),
        ("avg 7x7", "avg", (2, 5, 7, 7), dict(kernel_size=7), False),
        ("max +indices", "max", (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1, return_indices=True), False)]


def test_interleaved_rounds_time_every_contender_alike():
    calls = []
    times = bench._interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=4)
    # 2 rounds of (1 untimed + BLOCK timed) calls each, contenders alternating by round
    per = 1 + bench.BLOCK
    assert calls == (["a"] * per + ["b"] * per) * 2
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


@pytest.mark.parametrize("use_torch", [False, True])
def test_run_and_table(use_torch):
    if use_torch:
        pytest.importorskip("torch")
    threads = numba.get_num_threads()
    rows = bench.run(threads=1, repeat=1, cases=TINY, use_torch=use_torch)
    assert numba.get_num_threads() == threads  # restored
    assert [(r["case"], r["layout"]) for r in rows] == [(c[0], lay) for c in TINY for lay in ("NCHW", "NHWC")]
    for r in rows:
        assert all(r[k] > 0 for k in ("serial", "parallel", "copy"))
        if use_torch:
            assert r["matches_torch"] == "bitwise"  # same order of operations as PyTorch's CPU kernels
        else:
            assert "torch" not in r
    table = bench.format_table(rows, threads=1)
    assert table.count("\n| ") == len(rows)
    assert "large cases: poolkit/copy worst" in table
    assert [r["extra"] for r in rows] == [False] * 4 + [True] * 2  # index cases stay out of the summary
    assert ("speed-up vs torch min" in table) == use_torch
