"""Exercises and data for lesson 10, *Beyond one machine* (pooling on Dask).

:func:`tiled_dem` makes the lesson's large raster: the Jacksboro fault elevation
model that ships with matplotlib, mirrored and upsampled *lazily* into a Dask
array of any size -- each chunk is computed only when a task needs it.

Exercise 1 asks for the input cells an output block reads (its halo);
exercise 2 pools an image strip by strip with those halos, as each Dask task
does; exercise 3 builds a multi-scale pyramid that stays lazy; exercise 4
writes one level of a pyramid of a raster with nodata (NaN) by hand, with
``nan_policy="omit"``.

>>> from poolkit.exercises import lesson10
>>> lesson10.input_range_spec(3, 5, 10, kernel_size=3, stride=2, padding=1)
(5, 10)
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

import poolkit

from . import Case, check, compare, describe_window

__all__ = [
    "tiled_dem",
    "input_range_spec",
    "check_input_range",
    "pool_strips_spec",
    "check_pool_strips",
    "lazy_pyramid_spec",
    "check_lazy_pyramid",
    "omit_mean_spec",
    "check_omit_mean",
]


# ------------------------------------------------------------------ the large raster
@functools.lru_cache(maxsize=1)
def _dem() -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as data:
        return np.asarray(data["elevation"], dtype=np.float32)  # (344, 403) metres


def _mirror(k: np.ndarray, n: int) -> np.ndarray:
    """Indices into a length-``n`` axis, tiled with mirror images (…, 1, 0, 0, 1, …, n-1, n-1, …)."""
    k = np.mod(k, 2 * n)
    return np.where(k < n, k, 2 * n - 1 - k)


def _dem_block(upsample: int, block_info=None) -> np.ndarray:
    """One chunk of :func:`tiled_dem`: bilinear samples of the mirrored elevation model.

    Separable: interpolate between DEM rows first (a small ``(h, 403)`` array), then
    between columns, in place -- two chunk-sized arrays at most.
    """
    dem = _dem()
    (_, _), (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
    axes = []
    for lo, hi, n in ((r0, r1, dem.shape[0]), (c0, c1, dem.shape[1])):
        u = (np.arange(lo, hi, dtype=np.float64) + 0.5) / upsample - 0.5  # pixel centres
        i = np.floor(u)
        axes.append((_mirror(i.astype(np.int64), n), _mirror(i.astype(np.int64) + 1, n),
                     (u - i).astype(np.float32)))
    (y0, y1, fy), (x0, x1, fx) = axes
    rows = dem[y0] * (1 - fy)[:, None] + dem[y1] * fy[:, None]  # (h, 403)
    out = np.take(rows, x0, axis=1)  # C order (rows[:, x0] would be Fortran order)
    out *= 1 - fx
    right = np.take(rows, x1, axis=1)
    right *= fx
    out += right
    return out[None, None]


def tiled_dem(side: int, chunk: int = 1024, upsample: int = 4):
    """A lazy ``(1, 1, side, side)`` float32 Dask array of elevations in metres.

    The 344x403 Jacksboro fault DEM (``matplotlib.cbook.get_sample_data``) is
    upsampled ``upsample`` times with bilinear interpolation and tiled with
    mirror images, so the terrain continues seamlessly to any size. Nothing is
    computed here: each ``chunk x chunk`` block is made when a task needs it,
    so a raster of tens of thousands of pixels a side costs no memory until it
    is pooled -- and then only a few chunks at a time.

    >>> x = tiled_dem(4096, chunk=1024)
    >>> x.shape, x.numblocks, x.dtype
    ((1, 1, 4096, 4096), (1, 1, 4, 4), dtype('float32'))
    """
    import dask.array as da

    rows = (chunk,) * (side // chunk) + ((side % chunk,) if side % chunk else ())
    return da.map_blocks(_dem_block, upsample, dtype=np.float32, chunks=((1,), (1,), rows, rows),
                         meta=np.empty((0, 0, 0, 0), np.float32), name=f"tiled_dem-{side}-{chunk}-{upsample}")


# ------------------------------------------------------------------ shared runner
def _run(fn: Callable, spec: Callable, cases: list[Case], name: str, judge) -> bool:
    """Like :func:`poolkit.exercises.check`, with a lesson-specific ``judge(got, want, case)``."""
    ok = True
    for case in cases:
        want = spec(*case.args, **case.kwargs)
        try:
            args = tuple(a.copy() if isinstance(a, np.ndarray) else a for a in case.args)
            got = fn(*args, **case.kwargs)
            problem = judge(got, want, case)
        except Exception as exc:  # report, do not crash the lesson
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem is None:
            print(f"  ok    {name}: {case.name}")
        else:
            ok = False
            print(f"  FAIL  {name}: {case.name}: {problem}")
            if case.hint:
                print(f"        hint: {case.hint}")
    print(f"{name}: {'all cases pass' if ok else 'some cases fail -- see above'}")
    return ok


# ------------------------------------------------------------------ exercise 1
def input_range_spec(o0, o1, L, kernel_size, stride, padding=0, dilation=1):
    """Input cells ``[start, stop)`` read by output positions ``o0 <= o < o1`` along one axis.

    Output ``o`` reads cells ``o*stride - padding + j*dilation`` for ``j <
    kernel_size``; cells outside ``[0, L)`` are padding and are not read. The
    answer runs from the first cell read to one past the last: what a task
    computing those outputs must be given (its chunk plus a halo).

    See Also
    --------
    check_input_range : runs a learner's version against this one.
    poolkit.geometry.window_range : the cells one output position reads.
    poolkit.dask.block_plan : these ranges for every block of a Dask array.
    """
    from .. import geometry as G

    first = G.window_range(o0, L, kernel_size, stride, padding, dilation)[1]
    last = G.window_range(o1 - 1, L, kernel_size, stride, padding, dilation)[1]
    return (min(first), max(last) + 1)


def _range_cases() -> list[Case]:
    return [
        Case("2x2 stride 2, outputs 4..8 of 10 (no halo)", (4, 8, 20, 2, 2),
             hint="output o starts at o*stride - padding; a window is kernel_size cells long"),
        Case("3x3 stride 2 pad 1, outputs 0..3 (the first reads padding)", (0, 3, 20, 3, 2, 1),
             hint="cells before 0 are padding: the range starts at 0, not at -1"),
        Case("3x3 stride 2 pad 1, outputs 3..6 (overlapping windows)", (3, 6, 20, 3, 2, 1),
             hint="the last window ends at (o1-1)*stride - padding + kernel_size"),
        Case("3x3 stride 2 pad 1, outputs 7..10, the last reads padding", (7, 10, 19, 3, 2, 1),
             hint="cells at L and beyond are padding: stop at L at most"),
        Case("3x3 stride 1 dilation 3, outputs 2..5", (2, 5, 20, 3, 1, 0, 3),
             hint="with dilation d a window spans d*(kernel_size-1) + 1 cells"),
        Case("a single output, 5x5 stride 4 pad 2", (6, 7, 30, 5, 4, 2)),
    ]


def _judge_range(got, want, case) -> str | None:
    if got is None:
        return "your function returned None -- did you forget `return start, stop`?"
    try:
        pair = tuple(got)
    except TypeError:
        return f"expected a pair (start, stop), got {type(got).__name__} {got!r}"
    if len(pair) != 2:
        return f"expected a pair (start, stop), got {len(pair)} values {pair!r}"
    if not all(isinstance(v, (int, np.integer)) for v in pair):
        return f"start and stop are cell indices: return ints, got {pair!r} (use // not /)"
    if tuple(int(v) for v in pair) == want:
        return None
    o0, o1, L = case.args[:3]
    return (f"got {tuple(int(v) for v in pair)}, expected {want} for outputs {o0}..{o1 - 1} "
            f"of an axis of {L} cells")


def check_input_range(fn) -> bool:
    """Check ``fn(o0, o1, L, kernel_size, stride, padding=0, dilation=1)`` -> ``(start, stop)``.

    Prints one line per case and returns ``True`` when all pass.
    """
    return _run(fn, input_range_spec, _range_cases(), "input_range", _judge_range)


# ------------------------------------------------------------------ exercise 2
def pool_strips_spec(x, strip, kernel_size, stride):
    """What pooling ``x`` strip by strip must give: ``poolkit.max_pool2d(x, kernel_size, stride)``.

    ``x`` is ``(C, H, W)``; ``strip`` is the number of *output* rows each piece
    computes. The learner's version pools each strip of output rows from just
    the input rows it reads (exercise 1) and stacks the pieces.

    See Also
    --------
    check_pool_strips : runs a learner's version against this one.
    """
    return poolkit.max_pool2d(x, kernel_size, stride)


def _strips_cases() -> list[Case]:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 23, 17)).astype(np.float32)
    return [
        Case("23x17, 2x2 stride 2, strips of 4 output rows", (x, 4, 2, 2),
             hint="non-overlapping windows: each strip reads its own 2*strip input rows"),
        Case("23x17, 3x3 stride 2, strips of 3 (windows overlap)", (x, 3, 3, 2),
             hint="overlapping windows: a strip also reads the first row of the next one (its halo)"),
        Case("23x17, 3x3 stride 1, strips of 5", (x, 5, 3, 1)),
        Case("23x17, 4x4 stride 3, strips of 2 (the last strip is shorter)", (x, 2, 4, 3),
             hint="the number of output rows is (H - kernel_size) // stride + 1; the last strip may be short"),
    ]


def _judge_strips(got, want, case) -> str | None:
    return compare(got, want, strict_dtype=True)


def check_pool_strips(fn) -> bool:
    """Check ``fn(x, strip, kernel_size, stride)`` against pooling the whole ``(C, H, W)`` array.

    Prints one line per case and returns ``True`` when all pass.
    """
    return _run(fn, pool_strips_spec, _strips_cases(), "pool_strips", _judge_strips)


# ------------------------------------------------------------------ exercise 3
def lazy_pyramid_spec(x, levels, kind):
    """The pyramid of a Dask array ``x``, computed in memory: ``[x, pool(x), pool(pool(x)), ...]``.

    Each step is a 2x2 window with stride 2 (``poolkit.max_pool2d(a, 2)`` or
    ``poolkit.avg_pool2d(a, 2)`` for ``kind`` ``"max"`` / ``"avg"``); the list has
    ``levels + 1`` NumPy arrays (level 0 is ``x`` computed). The learner's
    version returns the same levels as *lazy* Dask arrays.

    See Also
    --------
    check_lazy_pyramid : runs a learner's version against this one.
    """
    pool = {"max": poolkit.max_pool2d, "avg": poolkit.avg_pool2d}[kind]
    out = [np.asarray(x.compute())]
    for _ in range(levels):
        out.append(pool(out[-1], 2))
    return out


def _pyramid_cases() -> list[Case]:
    import dask.array as da

    rng = np.random.default_rng(11)
    a = rng.random((1, 1, 64, 48), dtype=np.float32)
    b = rng.standard_normal((2, 1, 40, 56))
    return [
        Case("64x48 float32 in 16x16 chunks, max, 3 levels", (da.from_array(a, chunks=(1, 1, 16, 16)), 3, "max")),
        Case("64x48 float32 in 16x16 chunks, avg, 4 levels", (da.from_array(a, chunks=(1, 1, 16, 16)), 4, "avg")),
        Case("2 images 40x56 float64 in 8x8 chunks, avg, 2 levels",
             (da.from_array(b, chunks=(1, 1, 8, 8)), 2, "avg")),
        Case("0 levels (just the input)", (da.from_array(a, chunks=(1, 1, 32, 16)), 0, "max")),
    ]


def _judge_pyramid(fn_result, want, case) -> str | None:
    got, ran = fn_result
    if got is None:
        return "your function returned None -- did you forget `return levels`?"
    if not isinstance(got, (list, tuple)):
        return f"your function returned a {type(got).__name__}, expected a list of Dask arrays"
    if len(got) != len(want):
        return f"{len(got)} levels, expected {len(want)} (level 0 is the input, then one per pooling step)"
    import dask.array as da

    for level, lvl in enumerate(got):
        if not isinstance(lvl, da.Array):
            return (f"level {level} is a {type(lvl).__name__}, not a Dask array: keep it lazy "
                    f"(no .compute(), no np.asarray)")
    if ran:
        return (f"building the pyramid ran {ran} Dask tasks: it must only describe the work "
                f"(something called .compute(), .persist() or np.asarray on a level)")
    x = case.args[0]
    for level, lvl in enumerate(got):
        if lvl.numblocks != x.numblocks:
            return (f"level {level} has {lvl.numblocks} blocks, the input {x.numblocks}: keep "
                    f"one block per input chunk (no rechunking), so each task stays small")
        problem = compare(lvl.compute(scheduler="sync"), want[level], strict_dtype=True, rtol=0, atol=0)
        if problem is not None:
            return f"level {level}: {problem}"
    return None


def check_lazy_pyramid(fn) -> bool:
    """Check ``fn(x, levels, kind)`` -> list of lazy Dask arrays against :func:`lazy_pyramid_spec`.

    Each level must be a Dask array, building them must run no task, each must
    keep the input's block structure, and each must equal in-memory poolkit bit
    for bit. Prints one line per case and returns ``True`` when all pass.
    """
    from dask.callbacks import Callback

    class _Count(Callback):
        def __init__(self):
            super().__init__()
            self.n = 0

        def _pretask(self, key, dsk, state):
            self.n += 1

    def counted(*args, **kwargs):
        with _Count() as counter:
            result = fn(*args, **kwargs)
        return result, counter.n

    return _run(counted, lazy_pyramid_spec, _pyramid_cases(), "lazy_pyramid", _judge_pyramid)


# ------------------------------------------------------------------ exercise 4
def omit_mean_spec(x):
    """One pyramid step of a one-band ``(H, W)`` raster with nodata: the 2x2 mean that skips NaN.

    ``poolkit.pyramid(x, 2, "mean", nan_policy="omit")[1]``: 2x2 windows, stride 2,
    ``ceil_mode=True`` (odd sides keep their edge: the last window covers the row
    or column left), and each window's mean divides by its number of valid
    (non-NaN) cells; a window without any is NaN. The dtype is ``x``'s.

    See Also
    --------
    check_omit_mean : runs a learner's version against this one.
    poolkit.pyramid : every level, under either ``nan_policy``.
    """
    return poolkit.pyramid(x, 2, "mean", nan_policy="omit")[1]


def _omit_mean_cases() -> list[Case]:
    rng = np.random.default_rng(15)
    a = rng.uniform(500, 3000, (4, 6)).astype(np.float32)
    a[0, 1] = a[2, 2] = a[3, 2] = a[1, 5] = np.nan          # windows with 1 and 2 NaN
    b = rng.uniform(500, 3000, (6, 6)).astype(np.float32)
    b[2:4, 2:4] = np.nan                                     # one window all NaN, the others none
    c = rng.uniform(500, 3000, (5, 7)).astype(np.float32)
    c[4, 0] = c[1, 6] = np.nan                               # NaN in the edge windows too
    d = rng.uniform(500, 3000, (40, 60))
    d[rng.random((40, 60)) < 0.3] = np.nan                   # float64, 30% nodata
    return [
        Case("4x6 float32, windows with 1 and 2 NaN", (a,),
             hint="a window's omit mean divides the sum of its valid cells by how many there are, not by 4"),
        Case("6x6 float32, one window entirely NaN", (b,),
             hint="a window without any valid cell has no mean: it is NaN (not 0)"),
        Case("5x7 float32, odd sides (ceil_mode edges)", (c,),
             hint="odd sides keep their edge: the last window covers the 1 row (column) left, and "
                  "its mean divides by the valid cells it covers (pad with NaN, which omit skips)"),
        Case("40x60 float64, 30% NaN", (d,),
             hint="the same rules on a larger raster: a window may hold 0 to 4 valid cells"),
        Case("4x6 float32 without any NaN: the plain 2x2 mean", (np.nan_to_num(a, nan=1000.0),),
             hint="without NaN, the omit mean is the plain mean of the 4 cells"),
    ]


def _explain_omit_mean(case: Case, index) -> str | None:
    x = np.asarray(case.args[0])
    if index is None:
        (H, W), (h, w) = x.shape, omit_mean_spec(x).shape
        return (f"a {H}x{W} raster gives ceil({H}/2) x ceil({W}/2) = {h}x{w} windows "
                f"(the edge is kept, as poolkit.pyramid's ceil_mode does)")
    i, j = index[-2], index[-1]
    window = x[2 * i:2 * i + 2, 2 * j:2 * j + 2]
    valid = int(np.count_nonzero(~np.isnan(window)))
    cells = "; ".join(", ".join(f"{v:.1f}" for v in row) for row in window)
    return f"{describe_window(index, x.shape, 2)} = [{cells}]: {valid} valid cell{'s' if valid != 1 else ''}"


def check_omit_mean(fn) -> bool:
    """Check ``fn(x)`` -> the ``nan_policy="omit"`` 2x2 mean of an ``(H, W)`` raster (:func:`omit_mean_spec`).

    Shape (``ceil(H/2) x ceil(W/2)``), dtype (the input's) and values (NaN where
    the spec has NaN) must match; a wrong cell is shown with the window it pools
    and how many valid cells it has. Prints one line per case and returns ``True``
    when all pass.
    """
    return check(fn, omit_mean_spec, _omit_mean_cases(), name=getattr(fn, "__name__", "omit_mean"),
                 rtol=1e-5, atol=1e-6, strict_dtype=True, explain=_explain_omit_mean)
