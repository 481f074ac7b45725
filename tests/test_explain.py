"""Explain mode: every number an explanation gives agrees with what the kernels compute."""
import importlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import poolkit
from poolkit import geometry as G
from poolkit.explain import Explanation, Window


@st.composite
def regular_case(draw, nd):
    k = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    if draw(st.integers(0, 3)) == 0:
        padding = draw(st.sampled_from(["same", "valid"]))
    else:
        padding = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    ceil_mode = padding != "same" and draw(st.booleans())
    spatial = tuple(draw(st.integers(1, 8)) for _ in range(nd))
    try:
        G.make_geometry("t", spatial, k, s, padding, 1, ceil_mode)
    except ValueError:
        assume(False)
    return spatial, dict(kernel_size=k, stride=s, padding=padding, ceil_mode=ceil_mode)


@pytest.mark.parametrize("nd", [1, 2])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_windows_agree_with_the_kernels(nd, data):
    spatial, kw = data.draw(regular_case(nd))
    cip = data.draw(st.booleans())
    e = poolkit.explain(f"avg_pool{nd}d", spatial, count_include_pad=cip, **kw)
    avg = getattr(poolkit, f"avg_pool{nd}d")
    ones = np.ones((1, 1) + spatial)
    means = avg(ones, count_include_pad=cip, **kw)[0, 0]
    if nd > 1:  # (avg_pool1d has no divisor_override)
        sums = avg(ones, count_include_pad=cip, divisor_override=1, **kw)[0, 0]
    assert e.out_size == means.shape
    k = int(np.prod(kw["kernel_size"]))
    for w in e.windows:
        assert w.cells + w.padding + w.overhang == k
        # the kernel's average of ones is cells / divisor
        assert means[w.out_index] == pytest.approx(w.cells / w.divisor)
        if nd > 1:  # with divisor_override=1 the kernel returns the number of cells read
            assert sums[w.out_index] == w.cells
    # the last cell of each window is where a max over increasing values lands
    x = np.arange(np.prod(spatial), dtype=np.float64).reshape((1, 1) + spatial)
    _, idx = getattr(poolkit, f"max_pool{nd}d")(x, return_indices=True, **kw)
    for w in e.windows:
        last = tuple(b - 1 for _, b in w.bounds)
        assert idx[(0, 0) + w.out_index] == np.ravel_multi_index(last, spatial)
        assert all(a <= b for a, b in w.bounds) and all(s <= a for s, (a, _) in zip(w.start, w.bounds))


@settings(max_examples=30, deadline=None)
@given(L=st.integers(1, 9), out=st.integers(1, 9))
def test_adaptive_windows_are_the_bins(L, out):
    e = poolkit.explain("adaptive_avg_pool1d", (L,), output_size=out)
    starts, stops = G.adaptive_bins(L, out)
    assert [w.bounds[0] for w in e.windows] == list(zip(starts.tolist(), stops.tolist()))
    means = poolkit.adaptive_avg_pool1d(np.arange(L, dtype=np.float64)[None, None], out)[0, 0]
    for w, m in zip(e.windows, means):
        a, b = w.bounds[0]
        assert m == pytest.approx(np.arange(a, b).mean()) and w.divisor == b - a
    if out > 1 and np.any(starts[1:] < stops[:-1]):
        assert "overlap" in e.summary()


def test_ceil_mode_notes_say_what_happened():
    added = poolkit.explain("max_pool1d", (5,), kernel_size=2, stride=2, ceil_mode=True)
    assert added.out_size == (3,) and "ceil_mode added window 2 (starts at 4)" in added.summary()
    assert added.window(2) == Window((2,), (4,), (6,), ((4, 5),), 1, 0, 1, None)
    dropped = poolkit.explain("max_pool1d", (5,), kernel_size=2, stride=2, padding=1, ceil_mode=True)
    assert dropped.out_size == (3,) and "so it is dropped" in dropped.summary()
    floor = poolkit.explain("max_pool1d", (5,), kernel_size=2, stride=2)
    assert floor.out_size == (2,) and "ceil_mode=True would keep it" in floor.summary()
    assert "input cells [4] are never read" in floor.summary()


def test_same_padding_and_divisor_notes():
    e = poolkit.explain("avg_pool2d", (5, 6), kernel_size=4, stride=1, padding="same")
    assert "1 before, 2 after" in e.summary() and "count_include_pad is ignored" in e.summary()
    corner = e.window(0, 0)
    assert corner.bounds == ((0, 3), (0, 3)) and corner.divisor == 9 and corner.padding == 7
    e = poolkit.explain("avg_pool2d", (4, 4), kernel_size=3, padding=1, divisor_override=2)
    assert all(w.divisor == 2 for w in e.windows) and "divisor_override=2" in e.summary()
    e = poolkit.explain("lp_pool1d", (7,), norm_type=2, kernel_size=3, ceil_mode=True)
    assert e.window(2).divisor == 1 and "full kernel size 3" in e.summary()


