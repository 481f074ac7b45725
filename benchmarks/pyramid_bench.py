"""Benchmark: a multiscale Zarr pyramid of a lazy raster larger than you would hold, and its memory.

    python benchmarks/pyramid_bench.py --size-gib 4 --chunk-mib 16 --out /tmp/pyramid_bench
    python benchmarks/pyramid_bench.py --size-gib 0.25 --chunk-mib 4 --out /tmp/pb   # a quick one

A float32 ``(1, 1, n, n)`` raster of ``--size-gib`` GiB is made lazily, chunk by chunk
(``dask.array.random``, with NaN stripes -- three rows in 97 -- painted by ``map_blocks``:
nodata), and :func:`poolkit.multiscale.pyramid_to_zarr` writes its ``--levels``-level mean
pyramid (level 0 = the raster) to ``--out``, uncompressed by default (``--compress`` for
Zarr's default codec). Each run is a fresh subprocess that first writes a tiny pyramid (the
kernels compile), then samples its resident memory (``/proc/self/statm``, every 2 ms; Linux)
while it writes the big one, and reports the time and the peak above that warmed-up
baseline, in MiB and in chunks (``--chunk-mib``) -- total and per Dask thread.

It runs once per ``--malloc`` setting of glibc's allocator: ``default``; ``trim``
(``MALLOC_TRIM_THRESHOLD_=65536``, what ``dask.distributed`` sets for its workers); ``mmap``,
a fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_=1048576``); ``arena1``, one heap for all
threads (``MALLOC_ARENA_MAX=1``). By default glibc raises its mmap threshold each time a
large block is freed (up to 32 MiB; its trim threshold follows at twice that), so later
chunk-sized blocks come from per-thread heaps (arenas), and each heap keeps up to about
two chunks of freed memory at its top. Zarr reads and writes in its own thread pool
(six threads here), so about ten threads allocate chunk-sized blocks: the resident size
then also counts freed, reusable memory. Setting either threshold stops that: every
chunk is its own mapping, returned when freed, so ``trim`` and ``mmap`` show what the
pyramid keeps alive (at the cost of fresh pages for every chunk); ``arena1`` is the
middle way. The output is removed at the end unless ``--keep``. Prints a Markdown table.

Measured with the first command (2 cores, quiet, uncompressed, 2 Dask threads, 256 chunks
of 16 MiB, 5.33 GiB written; ``--malloc default,trim,arena1,mmap``; 2026-12-03)::

    | malloc  | time s | peak RSS above baseline MiB | in chunks | per thread |
    | default |   10.8 |                         260 |      16.3 |        8.1 |
    | trim    |   18.0 |                          94 |       5.9 |        2.9 |
    | arena1  |   14.7 |                         120 |       7.5 |        3.7 |
    | mmap    |   19.5 |                          93 |       5.8 |        2.9 |

Zarr's own thread pool (``--zarr-workers N`` sets ``ZARR_THREADING__MAX_WORKERS`` in the
measured process) is most of those threads. Same command, ``--malloc default,trim,arena1``,
without and then with ``--zarr-workers 1``, one after the other (2026-12-03, 04:00)::

    | malloc  | Zarr pool | time s | MiB | in chunks |
    | default | default   |   16.7 | 244 |      15.3 |
    | trim    | default   |   23.2 |  96 |       6.0 |
    | arena1  | default   |   15.4 | 136 |       8.5 |
    | default | 1         |   13.2 | 148 |       9.3 |
    | trim    | 1         |   21.3 |  92 |       5.8 |
    | arena1  | 1         |   18.8 | 136 |       8.5 |
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

STRIPE_PERIOD, STRIPE_ROWS = 97, 3
#: glibc allocator settings to run under (environment variables of the measured process).
MALLOC = {"default": {}, "trim": {"MALLOC_TRIM_THRESHOLD_": "65536"}, "mmap": {"MALLOC_MMAP_THRESHOLD_": str(2 ** 20)},
          "arena1": {"MALLOC_ARENA_MAX": "1"}}


def _stripes(block, block_info=None):
    r0, r1 = block_info[0]["array-location"][2]
    block = block if block.flags.writeable else block.copy()
    block[:, :, (np.arange(r0, r1) % STRIPE_PERIOD) < STRIPE_ROWS] = np.nan
    return block


def raster(n: int, chunk: int):
    """The lazy float32 ``(1, 1, n, n)`` raster: uniform values in [0, 1), NaN stripes."""
    import dask.array as da

    x = da.random.default_rng(0).random((1, 1, n, n), dtype=np.float32, chunks=(1, 1, chunk, chunk))
    return x.map_blocks(_stripes, dtype=np.float32)


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def child(args) -> dict:
    """One measured run (in its own process): warm up, then write the pyramid and sample memory."""
    from poolkit.multiscale import pyramid_to_zarr

    kw = dict(levels=args.levels, compressors="auto" if args.compress else None, overwrite=True,
              compute_kwargs=dict(scheduler="threads", num_workers=args.threads))
    pyramid_to_zarr(raster(64, 32), os.path.join(args.out, "warm"), **{**kw, "levels": 3})
    base, peak, done = _rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    levels = pyramid_to_zarr(raster(args.n, args.chunk), os.path.join(args.out, "pyramid"), **kw)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    top = levels[-1].compute()[0, 0]  # a row of the top level is NaN where its source rows hold a stripe
    f = 2 ** (args.levels - 1)
    rows = np.arange(top.shape[0] * f)[: args.n]
    stripe = np.zeros(top.shape[0] * f, bool)
    stripe[: args.n] = (rows % STRIPE_PERIOD) < STRIPE_ROWS
    stripe = stripe.reshape(-1, f).any(axis=1)
    ok = bool((np.isnan(top).all(axis=1) == stripe).all() and not np.isnan(top[~stripe]).any())
    return {"seconds": seconds, "peak_mib": max(0, peak[0] - base) / 2 ** 20, "base_mib": base / 2 ** 20,
            "shapes": [list(lv.shape) for lv in levels], "top_level_ok": ok}


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=4.0, help="level 0 size in GiB (float32, square)")
    p.add_argument("--chunk-mib", type=float, default=16.0, help="chunk size in MiB (square chunks)")
    p.add_argument("--levels", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="Dask threads (default: all cores)")
    p.add_argument("--compress", action="store_true", help="Zarr's default codec (default: uncompressed)")
    p.add_argument("--malloc", default="default,trim", help="comma-separated: " + ", ".join(MALLOC))
    p.add_argument("--out", required=True, help="a directory for the Zarr stores (replaced)")
    p.add_argument("--keep", action="store_true", help="keep the pyramid (default: remove it at the end)")
    p.add_argument("--zarr-workers", type=int, default=None,
                   help="size of Zarr's own thread pool (ZARR_THREADING__MAX_WORKERS; default: Zarr's)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.chunk = max(2, int(round((args.chunk_mib * 2 ** 20 / 4) ** 0.5 / 2)) * 2)  # even side
    args.n = max(args.chunk, int(round((args.size_gib * 2 ** 30 / 4) ** 0.5 / args.chunk)) * args.chunk)
    if args.child:
        print(json.dumps(child(args)))
        return
    chunk_mib = args.chunk ** 2 * 4 / 2 ** 20
    print(f"# pyramid_to_zarr: float32 (1, 1, {args.n}, {args.n}) = {args.n ** 2 * 4 / 2 ** 30:.2f} GiB, "
          f"chunks {args.chunk}x{args.chunk} = {chunk_mib:g} MiB ({(args.n // args.chunk) ** 2} chunks), "
          f"{args.levels} levels, mean, {'Zarr default codec' if args.compress else 'uncompressed'}, "
          f"{args.threads} Dask threads, Zarr pool {args.zarr_workers or 'default'}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print()
    print("| malloc | time s | level-0 GiB / s | peak RSS above baseline MiB | in chunks | per thread |")
    print("| --- | --- | --- | --- | --- | --- |")
    modes = args.malloc.split(",")
    if not set(modes) <= set(MALLOC):
        p.error(f"--malloc: choose from {', '.join(MALLOC)}, got {args.malloc!r}")
    written = 0
    for mode in modes:
        env = {**os.environ, **MALLOC[mode]}
        if args.zarr_workers:
            env["ZARR_THREADING__MAX_WORKERS"] = str(args.zarr_workers)
        cmd = [sys.executable, __file__, "--child", "--size-gib", str(args.size_gib), "--chunk-mib",
               str(args.chunk_mib), "--levels", str(args.levels), "--threads", str(args.threads), "--out", args.out]
        cmd += ["--compress"] if args.compress else []
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            sys.exit(res.stderr)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        assert r["top_level_ok"], "the top level's NaN rows do not match the stripes"
        chunks = r["peak_mib"] / chunk_mib
        print(f"| {mode} | {r['seconds']:.1f} | {args.n ** 2 * 4 / 2 ** 30 / r['seconds']:.2f} | "
              f"{r['peak_mib']:.0f} | {chunks:.1f} | {chunks / args.threads:.1f} |", flush=True)
        written = _du(os.path.join(args.out, "pyramid"))
    print()
    print(f"levels: {' -> '.join('x'.join(map(str, s[2:])) for s in r['shapes'])}; "
          f"on disk {written / 2 ** 30:.2f} GiB; baseline RSS {r['base_mib']:.0f} MiB; top level's NaN rows checked")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
