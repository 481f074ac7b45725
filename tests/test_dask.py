"""poolkit.dask: lazy pooling of chunked Dask arrays, identical to in-memory poolkit for any chunking.

Every result is compared bit for bit with in-memory poolkit on the computed input
(``poolkit.max_pool2d`` / ``poolkit.avg_pool2d`` on the C-contiguous NumPy array that
``dx.compute()`` gives), which tests/test_forward_2d.py checks against the plain-loop
reference. Lesson 10's checkers are tested in tests/exercises/test_lesson10.py.
"""
import doctest
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402

import poolkit  # noqa: E402
import poolkit.dask as pdask  # noqa: E402
from poolkit import cpu  # noqa: E402
from strategies import pool2d_problem  # noqa: E402
from test_errors import AVG_CASES, MAX_CASES  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def chunks_for(draw, shape):
    """A random chunking of ``shape``: up to 4 cuts per axis, sizes as small as 1."""
    out = []
    for n in shape:
        if n <= 1:
            out.append((n,))
            continue
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4)))
        bounds = [0, *cuts, n]
        out.append(tuple(b - a for a, b in zip(bounds[:-1], bounds[1:])))
    return tuple(out)


class CountTasks(Callback):
    """Counts the tasks Dask runs (to show that building a graph computes nothing)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def _pretask(self, key, dsk, state):
        self.n += 1


def _assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN == NaN here; bitwise for floats


# ------------------------------------------------------------------ properties
@SETTINGS
@given(data=st.data(), problem=pool2d_problem(op="max", dtypes=("float32", "float64", "int16", "uint8")))
def test_max_pool2d_matches_in_memory_for_any_chunking(data, problem):
    x, kw, layout = problem
    dx = da.from_array(x, chunks=data.draw(chunks_for(x.shape)))
    x = np.ascontiguousarray(x)  # what dx computes to
    want = cpu.max_pool2d(x, layout=layout, **kw)
    want2, want_idx = cpu.max_pool2d(x, return_indices=True, layout=layout, **kw)
    got = pdask.max_pool2d(dx, layout=layout, **kw)
    got2, idx = pdask.max_pool2d(dx, return_indices=True, layout=layout, **kw)
    assert isinstance(got, da.Array) and isinstance(idx, da.Array)
    assert got.shape == want.shape and idx.dtype == np.int64
    got, got2, idx = dask.compute(got, got2, idx, scheduler="sync")
    _assert_same(got, want)
    _assert_same(got2, want2)
    _assert_same(idx, want_idx)  # global flat (H, W)-plane indices, not per chunk


@SETTINGS
@given(data=st.data(), problem=pool2d_problem(op="avg"))
def test_avg_pool2d_matches_in_memory_for_any_chunking(data, problem):
    x, kw, layout = problem
    dx = da.from_array(x, chunks=data.draw(chunks_for(x.shape)))
    want = cpu.avg_pool2d(np.ascontiguousarray(x), layout=layout, **kw)
    got = pdask.avg_pool2d(dx, layout=layout, **kw)
    assert isinstance(got, da.Array)
    # same kernel, same scan-order summation in the input dtype: bitwise equal
    _assert_same(got.compute(scheduler="sync"), want)


# ------------------------------------------------------------------ halos and padding
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7])
def test_overlapping_windows_cross_chunk_borders(layout, chunk):
    """3x3 stride 2 pad 1: windows overlap and straddle chunks that are not multiples of the stride."""
    rng = np.random.default_rng(chunk)
    x = rng.standard_normal((2, 3, 17, 14)).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dx = da.from_array(x, chunks=(1, 2, chunk, chunk) if layout == "NCHW" else (1, chunk, chunk, 2))
    for ceil_mode in (False, True):
        kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=ceil_mode, layout=layout)
        out, idx = pdask.max_pool2d(dx, return_indices=True, **kw)
        want, want_idx = poolkit.max_pool2d(x, return_indices=True, **kw)
        out, idx = dask.compute(out, idx, scheduler="threads")
        _assert_same(out, want)
        _assert_same(idx, want_idx)
        for cip in (True, False):
            got = pdask.avg_pool2d(dx, count_include_pad=cip, **kw).compute(scheduler="threads")
            _assert_same(got, poolkit.avg_pool2d(x, count_include_pad=cip, **kw))


def test_dilated_window_longer_than_chunks():
    x = np.arange(1 * 1 * 30 * 29, dtype=np.float64).reshape(1, 1, 30, 29)[..., ::-1, :]
    x = np.ascontiguousarray(x) % 17  # many ties
    dx = da.from_array(x, chunks=(1, 1, 4, 3))
    kw = dict(kernel_size=(3, 4), stride=(1, 3), padding=(1, 2), dilation=(5, 3), ceil_mode=True)
    out, idx = pdask.max_pool2d(dx, return_indices=True, **kw)
    want, want_idx = poolkit.max_pool2d(x, return_indices=True, **kw)
    _assert_same(out.compute(), want)
    _assert_same(idx.compute(), want_idx)


def test_nan_and_integer_edges():
    x = np.zeros((1, 2, 9, 9), np.float32)
    x[0, 0, 4, 4] = np.nan  # NaN sits on a chunk border
    x[0, 1] = -np.inf
    dx = da.from_array(x, chunks=(1, 1, 4, 5))
    out, idx = pdask.max_pool2d(dx, 3, 2, 1, return_indices=True)
    want, want_idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True)
    _assert_same(out.compute(), want)
    _assert_same(idx.compute(), want_idx)
    xi = np.full((1, 1, 7, 8), np.iinfo(np.int16).min, np.int16)  # every cell equals the -inf stand-in
    out, idx = pdask.max_pool2d(da.from_array(xi, chunks=3), 2, 1, return_indices=True)
    want, want_idx = poolkit.max_pool2d(xi, 2, 1, return_indices=True)
    _assert_same(out.compute(), want)
    _assert_same(idx.compute(), want_idx)


def test_unbatched_big_endian_and_empty_batch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 11, 10))
    be = x.astype(">f8")
    out = pdask.max_pool2d(da.from_array(be, chunks=(2, 4, 3)), 3, 2, 1)
    assert out.ndim == 3 and out.dtype == np.float64 and out.dtype.isnative
    _assert_same(out.compute(), poolkit.max_pool2d(x, 3, 2, 1))
    avg = pdask.avg_pool2d(da.from_array(be, chunks=(1, 5, 5)), 2, ceil_mode=True)
    _assert_same(avg.compute(), poolkit.avg_pool2d(x, 2, ceil_mode=True))
    hwc = np.ascontiguousarray(x.transpose(1, 2, 0))
    out, idx = pdask.max_pool2d(da.from_array(hwc, chunks=(3, 4, 2)), 2, layout="NHWC", return_indices=True)
    want, want_idx = poolkit.max_pool2d(hwc, 2, layout="NHWC", return_indices=True)
    _assert_same(out.compute(), want)
    _assert_same(idx.compute(), want_idx)
    empty = da.zeros((0, 3, 8, 8), dtype=np.float32, chunks=(0, 2, 3, 3))
    assert pdask.max_pool2d(empty, 2).compute().shape == (0, 3, 4, 4)
    assert pdask.avg_pool2d(empty, 2, layout="NHWC").compute().shape == (0, 1, 4, 8)  # H=3, W=8, C=8


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_negative_divisor_override_divides_like_torch(layout):
    """PyTorch divides by a negative divisor_override too; so does every block (with the halo)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(12).standard_normal((2, 3, 11, 10)).astype(np.float32)
    xl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
    dx = da.from_array(xl, chunks=(1, 4, 3, 2) if layout == "NHWC" else (1, 2, 4, 3))
    for args in [(2,), (3, 2, 1), (3, 2, 1, True, False)]:
        want = torch.nn.functional.avg_pool2d(torch.from_numpy(x), *args, divisor_override=-3).numpy()
        got = pdask.avg_pool2d(dx, *args, divisor_override=-3, layout=layout).compute()
        _assert_same(got.transpose(0, 3, 1, 2) if layout == "NHWC" else got, want)


