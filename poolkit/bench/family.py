"""CPU benchmark of the pooling family: ``python -m poolkit.bench --family``.

The default suite (:mod:`poolkit.bench.cpu`) times the 2-D forward core; this one
times the rest of the family on float32 inputs: 3-d and 1-d pooling, adaptive
and power-average pooling, max_unpool, the backward passes, and two
channels-last cases. Each case is timed with :func:`poolkit.bench.cpu.interleaved_ms`
(interleaved rounds, medians) against the same references as the default suite:

* a NumPy copy of the case's input (``x.copy()``; for max_unpool the pooled array,
  for a backward pass ``x``, the shape of the gradient it writes);
* PyTorch CPU in the same memory format: ``torch.nn.functional`` for forward ops,
  and for a backward pass torch's own backward op
  (``torch.ops.aten.max_pool2d_with_indices_backward``, ``avg_pool2d_backward``, ...),
  called directly, with torch's saved indices where poolkit gets its own.

Before timing, each case's poolkit output is compared once with torch's: bit for bit,
or the largest difference in units in the last place (ulp) and the indices.

Examples
--------
    python -m poolkit.bench --family                     # every case, 2 threads
    python -m poolkit.bench --family --scale 0.25        # smaller batches, a quick look
    python -m poolkit.bench --family --repeat 9 --out benchmarks/RESULTS_family.md
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from poolkit import cpu as pk

from .cases import progress, shape_str
from .cpu import interleaved_ms


class Contenders(NamedTuple):
    """What a case times, made by the case's builder from the generated array."""

    input: np.ndarray  #: copied by the copy contender; its shape is the table's shape column
    poolkit: Callable  #: ``poolkit(parallel)`` -> poolkit's result
    torch: Optional[Callable] = None  #: ``torch()`` -> torch's result (None without torch)
    channels_last: bool = False  #: torch's results are channels-first views of poolkit's layout


def _channels_last(base, torch):
    """``base`` (channels first) as poolkit's channels-last array and torch's channels-last tensor."""
    x = np.ascontiguousarray(np.moveaxis(base, 1, -1))
    if torch is None:
        return x, None
    fmt = torch.channels_last if base.ndim == 4 else torch.channels_last_3d
    return x, torch.from_numpy(base).contiguous(memory_format=fmt)


def forward(name, *args, layout=None, **kw):
    """A forward op called the same way in both libraries: ``poolkit.cpu.name(x, *args, **kw)`` and
    ``torch.nn.functional.name(t, *args, **kw)``; ``layout`` names a channels-last layout."""
    def build(base, torch, rng):
        f = getattr(pk, name)
        if layout is None:
            x, t = base, (torch.from_numpy(base) if torch is not None else None)
            lay = {}
        else:
            (x, t), lay = _channels_last(base, torch), dict(layout=layout)
        call = lambda parallel: f(x, *args, parallel=parallel, **lay, **kw)  # noqa: E731
        if torch is None:
            return Contenders(x, call, channels_last=layout is not None)
        tf = getattr(torch.nn.functional, name)
        return Contenders(x, call, lambda: tf(t, *args, **kw), layout is not None)
    return build


def max_pool_backward(nd, k, s, p=0):
    """``max_poolNd_backward`` with the forward's indices given (torch:
    ``max_poolNd_with_indices_backward`` with torch's indices)."""
    def build(base, torch, rng):
        name = f"max_pool{nd}d"
        _, idx = getattr(pk, name)(base, k, s, p, return_indices=True)
        grad = rng.standard_normal(idx.shape, dtype=np.float32)
        fb = getattr(pk, f"{name}_backward")
        call = lambda parallel: fb(grad, base, k, s, p, indices=idx, parallel=parallel)  # noqa: E731
        if torch is None:
            return Contenders(base, call)
        t, gt = torch.from_numpy(base), torch.from_numpy(grad)
        _, ti = getattr(torch.nn.functional, name)(t, k, s, p, return_indices=True)
        op = getattr(torch.ops.aten, f"{name}_with_indices_backward")
        return Contenders(base, call, lambda: op(gt, t, [k] * nd, [s] * nd, [p] * nd, [1] * nd, False, ti))
    return build


def avg_pool_backward(nd, k, s, p=0):
    """``avg_poolNd_backward`` (torch: ``aten.avg_poolNd_backward``), count_include_pad=True."""
    def build(base, torch, rng):
        name = f"avg_pool{nd}d"
        grad = rng.standard_normal(getattr(pk, name)(base, k, s, p).shape, dtype=np.float32)
        fb = getattr(pk, f"{name}_backward")
        call = lambda parallel: fb(grad, base, k, s, p, parallel=parallel)  # noqa: E731
        if torch is None:
            return Contenders(base, call)
        t, gt = torch.from_numpy(base), torch.from_numpy(grad)
        op = getattr(torch.ops.aten, f"{name}_backward")
        return Contenders(base, call, lambda: op(gt, t, [k] * nd, [s] * nd, [p] * nd, False, True, None))
    return build


