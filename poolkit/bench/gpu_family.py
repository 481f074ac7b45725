"""GPU benchmark of the pooling family: ``python -m poolkit.bench --gpu --family``.

The family suite of :mod:`poolkit.bench.family` (3-d, 1-d, adaptive, Lp, max_unpool, the
backward passes, two channels-last cases), run through :mod:`poolkit.gpu`'s public
functions on device arrays, with every batch scaled up so that each input is at least
``--min-mb`` (default 2048 MB). For each case, on the same device memory:

* **poolkit** (the public function: argument checks, allocation and launches, as a
  caller pays them; the result stays on the device). Its outputs are allocated through
  Numba (``cudaMalloc`` per call, freed in batches) where torch's come from its caching
  allocator: on small or fast cases that difference is part of the ratio, where the 2-d
  suite (``--gpu``) times prepared launches alone;
* a **device-to-device copy** of the case's input, the bandwidth ceiling of the same run;
* **PyTorch** CUDA (the same ``torch.nn.functional`` / ``torch.ops.aten`` calls as the CPU
  family benchmark), on a zero-copy view of the same memory, when torch with CUDA is
  importable.

Times are CUDA events around bursts of calls lasting >= ~2 ms, medians of ``--repeat``
(:func:`poolkit.bench.gpu._timer`). Effective bandwidth = bytes of every array the call
reads (input, gradient, indices) and writes (its results) over the time. Two checks per
case: poolkit's result against torch's on the device (``= torch``: bit for bit, else the
largest absolute difference), and the first batch item against :mod:`poolkit.cpu` on the
same data (``= CPU``: bit for bit expected for everything but Lp pooling, whose ``pow`` may
round differently on the GPU).

Examples
--------
    python -m poolkit.bench --gpu --family --out benchmarks/RESULTS_gpu_family.md
    NUMBA_ENABLE_CUDASIM=1 python -m poolkit.bench --gpu --family --smoke   # code paths only
"""
from __future__ import annotations

import datetime
import math

import numpy as np

from .cases import progress, shape_str
from .gpu import _timer, _torch_cuda

_3D = (2, 32, 48, 96, 96)
_2D = (8, 64, 112, 112)

#: (label, channels-first base shape, kind, op name, args, kwargs). ``kind``: "forward"
#: (``op(x, *args, **kw)``), "max_backward" / "avg_backward" (``op`` is the forward op; the
#: max backward gets the forward's indices), "adaptive_avg_backward", "unpool" (of
#: ``max_pool2d(x, *args, return_indices=True)``). A ``layout`` kwarg makes the case channels-last.
CASES = [
    ("max_pool3d k2 s2", _3D, "forward", "max_pool3d", (2, 2), {}),
    ("max_pool3d k3 s2 p1", _3D, "forward", "max_pool3d", (3, 2, 1), {}),
    ("avg_pool3d k2 s2", _3D, "forward", "avg_pool3d", (2, 2), {}),
    ("adaptive_avg_pool2d ->1", (32, 2048, 7, 7), "forward", "adaptive_avg_pool2d", (1,), {}),
    ("adaptive_avg_pool2d ->7", (8, 512, 30, 30), "forward", "adaptive_avg_pool2d", (7,), {}),
    ("adaptive_max_pool2d ->7", (8, 512, 30, 30), "forward", "adaptive_max_pool2d", (7,), {}),
    ("max_pool1d k3 s2 p1", (16, 256, 4096), "forward", "max_pool1d", (3, 2, 1), {}),
    ("avg_pool1d k4", (16, 256, 4096), "forward", "avg_pool1d", (4,), {}),
    ("lp_pool2d p=2 k2", _2D, "forward", "lp_pool2d", (2, 2), {}),
    ("max_unpool2d k2", _2D, "unpool", "max_pool2d", (2,), {}),
    ("max_pool2d_backward k3 s2 p1", _2D, "max_backward", "max_pool2d", (3, 2, 1), {}),
    ("avg_pool2d_backward k2 s2", _2D, "avg_backward", "avg_pool2d", (2, 2, 0), {}),
    ("max_pool3d_backward k2 s2", _3D, "max_backward", "max_pool3d", (2, 2, 0), {}),
    ("avg_pool3d_backward k2 s2", _3D, "avg_backward", "avg_pool3d", (2, 2, 0), {}),
    ("adaptive_avg_pool2d_backward ->1", (32, 2048, 7, 7), "adaptive_avg_backward", "adaptive_avg_pool2d",
     (1,), {}),
    ("channels-last: max_pool3d k2 s2 NDHWC", _3D, "forward", "max_pool3d", (2, 2), dict(layout="NDHWC")),
    ("channels-last: max_pool2d k3 s2 p1 return_indices NHWC", _2D, "forward", "max_pool2d", (3, 2, 1),
     dict(layout="NHWC", return_indices=True)),
]