def test_empty_and_ragged_spatial_chunks():
    x = np.random.default_rng(4).standard_normal((1, 1, 13, 12)).astype(np.float32)
    ragged = da.from_array(x, chunks=(1, 1, (5, 0, 1, 7), (2, 0, 10)))  # empty chunks inside
    assert 0 in ragged.chunks[2] and 0 in ragged.chunks[3]
    _assert_same(pdask.max_pool2d(ragged, 3, 2, 1).compute(), poolkit.max_pool2d(x, 3, 2, 1))
    _assert_same(pdask.avg_pool2d(ragged, 3, 2, 1).compute(), poolkit.avg_pool2d(x, 3, 2, 1))


# ------------------------------------------------------------------ graph shape and memory
def test_output_chunks_follow_input_chunks_divided_by_stride():
    dx = da.zeros((2, 3, 256, 192), dtype=np.float32, chunks=(1, 3, 64, 64))
    out = pdask.max_pool2d(dx, 2)
    assert out.chunks == ((1, 1), (3,), (32,) * 4, (32,) * 3)
    # non-overlapping windows on stride-aligned chunks need no halo: one task per chunk, no copies
    (layer,) = [out.dask.layers[n] for n in out.dask.layers if n.startswith("max_pool2d-chunk-")]
    assert sorted({k[0].split("-")[1] for k in layer}) == ["chunk"] and len(layer) == 2 * 4 * 3
    out = pdask.avg_pool2d(dx, 3, 2, 1, layout="NCHW")
    # overlapping windows: every block but the first of each (batch, channel) chunk is finished
    # by a halo task, which is the output block itself
    assert len(out.dask.layers[out.name]) == 2 * 4 * 3
    assert sum(t[0] is pdask._halo_out for t in out.dask.layers[out.name].values()) == 2 * (4 * 3 - 1)
    # output o's window ends at 2*o + 1: block j holds the windows ending in chunk j
    assert out.chunks[2:] == ((32,) * 4, (32,) * 3)