def adaptive_avg_pool2d_backward(output_size):
    """``adaptive_avg_pool2d_backward`` (torch: ``aten._adaptive_avg_pool2d_backward``)."""
    def build(base, torch, rng):
        grad = rng.standard_normal(base.shape[:2] + (output_size, output_size), dtype=np.float32)
        call = lambda parallel: pk.adaptive_avg_pool2d_backward(grad, base, output_size,  # noqa: E731
                                                               parallel=parallel)
        if torch is None:
            return Contenders(base, call)
        t, gt = torch.from_numpy(base), torch.from_numpy(grad)
        return Contenders(base, call, lambda: torch.ops.aten._adaptive_avg_pool2d_backward(gt, t))
    return build


def max_unpool2d(k):
    """``max_unpool2d`` of ``max_pool2d(base, k, return_indices=True)``: the pooled array is the
    input (torch: ``aten.max_unpool2d`` of torch's pooled tensor and indices)."""
    def build(base, torch, rng):
        pooled, idx = pk.max_pool2d(base, k, return_indices=True)
        call = lambda parallel: pk.max_unpool2d(pooled, idx, k, parallel=parallel)  # noqa: E731
        if torch is None:
            return Contenders(pooled, call)
        tp, ti = torch.nn.functional.max_pool2d(torch.from_numpy(base), k, return_indices=True)
        size = list(base.shape[2:])
        return Contenders(pooled, call, lambda: torch.ops.aten.max_unpool2d(tp, ti, size))
    return build


_3D = (2, 32, 48, 96, 96)
_2D = (8, 64, 112, 112)

#: (label, channels-first shape of the array generated, builder, bitwise?). ``bitwise``: poolkit is
#: expected to match torch bit for bit; False where torch computes otherwise (an adaptive average
#: to 1x1 is torch's ``mean()``, another summation order; Lp pooling goes through ``pow``), as in
#: tests/test_torch.py. ``--scale`` multiplies the batch (the first number of the shape).
FAMILY_CASES = [
    ("max_pool3d k2 s2", _3D, forward("max_pool3d", 2, 2), True),
    ("max_pool3d k3 s2 p1", _3D, forward("max_pool3d", 3, 2, 1), True),
    ("avg_pool3d k2 s2", _3D, forward("avg_pool3d", 2, 2), True),
    ("adaptive_avg_pool2d ->1", (32, 2048, 7, 7), forward("adaptive_avg_pool2d", 1), False),
    ("adaptive_avg_pool2d ->7", (8, 512, 30, 30), forward("adaptive_avg_pool2d", 7), True),
    ("adaptive_max_pool2d ->7", (8, 512, 30, 30), forward("adaptive_max_pool2d", 7), True),
    ("max_pool1d k3 s2 p1", (16, 256, 4096), forward("max_pool1d", 3, 2, 1), True),
    ("avg_pool1d k4", (16, 256, 4096), forward("avg_pool1d", 4), True),
    ("lp_pool2d p=2 k2", _2D, forward("lp_pool2d", 2, 2), False),
    ("max_unpool2d k2", _2D, max_unpool2d(2), True),
    ("max_pool2d_backward k3 s2 p1", _2D, max_pool_backward(2, 3, 2, 1), True),
    ("avg_pool2d_backward k2 s2", _2D, avg_pool_backward(2, 2, 2), True),
    ("max_pool3d_backward k2 s2", _3D, max_pool_backward(3, 2, 2), True),
    ("avg_pool3d_backward k2 s2", _3D, avg_pool_backward(3, 2, 2), True),
    ("adaptive_avg_pool2d_backward ->1", (32, 2048, 7, 7), adaptive_avg_pool2d_backward(1), True),
    ("channels-last: max_pool3d k2 s2 NDHWC", _3D, forward("max_pool3d", 2, 2, layout="NDHWC"), True),
    ("channels-last: max_pool2d k3 s2 p1 return_indices NHWC", _2D,
     forward("max_pool2d", 3, 2, 1, return_indices=True, layout="NHWC"), True),
]


@contextlib.contextmanager
def _threads(threads, torch):
    """Numba and torch at ``threads`` threads inside, both restored afterwards."""
    import numba

    saved = numba.get_num_threads(), torch.get_num_threads() if torch is not None else None
    numba.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(saved[0])
        if torch is not None:
            torch.set_num_threads(saved[1])


