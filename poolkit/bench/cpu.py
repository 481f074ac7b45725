"""CPU benchmark: ``python -m poolkit.bench`` (``--gpu`` for the CUDA benchmark).

Times poolkit's serial and parallel kernels on a fixed suite of float32 cases,
in NCHW and NHWC, side by side with two references measured in the same run:

* a NumPy copy of the input (``x.copy()``): the memory roofline -- pooling
  reads the input once and writes a smaller output, so a kernel that keeps up
  with a copy is bandwidth-bound;
* PyTorch CPU pooling in the same layout (``channels_last`` memory format for
  NHWC), when torch is importable.

The four contenders of a case are timed in interleaved rounds: each round runs
every contender for a short block of calls (after one untimed call that absorbs
the switch: compiling on first use, or the other library's thread pool still
spinning), and a time is the median of all of a contender's calls. Load from
other tenants of a shared machine comes and goes over seconds, so interleaving
lets each contender see the same mix of quiet and busy moments, and the ratios
of one run compare like with like. ``--repeat`` is the number of timed calls
per contender (default 15, in rounds of 3).

Examples
--------
    python -m poolkit.bench                 # full suite at 2 threads
    python -m poolkit.bench --threads 4 --repeat 15 --out benchmarks/cpu.md
    python -m poolkit.bench --scale 0.25    # smaller batch, for a quick look
    python -m poolkit.bench --indices       # also max pooling with return_indices=True
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .cases import CASES, LAYOUTS, progress, shape_str

#: Timed calls per contender in each round of :func:`interleaved_ms`.
BLOCK = 3


def interleaved_ms(fns, repeat):
    """Median time (ms) of each of ``fns`` (a dict name -> callable), timed in rounds.

    Each round calls every function once untimed, then ``BLOCK`` times timed, so
    slow drifts in the machine's load hit every contender alike.
    """
    times = {name: [] for name in fns}
    for _ in range(max(1, -(-repeat // BLOCK))):
        for name, fn in fns.items():
            fn()
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}


def run(threads=2, repeat=15, scale=1.0, layouts=LAYOUTS, cases=None, use_torch=True):
    """Run the suite; return a list of result dicts (times in ms).

    ``cases`` is a list in the format of :data:`~poolkit.bench.cases.CASES` (default:
    CASES); rows of cases with ``return_indices=True`` are marked ``extra`` and left
    out of the summary lines of :func:`format_table`.

    Numba and torch run with ``threads`` threads meanwhile; both thread counts
    are restored afterwards.
    """
    import numba

    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            torch = None
    saved = numba.get_num_threads(), torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        return _run(torch, repeat, scale, layouts, CASES if cases is None else cases)
    finally:
        numba.set_num_threads(saved[0])
        if torch is not None:
            torch.set_num_threads(saved[1])


def _run(torch, repeat, scale, layouts, cases):
    from poolkit import cpu

    rng = np.random.default_rng(0)
    rows = []
    total = len(cases) * len(layouts)
    for label, op, shape, kw, large in cases:
        n = max(1, int(round(shape[0] * scale)))
        shape = (n,) + shape[1:]
        base = rng.standard_normal(shape, dtype=np.float32)
        for layout in layouts:
            progress(f"[{len(rows) + 1}/{total}] {label} {layout} {shape}")
            x = base if layout == "NCHW" else np.ascontiguousarray(base.transpose(0, 2, 3, 1))
            f = cpu.max_pool2d if op == "max" else cpu.avg_pool2d
            row = dict(case=label, layout=layout, shape=shape, large=large,
                       extra=bool(kw.get("return_indices")))
            fns = dict(serial=lambda: f(x, layout=layout, parallel=False, **kw),
                       parallel=lambda: f(x, layout=layout, parallel=True, **kw),
                       copy=lambda: x.copy())
            if torch is not None:
                t = torch.from_numpy(base)
                if layout == "NHWC":
                    t = t.contiguous(memory_format=torch.channels_last)
                tf = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d

                def torch_call(tf=tf, t=t):
                    with torch.no_grad():
                        return tf(t, **kw)
                fns["torch"] = torch_call
            row.update(interleaved_ms(fns, repeat))
            if torch is not None:
                row["matches_torch"] = _compare(f(x, layout=layout, **kw), torch_call(), layout)
            rows.append(row)
    return rows


def _compare(out, ref, layout):
    """'bitwise', 'close' (1e-6) or 'NO': poolkit's output against torch's (and the indices)."""
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    refs = [(r.permute(0, 2, 3, 1) if layout == "NHWC" else r).numpy() for r in refs]
    if all(np.array_equal(o.view(np.uint8), r.view(np.uint8)) for o, r in zip(outs, refs)):
        return "bitwise"
    if np.allclose(outs[0], refs[0], rtol=1e-6, atol=1e-6) and all(map(np.array_equal, outs[1:], refs[1:])):
        return "close"
    return "NO"


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


def format_first_call(rows):
    """Markdown table of :func:`first_call_latency`'s rows."""
    lines = ["| fresh process | import s | first max_pool2d s | second call s |", "|---|---|---|---|"]
    for label, t_imp, t_first, t_second in rows:
        lines.append(f"| {label} | {t_imp:.3f} | {t_first:.3f} | {t_second:.6f} |")
    return "\n".join(lines)


def format_table(rows, threads):
    """Markdown table of :func:`run`'s rows plus the summary lines."""
    has_torch = any("torch" in r for r in rows)
    head = ["case", "layout", "shape", "serial ms", "parallel ms", "copy ms", "par/copy"]
    if has_torch:
        head += ["torch ms", "speed-up vs torch", "same values"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], r["layout"], shape_str(r["shape"]), f"{r['serial']:.2f}",
                 f"{r['parallel']:.2f}", f"{r['copy']:.2f}", f"{r['parallel'] / r['copy']:.2f}"]
        if has_torch:
            cells += [f"{r['torch']:.2f}", f"{r['torch'] / r['parallel']:.2f}x", r["matches_torch"]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"float32, {threads} threads (numba and torch), medians of calls timed in interleaved "
                 f"rounds; par/copy = poolkit parallel time / NumPy copy-of-input time; same values: "
                 f"poolkit's output against PyTorch's, bit for bit or within 1e-6.")
    if has_torch:
        for layout in LAYOUTS:
            sp = [r["torch"] / r["parallel"] for r in rows if r["layout"] == layout and not r.get("extra")]
            if sp:
                gm = math.exp(sum(map(math.log, sp)) / len(sp))
                lines.append(f"{layout}: speed-up vs torch min {min(sp):.2f}x, geometric mean {gm:.2f}x")
    large = [r["parallel"] / r["copy"] for r in rows if r["large"] and not r.get("extra")]
    if large:
        lines.append(f"large cases: poolkit/copy worst {max(large):.2f} (<= 1.0 means at the copy roofline)")
    return "\n".join(lines)
