"""Command line of the benchmarks: ``python -m poolkit.bench [--gpu] [options]``.

Without ``--gpu`` it runs the CPU benchmark (:mod:`poolkit.bench.cpu`), or with
``--first-call`` only its import and first-call latency, or with ``--family`` the CPU
benchmark of the rest of the pooling family (3-d, 1-d, adaptive, Lp, max_unpool,
backward passes, channels-last 3-d; :mod:`poolkit.bench.family`). With ``--gpu`` it runs the
CUDA benchmark (:mod:`poolkit.bench.gpu`) instead, or with ``--gpu --family`` the CUDA
benchmark of the family (:mod:`poolkit.bench.gpu_family`); they take their own options
(``python -m poolkit.bench --gpu --help``); only then is the GPU benchmark imported.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys

from poolkit.bench import cases

PROG = "python -m poolkit.bench"


def main(argv=None):
    """Command line entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pick = argparse.ArgumentParser(add_help=False)
    pick.add_argument("--gpu", action="store_true")
    return _main_gpu(argv) if pick.parse_known_args(argv)[0].gpu else _main_cpu(argv)


def _layouts(choice):
    return cases.LAYOUTS if choice == "both" else (choice,)


def _write_report(path, title, date, argv, table):
    """The ``--out`` file: a heading, the command that made it, the table."""
    with open(path, "w") as fh:
        fh.write(f"# poolkit {title} benchmark, {date}\n\nCommand: `{' '.join([PROG, *argv])}`\n\n{table}\n")


def _main_cpu(argv):
    from poolkit.bench import cpu as cpu_bench

    p = argparse.ArgumentParser(prog=PROG, description=cpu_bench.__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true",
                   help="run the CUDA benchmark instead (poolkit.bench.gpu; --gpu --help lists its options)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=15,
                   help=f"timed calls per contender and case (rounded up to a multiple of {cpu_bench.BLOCK})")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every batch size (default 1)")
    p.add_argument("--layout", choices=["NCHW", "NHWC", "both"], help="default: both")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--family", action="store_true",
                   help="run the family suite instead: 3-d, 1-d, adaptive, Lp, max_unpool, backward "
                        "and channels-last cases (poolkit.bench.family)")
    p.add_argument("--indices", action="store_true",
                   help="also time max pooling with return_indices=True (outside the summary lines)")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    p.add_argument("--first-call", action="store_true",
                   help="only measure import and first-call latency in fresh processes")
    args = p.parse_args(argv)
    if args.family:
        if args.layout or args.indices or args.first_call:
            p.error("--family runs its own cases: --layout, --indices and --first-call do not apply")
        return _main_family(args, argv)
    if args.first_call:
        print(cpu_bench.format_first_call(cpu_bench.first_call_latency()))
        return 0
    print(f"poolkit CPU benchmark -- {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {datetime.date.today()}", flush=True)
    suite = cases.CASES + cases.INDEX_CASES if args.indices else cases.CASES
    rows = cpu_bench.run(args.threads, args.repeat, args.scale, _layouts(args.layout or "both"), suite,
                         use_torch=not args.no_torch)
    table = cpu_bench.format_table(rows, args.threads)
    print(table)
    if args.out:
        _write_report(args.out, "CPU", datetime.date.today(), argv, table)
    return 0


def _main_family(args, argv):
    from poolkit.bench import family

    print(f"poolkit CPU family benchmark -- {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, {datetime.date.today()}", flush=True)
    rows = family.run(args.threads, args.repeat, args.scale, use_torch=not args.no_torch)
    table = family.format_table(rows, args.threads)
    print(table)
    if args.out:
        _write_report(args.out, "CPU family", datetime.date.today(), argv, table)
    return 0


def _main_gpu(argv):
    from poolkit.bench import gpu as gpu_bench

    p = argparse.ArgumentParser(prog=f"{PROG} --gpu", description=gpu_bench.__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help=argparse.SUPPRESS)  # what chose this parser
    p.add_argument("--repeat", type=int, default=25, help="measurements per median (default 25)")
    p.add_argument("--scale", type=float, default=None,
                   help="multiply every batch size by this (default: auto, see --min-mb)")
    p.add_argument("--min-mb", type=float, default=None,
                   help="auto scale: each input at least this many MB and 4x the CPU batch "
                        "(default 512; 2048 with --family)")
    p.add_argument("--layout", choices=["NCHW", "NHWC", "both"], default="both")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--case", action="append", help="only cases whose label contains this (repeatable)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes and a tiny launch configuration: exercises every code path "
                        "(also on Numba's CUDA simulator); timings are meaningless")
    p.add_argument("--family", action="store_true",
                   help="the family suite instead (poolkit.bench.gpu_family: 3-d, 1-d, adaptive, Lp, "
                        "max_unpool, backward, channels-last; --min-mb defaults to 2048 there, "
                        "--layout and --dtype do not apply)")
    args = p.parse_args(argv)
    reason = gpu_bench.unavailable_reason(args.smoke)
    if reason:
        print(reason, file=sys.stderr)
        return 2
    if args.family:
        return _main_gpu_family(args, argv, gpu_bench)
    with gpu_bench.launch_config(args.smoke):
        print(f"poolkit GPU benchmark ({'smoke' if args.smoke else 'full'}), {datetime.date.today()}",
              flush=True)
        rows, info = gpu_bench.run(scale=args.scale, min_mb=512 if args.min_mb is None else args.min_mb,
                                   repeat=max(1, args.repeat), layouts=_layouts(args.layout),
                                   use_torch=not args.no_torch, smoke=args.smoke, dtype=args.dtype,
                                   only=args.case, log=cases.progress)
    table = gpu_bench.format_table(rows, info)
    print(table)
    if args.out:
        _write_report(args.out, "GPU", info["date"], argv, table)
    return 0


def _main_gpu_family(args, argv, gpu_bench):
    from poolkit.bench import gpu_family

    with gpu_bench.launch_config(args.smoke):
        print(f"poolkit GPU family benchmark ({'smoke' if args.smoke else 'full'}), {datetime.date.today()}",
              flush=True)
        rows, info = gpu_family.run(min_mb=2048 if args.min_mb is None else args.min_mb, scale=args.scale,
                                    repeat=max(1, args.repeat), use_torch=not args.no_torch,
                                    smoke=args.smoke, only=args.case, log=cases.progress)
    table = gpu_family.format_table(rows, info)
    print(table)
    if args.out:
        _write_report(args.out, "GPU family", info["date"], argv, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
