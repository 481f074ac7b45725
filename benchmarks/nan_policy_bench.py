"""``nan_policy="omit"`` against ``"propagate"`` on the CPU, side by side in one run.

    python benchmarks/nan_policy_bench.py [--threads 2] [--rounds 7] [--nan 0.3] [--out FILE]

Each case pools the same float32 input (a fraction ``--nan`` of its cells NaN: nodata)
with both policies, in interleaved rounds (propagate, omit, propagate, ...), and
reports the median time of each and their ratio. The omit max kernels are the
propagate kernels' own source with another scan step; the omit averages run on the
n-d kernels with a valid-cell count, so their ratio is where the two policies differ.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time

import numpy as np

#: (label, function name, NCHW shape, kwargs)
CASES = [
    ("max 2x2 s2", "max_pool2d", (8, 64, 224, 224), dict(kernel_size=2, stride=2)),
    ("max 3x3 s2 p1", "max_pool2d", (8, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    ("max 3x3 s2 p1 +indices", "max_pool2d", (8, 64, 112, 112),
     dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
    ("avg 2x2 s2", "avg_pool2d", (8, 128, 112, 112), dict(kernel_size=2, stride=2)),
    ("avg 3x3 s2 p1", "avg_pool2d", (8, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1)),
    ("avg 3x3 s1 p1 nopad", "avg_pool2d", (8, 192, 28, 28),
     dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("avg 4x4 s4", "avg_pool2d", (8, 64, 112, 112), dict(kernel_size=4, stride=4)),
    ("adaptive avg ->7", "adaptive_avg_pool2d", (8, 512, 30, 30), dict(output_size=7)),
    ("global avg", "global_avg_pool2d", (32, 2048, 7, 7), dict()),
    ("max3d 2 s2", "max_pool3d", (2, 32, 48, 96, 96), dict(kernel_size=2, stride=2)),
    ("avg3d 2 s2", "avg_pool3d", (2, 32, 48, 96, 96), dict(kernel_size=2, stride=2)),
    ("avg3d 3 s2 p1", "avg_pool3d", (2, 32, 48, 96, 96), dict(kernel_size=3, stride=2, padding=1)),
]


def _channels_last(shape):
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


def _time(fn, x, kw):
    t = time.perf_counter()
    fn(x, **kw)
    return time.perf_counter() - t


def run(threads, rounds, nan_fraction, layouts, log=print):
    import numba

    import poolkit

    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for label, name, shape, kw in CASES:
        for layout in layouts:
            cl = layout != "NCHW"
            if cl and name.startswith("max_pool3d") or cl and name.startswith("avg_pool3d"):
                lay = "NDHWC"
            elif cl:
                lay = "NHWC"
            else:
                lay = "NCDHW" if name.endswith("3d") else "NCHW"
            x = rng.standard_normal(_channels_last(shape) if cl else shape, dtype=np.float32)
            x[rng.random(x.shape, dtype=np.float32) < nan_fraction] = np.nan
            fn = getattr(poolkit, name)
            args = dict(kw, layout=lay)
            for policy in ("propagate", "omit"):  # compile and warm up
                fn(x, nan_policy=policy, **args)
            times = {"propagate": [], "omit": []}
            for _ in range(rounds):
                for policy in ("propagate", "omit"):
                    times[policy].append(_time(fn, x, dict(args, nan_policy=policy)))
            p, o = statistics.median(times["propagate"]), statistics.median(times["omit"])
            rows.append((label, lay, "x".join(map(str, x.shape)), p * 1e3, o * 1e3, o / p))
            log(f"  ... {label} {lay}: propagate {p * 1e3:.2f} ms, omit {o * 1e3:.2f} ms")
    return rows


def format_table(rows, threads, rounds, nan_fraction):
    out = [f"float32, {threads} threads, median of {rounds} interleaved rounds, {nan_fraction:.0%} of cells NaN",
           "", "| case | layout | shape | propagate ms | omit ms | omit / propagate |", "|---|---|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {p:.2f} | {o:.2f} | {r:.2f} |" for a, b, c, p, o, r in rows]
    ratios = [r[-1] for r in rows]
    geo = float(np.exp(np.mean(np.log(ratios))))
    out += ["", f"geometric mean omit / propagate: {geo:.2f}; worst {max(ratios):.2f}"]
    return "\n".join(out)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--nan", type=float, default=0.3, help="fraction of NaN cells (default 0.3)")
    p.add_argument("--layout", choices=["NCHW", "NHWC", "both"], default="both")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    args = p.parse_args(argv)
    layouts = ("NCHW", "NHWC") if args.layout == "both" else (args.layout,)
    print(f"nan_policy benchmark -- {platform.processor() or platform.machine()}, {datetime.date.today()}")
    rows = run(args.threads, args.rounds, args.nan, layouts)
    table = format_table(rows, args.threads, args.rounds, args.nan)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(f"# nan_policy benchmark, {datetime.date.today()}\n\n"
                     f"Command: `python benchmarks/nan_policy_bench.py {' '.join(argv)}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