def test_every_task_reads_a_bounded_slice(monkeypatch):
    """No task ever sees the whole array: each block's input is one chunk plus a halo."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 64, 50)).astype(np.float32)
    chunks = (1, 2, 16, 13)
    dx = da.from_array(x, chunks=chunks)
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=2)
    halo = 2 * (3 - 1)  # d * (k - 1)
    rows, cols = pdask.block_plan(dx, **kw)
    assert all(b.in_stop - b.in_start <= 16 + halo for b in rows)
    assert all(b.in_stop - b.in_start <= 13 + halo for b in cols)
    seen = []
    real = pdask._run_kernel

    def spy(x, out, *args):
        seen.append((x.shape, out.shape))
        return real(x, out, *args)

    monkeypatch.setattr(pdask, "_run_kernel", spy)
    results = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if not isinstance(key, tuple):  # the final concatenation that compute() adds
                return
            for r in (result if isinstance(result, tuple) else (result,)):
                if isinstance(r, np.ndarray):
                    results.append(r.nbytes)

    out, idx = pdask.max_pool2d(dx, return_indices=True, **kw)
    with Sizes():
        got, got_idx = dask.compute(out, idx, scheduler="sync")
    want, want_idx = poolkit.max_pool2d(x, return_indices=True, **kw)
    _assert_same(got, want)
    _assert_same(got_idx, want_idx)
    assert len(seen) >= 2 * len(rows) * len(cols)  # every block of both batch chunks ran
    # each block is pooled on its whole chunk, then its first rows/columns (which read the
    # halo) again from the strips: a little redundant work, never a whole-array task
    assert out.size <= sum(np.prod(o) for _, o in seen) <= 1.5 * out.size
    for shape, _ in seen:  # the input one kernel call sees: at most a chunk plus its halo
        assert shape[0] == 1 and shape[1] == 2 and shape[2] <= 16 + halo and shape[3] <= 13 + halo
    bound = 1 * 2 * (16 + halo) * (13 + halo) * 8  # largest slice, even as int64 indices
    assert max(results) <= bound < x.nbytes // 4


def _our_tasks(y):
    """The tasks poolkit.dask adds (not the input's), as a dict, and their dependencies."""
    from dask.core import get_dependencies
    dsk = dict(y.__dask_graph__())
    mine = {k: v for k, v in dsk.items() if isinstance(k, tuple) and k[0].startswith(("max_pool2d", "avg_pool2d"))}
    return mine, {k: get_dependencies(dsk, k) for k in mine}


@pytest.mark.parametrize("window", [dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2)])
@pytest.mark.parametrize("indices", [False, True])
def test_graph_is_linear_in_the_number_of_chunks(window, indices):
    """Issue 13, probe 4: a few tasks per chunk, each with a few dependencies, and no chain
    through the halo tasks: every output block depends (transitively) on a bounded number of
    tasks, whatever the number of chunks (a chain made ``dask.order`` quadratic)."""
    x = np.random.default_rng(9).random((1, 1, 96, 96), dtype=np.float32)
    per_chunk = []
    for c in ((12, 12), (4, 4), (96, 2), (2, 96)):
        dx = da.from_array(x, chunks=(1, 1, *c))
        out = pdask.max_pool2d(dx, return_indices=indices, **window)
        y = out[0] if indices else out
        mine, deps = _our_tasks(y)
        per_chunk.append(len(mine) / dx.npartitions)
        assert max(len(d) for d in deps.values()) <= 5
        ancestors = {}

        def up(k):  # the tasks k needs, transitively (memoised; the graph is shallow)
            if k not in ancestors:
                ancestors[k] = set().union(*([{d} | up(d) for d in deps.get(k, ())] or [set()]))
            return ancestors[k]
        assert max(len(up(k)) for k in mine) <= 12, c
        if c == (4, 4):  # the result is still right
            got = dask.compute(*out, scheduler="sync") if indices else out.compute(scheduler="sync")
            want = poolkit.max_pool2d(x, return_indices=indices, **window)
            for g, w in zip(*((got, want) if indices else ((got,), (want,)))):
                _assert_same(g, w)
    assert max(per_chunk) <= 5, per_chunk  # 2-5 tasks per chunk: chunk, strips, block (+indices)


