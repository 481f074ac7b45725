"""2x2 max and mean of a lazy Dask-backed raster with nodata: poolkit's ``.pool`` accessor against
``xarray.DataArray.coarsen`` and xarray-spatial, side by side in one run.

    python benchmarks/raster_bench.py --gib 1 --chunk-mib 16 --threads 2 --nan 0.2 --rounds 3 \\
        --out benchmarks/RESULTS_raster.md
    python benchmarks/raster_bench.py --smoke      # tiny raster, 1 round: checks the script works

The raster is a 2-D ``(y, x)`` float32 :class:`xarray.DataArray` with regular, descending-``y``
coordinates (10 m cells), backed by a Dask array whose chunks are *made* by
:func:`dask.array.map_blocks` when a task needs them, so the raster never exists as a whole.
Each chunk is a copy of one random tile plus the chunk's number, with a deterministic nodata
mask (NaN) drawn in *global* cell coordinates, so it continues across chunk edges:

* a swath edge: a slanted triangle of nodata in the top-left corner (all-NaN windows);
* scan-line gaps: wedge-shaped stripes, zero wide mid-raster and ``STRIPE_MAX`` rows wide at the
  left and right edges, starting on odd and even rows alternately (half-NaN windows), as
  Landsat 7's SLC-off gaps;
* clouds: elliptic blobs scattered by a Poisson process seeded per ``BLOB_CELL``-square cell of
  the raster.

The three share ``--nan`` (the fraction of NaN cells) about 1 : 1 : 2; the realised fraction is
counted (one untimed pass) and printed. ``--mask tile`` instead draws one chunk-sized mask into
the tile once, so every chunk has the same nodata and costs one pass over memory to make: a
cheap source, to see the contenders with less of the source's cost in front of them.

Contenders, each for 2x2 max and 2x2 mean (non-overlapping windows, ``stride = 2``):

* ``poolkit propagate`` / ``poolkit omit``: ``r.pool.max(y=2, x=2, nan_policy=...)`` and
  ``r.pool.mean(...)`` (``import poolkit.xarray``), which run :mod:`poolkit.dask`;
* ``coarsen skipna``: ``r.coarsen(y=2, x=2).max()`` / ``.mean()`` (``skipna`` defaults to True for
  floats: NumPy's ``nanmax`` / ``nanmean`` through Dask) -- what ``omit`` replaces;
* ``coarsen skipna=False``: the same without skipping NaN -- what ``propagate`` replaces. In
  xarray 2026.9 ``.max(skipna=False)`` raises a TypeError, so this is
  ``r.coarsen(y=2, x=2).reduce(np.max)`` (``np.mean``): Dask's ``max``/``mean`` of the same
  reshaped view;
* ``xrspatial canvas_like``: xarray-spatial 0.5.3 has no ``resample`` or ``aggregate``; its one
  resampler is :func:`xrspatial.utils.canvas_like`, a thin wrapper of ``datashader.Canvas.raster``
  (area-weighted regridding, NaN skipped). With the canvas set to the raster's cell edges and
  half its width and height, ``agg="max"``/``"mean"`` is a 2x2 pooling with ``skipna`` (checked
  below). ``chunksize`` is set to the others' output chunks, so it needs no final rechunk;
* ``floor: make chunks``: no pooling; every chunk is made and the sink gets a quarter of it (as
  many cells as a pooled block). What every contender pays before it pools anything.

Each run is timed **end to end**: building the result (the accessor call, ``coarsen``,
``canvas_like``: the graph) plus ``dask.array.store(result.data, sink, lock=False)`` on the
threaded scheduler with ``--threads`` workers. The sink keeps nothing: it counts the cells and
NaN cells of every output block it receives (``np.isnan`` + ``count_nonzero`` on a quarter-size
block: about 1 ms a block, see the one-chunk table), so every block is computed and streamed away,
as a writer to Zarr would, without a result array in memory. The counts double as a cross-check at full size (omit
and ``coarsen skipna`` must leave the same cells NaN). Rounds are interleaved (every contender
once per round, the order rotated each round) so a busy machine hurts all alike; the table gives
the median over rounds, and speed-ups are medians of per-round ratios.

Memory is measured apart from the timings, in a fresh process per contender (``--child``): it
imports, warms up on a tiny raster, then makes the same raster and runs once. The peak resident
set size during that run minus its value just before (after ``gc.collect()`` and glibc's
``malloc_trim(0)``) is reported in MiB and in input chunks. The peak is the kernel's high-water
mark (``VmHWM``, reset by writing ``5`` to ``/proc/self/clear_refs``; Linux 4.0+), or, where that
is not allowed, a thread's samples of ``/proc/self/statm`` every 2 ms. A fresh process because in
the timing process memory freed by earlier runs stays resident (glibc keeps it in its arenas even
after ``malloc_trim``), which hides most of the next run's growth.

After the rounds, each contender's work on one chunk is timed in memory on one thread, without
Dask or xarray (poolkit's kernels; NumPy's ``nanmax``/``nanmean``/``max``/``mean`` over the
``(h/2, 2, w/2, 2)`` view that coarsen reduces; datashader's ``resample_2d``; making the chunk):
the end-to-end times are these per-chunk costs, 64 chunks over ``--threads`` workers, plus Dask.

Correctness is checked first, on a small raster with uneven chunks: poolkit omit against
``coarsen(...).max()`` (bitwise) and ``.mean()`` (allclose: NumPy's ``nanmean`` sums the
window in another order), poolkit propagate against ``coarsen`` with ``skipna=False``, and
``canvas_like`` against ``coarsen`` skipna, values and coordinates; it prints ``ok`` or
``MISMATCH`` per line and ``--out`` records them.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np

RES = 10.0  # cell size (m), Sentinel-2-like
X0, Y0 = 300_000.0, 5_000_000.0  # top-left corner of the raster
STRIPE_MAX = 12  # widest scan-line gap (rows), at the raster's left and right edges
BLOB_CELL = 512  # side of the cells that seed cloud blobs
BLOB_RADII = (8.0, 96.0)  # cloud radius range (cells)
OPS = ("max", "mean")
POOL_CONTENDERS = ("poolkit propagate", "poolkit omit", "coarsen skipna", "coarsen skipna=False",
                   "xrspatial canvas_like")
FLOOR = "floor: make chunks"


# ================================================================ the raster
class Nodata:
    """Where the raster's NaN cells are: a swath edge, scan-line gaps and cloud blobs, for a
    ``side x side`` raster with a fraction ``nan`` of NaN cells (about; see the module docstring)."""

    def __init__(self, side, nan, seed):
        self.side, self.seed = side, seed
        self.on = nan > 0
        if not self.on:
            return
        f_swath = f_stripe = nan / 4
        # Swath: cells with y + 0.7 x < L, a triangle of area L * L / 0.7 / 2.
        self.swath = side * math.sqrt(1.4 * f_swath)
        # Stripes: a gap of mean width STRIPE_MAX / 2 every `period` rows.
        self.stripe_max = max(2, min(STRIPE_MAX, side // 64))
        self.period = max(self.stripe_max + 2, round(self.stripe_max / 2 / f_stripe))
        # Blobs: a Poisson process of ellipses; the union covers f_blob of the area.
        f_blob = 1 - (1 - nan) / ((1 - f_swath) * (1 - f_stripe))
        self.cell = min(BLOB_CELL, max(32, side // 4))
        scale = self.cell / BLOB_CELL
        self.rmin, self.rmax = BLOB_RADII[0] * scale, BLOB_RADII[1] * scale
        mean_r2 = (self.rmax ** 3 - self.rmin ** 3) / (3 * (self.rmax - self.rmin))
        self.blobs_per_cell = -math.log(1 - f_blob) / (math.pi * mean_r2) * self.cell ** 2

    def apply(self, out, y0, x0):
        """Set the nodata cells of the block ``out`` whose top-left cell is ``(y0, x0)`` to NaN."""
        if not self.on:
            return out
        h, w = out.shape
        self._swath(out, y0, x0, h, w)
        self._stripes(out, y0, x0, h, w)
        self._blobs(out, y0, x0, h, w)
        return out

    def _swath(self, out, y0, x0, h, w):
        for r in range(h):
            y = y0 + r
            if y >= self.swath:
                break
            stop = min(w, max(0, math.ceil((self.swath - y) / 0.7) - x0))
            out[r, :stop] = np.nan

    def _stripes(self, out, y0, x0, h, w):
        half = self.side / 2
        width = np.rint(self.stripe_max * np.abs(np.arange(x0, x0 + w) + 0.5 - half) / half).astype(np.int64)
        for n in range(max(0, y0 // self.period - 1), (y0 + h) // self.period + 1):
            start = n * self.period + (n % 2)
            a, b = max(start, y0), min(start + self.stripe_max, y0 + h)
            if a >= b:
                continue
            rows = np.arange(a, b)[:, None]
            sub = out[a - y0:b - y0]
            sub[rows < start + width[None, :]] = np.nan

    def _blobs(self, out, y0, x0, h, w):
        c, reach = self.cell, int(math.ceil(self.rmax * 1.5))
        for cy in range(max(0, (y0 - reach) // c), (y0 + h + reach) // c + 1):
            for cx in range(max(0, (x0 - reach) // c), (x0 + w + reach) // c + 1):
                rng = np.random.default_rng([self.seed, cy, cx])
                n = rng.poisson(self.blobs_per_cell)
                ys = cy * c + rng.random(n) * c
                xs = cx * c + rng.random(n) * c
                rx = rng.uniform(self.rmin, self.rmax, n)
                ry = rx * rng.uniform(0.6, 1.4, n)
                for yc, xc, ax, ay in zip(ys, xs, rx, ry):
                    a, b = max(y0, int(yc - ay)), min(y0 + h, int(yc + ay) + 1)
                    l, r = max(x0, int(xc - ax)), min(x0 + w, int(xc + ax) + 1)
                    if a >= b or l >= r:
                        continue
                    dy = ((np.arange(a, b) + 0.5 - yc) / ay)[:, None]
                    dx = ((np.arange(l, r) + 0.5 - xc) / ax)[None, :]
                    sub = out[a - y0:b - y0, l - x0:r - x0]
                    sub[dy * dy + dx * dx < 1] = np.nan


def split(n, c):
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def make_raster(height, width, chunk, nan, seed=0, mask="chunk"):
    """A lazy ``(y, x)`` float32 DataArray; each chunk is made (values + nodata) when a task needs it.

    ``mask="chunk"``: each chunk draws its own part of one raster-wide nodata mask.
    ``mask="tile"``: the nodata of a ``chunk``-sized raster is drawn once into the tile, so every
    chunk has the same mask and costs one pass over memory to make (a cheap source).
    """
    import dask.array as da
    import xarray as xr

    tile = (np.random.default_rng(seed).random((chunk, chunk), dtype=np.float32) * 1000).astype(np.float32)
    if mask == "tile":
        Nodata(chunk, nan, seed).apply(tile, 0, 0)
        nodata = Nodata(chunk, 0, seed)  # nothing more per chunk
    else:
        nodata = Nodata(max(height, width), nan, seed)
    nx = -(-width // chunk)

    def make(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        k = (y0 // chunk) * nx + x0 // chunk
        out = np.add(tile[:y1 - y0, :x1 - x0], np.float32(k))
        return nodata.apply(out, y0, x0)

    data = da.map_blocks(make, dtype=np.float32, chunks=(split(height, chunk), split(width, chunk)),
                         meta=np.empty((0, 0), np.float32),
                         name=f"raster-{height}-{width}-{chunk}-{nan}-{seed}-{mask}")
    y = Y0 - (np.arange(height) + 0.5) * RES
    x = X0 + (np.arange(width) + 0.5) * RES
    return xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name="band",
                        attrs={"units": "reflectance", "res": (RES, RES)})


# ================================================================ the contenders
def pooled(r, name, op):
    """The lazy 2x2 ``op`` of ``r`` by contender ``name`` (a DataArray)."""
    if name.startswith("poolkit"):
        import poolkit.xarray  # noqa: F401  (registers DataArray.pool)

        policy = name.split()[1]
        return getattr(r.pool, op)(y=2, x=2, nan_policy=policy)
    if name == "coarsen skipna":
        return getattr(r.coarsen(y=2, x=2), op)()  # skipna defaults to True for floats
    if name == "coarsen skipna=False":
        # ``.max(skipna=False)`` raises TypeError in xarray 2026.9 (DataArrayCoarsen passes
        # skipna on to _reduce_method); ``reduce`` with NumPy's function is the same reduction.
        return r.coarsen(y=2, x=2).reduce({"max": np.max, "mean": np.mean}[op])
    if name == "xrspatial canvas_like":
        from xrspatial.utils import canvas_like

        x, y = r.x.values, r.y.values
        out_chunks = tuple(max(1, c[0] // 2) for c in r.data.chunks)
        return canvas_like(r, width=r.sizes["x"] // 2, height=r.sizes["y"] // 2,
                           x_range=(x.min() - RES / 2, x.max() + RES / 2),
                           y_range=(y.min() - RES / 2, y.max() + RES / 2), agg=op, chunksize=out_chunks)
    raise ValueError(name)


def floor_of(r):
    """No pooling (a Dask array): every chunk is made, and the sink gets its top-left quarter (a
    view), as many cells as a pooled block has."""
    return r.data.map_blocks(lambda b: b[:(b.shape[0] + 1) // 2, :(b.shape[1] + 1) // 2],
                             chunks=tuple(tuple((c + 1) // 2 for c in cs) for cs in r.data.chunks), dtype=r.dtype)


class NanCountSink:
    """A ``da.store`` target that keeps only the number of cells and NaN cells it received."""

    def __init__(self):
        self.cells = self.nans = 0
        self._lock = threading.Lock()

    def __setitem__(self, index, block):
        n = int(np.count_nonzero(np.isnan(block)))
        with self._lock:
            self.cells += block.size
            self.nans += n


# ================================================================ memory
_LIBC = None


def release_freed_memory():
    """``gc.collect()`` and glibc's ``malloc_trim(0)``: return what earlier runs freed to the OS."""
    global _LIBC
    gc.collect()
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


