"""GPU benchmark: ``python -m poolkit.bench --gpu``.

Runs the CPU benchmark's case suite (:data:`poolkit.bench.cases.CASES`, float32, NCHW and
NHWC) on a CUDA GPU, with every batch scaled up so that each input is at least
``--min-mb`` (default 512 MB, far beyond an H100's 50 MB L2 cache) and at least 4x
the CPU batch. For each case it measures, on the same device arrays:

* poolkit's **naive** and **optimized** kernels (``PreparedLaunch.run()``: the
  kernel launch alone, no argument checks or allocation);
* a **device-to-device copy** of the input (``cuMemcpyDtoD``), the practical
  bandwidth ceiling, measured in the same run;
* **PyTorch** CUDA pooling (``torch.nn.functional``; ``channels_last`` memory format
  for NHWC) on the very same memory (zero-copy through
  ``__cuda_array_interface__``), when torch with CUDA is importable. Its output is
  also compared with poolkit's (the ``check`` column);
* the **host<->device copies** a caller without data on the GPU pays around the kernel:
  ``cuda.to_device`` of the input as a host (NumPy) array (``h2d us``, allocation
  included) and ``copy_to_host`` of the optimized kernel's output (``d2h us``), on
  pageable host memory.

Times come from CUDA events after warm-up (which also compiles): each
measurement times a burst of launches lasting >= ~2 ms, and the reported time is the
median of ``--repeat`` measurements. Effective bandwidth = (input bytes + output
bytes) / time: the bytes a perfect kernel must move. Targets from issue 3:
optimized >= 85% of the copy bandwidth on the large (memory-bound) cases, and
optimized >= 1.0x PyTorch on every case; the summary says whether they are met.

Examples
--------
    python -m poolkit.bench --gpu --out benchmarks/gpu-h100.md
    python -m poolkit.bench --gpu --repeat 50 --layout NCHW
    NUMBA_ENABLE_CUDASIM=1 python -m poolkit.bench --gpu --smoke   # code paths only, no GPU
"""
from __future__ import annotations

import contextlib
import datetime
import math
import platform
import statistics
import time

import numpy as np

from .cases import CASES, LAYOUTS, progress, shape_str

#: Batch scale-up so inputs dwarf the L2 cache: at least this factor ...
MIN_SCALE = 4
#: ... and at least this many bytes per input (``--min-mb``).
MIN_BYTES = 512 * 2**20

#: The tiny launch configuration of ``--smoke`` (set in :mod:`poolkit.config` meanwhile).
SMOKE_CONFIG = dict(GPU_THREADS_PER_BLOCK=32, GPU_TILE_THREADS=32, GPU_MAX_BLOCKS=4,
                    GPU_TILE_WIDTH=8, GPU_TILE_CHANNELS=2)


def unavailable_reason(smoke=False):
    """Why the benchmark cannot run here (a message for stderr), or None when it can.

    Without a CUDA device only the simulator's ``--smoke`` run works; the simulator
    cannot time kernels, so it runs nothing else.
    """
    from poolkit import gpu

    if not gpu.simulator_enabled():
        from numba import cuda

        if not cuda.is_available():
            return ("poolkit GPU benchmark: no CUDA device was found (numba.cuda.is_available() is "
                    "False). Run it on a machine with an NVIDIA GPU; without one, only "
                    "`NUMBA_ENABLE_CUDASIM=1 python -m poolkit.bench --gpu --smoke` works "
                    "(it checks the code paths on Numba's CUDA simulator; no timings).")
    elif not smoke:
        return ("poolkit GPU benchmark: NUMBA_ENABLE_CUDASIM=1 is set -- the simulator cannot time "
                "kernels. Run on a GPU, or add --smoke to only exercise the code paths.")
    return None