def test_many_chunks_in_bounded_time_and_memory():
    """Issue 13, probe 4: 2,048 chunks of 8x8 (4,096: 12 s and 640 MB with the chain, quadratic in the
    number of chunks: 16,384 chunks took 61-285 s and 6 GB). The subprocess compiles the kernels
    first (a cold Numba cache costs more memory than the pooling), then times the computation and
    samples its resident memory above that baseline (Linux: /proc; elsewhere only the time)."""
    code = """if 1:
        import os, threading, time
        import numpy as np, dask.array as da, poolkit, poolkit.dask

        def rss():
            try:
                with open("/proc/self/statm") as f:
                    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                return 0

        x = np.random.default_rng(0).random((1, 1, 256, 512), dtype=np.float32)
        warm = da.from_array(x[:, :, :32, :32], chunks=(1, 1, 8, 8))
        poolkit.dask.max_pool2d(warm, 3, 2, 1).compute(scheduler="threads", num_workers=2)
        poolkit.max_pool2d(x, 3, 2, 1)
        base, peak, done = rss(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)
        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        y = poolkit.dask.max_pool2d(da.from_array(x, chunks=(1, 1, 8, 8)), 3, 2, 1)
        got = y.compute(scheduler="threads", num_workers=2)
        t = time.perf_counter() - t0
        done.set()
        sampler.join()
        ok = np.array_equal(got, poolkit.max_pool2d(x, 3, 2, 1))
        print(ok, t, max(0, peak[0] - base) // 2**20)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=300).stdout.split()
    assert out[0] == "True"
    assert float(out[1]) < 90  # measured 3-6 s on 2 busy cores
    assert int(out[2]) < 100  # MiB above the warmed-up baseline: measured 36 (with the chain: 134)

def test_building_the_graph_computes_nothing():
    dx = da.random.default_rng(0).standard_normal((1, 1, 1000, 1000), chunks=250).astype(np.float32)
    with CountTasks() as counter:
        out = poolkit.max_pool2d(dx, 3, 2, 1)
        avg = poolkit.avg_pool2d(dx, 2, layout="NCHW")
    assert counter.n == 0
    assert isinstance(out, da.Array) and isinstance(avg, da.Array)
    assert out.shape == (1, 1, 500, 500) and avg.shape == (1, 1, 500, 500)


# ------------------------------------------------------------------ dispatch and schedulers
def test_top_level_functions_dispatch_dask_arrays():
    x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)
    dx = da.from_array(x, chunks=(1, 1, 3, 2))
    assert poolkit.functional.backend_for(dx) == "dask"
    out = poolkit.max_pool2d(dx, 2)
    out2, idx = poolkit.max_pool2d(dx, 2, return_indices=True)
    avg = poolkit.avg_pool2d(dx, 2)
    assert all(isinstance(a, da.Array) for a in (out, out2, idx, avg))
    np.testing.assert_array_equal(out.compute()[0, 0], [[6, 8], [14, 16]])
    np.testing.assert_array_equal(idx.compute()[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(avg.compute()[0, 0], [[3.5, 5.5], [11.5, 13.5]])


def test_same_names_arguments_and_defaults_as_functional():
    import inspect

    for name in ("max_pool2d", "avg_pool2d"):
        assert inspect.signature(getattr(pdask, name)) == inspect.signature(getattr(poolkit.functional, name))


def test_graph_names_are_deterministic():
    dx = da.ones((1, 2, 20, 20), chunks=7)
    assert pdask.max_pool2d(dx, 3, 2, 1).name == pdask.max_pool2d(dx, 3, 2, 1).name
    assert pdask.max_pool2d(dx, 3, 2, 1).name != pdask.max_pool2d(dx, 3, 2, 0).name
    assert pdask.avg_pool2d(dx, 2).name != pdask.avg_pool2d(dx, 2, divisor_override=3).name


def test_local_cluster_gives_the_same_answer():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 45, 38))
    dx = da.from_array(x, chunks=(1, 1, 10, 9))
    # a separate worker process: tasks must pickle and poolkit must import there
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        out, idx = pdask.max_pool2d(dx, 3, 2, 1, return_indices=True)
        avg = pdask.avg_pool2d(dx, 3, 2, 1, ceil_mode=True, count_include_pad=False)
        out, idx, avg = client.compute([out, idx, avg], sync=True)
    want, want_idx = poolkit.max_pool2d(x, 3, 2, 1, return_indices=True)
    _assert_same(out, want)
    _assert_same(idx, want_idx)
    _assert_same(avg, poolkit.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))


def test_import_poolkit_does_not_import_dask_but_poolkit_dask_gets_the_real_one():
    code = ("import sys, poolkit; print(any(m == 'dask' or m.startswith('dask.') for m in sys.modules)); "
            "import poolkit.dask, dask.array; print(poolkit.dask.da is dask.array, "
            "'site-packages' in dask.__file__ or 'poolkit' not in dask.__file__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]


def test_docstring_examples_run():
    assert doctest.testmod(pdask, raise_on_error=False).failed == 0


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("override,exc,msg", MAX_CASES)
def test_max_pool2d_errors_match_in_memory(override, exc, msg):
    kw = dict(x=np.zeros((1, 2, 6, 6), np.float32), kernel_size=2)
    kw.update(override)
    if not isinstance(kw["x"], np.ndarray):
        exc, msg = TypeError, "x must be a dask.array.Array"
    else:
        kw["x"] = da.from_array(kw["x"], chunks=2)
    with CountTasks() as counter, pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")) as info:
        pdask.max_pool2d(**kw)
    assert "max_pool2d" in str(info.value) and counter.n == 0


@pytest.mark.parametrize("override,exc,msg", AVG_CASES)
def test_avg_pool2d_errors_match_in_memory(override, exc, msg):
    kw = dict(x=np.zeros((1, 2, 6, 6), np.float32), kernel_size=2)
    kw.update(override)
    kw["x"] = da.from_array(kw["x"], chunks=2)
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")) as info:
        pdask.avg_pool2d(**kw)
    assert "avg_pool2d" in str(info.value)


@pytest.mark.parametrize("fn", [pdask.max_pool2d, pdask.avg_pool2d])
def test_non_dask_input_is_refused(fn):
    for bad in (np.zeros((1, 1, 4, 4), np.float32), [[[[1.0]]]], None):
        with pytest.raises(TypeError, match=r"x must be a dask\.array\.Array, got"):
            fn(bad, 2)


def test_unknown_chunks_and_masked_chunks_are_refused():
    dx = da.ones((1, 1, 6, 6), chunks=3)
    unknown = da.Array(dx.dask, dx.name, ((1,), (1,), (np.nan, np.nan), (3, 3)), dtype=dx.dtype)
    with pytest.raises(ValueError, match="max_pool2d: x has unknown chunk sizes.*compute_chunk_sizes"):
        pdask.max_pool2d(unknown, 2)
    masked = da.ma.masked_greater(dx, 0.5)
    with pytest.raises(TypeError, match="avg_pool2d: x must be a Dask array of NumPy chunks"):
        pdask.avg_pool2d(masked, 2)
    with pytest.raises(TypeError, match="block_plan: x must be a dask.array.Array"):
        pdask.block_plan(np.ones((1, 1, 4, 4)), 2)


def test_fortran_order_and_view_chunks():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 30, 27)).astype(np.float32)
    for src in (np.asfortranarray(x), x):  # Fortran-order chunks, then row-contiguous views
        dx = da.from_array(src, chunks=(1, 1, 9, 10))
        for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)):
            _assert_same(pdask.max_pool2d(dx, **kw).compute(), poolkit.max_pool2d(x, **kw))
            _assert_same(pdask.avg_pool2d(dx, **kw).compute(), poolkit.avg_pool2d(x, **kw))
