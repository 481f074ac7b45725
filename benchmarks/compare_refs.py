"""Before/after: poolkit at a git revision against the working tree, side by side in one process.

    python benchmarks/compare_refs.py 3bcc5c9            # the working tree vs commit 3bcc5c9
    python benchmarks/compare_refs.py HEAD~3 --threads 1

For a refactor that must not change speed (or a kernel change that should), on a
shared, noisy machine: both versions run in the same process on the same arrays,
timed in interleaved rounds (:func:`poolkit.bench.cpu.interleaved_ms`), so a drift
in the machine's load hits both alike. The revision is exported with ``git
archive`` into a temporary folder and imported as ``poolkit_ref`` (every
``poolkit`` name in its source renamed), so the two never share a module or a
Numba cache entry. Cases: the CPU benchmark's 2-d cases in both layouts
(:data:`poolkit.bench.cases.CASES`) and a few of the family and backward, through
the public functions, float32. Prints one row per case: both medians, their ratio
and whether the results are bitwise equal.
"""
from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def export(rev: str, where: pathlib.Path) -> None:
    """``git archive rev poolkit`` into ``where/poolkit_ref``, every ``poolkit`` name renamed."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "poolkit"], check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=tar, check=True)
    (where / "poolkit").rename(where / "poolkit_ref")
    for path in (where / "poolkit_ref").rglob("*.py"):
        path.write_text(re.sub(r"\bpoolkit\b(?=[.\s\"',])", "poolkit_ref", path.read_text()))


def family_cases(rng):
    x3 = rng.standard_normal((2, 32, 48, 96, 96)).astype(np.float32)
    x1 = rng.standard_normal((16, 256, 4096)).astype(np.float32)
    xa = rng.standard_normal((8, 512, 30, 30)).astype(np.float32)
    x2 = rng.standard_normal((8, 64, 112, 112)).astype(np.float32)
    g2 = rng.standard_normal((8, 64, 56, 56)).astype(np.float32)
    return [
        ("max_pool3d 3 s2 p1 (2,32,48,96,96)", "max_pool3d", (x3, 3, 2, 1)),
        ("avg_pool3d 2 s2 (2,32,48,96,96)", "avg_pool3d", (x3, 2, 2)),
        ("max_pool1d 3 s2 p1 (16,256,4096)", "max_pool1d", (x1, 3, 2, 1)),
        ("avg_pool1d 4 (16,256,4096)", "avg_pool1d", (x1, 4)),
        ("adaptive_max_pool2d ->7 (8,512,30,30)", "adaptive_max_pool2d", (xa, 7)),
        ("adaptive_avg_pool2d ->7 (8,512,30,30)", "adaptive_avg_pool2d", (xa, 7)),
        ("lp_pool2d p=2 k2 (8,64,112,112)", "lp_pool2d", (x2, 2, 2)),
        ("max_pool2d_backward 3 s2 p1 (8,64,112,112)", "max_pool2d_backward", (g2, x2, 3, 2, 1)),
        ("avg_pool2d_backward 2 s2 (8,64,112,112)", "avg_pool2d_backward", (g2, x2, 2, 2)),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="the git revision to compare the working tree with")
    ap.add_argument("--threads", type=int, default=2, help="Numba threads (default 2)")
    ap.add_argument("--repeat", type=int, default=15, help="timed calls per case (rounded up to 3s)")
    args = ap.parse_args(argv)

    import numba

    sys.path.insert(0, str(ROOT))
    import poolkit
    from poolkit.bench.cases import CASES, INDEX_CASES
    from poolkit.bench.cpu import interleaved_ms

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="poolkit_ref_"))
    export(args.rev, tmp)
    sys.path.insert(0, str(tmp))
    import poolkit_ref

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    ratios, all_same = [], True
    print(f"| case | {args.rev} ms | working tree ms | tree / {args.rev} | same values |")
    print("|---|---|---|---|---|")

    def row(label, name, call_args, kw, repeat):
        nonlocal all_same
        new = lambda: getattr(poolkit, name)(*call_args, **kw)  # noqa: E731
        old = lambda: getattr(poolkit_ref, name)(*call_args, **kw)  # noqa: E731
        a, b = new(), old()
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        same = all(np.array_equal(u.view(np.uint8), v.view(np.uint8)) for u, v in zip(a, b))
        all_same &= same
        t = interleaved_ms({"new": new, "old": old}, repeat)
        ratios.append(t["new"] / t["old"])
        print(f"| {label} | {t['old']:.2f} | {t['new']:.2f} | {ratios[-1]:.2f} | "
              f"{'bitwise' if same else 'NO'} |", flush=True)

    for label, op, shape, kw, _ in CASES + INDEX_CASES:
        for layout in ("NCHW", "NHWC"):
            s = shape if layout == "NCHW" else (shape[0],) + shape[2:] + (shape[1],)
            x = rng.standard_normal(s).astype(np.float32)
            row(f"{label} {layout}", f"{op}_pool2d", (x,), dict(kw, layout=layout), args.repeat)
    for label, name, call_args in family_cases(rng):
        row(label, name, call_args, {}, max(3, args.repeat // 2))
    r = np.array(ratios)
    print(f"\nfloat32, {args.threads} threads, medians of interleaved rounds; geometric mean "
          f"tree/{args.rev} {np.exp(np.log(r).mean()):.3f} (min {r.min():.2f}, max {r.max():.2f}); "
          f"all bitwise equal: {all_same}")
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