#: Not expected to equal the CPU bit for bit (the GPU's ``pow``).
_NOT_BITWISE_CPU = ("lp_pool",)
#: Not expected to equal torch bit for bit (torch: a 1x1 adaptive average is ``mean()``;
#: Lp pooling goes through ``pow``), as in the CPU family benchmark.
_NOT_BITWISE_TORCH = ("adaptive_avg_pool2d ->1", "lp_pool")


def _smoke_shape(shape):
    """Tiny shapes for the simulator: batch 1, at most 2 channels, at most 12 cells per axis."""
    return (1, min(shape[1], 2)) + tuple(min(s, 12) for s in shape[2:])


def _channels_last(a):
    """A channels-first array/tensor viewed in its channels-last layout (axis 1 moved last)."""
    return np.moveaxis(a, 1, -1) if isinstance(a, np.ndarray) else a.movedim(1, -1)


def _call(lib, kind, name, args, kw, x, grad=None, idx=None):
    """One call of the case on ``lib`` (``poolkit.gpu`` or ``poolkit.cpu``); ``x`` (and ``grad``,
    ``idx``) already in the case's layout. Returns the result (a tuple for values and indices)."""
    if kind == "forward":
        return getattr(lib, name)(x, *args, **kw)
    if kind == "unpool":
        return lib.max_unpool2d(x, idx, *args)
    if kind == "max_backward":
        return getattr(lib, f"{name}_backward")(grad, x, *args, indices=idx)
    if kind == "avg_backward":
        return getattr(lib, f"{name}_backward")(grad, x, *args)
    return lib.adaptive_avg_pool2d_backward(grad, x, *args)


def _torch_call(torch, kind, name, args, kw, t, gt=None, ti=None):
    """The same case in PyTorch (channels-first tensors, maybe in channels-last memory)."""
    F = torch.nn.functional
    if kind == "forward":
        kw = {k: v for k, v in kw.items() if k != "layout"}
        return getattr(F, name)(t, *args, **kw)
    if kind == "unpool":
        return torch.ops.aten.max_unpool2d(t, ti, [t.shape[2] * args[0], t.shape[3] * args[0]])
    nd = t.dim() - 2
    if kind == "max_backward":
        k, s, p = args
        op = getattr(torch.ops.aten, f"{name}_with_indices_backward")
        return op(gt, t, [k] * nd, [s] * nd, [p] * nd, [1] * nd, False, ti)
    if kind == "avg_backward":
        k, s, p = args
        return getattr(torch.ops.aten, f"{name}_backward")(gt, t, [k] * nd, [s] * nd, [p] * nd, False, True, None)
    return torch.ops.aten._adaptive_avg_pool2d_backward(gt, t)


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


def _same_on_device(torch, outs, refs):
    """poolkit's results against torch's, on torch's device (zero-copy for device arrays):
    'bitwise', or the largest absolute difference of the values (indices must be equal)."""
    pk = [torch.as_tensor(o, device=r.device) for o, r in zip(outs, refs)]
    if any(tuple(p.shape) != tuple(r.shape) for p, r in zip(pk, refs)):
        return "shape differs"
    if not all(torch.equal(p, r) for p, r in zip(pk[1:], refs[1:])):
        return "indices differ"
    a, b = pk[0], refs[0]
    if a.dtype.is_floating_point:
        ints = {4: torch.int32, 8: torch.int64}[a.element_size()]
        if torch.equal(a.view(ints), b.view(ints)):
            return "bitwise"
        if not torch.equal(torch.isnan(a), torch.isnan(b)):
            return "NaN differs"
        ok = ~torch.isnan(a)
        return f"max abs {float((a[ok] - b[ok]).abs().max()):.1e}"
    return "bitwise" if torch.equal(a, b) else "values differ"


