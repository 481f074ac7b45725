"""Benchmark: 2-D max pooling on Dask (poolkit.dask) against in-memory poolkit.

    python benchmarks/dask_bench.py                  # 16384^2 in memory, 32768^2 out of core
    python benchmarks/dask_bench.py --size 8192 --ooc-size 16384 --chunk 1024   # quicker

Two questions, each answered with throughput in GB/s of *input* read:

1. **Same data, in memory.** A float32 ``(1, 1, size, size)`` array is pooled by
   in-memory poolkit (one call of the parallel Numba kernel on all cores) and by
   poolkit.dask (serial kernels, one per Dask thread; ``.compute()`` to one NumPy
   array) on the same values in ``chunk x chunk`` blocks, held two ways: as
   C-contiguous chunk arrays (what a chunked store such as Zarr delivers) and as
   ``da.from_array`` views into the one big array (the kernels run about twice as
   slowly on such views). Each is brought back into one NumPy array two ways:
   ``y.compute()`` (gathers the blocks, then concatenates them on the main
   thread) and ``da.store(y, np.empty(...))`` (each task writes its block into
   place). The ratio is the cost of going through Dask. Best of ``--repeat``
   runs each, interleaved.
2. **Out of core.** A lazily generated ``(1, 1, ooc, ooc)`` raster (each chunk is
   made when a task needs it: a copy of one random tile, so making it costs one
   memory write) is pooled and streamed into a sink that keeps only a checksum,
   as a writer to disk would. The input never exists as a whole. Each run is a
   fresh subprocess; it reports the time, the growth of its resident memory
   during the run (peak minus start, sampled from ``/proc/self/statm``; Linux)
   and, in a second subprocess, the peak of NumPy allocations seen by
   ``tracemalloc``, both also in chunks of the input.

Windows: 2x2 stride 2 (no halo; the pyramid step) and 3x3 stride 2 padding 1
(overlapping windows: every block reads a one-cell halo from its neighbours).
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

CASES = {"2x2 s2": dict(kernel_size=2, stride=2), "3x3 s2 p1": dict(kernel_size=3, stride=2, padding=1)}


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


class ChecksumSink:
    """A ``da.store`` target that keeps a running sum and count of what it receives."""

    def __init__(self):
        self.total = 0.0
        self.count = 0
        self._lock = threading.Lock()

    def __setitem__(self, index, block):
        s = float(block.sum(dtype=np.float64))
        with self._lock:
            self.total += s
            self.count += block.size


class RssSampler:
    """Peak resident set size during a ``with`` block, sampled every 2 ms from /proc.

    ``ru_maxrss`` cannot be used for this: it is the peak of the whole process,
    usually reached earlier by imports and JIT compilation.
    """

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.before = self.peak = self.now()

    def now(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(0.002)

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def lazy_raster(size, chunk, seed=0):
    """A ``(1, 1, size, size)`` float32 Dask array; each chunk is a copy of one random tile."""
    import dask.array as da

    tile = np.random.default_rng(seed).random((1, 1, chunk, chunk), dtype=np.float32)

    def make(block_info=None):
        loc = block_info[None]["array-location"]
        shape = tuple(b - a for a, b in loc)
        out = np.empty(shape, dtype=np.float32)
        out[...] = tile[tuple(slice(0, n) for n in shape)]
        return out

    return da.map_blocks(make, dtype=np.float32, chunks=((1,), (1,), *(_split(size, chunk),) * 2),
                         meta=np.empty((0, 0, 0, 0), np.float32))


def _split(n, c):
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def warm_up(threads):
    """Compile every kernel the runs use (parallel in-memory, serial per block, views)."""
    import dask.array as da

    import poolkit

    x = np.random.default_rng(1).random((1, 1, 300, 300), dtype=np.float32)
    for kw in CASES.values():
        poolkit.max_pool2d(x, **kw)
        dx = da.from_array(x, chunks=(1, 1, 128, 128))  # views of a bigger array
        poolkit.max_pool2d(dx, **kw).compute(scheduler="threads", num_workers=threads)
        poolkit.max_pool2d(lazy_raster(300, 128), **kw).compute(scheduler="threads", num_workers=threads)


def contiguous_chunks(x, chunk):
    """``x`` as a Dask array of C-contiguous chunks -- how a chunked store (Zarr, HDF5,
    a tiled GeoTIFF reader) hands data to Dask."""
    import dask.array as da

    n, c, h, w = x.shape
    return da.block([[np.ascontiguousarray(x[:, :, i:i + chunk, j:j + chunk]) for j in range(0, w, chunk)]
                     for i in range(0, h, chunk)])


def in_memory_vs_dask(size, chunk, threads, repeat):
    import dask.array as da

    import poolkit

    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    sources = {"contiguous chunks": contiguous_chunks(x, chunk),
               "da.from_array views": da.from_array(x, chunks=(1, 1, chunk, chunk))}
    rows = []
    for name, kw in CASES.items():
        want = poolkit.max_pool2d(x, **kw)
        ys = {src: poolkit.max_pool2d(dx, **kw) for src, dx in sources.items()}
        runs = {"in-memory": lambda: poolkit.max_pool2d(x, **kw)}
        for src, y in ys.items():
            runs[src] = lambda y=y: y.compute(scheduler="threads", num_workers=threads)
            runs[src + ", store"] = lambda y=y: store_into_new_array(y, threads)
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(repeat):  # interleaved, so that a busy machine hurts all alike
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
        same = all(np.array_equal(y.compute(scheduler="threads", num_workers=threads), want)
                   and np.array_equal(store_into_new_array(y, threads), want) for y in ys.values())
        rows.append(dict(case=name, gbs={k: x.nbytes / t / 1e9 for k, t in best.items()}, identical=same,
                         tasks=len(ys["contiguous chunks"].__dask_graph__()) - len(sources["contiguous chunks"].__dask_graph__())))
    return x.nbytes, rows


def store_into_new_array(y, threads):
    """The result in one new NumPy array, as in-memory poolkit returns it, written by
    ``da.store``: each task copies its block into place as it finishes, on the worker
    threads. (``y.compute()`` instead gathers every block and then concatenates them
    on the main thread, one more pass over the output after the pooling is done.)"""
    import dask.array as da

    out = np.empty(y.shape, dtype=y.dtype)
    da.store(y, out, lock=False, scheduler="threads", num_workers=threads)
    return out


def out_of_core_child(args):
    """Runs in a fresh process: pool a lazy raster into a checksum sink, report time and memory."""
    import tracemalloc

    import dask
    import dask.array as da

    import poolkit

    warm_up(args.threads)
    kw = CASES[args.case]
    x = lazy_raster(args.ooc_size, args.chunk)
    y = poolkit.max_pool2d(x, **kw)
    sink = ChecksumSink()
    if args.trace:
        tracemalloc.start()
    with dask.config.set(scheduler="threads", num_workers=args.threads), RssSampler() as rss:
        t0 = time.perf_counter()
        da.store(y, sink, lock=False)
        t = time.perf_counter() - t0
    peak_traced = tracemalloc.get_traced_memory()[1] if args.trace else None
    print(json.dumps(dict(seconds=t, rss_growth=rss.peak - rss.before, rss_before=rss.before,
                          peak_traced=peak_traced,
                          checksum=sink.total, count=sink.count, out_shape=list(y.shape),
                          in_bytes=int(np.prod(x.shape)) * 4, chunk_bytes=args.chunk ** 2 * 4)))


def out_of_core(case, args):
    base = [sys.executable, __file__, "--child", "--case", case, "--ooc-size", str(args.ooc_size),
            "--chunk", str(args.chunk), "--threads", str(args.threads)]
    run = json.loads(subprocess.run(base, check=True, capture_output=True, text=True).stdout)
    traced = json.loads(subprocess.run(base + ["--trace"], check=True, capture_output=True, text=True).stdout)
    run["peak_traced"] = traced["peak_traced"]
    assert run["count"] == int(np.prod(run["out_shape"]))  # every output cell reached the sink
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=16384, help="side of the in-memory array (float32)")
    p.add_argument("--ooc-size", type=int, default=32768, help="side of the lazily generated raster")
    p.add_argument("--chunk", type=int, default=2048, help="side of a square chunk")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="Dask threads and Numba threads")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", default="2x2 s2", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return out_of_core_child(args)

    import dask
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    warm_up(args.threads)
    chunk_mib = args.chunk ** 2 * 4 / 2 ** 20
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# poolkit.dask benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"(1-min load average at start: {load:.1f}); "
          f"Numba threads {numba.get_num_threads()}, Dask threaded scheduler with {args.threads} workers; "
          f"numba {numba.__version__}, dask {dask.__version__}, numpy {np.__version__}")
    print(f"# command: python benchmarks/dask_bench.py --size {args.size} --ooc-size {args.ooc_size} "
          f"--chunk {args.chunk} --threads {args.threads} --repeat {args.repeat}\n")

    nbytes, rows = in_memory_vs_dask(args.size, args.chunk, args.threads, args.repeat)
    print(f"## Same data in memory: float32 (1, 1, {args.size}, {args.size}) = {nbytes / 2**30:.2f} GiB, "
          f"Dask chunks {args.chunk}x{args.chunk} ({chunk_mib:.0f} MiB, {(args.size // args.chunk) ** 2} chunks); "
          f"best of {args.repeat}\n")
    print("GB/s of input (ratio to in-memory); `compute` = `y.compute()`, `store` = `da.store(y, np.empty(...))`.\n")
    print("| window | in-memory poolkit | contiguous chunks, compute | contiguous chunks, store | "
          "da.from_array views, compute | da.from_array views, store | identical | pooling tasks |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        g = r["gbs"]
        m = g["in-memory"]
        cells = [f"{g[k]:.2f} ({g[k] / m:.0%})" for k in ("contiguous chunks", "contiguous chunks, store",
                                                        "da.from_array views", "da.from_array views, store")]
        print(f"| {r['case']} | {m:.2f} | " + " | ".join(cells) + f" | {r['identical']} | {r['tasks']} |")

    ooc_gib = args.ooc_size ** 2 * 4 / 2 ** 30
    print(f"\n## Out of core: lazily generated float32 (1, 1, {args.ooc_size}, {args.ooc_size}) = {ooc_gib:.1f} GiB "
          f"= {(args.ooc_size // args.chunk) ** 2} chunks of {chunk_mib:.0f} MiB, streamed into a checksum sink\n")
    print("| window | seconds | GB/s of input (incl. making it) | peak RSS growth | "
          "peak NumPy allocations (tracemalloc) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case in CASES:
        r = out_of_core(case, args)
        cb = r["chunk_bytes"]
        print(f"| {case} | {r['seconds']:.2f} | {r['in_bytes'] / r['seconds'] / 1e9:.2f} | "
              f"{r['rss_growth'] / 2**20:.0f} MiB = {r['rss_growth'] / cb:.1f} chunks | "
              f"{r['peak_traced'] / 2**20:.0f} MiB = {r['peak_traced'] / cb:.1f} chunks |")


if __name__ == "__main__":
    main()