class PeakRss:
    """Peak resident set size during a ``with`` block (``.before``, ``.peak``, ``.how``).

    Exact where Linux lets the process reset its high-water mark (writing ``5`` to
    ``/proc/self/clear_refs``, Linux 4.0+): then ``VmHWM`` afterwards is the peak of the block.
    Elsewhere a thread samples ``/proc/self/statm`` every 2 ms (:class:`RssSampler`), which can
    miss short peaks when the cores are busy.
    """

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.before = _status_kib("VmRSS") * 1024
            if _status_kib("VmHWM") * 1024 > self.before + 2**20:
                raise OSError("VmHWM was not reset")
            self._sampler, self.how = None, "VmHWM"
        except (OSError, StopIteration, ValueError):
            self._sampler, self.how = RssSampler().__enter__(), "sampled"
            self.before = self._sampler.before
        return self

    def __exit__(self, *exc):
        if self._sampler is None:
            self.peak = _status_kib("VmHWM") * 1024
        else:
            self._sampler.__exit__(*exc)
            self.peak = self._sampler.peak


class RssSampler:
    """Peak resident set size during a ``with`` block, sampled every 2 ms from /proc (Linux)."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.before = self.peak = self.now()

    def now(self):
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self.page
        except OSError:
            return 0

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


def run_once(r, name, op, threads):
    """Build and store one result; returns (seconds, peak RSS growth in bytes, sink, how measured)."""
    import dask.array as da

    release_freed_memory()
    sink = NanCountSink()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        y = floor_of(r) if name == FLOOR else pooled(r, name, op).data
        da.store(y, sink, lock=False, scheduler="threads", num_workers=threads)
        t = time.perf_counter() - t0
    return t, rss.peak - rss.before, sink, rss.how


def nan_fraction(r, threads):
    """The fraction of NaN cells of the whole raster (one untimed pass; nothing kept)."""
    import dask.array as da

    sink = NanCountSink()
    da.store(r.data, sink, lock=False, scheduler="threads", num_workers=threads)
    return sink.nans / sink.cells


# ================================================================ one chunk, one thread
def per_chunk(r, repeat, log):
    """Each contender's work on one chunk, in memory, on one thread, without Dask or xarray:
    what bounds the end-to-end runs. Returns {label: seconds} (median of ``repeat``)."""
    import numba
    from datashader.resampling import resample_2d

    import poolkit

    ny, nx = (len(c) for c in r.data.chunks)
    block = r.data.blocks[ny // 2, nx // 2]
    b = block.compute(scheduler="sync")
    h, w = b.shape
    v = b[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2)
    # canvas_like flips a raster whose y decreases (datashader wants it increasing); its kernels
    # get C-contiguous float32 blocks and float offsets: the same here (no second compilation).
    flipped = np.ascontiguousarray(b[::-1])
    ds_kw = dict(fill_value=np.nan, x_offset=(0.0, 0.0), y_offset=(0.0, 0.0))
    x4 = b[None, None]
    cases = {
        "make one chunk (the floor's work)": lambda: block.compute(scheduler="sync"),
        "poolkit max, propagate": lambda: poolkit.max_pool2d(x4, 2),
        "poolkit max, omit": lambda: poolkit.max_pool2d(x4, 2, nan_policy="omit"),
        "poolkit mean, propagate": lambda: poolkit.avg_pool2d(x4, 2),
        "poolkit mean, omit": lambda: poolkit.avg_pool2d(x4, 2, nan_policy="omit"),
        "np.nanmax(view, axis=(1, 3)) (coarsen skipna)": lambda: np.nanmax(v, axis=(1, 3)),
        "np.max(view, axis=(1, 3)) (skipna=False)": lambda: np.max(v, axis=(1, 3)),
        "np.nanmean(view, axis=(1, 3)) (coarsen skipna)": lambda: np.nanmean(v, axis=(1, 3)),
        "np.mean(view, axis=(1, 3)) (skipna=False)": lambda: np.mean(v, axis=(1, 3)),
        "datashader resample_2d max (canvas_like)":
            lambda: resample_2d(flipped, w // 2, h // 2, ds_method="max", **ds_kw),
        "datashader resample_2d mean (canvas_like)":
            lambda: resample_2d(flipped, w // 2, h // 2, ds_method="mean", **ds_kw),
        "the sink on one output block": lambda: np.count_nonzero(np.isnan(b[:h // 2, :w // 2])),
    }
    before = numba.get_num_threads()
    numba.set_num_threads(1)  # poolkit's and datashader's parallel kernels on one thread
    try:
        out = {}
        for label, fn in cases.items():
            fn()
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            out[label] = statistics.median(ts)
    finally:
        numba.set_num_threads(before)
    log(f"One {h}x{w} chunk ({b.nbytes / 2**20:.3g} MiB, {np.isnan(b).mean():.0%} NaN) from the middle of the "
        f"raster, in memory, on one thread (Numba threads 1), without Dask or xarray; median of {repeat}, "
        f"measured after the rounds. `view` is the chunk as a (h/2, 2, w/2, 2) view: what coarsen reduces "
        f"(Dask runs this per block, then a small aggregation step).\n")
    log("| work on one chunk | ms | GB/s of input |")
    log("| --- | ---: | ---: |")
    for label, t in out.items():
        log(f"| {label} | {t * 1e3:.1f} | {b.nbytes / t / 1e9:.2f} |")
    log("")
    return out


# ================================================================ correctness
def check(threads, log):
    """Values and coordinates of every contender against coarsen, on a small raster with uneven chunks."""
    import warnings

    r = make_raster(1000, 1400, 256, 0.3, seed=7)
    nan_frac = float(np.isnan(r.values).mean())
    lines = [f"small raster 1000 x 1400, chunks 256 (uneven), {nan_frac:.1%} NaN:"]
    all_ok = True

    def compute(name, op):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmax/nanmean of all-NaN windows
            return pooled(r, name, op).compute(scheduler="threads", num_workers=threads)

    for op in OPS:
        ref = {s: compute("coarsen " + s, op) for s in ("skipna", "skipna=False")}
        for name, against in (("poolkit omit", "skipna"), ("poolkit propagate", "skipna=False"),
                              ("xrspatial canvas_like", "skipna")):
            got, want = compute(name, op), ref[against]
            a, b = got.values, want.values
            same_nan = np.array_equal(np.isnan(a), np.isnan(b))
            bitwise = a.shape == b.shape and same_nan and np.array_equal(a.view(np.uint32)[~np.isnan(a)],
                                                                          b.view(np.uint32)[~np.isnan(b)])
            close = a.shape == b.shape and np.allclose(a, b, rtol=2e-7, atol=0, equal_nan=True)
            coords = all(np.array_equal(got[d].values, want[d].values) for d in ("y", "x"))
            ok = (bitwise if op == "max" else close) and coords
            diff = "bitwise" if bitwise else (
                f"max |diff| {np.nanmax(np.abs(a - b)):.2g} (max ulp {_max_ulp(a, b)})" if close else "values differ")
            all_ok &= ok
            lines.append(f"  {'ok' if ok else 'MISMATCH'}: {name} {op} vs coarsen {against}: {diff}; "
                         f"NaN cells {'same' if same_nan else 'DIFFER'}; coords {'same' if coords else 'DIFFER'}")
    for line in lines:
        log(line)
    return all_ok, lines


def _max_ulp(a, b):
    m = ~np.isnan(a) & ~np.isnan(b)
    return int(np.abs(a[m].view(np.int32).astype(np.int64) - b[m].view(np.int32).astype(np.int64)).max())


# ================================================================ the run
def memory_child(args, side, chunk):
    """Runs in a fresh process: one run of one contender; prints its peak RSS growth as JSON."""
    import json
    import warnings

    import numba

    warnings.filterwarnings("ignore", r"All-NaN slice encountered|Mean of empty slice", RuntimeWarning)
    numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
    op = args.op or None
    small = make_raster(192, 160, 64, args.nan, seed=1, mask=args.mask)
    run_once(small, args.child, op, args.threads)  # imports and compiles what this contender uses
    r = make_raster(side, side, chunk, args.nan, seed=args.seed, mask=args.mask)
    gc.collect()
    gc.freeze()
    t, growth, sink, how = run_once(r, args.child, op, args.threads)
    print(json.dumps(dict(seconds=t, growth=growth, how=how, cells=sink.cells, nans=sink.nans)))
    return 0


def memory_runs(args, keys, log=print):
    """Peak RSS growth of each (op, contender) in ``keys``, each in a fresh process."""
    import json
    import subprocess

    out = {}
    base = [sys.executable, os.path.abspath(__file__), "--gib", str(args.gib), "--chunk-mib", str(args.chunk_mib),
            "--threads", str(args.threads), "--nan", str(args.nan), "--seed", str(args.seed), "--mask", args.mask]
    if args.smoke:
        base.append("--smoke")
    for op, name in keys:
        proc = subprocess.run(base + ["--child", name, "--op", op or ""], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"memory run of {name} {op} failed:\n{proc.stderr[-3000:]}")
        out[(op, name)] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = out[(op, name)]
        log(f"  memory: {name:22s} {op or '':4s} +{r['growth'] / 2**20:.0f} MiB ({r['how']}; {r['seconds']:.2f} s "
            f"in a fresh process)")
    return out


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = ""
    try:
        with open("/proc/meminfo") as f:
            ram = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}, {platform.machine()}, {platform.system()}){ram}"


def versions():
    import dask
    import datashader
    import numba
    import xarray
    import xrspatial

    return (f"poolkit (this tree), numba {numba.__version__}, numpy {np.__version__}, dask {dask.__version__}, "
            f"xarray {xarray.__version__}, xarray-spatial {xrspatial.__version__}, "
            f"datashader {datashader.__version__}, Python {platform.python_version()}")


def how_words(hows):
    return " and ".join(sorted({"the kernel's high-water mark (VmHWM, reset before each run)" if h == "VmHWM"
                                else "sampling /proc/self/statm every 2 ms" for h in hows}))


def threading_layer():
    import numba

    numba.get_num_threads()  # starts the thread pool, after which Numba knows its layer
    try:
        return numba.threading_layer()
    except ValueError:
        return numba.config.THREADING_LAYER


def loadavg():
    return tuple(round(v, 2) for v in os.getloadavg()) if hasattr(os, "getloadavg") else (float("nan"),) * 3


def warm_up(threads):
    """Compile and import everything the runs use, on a tiny raster."""
    r = make_raster(192, 160, 64, 0.3, seed=1)
    for op in OPS:
        for name in POOL_CONTENDERS:
            run_once(r, name, op, threads)
    run_once(r, FLOOR, None, threads)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gib", type=float, default=1.0, help="raster size (float32), GiB; square")
    p.add_argument("--chunk-mib", type=float, default=16.0, help="chunk size, MiB; square chunks")
    p.add_argument("--threads", type=int, default=2, help="Dask threaded scheduler's workers (and Numba threads)")
    p.add_argument("--nan", type=float, default=0.2, help="fraction of nodata (NaN) cells")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mask", choices=("chunk", "tile"), default="chunk",
                   help="chunk: each chunk draws its part of one raster-wide nodata mask (default); "
                        "tile: one chunk-sized mask drawn once, the same in every chunk (a cheap source)")
    p.add_argument("--out", help="write the results as Markdown to this file")
    p.add_argument("--smoke", action="store_true", help="tiny raster, 1 round (< 30 s): checks the script")
    p.add_argument("--child", help=argparse.SUPPRESS)  # a memory run: contender name
    p.add_argument("--op", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    chunk = int(math.sqrt(args.chunk_mib * 2**20 / 4)) // 2 * 2
    n = max(1, round(math.sqrt(args.gib * 2**30 / 4) / chunk))
    side = n * chunk
    if args.smoke:
        chunk, side, args.rounds = 128, 512, 1
    if args.child:
        return memory_child(args, side, chunk)
    command = ("python benchmarks/raster_bench.py --smoke" if args.smoke else
               f"python benchmarks/raster_bench.py --gib {args.gib:g} --chunk-mib {args.chunk_mib:g} "
               f"--threads {args.threads} --nan {args.nan:g} --rounds {args.rounds}"
               + (f" --seed {args.seed}" if args.seed else "")
               + (f" --mask {args.mask}" if args.mask != "chunk" else "")
               + (f" --out {args.out}" if args.out else ""))

    import warnings

    import numba

    # nanmax/nanmean of all-NaN windows (coarsen skipna) warn once per block: NaN is the answer wanted.
    warnings.filterwarnings("ignore", r"All-NaN slice encountered|Mean of empty slice", RuntimeWarning)
    numba.set_num_threads(max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS)))
    lines = []

    def log(s=""):
        print(s, flush=True)
        lines.append(s)

    load0 = loadavg()
    t_start = time.perf_counter()
    log("# 2x2 pooling of a lazy Dask raster with nodata: poolkit vs xarray coarsen vs xarray-spatial\n")
    log(f"Date: {datetime.date.today().isoformat()}. Machine: {machine()}.  ")
    log(f"{versions()}.  ")
    log(f"Dask threaded scheduler, {args.threads} workers; Numba threads {numba.get_num_threads()} "
        f"(threading layer {threading_layer()}).  ")
    log(f"Load average (1, 5, 15 min) at start: {load0}.\n")
    log(f"Command:\n\n```bash\n{command}\n```\n")

    log("## Correctness (same script, small raster)\n")
    ok, _ = check(args.threads, lambda s: log(s if s.startswith("small") else "-" + s[1:]))
    log(f"\nAll checks: {'ok' if ok else 'MISMATCH'}.\n")

    if not args.smoke:  # the smoke run's one round is its warm-up
        warm_up(args.threads)
    gc.collect()
    gc.freeze()  # the modules' objects: gc.collect() before each run then scans only new ones
    r = make_raster(side, side, chunk, args.nan, seed=args.seed, mask=args.mask)
    nan_frac = nan_fraction(r, args.threads)
    in_bytes = side * side * 4
    chunk_bytes = chunk * chunk * 4
    runs = [(op, name) for op in OPS for name in POOL_CONTENDERS] + [(None, FLOOR)]
    times = {k: [] for k in runs}
    counts = {}
    load_rounds = []
    for rnd in range(args.rounds):
        shift = rnd % len(runs)
        for key in runs[shift:] + runs[:shift]:
            op, name = key
            t, _, sink, _ = run_once(r, name, op, args.threads)
            times[key].append(t)
            counts[key] = (sink.cells, sink.nans)
            print(f"  round {rnd + 1}: {name:22s} {op or '':4s} {t:7.2f} s  {in_bytes / t / 1e9:5.2f} GB/s", flush=True)
        load_rounds.append(loadavg())
    chunk_lines = []
    per_chunk(r, 3 if args.smoke else 5, chunk_lines.append)
    del r
    # The smoke run exercises the memory path once; a child process costs seconds of imports.
    mem = memory_runs(args, [("max", "poolkit omit")] if args.smoke else runs)
    hows = {m["how"] for m in mem.values()}
    load1 = loadavg()
    wall = time.perf_counter() - t_start

    log("## Results\n")
    mask_words = ("swath edge, scan-line gaps, cloud blobs, drawn per chunk" if args.mask == "chunk" else
                  "one chunk-sized mask of swath edge, scan-line gaps and cloud blobs, the same in every chunk")
    log(f"Raster: float32 ({side}, {side}) = {in_bytes / 2**30:.3g} GiB, {side // chunk}x{side // chunk} "
        f"= {(side // chunk) ** 2} chunks of {chunk}x{chunk} ({chunk_bytes / 2**20:.3g} MiB), "
        f"{nan_frac:.1%} NaN ({mask_words}; made when a task needs it, never whole). "
        f"Each run: build the result + `da.store(result.data, sink)` (the sink counts the NaN cells of each "
        f"output block and keeps nothing). {args.rounds} interleaved round(s); median time. "
        f"Speed-ups are medians over rounds of (coarsen's time / this one's) in the same round. "
        f"\"Above floor\" subtracts the same round's floor run (making the chunks, no pooling) and "
        f"compares medians: an estimate of the pooling work alone, noisy when small. "
        f"Peak RSS growth: one run in a fresh process per contender, by {how_words(hows)}.\n")
    floor = times[(None, FLOOR)]
    floor_t = statistics.median(floor)
    for op in OPS:
        log(f"### 2x2 {op}\n")
        log("| contender | median s | GB/s of input | × coarsen skipna | × coarsen skipna=False "
            "| s above floor | × coarsen skipna, above floor | peak RSS growth | output NaN cells |")
        log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        above_ref = [a - f for a, f in zip(times[(op, "coarsen skipna")], floor)]
        for name in POOL_CONTENDERS + (FLOOR,):
            key = (None, FLOOR) if name == FLOOR else (op, name)
            t = statistics.median(times[key])
            sp = [statistics.median(a / b for a, b in zip(times[(op, ref)], times[key]))
                  for ref in ("coarsen skipna", "coarsen skipna=False")]
            above = [a - f for a, f in zip(times[key], floor)]
            ab = statistics.median(above)
            ab_sp = statistics.median(above_ref) / ab if ab > 0.05 * floor_t else None
            g = mem[key]["growth"] if key in mem else None
            cells, nans = counts[key]
            nan_cell = "" if name == FLOOR else f"{nans:,} of {cells:,}"
            mem_cell = "(not measured)" if g is None else f"{g / 2**20:.0f} MiB = {g / chunk_bytes:.1f} chunks"
            above_cells = "" if name == FLOOR else f"{ab:.2f} | " + (f"{ab_sp:.1f}" if ab_sp else "(within noise)")
            log(f"| {name} | {t:.2f} | {in_bytes / t / 1e9:.2f} | {sp[0]:.2f} | {sp[1]:.2f} | "
                f"{above_cells or ' | '} | {mem_cell} | {nan_cell} |")
        log("")
        same_omit = (counts[(op, "poolkit omit")] == counts[(op, "coarsen skipna")]
                     == counts[(op, "xrspatial canvas_like")])
        same_prop = counts[(op, "poolkit propagate")] == counts[(op, "coarsen skipna=False")]
        log(f"Cross-check at full size, NaN cells of the output: poolkit omit = coarsen skipna = canvas_like: "
            f"{same_omit}; poolkit propagate = coarsen skipna=False: {same_prop}.\n")
    target = {op: statistics.median(a / b for a, b in zip(times[(op, "coarsen skipna")],
                                                          times[(op, "poolkit omit")])) for op in OPS}
    log(("Smoke run (tiny raster, one round): the timings measure overheads, not the target. " if args.smoke else "")
        + "Target, poolkit omit >= 4x coarsen skipna end to end: "
        + ", ".join(f"{op} {v:.2f}x ({'met' if v >= 4 else 'not met'})" for op, v in target.items())
        + f"; the floor alone (making the chunks) is {floor_t:.2f} s, so no contender can beat "
        + ", ".join(f"{op} {statistics.median(a / f for a, f in zip(times[(op, 'coarsen skipna')], floor)):.1f}x"
                    for op in OPS) + " coarsen here.\n")
    log("### One chunk, one thread: what bounds each contender\n")
    for line in chunk_lines:
        log(line)
    log(f"Load average (1, 5, 15 min): start {load0}, after each round {load_rounds}, end {load1}. "
        f"Whole run {wall:.0f} s.")

    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"\nwrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