def _same_as_cpu(outs, cpu_outs):
    """First batch item: 'bitwise', or the largest absolute difference."""
    for o, c in zip(outs, cpu_outs):
        if o.shape != c.shape:
            return "shape differs"
    if all(np.array_equal(o.view(np.uint8), c.view(np.uint8)) for o, c in zip(outs, cpu_outs)):
        return "bitwise"
    if not all(np.array_equal(o, c) for o, c in zip(outs[1:], cpu_outs[1:])):
        return "indices differ"
    a, b = outs[0], cpu_outs[0]
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return "NaN differs"
    ok = ~np.isnan(a)
    return f"max abs {float(np.abs(a[ok] - b[ok]).max()):.1e}"


def _random(cuda, torch, shape, rng):
    """A float32 device array of standard normal numbers (and its torch tensor, zero-copy)."""
    if torch is not None:
        t = torch.randn(shape, device="cuda", generator=torch.Generator("cuda").manual_seed(int(rng.integers(2**31))))
        return cuda.as_cuda_array(t), t
    return cuda.to_device(rng.standard_normal(shape, dtype=np.float32)), None


def _case_arrays(lib, torch, kind, name, args, x, t, random):
    """The arrays a case's call takes besides ``x``: ``(x, grad, idx, t, gt, ti)``. ``lib`` runs the
    forward op where the call needs its output (the pooled array and indices for unpooling, the
    indices for max backward); ``t`` is torch's tensor of ``x`` (or None) and gets torch's own;
    ``random(shape)`` gives ``(array, tensor or None)`` of a gradient."""
    grad = idx = gt = ti = None
    if kind in ("unpool", "max_backward"):
        pooled, idx = getattr(lib, name)(x, *args, return_indices=True)
        if t is not None:
            tp, ti = getattr(torch.nn.functional, name)(t, *args, return_indices=True)
        if kind == "unpool":
            x, t = pooled, (tp if t is not None else None)
    if kind in ("max_backward", "avg_backward", "adaptive_avg_backward"):
        grad, gt = random(getattr(lib, name)(x, *args).shape)
    return x, grad, idx, t, gt, ti


def run(*, min_mb=2048, scale=None, repeat=15, use_torch=True, smoke=False, only=None, log=progress):
    """Run the suite; return ``(rows, info)``, times in seconds."""
    from numba import cuda

    from poolkit import cpu, gpu

    sim = gpu.simulator_enabled()
    measure = _timer(sim)
    torch = _torch_cuda() if use_torch and not sim else None
    rng = np.random.default_rng(0)
    rows = []
    for label, base, kind, name, args, kw in CASES:
        if only and not any(s in label for s in only):
            continue
        if smoke:
            shape = _smoke_shape(base)
        else:
            s = scale if scale is not None else max(1.0, min_mb * 2**20 / (math.prod(base) * 4))
            shape = (max(1, round(base[0] * s)),) + tuple(base[1:])
        cl = "layout" in kw
        log(f"{label} {shape}")
        xd, xt = _random(cuda, torch, shape, rng)
        x = xd
        if cl:  # channels-last memory: torch's tensor in channels_last format, poolkit's view of it
            if xt is not None:
                fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
                xt = xt.contiguous(memory_format=fmt)
                x = cuda.as_cuda_array(xt.movedim(1, -1))
            else:
                x = cuda.to_device(np.ascontiguousarray(_channels_last(xd.copy_to_host())))
        x, grad, idx, xt, gt, ti = _case_arrays(gpu, torch, kind, name, args, x, xt,
                                                lambda shape: _random(cuda, torch, shape, rng))
        outs = _as_tuple(_call(gpu, kind, name, args, kw, x, grad, idx))
        moved = sum(a.nbytes for a in (x, grad, idx) if a is not None) + sum(o.nbytes for o in outs)
        row = dict(label=label, shape=tuple(x.shape), bytes=moved, in_bytes=x.nbytes)
        copy_dst = cuda.device_array_like(x) if not cl else cuda.device_array(x.shape, x.dtype)
        row["copy"] = measure(lambda: copy_dst.copy_to_device(x), repeat)
        copy_dst = None
        row["poolkit"] = measure(lambda: _call(gpu, kind, name, args, kw, x, grad, idx), repeat)
        first = [None if a is None else a[:1].copy_to_host() for a in (x, grad, idx)]
        cpu_outs = _as_tuple(_call(cpu, kind, name, args, kw, *first))
        same_cpu = _same_as_cpu([o[:1].copy_to_host() for o in outs], cpu_outs)
        if same_cpu != "bitwise" and not any(s in label for s in _NOT_BITWISE_CPU):
            same_cpu = "DIFFERS: " + same_cpu
        row["cpu"] = same_cpu
        row["torch"] = row["vs_torch"] = None
        if xt is not None:
            with torch.no_grad():
                tcall = lambda: _torch_call(torch, kind, name, args, kw, xt, gt, ti)  # noqa: E731
                row["torch"] = measure(tcall, repeat)
                refs = [r.movedim(1, -1) if cl else r for r in _as_tuple(tcall())]
                same = _same_on_device(torch, outs, refs)
                if same != "bitwise" and not any(s in label for s in _NOT_BITWISE_TORCH):
                    same = "DIFFERS: " + same
                row["vs_torch"] = same
        rows.append(row)
        x = xd = xt = grad = gt = idx = ti = outs = None  # free device memory before the next case
    dev = cuda.get_current_device()
    name = getattr(dev, "name", b"CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    info = dict(device=name, cc=getattr(dev, "compute_capability", None), sim=sim,
                torch=getattr(torch, "__version__", None), date=str(datetime.date.today()))
    return rows, info