@contextlib.contextmanager
def launch_config(smoke=False):
    """With ``smoke``, :data:`SMOKE_CONFIG` meanwhile; poolkit.config is restored afterwards either way."""
    from poolkit import config

    saved = {k: getattr(config, k) for k in SMOKE_CONFIG}
    if smoke:
        for k, v in SMOKE_CONFIG.items():
            setattr(config, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(config, k, v)


def _smoke_shape(shape):
    """A tiny stand-in for the simulator: same kernel/stride, a few planes."""
    N, C, H, W = shape
    small = max(7, H // 16)
    return (1, min(C, 2), small, small)


def _layout_shape(shape, layout):
    N, C, H, W = shape
    return (N, C, H, W) if layout == "NCHW" else (N, H, W, C)


def _timer(sim):
    from numba import cuda

    def measure(fn, repeat):
        """Median seconds per call of ``fn`` (CUDA events; wall clock on the simulator)."""
        fn()
        fn()
        cuda.synchronize()
        if sim:  # the simulator has no timing: exercise the path, report wall time
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return statistics.median(times)
        start, end = cuda.event(), cuda.event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        one = max(cuda.event_elapsed_time(start, end) / 1e3, 1e-6)
        inner = max(1, min(2000, int(2e-3 / one)))
        times = []
        for _ in range(repeat):
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
            times.append(cuda.event_elapsed_time(start, end) / 1e3 / inner)
        return statistics.median(times)

    return measure


def _torch_cuda():
    try:
        import torch
    except Exception:
        return None
    try:
        return torch if torch.cuda.is_available() else None
    except Exception:
        return None


def _fill(cuda, shape, dtype, rng):
    """A random device array, generated in slabs so host memory stays small."""
    d = cuda.device_array(shape, dtype=dtype)
    flat = d.reshape(int(np.prod(shape)))
    step = 1 << 24
    for lo in range(0, flat.shape[0], step):
        hi = min(lo + step, flat.shape[0])
        chunk = rng.standard_normal(hi - lo, dtype=np.float32).astype(dtype)
        flat[lo:hi].copy_to_device(chunk)
    return d


def run(*, scale=None, min_mb=512, repeat=25, layouts=LAYOUTS, use_torch=True,
        smoke=False, dtype="float32", only=None, log=progress):
    """Run the suite; return ``(rows, info)``: one dict per (case, layout), times in seconds.

    ``log`` receives one progress message per (case, layout) (default: a line on stderr).
    """
    from numba import cuda

    from poolkit import config, gpu

    sim = gpu.simulator_enabled()
    measure = _timer(sim)
    torch = _torch_cuda() if use_torch and not sim else None
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    rows = []
    for label, op, base_shape, kw, large in CASES:
        kw = dict(kw)
        if only and not any(s in label for s in only):
            continue
        if smoke:
            shape = _smoke_shape(base_shape)
        else:
            nbytes = int(np.prod(base_shape)) * dtype.itemsize
            s = scale if scale is not None else max(MIN_SCALE, math.ceil(min_mb * 2**20 / nbytes))
            shape = (max(1, round(base_shape[0] * s)),) + tuple(base_shape[1:])
        for layout in layouts:
            xshape = _layout_shape(shape, layout)
            log(f"{label} {layout} {xshape}")
            x = _fill(cuda, xshape, dtype, rng)
            prep = gpu.prepare_max_pool2d if op == "max" else gpu.prepare_avg_pool2d
            launches = {k: prep(x, layout=layout, kernel=k, **kw) for k in ("naive", "optimized")}
            out_bytes = sum(int(np.prod(o.shape)) * o.dtype.itemsize for o in launches["optimized"].outputs)
            moved = x.nbytes + out_bytes
            row = dict(label=label, layout=layout, shape=xshape, large=large, bytes=moved,
                       in_bytes=x.nbytes, plan=launches["optimized"].plan)
            copy_dst = cuda.device_array_like(x)
            row["copy"] = measure(lambda: copy_dst.copy_to_device(x), repeat)
            copy_dst = None  # free the copy target before the next buffers
            for k, launch in launches.items():
                row[k] = measure(launch.run, repeat)
            host_x = x.copy_to_host()  # the input as a caller's NumPy array
            row["h2d"] = measure(lambda: cuda.to_device(host_x), repeat)
            host_x = None
            d_out = launches["optimized"].outputs[0]
            row["d2h"] = measure(lambda: d_out.copy_to_host(), repeat)
            d_out = None
            naive = launches["naive"].outputs[0].copy_to_host()
            opt = launches["optimized"].outputs[0].copy_to_host()
            check = "ok" if np.array_equal(naive, opt) else "naive != optimized"
            row["torch"] = None
            if torch is not None:
                F = torch.nn.functional
                t = torch.as_tensor(x, device="cuda")
                if layout == "NHWC":
                    t = t.permute(0, 3, 1, 2)  # an NCHW view in channels_last memory format
                tfn = F.max_pool2d if op == "max" else F.avg_pool2d
                row["torch"] = measure(lambda: tfn(t, **kw), repeat)
                ref = tfn(t, **kw)
                if layout == "NHWC":
                    ref = ref.permute(0, 2, 3, 1)
                ref = ref.contiguous().cpu().numpy()
                if op == "max":
                    same = np.array_equal(ref, opt)
                else:
                    same = np.allclose(ref, opt, rtol=1e-5, atol=1e-6)
                if not same:
                    check = "differs from torch"
            row["check"] = check
            rows.append(row)
            launches = x = None  # free device memory before the next case
    dev = cuda.get_current_device()
    name = getattr(dev, "name", b"CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    info = dict(device=name, cc=getattr(dev, "compute_capability", None), sim=sim,
                torch=getattr(torch, "__version__", None), date=str(datetime.date.today()),
                tile_threads=config.GPU_TILE_THREADS)
    return rows, info


def _gbs(nbytes, t):
    return nbytes / t / 1e9 if t and t > 0 else float("nan")


def format_table(rows, info):
    """Markdown table plus the target summary."""
    import numba

    try:
        from importlib.metadata import version
        nbc = version("numba-cuda")
    except Exception:  # pragma: no cover
        nbc = "?"
    head = [f"Device: {info['device']} (cc {info['cc']}){'  -- SIMULATOR: timings are meaningless' if info['sim'] else ''}",
            f"Date: {info['date']}; numba {numba.__version__}, numba-cuda {nbc}, "
            f"torch {info['torch'] or 'not used'}; Python {platform.python_version()}",
            "",
            "| case | layout | shape | MB moved | copy GB/s | naive us | naive GB/s | optimized us | "
            "optimized GB/s | opt % of copy | torch us | torch GB/s | opt vs torch | h2d us | d2h us | check |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines = list(head)
    for r in rows:
        copy_bw = _gbs(2 * r["in_bytes"], r["copy"])
        nb, ob = _gbs(r["bytes"], r["naive"]), _gbs(r["bytes"], r["optimized"])
        t = r["torch"]
        tcols = (f"{t * 1e6:.1f} | {_gbs(r['bytes'], t):.0f} | {t / r['optimized']:.2f}x" if t
                 else "- | - | -")
        lines.append(
            f"| {r['label']} | {r['layout']} | {shape_str(r['shape'])} | {r['bytes'] / 1e6:.0f} | "
            f"{copy_bw:.0f} | {r['naive'] * 1e6:.1f} | {nb:.0f} | {r['optimized'] * 1e6:.1f} | {ob:.0f} | "
            f"{100 * ob / copy_bw:.0f}% | {tcols} | {r['h2d'] * 1e6:.1f} | {r['d2h'] * 1e6:.1f} | {r['check']} |")
    lines.append("")
    if info["sim"]:
        lines.append("Simulator run: code paths and outputs checked; no timings, targets not evaluated.")
    large = [r for r in rows if r["large"]] if not info["sim"] else []
    if large:
        worst = min(large, key=lambda r: _gbs(r["bytes"], r["optimized"]) / _gbs(2 * r["in_bytes"], r["copy"]))
        frac = _gbs(worst["bytes"], worst["optimized"]) / _gbs(2 * worst["in_bytes"], worst["copy"])
        lines.append(f"Target >= 85% of copy bandwidth on the large cases: worst {100 * frac:.0f}% "
                     f"({worst['label']} {worst['layout']}) -> {'met' if frac >= 0.85 else 'NOT met'}")
    timed = [r for r in rows if r["torch"]]
    if timed:
        worst = min(timed, key=lambda r: r["torch"] / r["optimized"])
        ratio = worst["torch"] / worst["optimized"]
        lines.append(f"Target >= 1.0x PyTorch on every case: worst {ratio:.2f}x "
                     f"({worst['label']} {worst['layout']}) -> {'met' if ratio >= 1.0 else 'NOT met'}")
    elif not info["sim"]:
        lines.append("PyTorch with CUDA not available: no comparison.")
    bad = [f"{r['label']} {r['layout']}: {r['check']}" for r in rows if r["check"] != "ok"]
    lines.append("Output checks: " + ("all ok" if not bad else "; ".join(bad)))
    return "\n".join(lines)