def run(threads=2, repeat=15, scale=1.0, cases=None, use_torch=True):
    """Run the family suite; return a list of result dicts (times in ms).

    ``cases`` is a list in the format of :data:`FAMILY_CASES` (default: all of them).
    Each row has ``case``, ``shape`` (of the case's input, in its layout),
    ``channels_last``, and the medians ``serial``, ``parallel``, ``copy`` and, with
    torch, ``torch`` and ``matches_torch`` (see :func:`compare`). Numba and torch
    run with ``threads`` threads meanwhile; both thread counts are restored afterwards.
    """
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            torch = None
    with _threads(threads, torch):
        return _run(torch, repeat, scale, FAMILY_CASES if cases is None else cases)


def _run(torch, repeat, scale, cases):
    rng = np.random.default_rng(0)
    rows = []
    for i, (label, shape, build, bitwise) in enumerate(cases, 1):
        shape = (max(1, int(round(shape[0] * scale))),) + tuple(shape[1:])
        base = rng.standard_normal(shape, dtype=np.float32)
        c = build(base, torch, rng)
        progress(f"[{i}/{len(cases)}] {label} {c.input.shape}")
        row = dict(case=label, shape=c.input.shape, channels_last=c.channels_last)
        fns = dict(serial=lambda: c.poolkit(False), parallel=lambda: c.poolkit(True),
                   copy=lambda: c.input.copy())
        if c.torch is not None:
            def torch_call(call=c.torch):
                with torch.no_grad():
                    return call()
            fns["torch"] = torch_call
            row["matches_torch"] = compare(c.poolkit(True), torch_call(), c.channels_last, bitwise)
        row.update(interleaved_ms(fns, repeat))
        rows.append(row)
    return rows


def _ordered(a):
    """float32 bits as integers in the order of the values (adjacent floats differ by 1)."""
    i = a.view(np.int32).astype(np.int64)
    return np.where(i < 0, -(1 << 31) - i, i)


def compare(out, ref, channels_last=False, bitwise=True):
    """poolkit's result against torch's: ``'bitwise'``, or the largest float difference in ulp and
    absolute (``'max 3 ulp, abs 2.4e-07'``), or what differs (``'indices differ'``, ``'shape differs'``,
    ``'NaN differs'``). ``channels_last``: torch's tensors are compared in poolkit's layout.

    A result that is not bitwise where ``bitwise`` (expected) is prefixed with ``'DIFFERS: '``.
    """
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    refs = [np.ascontiguousarray((r.movedim(1, -1) if channels_last else r).numpy()) for r in refs]
    if all(o.shape == r.shape and o.dtype == r.dtype and np.array_equal(o.view(np.uint8), r.view(np.uint8))
           for o, r in zip(outs, refs)):
        return "bitwise"
    if any(o.shape != r.shape for o, r in zip(outs, refs)):
        verdict = "shape differs"
    elif not all(np.array_equal(o, r) for o, r in zip(outs[1:], refs[1:])):
        verdict = "indices differ"
    elif not np.array_equal(np.isnan(outs[0]), np.isnan(refs[0])):
        verdict = "NaN differs"
    else:  # ulp of the result: large where a sum cancels to near 0, hence also the absolute difference
        ulp = int(np.abs(_ordered(outs[0]) - _ordered(refs[0])).max())
        verdict = f"max {ulp} ulp, abs {float(np.abs(outs[0] - refs[0]).max()):.1e}"
    return f"DIFFERS: {verdict}" if bitwise else verdict


def _geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values))


def format_table(rows, threads):
    """Markdown table of :func:`run`'s rows plus the summary lines."""
    has_torch = any("torch" in r for r in rows)
    head = ["case", "shape", "serial ms", "parallel ms", "copy ms"]
    if has_torch:
        head += ["torch ms", "x torch"]
    head += ["/ copy"] + (["same values"] if has_torch else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], shape_str(r["shape"]), f"{r['serial']:.2f}", f"{r['parallel']:.2f}",
                 f"{r['copy']:.2f}"]
        if has_torch:
            cells += [f"{r['torch']:.2f}", f"{r['torch'] / r['parallel']:.2f}x"]
        cells += [f"{r['parallel'] / r['copy']:.2f}"] + ([r["matches_torch"]] if has_torch else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"float32, {threads} threads (numba and torch), medians of calls timed in interleaved "
                 f"rounds; x torch = torch ms / poolkit parallel ms; / copy = poolkit parallel ms / "
                 f"NumPy copy-of-input ms; same values: poolkit's output (and indices) against torch's, "
                 f"bit for bit, else the largest difference in ulp (of the result: many where a sum "
                 f"cancels to near 0) and absolute; DIFFERS where bitwise was expected.")
    if has_torch:
        for name, cl in (("channels-first", False), ("channels-last", True)):
            sp = [r["torch"] / r["parallel"] for r in rows if r["channels_last"] == cl]
            if sp:
                lines.append(f"{name} ({len(sp)} rows): x torch geometric mean {_geomean(sp):.2f}x, "
                             f"min {min(sp):.2f}x")
    return "\n".join(lines)