def _gbs(nbytes, t):
    return nbytes / t / 1e9 if t and t > 0 else float("nan")


def format_table(rows, info):
    """Markdown table plus the target summary (issue 16: >= 85% of the copy bandwidth on the
    memory-bound cases, >= 1.0x PyTorch on every case)."""
    lines = [f"Device: {info['device']} (cc {info['cc']})"
             f"{'  -- SIMULATOR: timings are meaningless' if info['sim'] else ''}; "
             f"torch {info['torch'] or 'not used'}; {info['date']}",
             "",
             "| case | shape | MB moved | copy GB/s | poolkit us | poolkit GB/s | % of copy | torch us | "
             "torch GB/s | x torch | = torch | = CPU (batch item 0) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        copy_bw = _gbs(2 * r["in_bytes"], r["copy"])
        pk_bw = _gbs(r["bytes"], r["poolkit"])
        t = r["torch"]
        tcols = (f"{t * 1e6:.1f} | {_gbs(r['bytes'], t):.0f} | {t / r['poolkit']:.2f}x" if t else "- | - | -")
        lines.append(f"| {r['label']} | {shape_str(r['shape'])} | {r['bytes'] / 1e6:.0f} | {copy_bw:.0f} | "
                     f"{r['poolkit'] * 1e6:.1f} | {pk_bw:.0f} | {100 * pk_bw / copy_bw:.0f}% | {tcols} | "
                     f"{r['vs_torch'] or '-'} | {r['cpu']} |")
    lines.append("")
    lines.append("MB moved: every array the call reads and writes, once; copy GB/s: a device-to-device copy of "
                 "the case's input (read + write); = torch: poolkit's result against torch's on the device; "
                 "= CPU: the first batch item against poolkit.cpu on the same data; poolkit us: the public "
                 "function, its outputs allocated through Numba (no caching allocator), torch us: torch's call.")
    if info["sim"]:
        lines.append("Simulator run: code paths and outputs checked; no timings, targets not evaluated.")
    timed = [r for r in rows if r["torch"]]
    if timed:
        ratios = [r["torch"] / r["poolkit"] for r in timed]
        worst = min(timed, key=lambda r: r["torch"] / r["poolkit"])
        gm = math.exp(sum(map(math.log, ratios)) / len(ratios))
        lines.append(f"x torch: geometric mean {gm:.2f}x, worst {min(ratios):.2f}x ({worst['label']}) -> "
                     f">= 1.0x on every case {'met' if min(ratios) >= 1.0 else 'NOT met'}")
    bad = [f"{r['label']}: {v}" for r in rows for v in (r["vs_torch"], r["cpu"]) if v and v.startswith("DIFFERS")]
    lines.append("Checks: " + ("no unexpected difference" if not bad else "; ".join(bad)))
    return "\n".join(lines)
