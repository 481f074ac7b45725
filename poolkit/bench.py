"""CPU benchmark: ``python -m poolkit.bench`` (``--gpu`` for the CUDA benchmark).

Times poolkit's serial and parallel kernels on a fixed suite of float32 cases,
in NCHW and NHWC, side by side with two references measured in the same run:

* a NumPy copy of the input (``x.copy()``): the memory roofline -- pooling
  reads the input once and writes a smaller output, so a kernel that keeps up
  with a copy is bandwidth-bound;
* PyTorch CPU pooling in the same layout (``channels_last`` memory format for
  NHWC), when torch is importable.

Each time is the median of ``--repeat`` runs after one warm-up call (which also
compiles). The machine is shared and noisy: compare ratios within one run.

Examples
--------
    python -m poolkit.bench                 # full suite at 2 threads
    python -m poolkit.bench --threads 4 --repeat 15 --out benchmarks/cpu.md
    python -m poolkit.bench --scale 0.25    # smaller batch, for a quick look
"""
from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time

import numpy as np

#: (label, op, NCHW shape, kwargs, large?) -- "large" cases are compared with the copy.
CASES = [
    ("max 2x2 s2", "max", (8, 64, 224, 224), dict(kernel_size=2, stride=2), True),
    ("max 3x3 s2 p1", "max", (8, 64, 112, 112), dict(kernel_size=3, stride=2, padding=1), True),
    ("avg 2x2 s2", "avg", (8, 128, 112, 112), dict(kernel_size=2, stride=2), True),
    ("avg 3x3 s1 p1 nopad", "avg", (8, 192, 28, 28),
     dict(kernel_size=3, stride=1, padding=1, count_include_pad=False), False),
    ("avg 7x7", "avg", (32, 2048, 7, 7), dict(kernel_size=7), False),
]


def _median_ms(fn, repeat):
    fn()  # warm-up (compiles on first use)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _progress(msg):
    print(f"  ... {msg}", file=sys.stderr, flush=True)


def run(threads=2, repeat=10, scale=1.0, layouts=("NCHW", "NHWC"), cases=None, use_torch=True):
    """Run the suite; return a list of result dicts (times in ms)."""
    import numba

    from poolkit import cpu

    numba.set_num_threads(threads)
    torch = None
    if use_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            torch = None
    rng = np.random.default_rng(0)
    rows = []
    cases = CASES if cases is None else cases
    total = len(cases) * len(layouts)
    for label, op, shape, kw, large in cases:
        n = max(1, int(round(shape[0] * scale)))
        shape = (n,) + shape[1:]
        base = rng.standard_normal(shape, dtype=np.float32)
        for layout in layouts:
            _progress(f"[{len(rows) + 1}/{total}] {label} {layout} {shape}")
            x = base if layout == "NCHW" else np.ascontiguousarray(base.transpose(0, 2, 3, 1))
            f = cpu.max_pool2d if op == "max" else cpu.avg_pool2d
            row = dict(case=label, layout=layout, shape=shape, large=large)
            row["serial"] = _median_ms(lambda: f(x, layout=layout, parallel=False, **kw), repeat)
            row["parallel"] = _median_ms(lambda: f(x, layout=layout, parallel=True, **kw), repeat)
            row["copy"] = _median_ms(lambda: x.copy(), repeat)
            if torch is not None:
                t = torch.from_numpy(base)
                if layout == "NHWC":
                    t = t.contiguous(memory_format=torch.channels_last)
                tf = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
                with torch.no_grad():
                    row["torch"] = _median_ms(lambda: tf(t, **kw), repeat)
                    ref = tf(t, **kw)
                    ref = ref.permute(0, 2, 3, 1) if layout == "NHWC" else ref
                out = f(x, layout=layout, **kw)
                row["matches_torch"] = bool(np.allclose(out, ref.numpy(), rtol=1e-6, atol=1e-6))
            rows.append(row)
    return rows


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
import poolkit
t1 = time.perf_counter()
x = np.ones((1, 1, 8, 8), np.float32)
poolkit.max_pool2d(x, 2)
t2 = time.perf_counter()
poolkit.max_pool2d(x, 2)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def first_call_latency():
    """Import time and first-call time of ``poolkit.max_pool2d`` in fresh processes.

    Runs twice with an empty Numba cache directory (the first run compiles and
    fills it, the second loads from it). Returns a list of (label, import s,
    first call s, second call s).
    """
    import os
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache (compiles)", "warm cache (loads)"):
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            rows.append((label, *map(float, out)))
    return rows


def format_table(rows, threads):
    has_torch = any("torch" in r for r in rows)
    head = ["case", "layout", "shape", "serial ms", "parallel ms", "copy ms", "par/copy"]
    if has_torch:
        head += ["torch ms", "speed-up vs torch", "same values"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], r["layout"], "x".join(map(str, r["shape"])), f"{r['serial']:.2f}",
                 f"{r['parallel']:.2f}", f"{r['copy']:.2f}", f"{r['parallel'] / r['copy']:.2f}"]
        if has_torch:
            cells += [f"{r['torch']:.2f}", f"{r['torch'] / r['parallel']:.2f}x",
                      "yes" if r["matches_torch"] else "NO"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"float32, {threads} threads (numba and torch), median of repeats; "
                 f"par/copy = poolkit parallel time / NumPy copy-of-input time.")
    if has_torch:
        for layout in ("NCHW", "NHWC"):
            sp = [r["torch"] / r["parallel"] for r in rows if r["layout"] == layout]
            if sp:
                gm = math.exp(sum(map(math.log, sp)) / len(sp))
                lines.append(f"{layout}: speed-up vs torch min {min(sp):.2f}x, geometric mean {gm:.2f}x")
    large = [r["parallel"] / r["copy"] for r in rows if r["large"]]
    if large:
        lines.append(f"large cases: poolkit/copy worst {max(large):.2f} (<= 1.0 means at the copy roofline)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m poolkit.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="run the CUDA benchmark instead (poolkit.bench_gpu)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every batch size (default 1)")
    p.add_argument("--layout", choices=["NCHW", "NHWC", "both"], default="both")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    p.add_argument("--first-call", action="store_true",
                   help="only measure import and first-call latency in fresh processes")
    args, rest = p.parse_known_args(argv)
    if args.gpu:  # hand every other argument to the GPU benchmark untouched
        from poolkit import bench_gpu
        return bench_gpu.main([a for a in (argv if argv is not None else sys.argv[1:]) if a != "--gpu"])
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.first_call:
        print("| fresh process | import s | first max_pool2d s | second call s |\n|---|---|---|---|")
        for label, t_imp, t_first, t_second in first_call_latency():
            print(f"| {label} | {t_imp:.3f} | {t_first:.3f} | {t_second:.6f} |")
        return 0
    layouts = ("NCHW", "NHWC") if args.layout == "both" else (args.layout,)
    print(f"poolkit CPU benchmark -- {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {datetime.date.today()}", flush=True)
    rows = run(args.threads, args.repeat, args.scale, layouts, use_torch=not args.no_torch)
    table = format_table(rows, args.threads)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(f"# poolkit CPU benchmark, {datetime.date.today()}\n\n"
                     f"Command: `python -m poolkit.bench {' '.join(argv or sys.argv[1:])}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