def test_input_shape_may_be_the_whole_array_shape():
    a = poolkit.explain("max_pool2d", (2, 3, 7, 5), kernel_size=3)
    b = poolkit.explain("max_pool2d", (2, 7, 5, 3), kernel_size=3, layout="NHWC")
    c = poolkit.explain("max_pool2d", (7, 5), kernel_size=3)
    assert a.windows == b.windows == c.windows and a.in_size == (7, 5)


def test_dilation_and_3d_and_global():
    e = poolkit.explain("max_pool1d", (7,), kernel_size=3, stride=2, dilation=3)
    assert e.out_size == (1,) and e.window(0).bounds == ((0, 7),) and e.window(0).cells == 3
    assert "input cells [1, 2, 4, 5] are never read" in e.summary()
    e = poolkit.explain("avg_pool3d", (3, 4, 5), kernel_size=2, ceil_mode=True)
    corner = e.window(1, 1, 2)  # D 2..2, H 2..3, W 4..4 of a 2x2x2 window
    assert e.out_size == (2, 2, 3) and corner.cells == 2 and corner.overhang == 6 and corner.divisor == 2
    e = poolkit.explain("global_max_pool2d", (3, 4))
    assert e.out_size == (1, 1) and e.window(0, 0).cells == 12


def test_printing():
    e = poolkit.explain("avg_pool2d", (9, 9), kernel_size=1)
    text = str(e)
    assert text.startswith(e.summary()) and "out (0, 0): reads H 0..0, W 0..0 (1 cell), divisor 1" in text
    assert "... 17 more" in text and len(e.table(limit=None).splitlines()) == 81


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: poolkit.explain("mean_pool2d", (4, 4), kernel_size=2), ValueError, "op_name must be one of"),
    (lambda: poolkit.explain(2, (4, 4)), TypeError, "op_name must be a string"),
    (lambda: poolkit.explain("max_pool2d", (4, 4)), TypeError, "needs kernel_size"),
    (lambda: poolkit.explain("max_pool2d", (4, 4), kernel_size=2, count_include_pad=True), TypeError,
     "takes no argument 'count_include_pad'"),
    (lambda: poolkit.explain("max_pool2d", "4x4", kernel_size=2), TypeError, "input_shape must be a tuple"),
    (lambda: poolkit.explain("max_pool2d", (4, 0), kernel_size=2), ValueError, "input_shape must be positive"),
    (lambda: poolkit.explain("max_pool2d", (4, 4), kernel_size=2, padding=2), ValueError,
     "padding must be at most half of kernel_size"),
    (lambda: poolkit.explain("adaptive_avg_pool2d", (4, 4), output_size=-1), ValueError, "output_size must be >= 0"),
    (lambda: poolkit.explain("lp_pool2d", (4, 4), norm_type=0, kernel_size=2), ValueError, "norm_type"),
])
def test_bad_arguments(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


def test_plot_windows_draws_grid_and_windows():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    e = poolkit.explain("max_pool2d", (4, 5), kernel_size=3, stride=2, padding=1, ceil_mode=True)
    ax = poolkit.plot_windows(e)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    # grid: rows and columns -1..5 (padding, and the ceil_mode overhang of the last row of
    # windows); plus one outline per window
    assert len(rects) == 7 * 7 + len(e.windows)
    assert ax.get_title() == "max_pool2d: input (4, 5) -> output (3, 3)" and ax.get_xlabel() == "input column"
    ax = poolkit.plot_windows(poolkit.explain("max_pool1d", (6,), kernel_size=2, dilation=2), cells=[0])
    assert len(ax.lines) == 1  # the dilated taps are marked
    with pytest.raises(ValueError, match="draws 1-d and 2-d"):
        poolkit.plot_windows(poolkit.explain("max_pool3d", (2, 2, 2), kernel_size=1))
    plt.close("all")


def test_import_poolkit_does_not_import_matplotlib():
    code = "import sys, poolkit; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_module_doctests():
    import doctest

    module = importlib.import_module("poolkit.explain")
    assert isinstance(poolkit.explain(  # the function, not the module, is poolkit.explain
        "max_pool1d", (2,), kernel_size=1), Explanation)
    assert doctest.testmod(module).failed == 0
