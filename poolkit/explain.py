"""Explain mode: which cells each output of a pooling call reads, and why the output has its size.

>>> import poolkit
>>> e = poolkit.explain("avg_pool1d", (5,), kernel_size=2, stride=2, ceil_mode=True)
>>> e.out_size
(3,)
>>> e.window(2)
Window(out_index=(2,), start=(4,), stop=(6,), bounds=((4, 5),), cells=1, padding=0, overhang=1, divisor=1)

Everything is computed from :mod:`poolkit.geometry` -- the same functions the kernels
use -- so an explanation can never disagree with what the kernels do:
:func:`~poolkit.geometry.make_geometry` (output size, ``padding="same"``),
:func:`~poolkit.geometry.ceil_mode_windows` (what ceil_mode adds or drops),
:func:`~poolkit.geometry.window_cells` (input / padding / overhang cells per window),
:func:`~poolkit.geometry.avg_divisor_table` (the average's divisor) and
:func:`~poolkit.geometry.make_adaptive_geometry` (adaptive bins).

:func:`plot_windows` draws the windows over the input grid (matplotlib, imported
only when you call it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import geometry as G

__all__ = ["explain", "plot_windows", "Explanation", "Window"]

_DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}

# op family -> the keyword arguments it takes (with PyTorch's defaults)
_ARGUMENTS = {
    "max_pool": dict(kernel_size=None, stride=None, padding=0, dilation=1, ceil_mode=False,
                     return_indices=False),
    "avg_pool": dict(kernel_size=None, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                     divisor_override=None),
    "lp_pool": dict(norm_type=None, kernel_size=None, stride=None, ceil_mode=False),
    "adaptive_max_pool": dict(output_size=None, return_indices=False),
    "adaptive_avg_pool": dict(output_size=None),
    "global_max_pool": dict(keepdims=False),
    "global_avg_pool": dict(keepdims=False),
}


@dataclass(frozen=True)
class Window:
    """What one output cell reads.

    ``start``/``stop`` are the window's span in input coordinates before clipping
    (negative or ``>= L`` means padding or overhang); ``bounds`` the clipped
    ``(first, last + 1)`` input indices per dimension (with dilation only every
    ``d``-th of them is read); ``cells`` the input cells read, ``padding`` the
    padding cells in the window, ``overhang`` the cells of a ceil_mode window
    past the padded input; ``divisor`` what an average divides by (``None`` for max).
    """

    out_index: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]
    bounds: tuple[tuple[int, int], ...]
    cells: int
    padding: int
    overhang: int
    divisor: int | None


@dataclass
class Explanation:
    """The result of :func:`explain`: the geometry, one :class:`Window` per output cell, notes."""

    op: str
    geometry: object
    arguments: dict
    windows: list[Window]
    notes: list[str] = field(default_factory=list)

    @property
    def in_size(self) -> tuple[int, ...]:
        return self.geometry.in_size

    @property
    def out_size(self) -> tuple[int, ...]:
        return self.geometry.out_size

    def window(self, *out_index) -> Window:
        """The window of output cell ``out_index`` (one int per spatial dimension)."""
        if len(out_index) == 1 and isinstance(out_index[0], tuple):
            out_index = out_index[0]
        flat = int(np.ravel_multi_index(out_index, self.out_size))
        return self.windows[flat]

    def summary(self) -> str:
        """A readable account of the geometry: sizes, then one line per note."""
        lines = [f"{self.op} on an input of spatial size {self.in_size} -> output {self.out_size} "
                 f"({len(self.windows)} window{'s' if len(self.windows) != 1 else ''})"]
        lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    def table(self, limit: int | None = 64) -> str:
        """One line per output cell: clipped bounds, cells read, padding, overhang, divisor."""
        names = _DIM_NAMES[len(self.in_size)]
        lines = []
        for w in self.windows[:limit]:
            span = ", ".join(f"{n} {a}..{b - 1}" if b > a else f"{n} none" for n, (a, b) in zip(names, w.bounds))
            line = f"out {w.out_index}: reads {span} ({w.cells} cell{'s' if w.cells != 1 else ''})"
            if w.padding:
                line += f", {w.padding} padding"
            if w.overhang:
                line += f", {w.overhang} past the padded input"
            if w.divisor is not None:
                line += f", divisor {w.divisor}"
            lines.append(line)
        if limit is not None and len(self.windows) > limit:
            lines.append(f"... {len(self.windows) - limit} more (table(limit=None) shows all)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary() + "\n" + self.table()


def _family_of(op_name: str):
    if not isinstance(op_name, str):
        raise TypeError(f"explain: op_name must be a string such as 'max_pool2d', got {op_name!r}")
    for fam in sorted(_ARGUMENTS, key=len, reverse=True):
        for nd in (1, 2, 3):
            if op_name == f"{fam}{nd}d" and not (fam.startswith("global") and nd != 2):
                return fam, nd
    known = ", ".join(f"{f}{nd}d" for f in _ARGUMENTS for nd in ((2,) if f.startswith("global") else (1, 2, 3)))
    raise ValueError(f"explain: op_name must be one of {known}; got {op_name!r}")


def _spatial(input_shape, nd, layout, op):
    if not isinstance(input_shape, (tuple, list)) or not all(G.is_int(v) for v in input_shape):
        raise TypeError(f"explain: input_shape must be a tuple of ints, got {input_shape!r}")
    if len(input_shape) == nd:
        if any(v < 1 for v in input_shape):
            raise ValueError(f"explain: input_shape must be positive, got {input_shape!r}")
        return tuple(int(v) for v in input_shape)
    if layout is None:
        layout = G.LAYOUTS[nd][0]
    return G.check_input(input_shape, np.float32, nd, layout, op, allow_int=False)[2]


def explain(op_name, input_shape, **arguments) -> Explanation:
    """Explain a pooling call: every output cell's window, and how the output size comes about.

    Parameters
    ----------
    op_name : str
        ``"max_pool1d"`` ... ``"max_pool3d"``, ``"avg_pool*d"``, ``"lp_pool*d"``,
        ``"adaptive_max_pool*d"``, ``"adaptive_avg_pool*d"``, ``"global_max_pool2d"``,
        ``"global_avg_pool2d"``.
    input_shape : tuple of ints
        The spatial size (e.g. ``(H, W)``), or the full shape of ``x`` as you would
        pass it (then ``layout=`` says where the channels are).
    **arguments
        The op's own arguments by keyword, as for the op itself (``kernel_size``,
        ``stride``, ``padding`` -- including ``"same"``/``"valid"`` --, ``dilation``,
        ``ceil_mode``, ``count_include_pad``, ``divisor_override``, ``norm_type``,
        ``output_size``), plus ``layout``.

    Returns
    -------
    Explanation
        ``.windows`` (one :class:`Window` per output cell, in scan order),
        ``.window(i, j)``, ``.summary()``, ``.table()``, ``.out_size``; ``print()`` it.

    Examples
    --------
    >>> import poolkit
    >>> print(poolkit.explain("max_pool2d", (4, 4), kernel_size=2).summary())
    max_pool2d on an input of spatial size (4, 4) -> output (2, 2) (4 windows)
      - H: 4 cells, kernel 2, stride 2, padding 0 -> 2 windows; every input cell is read
      - W: 4 cells, kernel 2, stride 2, padding 0 -> 2 windows; every input cell is read

    See Also
    --------
    plot_windows : draw the windows over the input grid.
    poolkit.geometry.make_geometry, poolkit.geometry.window_cells
    """
    fam, nd = _family_of(op_name)
    layout = arguments.pop("layout", None)
    allowed = _ARGUMENTS[fam]
    unknown = sorted(set(arguments) - set(allowed))
    if unknown:
        raise TypeError(f"explain: {op_name} takes no argument {unknown[0]!r} "
                        f"(its arguments: {', '.join(allowed)}, layout)")
    args = {**allowed, **arguments}
    for name in ("kernel_size", "norm_type", "output_size"):
        if name in allowed and allowed[name] is None and arguments.get(name) is None:
            raise TypeError(f"explain: {op_name} needs {name}=...")
    spatial = _spatial(input_shape, nd, layout, op_name)
    if fam.startswith(("adaptive", "global")):
        size = 1 if fam.startswith("global") else args["output_size"]
        return _explain_adaptive(op_name, G.make_adaptive_geometry(op_name, spatial, size), args,
                                 average="avg" in fam)
    if fam == "lp_pool":
        G.check_norm_type(args["norm_type"], op_name)
        g = G.make_geometry(op_name, spatial, args["kernel_size"], args["stride"], 0, 1, args["ceil_mode"])
        divisor = ("table", True, 0)
    elif fam == "avg_pool":
        cip = G.check_bool(args["count_include_pad"], "count_include_pad", op_name)
        override = G.check_divisor_override(args["divisor_override"], op_name)
        g = G.make_geometry(op_name, spatial, args["kernel_size"], args["stride"], args["padding"], 1,
                            args["ceil_mode"])
        divisor = ("table", cip, override)
    else:
        g = G.make_geometry(op_name, spatial, args["kernel_size"], args["stride"], args["padding"],
                            args["dilation"], args["ceil_mode"])
        divisor = None
    return _explain_windows(op_name, fam, g, args, divisor)


def _explain_windows(op, fam, g, args, divisor) -> Explanation:
    cells = G.window_cells(g)
    spans = G.window_extents(g)
    tables = G.avg_divisor_table(g, divisor[1]) if divisor else None
    windows = []
    for o in np.ndindex(*g.out_size):
        inside = [int(cells[i]["inside"][o[i]]) for i in range(g.nd)]
        pad = [int(cells[i]["padding"][o[i]]) for i in range(g.nd)]
        n_cells = math.prod(inside)
        not_over = math.prod(a + b for a, b in zip(inside, pad))
        div = None
        if divisor:
            div = divisor[2] or math.prod(int(tables[i][o[i]]) for i in range(g.nd))
        windows.append(Window(
            out_index=tuple(o),
            start=tuple(int(spans[i][0][o[i]]) for i in range(g.nd)),
            stop=tuple(int(spans[i][1][o[i]]) for i in range(g.nd)),
            bounds=tuple((int(cells[i]["first"][o[i]]), int(cells[i]["last"][o[i]]) + 1)
                         if inside[i] else (0, 0) for i in range(g.nd)),
            cells=n_cells, padding=not_over - n_cells, overhang=math.prod(g.kernel) - not_over, divisor=div))
    return Explanation(op, g, args, windows, _window_notes(fam, g, cells, divisor))


def _window_notes(fam, g, cells, divisor) -> list[str]:
    notes = []
    names = _DIM_NAMES[g.nd]
    for i in range(g.nd):
        L, k, s, p, d = g.in_size[i], g.kernel[i], g.stride[i], g.padding[i], g.dilation[i]
        pe = g.padding_end[i]
        eff = d * (k - 1) + 1
        out = g.out_size[i]
        if g.padding_mode == "same":
            pad = f"padding 'same' ({p} before, {pe} after: ceil({L}/{s}) = {out} windows need {p + pe} in all)"
        elif g.padding_mode == "valid":
            pad = "padding 'valid' (none)"
        else:
            pad = f"padding {p}"
        dil = f", dilation {d} (the window spans {eff} cells)" if d > 1 else ""
        line = f"{names[i]}: {L} cells, kernel {k}, stride {s}, {pad}{dil} -> {out} window{'s' if out != 1 else ''}"
        start = np.arange(out) * s - p
        unread = np.flatnonzero(~_cells_read(L, d, start, cells[i])).tolist()
        line += "; every input cell is read" if not unread else f"; input cells {unread} are never read"
        if g.padding_mode == "explicit":
            floor_n, ceil_n, dropped = G.ceil_mode_windows(L, k, s, p, d)
            if g.ceil_mode and ceil_n > floor_n:
                o = out - 1
                line += (f". ceil_mode added window {o} (starts at {start[o]}): it sticks out past the "
                         f"{'padded ' if p else ''}input and reads {int(cells[i]['inside'][o])} input cell(s)")
            elif not g.ceil_mode and ceil_n > floor_n:
                line += (f". Floor mode drops a last partial window at {floor_n * s - p}; "
                         f"ceil_mode=True would keep it")
            if dropped and g.ceil_mode:
                line += (f". ceil_mode's extra window would start at input position {ceil_n * s - p}, past "
                         f"the last input cell ({L - 1}), inside the right padding, so it is dropped "
                         f"(PyTorch's rule: a window must start in the input or the left padding)")
        notes.append(line)
    if fam == "max_pool" and any(g.padding + g.padding_end):
        notes.append("padding cells are -inf for a max: they never win")
    if divisor:
        _, cip, override = divisor
        if override:
            notes.append(f"divisor_override={override}: every sum is divided by {override}")
        elif fam == "lp_pool":
            notes.append("Lp: the sum of x**p over the real cells is divided by the cells read, then "
                         f"multiplied by the full kernel size {math.prod(g.kernel)} (PyTorch's formula)")
        elif g.padding_mode == "same":
            notes.append("padding='same': padded cells are never counted (count_include_pad is ignored)")
        elif any(g.padding):
            notes.append("count_include_pad=True: padding cells count in the divisor" if cip
                         else "count_include_pad=False: the divisor counts input cells only")
        if not override and any(int(c["overhang"].max(initial=0)) for c in cells):
            notes.append("cells of a ceil_mode window past the padded input are never counted in the divisor")
    return notes


def _cells_read(L, d, start, cells):
    """Which of the ``L`` input cells some window reads, in O(windows + L) whatever the kernel.

    A window reads every ``d``-th cell from ``first`` to ``last`` (geometry.window_cells);
    windows sharing a residue ``start mod d`` come in increasing order with
    non-decreasing ``first``/``last``, so each residue class is marked from where the
    previous window of that class stopped: every cell is set at most once.
    """
    read = np.zeros(L, dtype=bool)
    marked = {}  # residue -> last cell marked in that class
    for o in range(len(start)):
        if cells["inside"][o] == 0:
            continue
        first, last = int(cells["first"][o]), int(cells["last"][o])
        r = first % d
        a = max(first, marked.get(r, -1) + d) if r in marked else first
        if a <= last:
            read[a:last + 1:d] = True
            marked[r] = last
    return read


def _explain_adaptive(op, ag, args, average) -> Explanation:
    windows = []
    for o in np.ndindex(*ag.out_size):
        bounds = tuple(ag.bin(i, o[i]) for i in range(ag.nd))
        n = math.prod(b - a for a, b in bounds)
        windows.append(Window(tuple(o), tuple(a for a, _ in bounds), tuple(b for _, b in bounds), bounds,
                              n, 0, 0, n if average else None))
    notes = []
    for i, name in enumerate(_DIM_NAMES[ag.nd]):
        L, out = ag.in_size[i], ag.out_size[i]
        start, stop = ag.bins(i)
        sizes = sorted(set((stop - start).tolist()))
        line = (f"{name}: {L} cells into {out} bin{'s' if out != 1 else ''} "
                f"[floor(i*{L}/{out}), ceil((i+1)*{L}/{out})): starts {start.tolist()}, "
                f"sizes {(stop - start).tolist()}")
        if len(sizes) > 1:
            line += "; uneven"
        if out > 1 and np.any(start[1:] < stop[:-1]):
            line += "; neighbouring bins overlap"
        notes.append(line)
    if average:
        notes.append("the average divides by each bin's size, one dimension after the other (PyTorch's order)")
    return Explanation(op, ag, args, windows, notes)


# ------------------------------------------------------------------ plotting
def plot_windows(explanation, *, cells=None, ax=None, max_windows=16):
    """Draw the windows of a 1-d or 2-d :class:`Explanation` over the input grid.

    Input cells are white squares, padding cells grey, cells past the padded input
    hatched. Each window is outlined in its own colour (with dilation, its taps are
    marked with dots) and labelled with its output index.

    Parameters
    ----------
    explanation : Explanation
        From :func:`explain`.
    cells : list of tuples, optional
        Output indices whose windows to draw (default: all, up to ``max_windows``).
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt  # lazy: poolkit does not need matplotlib
    from matplotlib.patches import Rectangle

    e = explanation
    nd = len(e.in_size)
    if nd not in (1, 2):
        raise ValueError(f"plot_windows: draws 1-d and 2-d geometries, got {nd}-d {e.op}")
    g = e.geometry
    regular = isinstance(g, G.PoolGeometry)

    def two_d(t, fill):  # 1-d geometries are drawn as one row
        return (fill,) + tuple(t) if nd == 1 else tuple(t)

    size = two_d(e.in_size, 1)
    pad_end = two_d(g.padding_end, 0) if regular else (0, 0)
    lo = [min([0] + [two_d(w.start, 0)[i] for w in e.windows]) for i in range(2)]
    hi = [max([size[i]] + [two_d(w.stop, 1)[i] for w in e.windows]) for i in range(2)]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 0.45 * (hi[1] - lo[1]), 1.2 + 0.45 * (hi[0] - lo[0])))
    for r in range(lo[0], hi[0]):
        for c in range(lo[1], hi[1]):
            inside = 0 <= r < size[0] and 0 <= c < size[1]
            beyond = r >= size[0] + pad_end[0] or c >= size[1] + pad_end[1]
            ax.add_patch(Rectangle((c, r), 1, 1, facecolor="white" if inside else "none" if beyond else "0.85",
                                   edgecolor="0.6", hatch="//" if beyond else None, linewidth=0.8))
    chosen = [e.window(tuple(c) if isinstance(c, (tuple, list)) else (c,)) for c in cells] if cells \
        else e.windows[:max_windows]
    colours = plt.get_cmap("tab10")
    kernel = two_d(g.kernel, 1) if regular else None
    dil = two_d(g.dilation, 1) if regular else (1, 1)
    for j, w in enumerate(chosen):
        start, stop = two_d(w.start, 0), two_d(w.stop, 1)
        inset = 0.06 + 0.04 * (j % 4)
        col = colours(j % 10)
        ax.add_patch(Rectangle((start[1] + inset, start[0] + inset), stop[1] - start[1] - 2 * inset,
                               stop[0] - start[0] - 2 * inset, fill=False, edgecolor=col, linewidth=2))
        label = w.out_index if nd > 1 else w.out_index[0]
        ax.text(start[1] + inset + 0.05, start[0] + inset + 0.3, str(label), color=col, fontsize=8)
        if dil != (1, 1):  # a dilated window reads only these taps
            ys = [start[0] + a * dil[0] + 0.5 for a in range(kernel[0])]
            xs = [start[1] + b * dil[1] + 0.5 for b in range(kernel[1])]
            ax.plot([x for _ in ys for x in xs], [y for y in ys for _ in xs], "o", color=col, markersize=4)
    ax.set_xlim(lo[1] - 0.2, hi[1] + 0.2)
    ax.set_ylim(hi[0] + 0.2, lo[0] - 0.2)
    ax.set_aspect("equal")
    ax.set_xlabel("input column" if nd == 2 else "input position")
    if nd == 2:
        ax.set_ylabel("input row")
    else:
        ax.set_yticks([])
    ax.set_title(f"{e.op}: input {e.in_size} -> output {e.out_size}")
    return ax
