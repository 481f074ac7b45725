"""The shared rules of :mod:`poolkit.geometry`, directly: output size, ceil_mode, padding
limits, ``padding="same"``/``"valid"``, adaptive bins, average divisors, unpooling sizes,
the memo of validated geometries, and the small helpers the backends share.

Every backend (reference, cpu, gpu, dask) takes its geometry from these functions, so
the forward and backward tests check the rules once more, end to end; the examples here
are PyTorch's (and TensorFlow's, for the string paddings) worked by hand.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import poolkit
from poolkit import geometry as G


# ------------------------------------------------------------------ output size and ceil_mode
@pytest.mark.parametrize("L, k, s, p, d, floor, ceil", [
    (4, 2, 2, 0, 1, 2, 2),
    (5, 2, 2, 0, 1, 2, 3),    # ceil_mode adds a window that reads cell 4
    (6, 3, 2, 0, 1, 2, 3),
    (7, 3, 2, 1, 1, 4, 4),
    (50, 3, 2, 0, 1, 24, 25),
    (7, 3, 1, 0, 3, 1, 1),    # dilation 3: the window spans 7 cells
    (8, 3, 3, 1, 2, 2, 3),
])
def test_output_size_floor_and_ceil(L, k, s, p, d, floor, ceil):
    assert G.pool_output_size(L, k, s, p, d, False) == floor
    assert G.pool_output_size(L, k, s, p, d, True) == ceil
    assert G.ceil_mode_windows(L, k, s, p, d)[:2] == (floor, ceil)
    assert G.make_geometry("t", (L,), k, s, p, d).out_size == (floor,)
    assert G.make_geometry("t", (L,), k, s, p, d, True).out_size == (ceil,)


def test_ceil_mode_drops_a_window_that_would_start_in_the_right_padding():
    # L=5, k=2, s=2, p=1: ceil((5+2-2)/2)+1 = 4 windows, but the 4th would start at 6 - 1 = 5 >= L
    assert G.ceil_mode_windows(5, 2, 2, 1) == (3, 3, True)
    assert G.ceil_mode_windows(5, 2, 2, 0) == (2, 3, False)
    g = G.make_geometry("t", (5,), 2, 2, 1, 1, True)
    assert g.out_size == (3,) and G.window_range(2, 5, 2, 2, 1) == (3, [3, 4])


def test_stride_defaults_to_the_kernel_and_arguments_normalise():
    g = G.make_geometry("t", (6, 9), (2, 3))
    assert g.stride == (2, 3) and g.out_size == (3, 3) and g.padding == (0, 0) and g.dilation == (1, 1)
    assert G.make_geometry("t", (6, 9), (2, 3), ()).stride == (2, 3)
    assert G.normalize_tuple(2, 3, "kernel_size", "t", minimum=1) == (2, 2, 2)
    assert G.normalize_tuple((4,), 2, "kernel_size", "t", minimum=1) == (4, 4)
    assert G.normalize_tuple([3, np.int64(4)], 2, "stride", "t", minimum=1) == (3, 4)
    assert G.normalize_tuple(0, 1, "padding", "t", minimum=0) == (0,)
    with pytest.raises(TypeError, match="t: kernel_size must be an int or a sequence of 2 ints"):
        G.normalize_tuple(True, 2, "kernel_size", "t", minimum=1)
    with pytest.raises(ValueError, match="t: stride must be positive"):
        G.normalize_tuple((1, 0), 2, "stride", "t", minimum=1)
    with pytest.raises(ValueError, match=r"t: padding must be >= 0"):
        G.normalize_tuple(-1, 2, "padding", "t", minimum=0)


# ------------------------------------------------------------------ padding limits
def test_padding_is_at_most_half_the_kernel_not_the_dilated_window():
    assert G.make_geometry("t", (6,), 3, 1, 1).out_size == (6,)
    assert G.make_geometry("t", (6,), 2, 1, 1).out_size == (7,)         # 2 // 2 = 1
    assert G.make_geometry("t", (9,), 2, 1, 1, 3).out_size == (8,)      # dilated span 4, still p <= 1
    with pytest.raises(ValueError, match=r"padding must be at most half of kernel_size.*\(dimension 1: 2 > 3//2\)"):
        G.make_geometry("t", (6, 6), 3, 1, (1, 2))
    with pytest.raises(ValueError, match="larger than the padded input"):
        G.make_geometry("t", (2,), 5, 1, 1)  # 5 cells > 2 + 2*1
    with pytest.raises(ValueError, match="reads no input cell"):
        G.make_geometry("t", (2,), 2, 1, 1, 3)  # taps -1 and 2: both padding


# ------------------------------------------------------------------ "same" and "valid"
def test_valid_is_no_padding():
    g = G.make_geometry("t", (7, 8), 3, 2, "valid")
    assert g.padding == g.padding_end == (0, 0) and g.out_size == (3, 3) and g.padding_mode == "valid"
    with pytest.raises(ValueError, match="larger than the padded input"):
        G.make_geometry("t", (2,), 3, 1, "valid")


def test_same_gives_ceil_of_size_over_stride():
    for L in range(1, 12):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                g = G.make_geometry("t", (L,), k, s, "SAME")  # case-insensitive
                assert g.out_size == (-(-L // s),) and g.padding_mode == "same"
                total = max((g.out_size[0] - 1) * s + k - L, 0)
                assert g.padding[0] + g.padding_end[0] == total and g.padding_end[0] - g.padding[0] in (0, 1)
    assert G.same_padding((7,), (3,), (2,), (1,)) == ((1,), (1,))
    with pytest.raises(ValueError, match="ceil_mode=True cannot be combined with padding='same'"):
        G.make_geometry("t", (7,), 3, 2, "same", 1, True)
    with pytest.raises(ValueError, match="padding must be an int, a sequence of 1 ints, 'same' or 'valid'"):
        G.make_geometry("t", (7,), 3, 2, "full")


def test_same_padding_puts_the_odd_cell_at_the_end():
    g = G.make_geometry("t", (5, 6), 2, 1, "same")
    assert g.out_size == (5, 6) and g.padding == (0, 0) and g.padding_end == (1, 1)
    g = G.make_geometry("t", (7,), 3, 2, "same", 2)  # effective kernel 5: total 4, 2 + 2
    assert g.out_size == (4,) and g.padding == (2,) and g.padding_end == (2,)
    g = G.make_geometry("t", (6,), 4, 1, "same")  # total 3: 1 before, 2 after
    assert g.padding == (1,) and g.padding_end == (2,)
    assert [t.tolist() for t in G.avg_divisor_table(g, True)] == [[3, 4, 4, 4, 3, 2]]


# ------------------------------------------------------------------ average divisors
def test_avg_divisors_with_and_without_padding():
    g = G.make_geometry("t", (5,), 3, 2, 1)  # windows [-1, 2), [1, 4), [3, 6)
    assert [t.tolist() for t in G.avg_divisor_table(g, True)] == [[3, 3, 3]]
    assert [t.tolist() for t in G.avg_divisor_table(g, False)] == [[2, 3, 2]]


def test_avg_divisor_never_counts_a_ceil_mode_overhang():
    g = G.make_geometry("t", (5,), 2, 2, 0, 1, True)  # the third window is [4, 6): one cell, no padding
    assert [t.tolist() for t in G.avg_divisor_table(g, True)] == [[2, 2, 1]]
    g = G.make_geometry("t", (6,), 3, 2, 1, 1, True)  # windows from -1, 1, 3, 5; padded input [-1, 7)
    assert [t.tolist() for t in G.avg_divisor_table(g, True)] == [[3, 3, 3, 2]]
    assert [t.tolist() for t in G.avg_divisor_table(g, False)] == [[2, 3, 3, 1]]


def test_avg_divisor_is_a_product_over_dimensions_and_memoised_read_only():
    g = G.make_geometry("t", (3, 4), (2, 3), 1, (1, 1))
    rows, cols = G.avg_divisor_table(g, False)
    assert rows.tolist() == [1, 2, 2, 1] and cols.tolist() == [2, 3, 3, 2]
    tables = G.avg_divisors(g, False, np.dtype(np.float32))
    assert tables is G.avg_divisors(g, False, np.dtype(np.float32))
    assert all(t.dtype == np.float32 and not t.flags.writeable for t in tables)
    assert G.check_divisor_override(None, "t") == 0 and G.check_divisor_override(5, "t") == 5


# ------------------------------------------------------------------ adaptive bins
@pytest.mark.parametrize("L, out, starts, stops", [
    (4, 2, [0, 2], [2, 4]),                      # even: no overlap
    (5, 3, [0, 1, 3], [2, 4, 5]),                # uneven and overlapping
    (3, 5, [0, 0, 1, 1, 2], [1, 2, 2, 3, 3]),    # more bins than cells: cells repeat
    (7, 1, [0], [7]),                            # global
])
def test_adaptive_bins(L, out, starts, stops):
    a, b = G.adaptive_bins(L, out)
    assert a.tolist() == starts and b.tolist() == stops
    assert all(x < y for x, y in zip(a, b))      # never empty


def test_adaptive_geometry_keeps_a_size_for_none_and_allows_zero():
    ag = G.make_adaptive_geometry("t", (5, 7), (3, None))
    assert ag.out_size == (3, 7) and [ag.bin(1, o) for o in range(7)] == [(o, o + 1) for o in range(7)]
    assert [b.tolist() for b in ag.bins(1)] == [list(range(7)), list(range(1, 8))]
    assert G.make_adaptive_geometry("t", (5, 7), 0).out_size == (0, 0)
    with pytest.raises(ValueError, match="t: output_size must be >= 0"):
        G.make_adaptive_geometry("t", (5,), -1)
    with pytest.raises(TypeError, match="output_size must contain ints or None only"):
        G.make_adaptive_geometry("t", (5, 5), (2, 2.0))


# ------------------------------------------------------------------ unpooling, indices, windows
def test_unpool_output_size_default_and_explicit():
    assert G.unpool_output_size("t", (3,), 2, 2, 0, None) == (6,)       # (3-1)*2 + 2 - 0
    assert G.unpool_output_size("t", (3, 3), 3, 2, 1, None) == (5, 5)   # (3-1)*2 + 3 - 2
    assert G.unpool_output_size("t", (3,), 2, 2, 0, (7,)) == (7,)       # strictly inside (4, 8)
    assert G.unpool_output_size("t", (3,), 2, 2, 0, 5) == (5,)          # an int, for 1-d
    assert G.unpool_output_size("t", (3, 3), 2, None, 0, (1, 1, 6, 7)) == (6, 7)  # torch's N, C, H, W form
    # the full form is read in the layout's order: (N, H, W, C) channels-last, N and C not read
    assert G.unpool_output_size("t", (3, 3), 2, None, 0, (1, 6, 7, 5), channels_last=True) == (6, 7)
    assert G.unpool_output_size("t", (3, 3), 2, None, 0, (6, 7), channels_last=True) == (6, 7)
    assert G.unpool_output_size("t", (3,), 2, None, 0, [9, 7, 1], channels_last=True) == (7,)
    with pytest.raises(ValueError, match=r"invalid output_size \(1, 1, 6, 7\) \(N, H, W, C\): spatial dimension 0"):
        G.unpool_output_size("t", (3, 3), 2, None, 0, (1, 1, 6, 7), channels_last=True)
    with pytest.raises(ValueError, match=r"invalid output_size \(8,\): spatial dimension 0 must be strictly between 4 and 8"):
        G.unpool_output_size("t", (3,), 2, 2, 0, (8,))
    with pytest.raises(ValueError, match="is empty along spatial dimension 0"):
        G.unpool_output_size("t", (1,), 2, 1, 1, None)


def test_check_index_range():
    G.check_index_range(0, 8, 9, "t")
    with pytest.raises(ValueError, match=r"t: indices must lie in \[0, 9\) .* from -1 to 3"):
        G.check_index_range(-1, 3, 9, "t")
    with pytest.raises(ValueError, match=r"t: idx must lie in \[0, 9\)"):
        G.check_index_range(0, 9, 9, "t", name="idx")


def test_window_range_and_covering_windows():
    assert G.window_range(0, 5, 3, 2, 1) == (-1, [0, 1])          # the first tap is padding
    assert G.window_range(1, 7, 3, 2, 0, 3) == (2, [2, 5])        # dilated: 8 is past the input
    g = G.make_geometry("t", (7,), 3, 2, 1)
    (start, stop), = G.window_extents(g)
    assert start.tolist() == [-1, 1, 3, 5] and stop.tolist() == [2, 4, 6, 8]
    lo, hi = G.covering_windows(start, stop, 7)
    for i in range(7):  # each input cell is covered exactly by the windows [lo, hi)
        assert [o for o in range(4) if start[o] <= i < stop[o]] == list(range(lo[i], hi[i]))


def test_with_unit_dims_adds_neutral_leading_dimensions():
    g = G.make_geometry("max_pool1d", (7,), 3, 2, 1, 2, True)
    h = G.with_unit_dims(g, 3)
    assert h.in_size == (1, 1, 7) and h.out_size == (1, 1) + g.out_size
    assert h.kernel == (1, 1, 3) and h.stride == (1, 1, 2) and h.dilation == (1, 1, 2)
    assert h.padding == h.padding_end == (0, 0, 1) and h.ceil_mode and h.op == "max_pool1d"
    assert G.with_unit_dims(g, 1) == g
    s = G.with_unit_dims(G.make_geometry("t", (6,), 4, 1, "same"), 2)
    assert s.padding == (0, 1) and s.padding_end == (0, 2) and s.padding_mode == "same"
    with pytest.raises(ValueError, match="with_unit_dims: geometry has 3 dims, more than 2"):
        G.with_unit_dims(h, 2)


def test_max_identity_and_checks():
    assert G.max_identity(np.float32) == -np.inf and G.max_identity(np.float32).dtype == np.float32
    assert G.max_identity(np.int8) == -128 and G.max_identity(np.uint8) == 0
    assert G.check_norm_type(2, "t") == 2.0 and G.check_norm_type(float("inf"), "t") == float("inf")
    with pytest.raises(ValueError, match="norm_type must be non-zero and not NaN"):
        G.check_norm_type(float("nan"), "t")
    assert G.check_layout("nhwc", 2, "t") is True and G.check_layout("NCL", 1, "t") is False
    assert G.check_input((2, 3, 5), np.float32, 1, "NCL", "t", allow_int=False) == (False, True, (5,))
    assert G.check_input((5, 4, 3), np.int8, 2, "NHWC", "t", allow_int=True) == (True, False, (5, 4))


def test_empty_inputs_rule():
    """N = 0 for every op; C = 0 for adaptive pooling and unpooling only (PyTorch refuses it for
    max/avg/Lp pooling); every spatial size positive (tests/test_torch.py compares with PyTorch)."""
    takes = ["adaptive_avg_pool1d", "adaptive_max_pool3d_backward", "global_avg_pool2d",
             "global_max_pool2d_backward", "max_unpool2d", "max_unpool3d_backward"]
    refuses = ["max_pool2d", "avg_pool1d_backward", "lp_pool3d", "max_pool3d_backward"]
    assert all(G.takes_zero_channels(op) for op in takes)
    assert not any(G.takes_zero_channels(op) for op in refuses)
    for op in takes:
        assert G.check_input((0, 7), np.float32, 1, "NCL", op, allow_int=False) == (False, False, (7,))
        assert G.check_input((2, 7, 0), np.float32, 1, "NLC", op, allow_int=False) == (True, True, (7,))
        with pytest.raises(ValueError, match=r"non-zero channel and spatial sizes \(NCL\), got shape \(2, 0\)$"):
            G.check_input((2, 0), np.float32, 1, "NCL", op, allow_int=False)
    for op in refuses:
        assert G.check_input((0, 2, 7), np.float32, 1, "NCL", op, allow_int=False)[2] == (7,)
        with pytest.raises(ValueError, match="only adaptive pooling and unpooling take zero channels"):
            G.check_input((0, 7), np.float32, 1, "NCL", op, allow_int=False)


# ------------------------------------------------------------------ the memo of validated geometries
def test_memoised_geometry_keeps_validating():
    """make_geometry caches results by argument value *and type*: a cached (2, 2)
    must not let (2.0, 2), True or a bool ceil_mode look-alike through."""
    x = np.ones((1, 1, 6, 6), np.float32)
    poolkit.max_pool2d(x, (2, 2), 1)
    poolkit.max_pool2d(x, 1, 1)
    with pytest.raises(TypeError, match="kernel_size must contain ints"):
        poolkit.max_pool2d(x, (2.0, 2), 1)
    with pytest.raises(TypeError, match="kernel_size"):
        poolkit.max_pool2d(x, True, 1)
    with pytest.raises(TypeError, match="ceil_mode must be a bool"):
        poolkit.max_pool2d(x, 2, ceil_mode=1)
    # lists are not hashable: validated uncached, same answer as the tuple
    np.testing.assert_array_equal(poolkit.max_pool2d(x, [2, 2], [1, 1]), poolkit.max_pool2d(x, (2, 2), (1, 1)))
    g = G.make_geometry("max_pool2d", (6, 6), np.int64(2))
    assert g is G.make_geometry("max_pool2d", (6, 6), np.int64(2))
    tables = G.avg_divisors(g, True, np.dtype(np.float32))
    assert all(not t.flags.writeable for t in tables)


# ------------------------------------------------------------------ O(1) window rules vs brute force
def _brute_taps(start, L, k, d):
    return [start + j * d for j in range(k) if 0 <= start + j * d < L]


def _brute_missing(L, k, s, p, d, out):
    """The old O(out * k) check: the first window that reads no input cell, or -1."""
    for o in range(out):
        if not _brute_taps(o * s - p, L, k, d):
            return o
    return -1


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 12), st.integers(1, 9), st.integers(1, 7), st.integers(0, 5), st.integers(1, 9),
       st.booleans(), st.booleans())
def test_missing_window_rule_matches_brute_force(L, k, s, p, d, ceil_mode, same):
    """make_geometry's O(1) check (first_window_missing_input, proven for L >= d in its
    docstring) refuses exactly the geometries in which the brute-force rule finds a
    window reading no input cell; explicit and 'same' padding."""
    if same:
        assume(not ceil_mode)
        (p,), (pe,) = G.same_padding((L,), (k,), (s,), (d,))
        out = -(-L // s)
        padding = "same"
    else:
        assume(p <= k // 2)
        out = G.pool_output_size(L, k, s, p, d, ceil_mode)
        assume(out >= 1)
        padding = p
    brute = _brute_missing(L, k, s, p, d, out)
    assert G.first_window_missing_input(L, k, s, p, d, out) == brute
    if L >= d:
        assert brute == -1  # the proof's claim
    if brute >= 0:
        with pytest.raises(ValueError, match=f"window at output position {brute} .* reads no input cell"):
            G.make_geometry("t", (L,), k, s, padding, d, ceil_mode)
    else:
        assert G.make_geometry("t", (L,), k, s, padding, d, ceil_mode).out_size == (out,)


@settings(max_examples=300, deadline=None)
@given(st.integers(-40, 40), st.integers(1, 30), st.integers(1, 30), st.integers(1, 6))
def test_tap_range_and_window_range_match_brute_force(start, L, k, d):
    j0, j1 = G.tap_range(start, L, k, d)
    assert [start + j * d for j in range(j0, j1)] == _brute_taps(start, L, k, d)
    s, p = 3, 0
    o = max(start, 0) // s
    assert G.window_range(o, L, k, s, p, d) == (o * s, _brute_taps(o * s, L, k, d))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.integers(1, 25), st.integers(1, 6), st.integers(0, 12), st.integers(1, 4),
       st.booleans(), st.booleans())
def test_window_cells_match_the_taps_counted_one_by_one(L, k, s, p, d, ceil_mode, same):
    padding = "same" if same else p
    assume(not (same and ceil_mode))
    try:
        g = G.make_geometry("t", (L,), k, s, padding, d, ceil_mode)
    except ValueError:
        return
    (cells,) = G.window_cells(g)
    pe = g.padding_end[0]
    for o in range(g.out_size[0]):
        taps = [o * g.stride[0] - g.padding[0] + j * d for j in range(k)]
        inside = [t for t in taps if 0 <= t < L]
        assert cells["inside"][o] == len(inside)
        assert cells["first"][o] == (inside[0] if inside else -1)
        assert cells["last"][o] == (inside[-1] if inside else -1)
        assert cells["overhang"][o] == sum(t >= L + pe for t in taps)
        assert cells["padding"][o] == sum((t < 0 or L <= t < L + pe) for t in taps)


def test_checks_are_independent_of_the_window_count():
    """Probe 5 of issue 13: 100,000 cells, kernel 5000, dilation 2 (was a Python loop
    over every output and tap, ~60 s); the geometry is now O(1) per dimension."""
    import time
    t = time.perf_counter()
    g = G.make_geometry("max_pool1d", (100_000,), 5000, 1, 0, 2)
    G.make_geometry("max_pool1d", (100_000,), 5000, 1, 2500, 2, True)
    G.make_geometry("max_pool1d", (100_000,), 5000, 1, "same", 3)
    assert G.window_range(50_000, 100_000, 5000, 1, 0, 2)[1][-1] == 50_000 + 4999 * 2
    assert time.perf_counter() - t < 0.5
    assert g.out_size == (100_000 - 9998,)


def test_adaptive_geometry_costs_no_memory_per_bin():
    import tracemalloc
    tracemalloc.start()
    ag = G.make_adaptive_geometry("t", (8, 8), (10**7, 1))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000 and ag.bin(0, 10**7 - 1) == (7, 8)
    a, b = G.adaptive_bins(2**40, 2**23)       # i*L overflows nothing (would be 2**63)
    assert a[-1] == 2**40 - 2**17 and b[-1] == 2**40
    L, out = 3 * 2**42 + 1, 2**20                 # i*L >= 2**62: the exact (object) path
    big = G.adaptive_bins(L, out)
    ag = G.AdaptiveGeometry("t", (L,), (out,))
    assert all((big[0][o], big[1][o]) == ag.bin(0, o) for o in (0, 1, 12345, out - 1))


def test_large_window_rule():
    g = G.make_geometry("t", (8, 8), (10**8 + 1, 3), 1, (5 * 10**7, 1))
    assert G.large_window(g)
    span_limit = 2 * 8 + G.LARGE_WINDOW_SLACK
    assert not G.large_window(G.make_geometry("t", (8,), span_limit, 1, span_limit // 2))
    assert G.large_window(G.make_geometry("t", (8,), span_limit + 1, 1, (span_limit + 1) // 2))
    # dilation counts: (k-1)*d + 1 = 147 > 2*40 + 64 = 144 (a ceil_mode window, huge stride)
    assert G.large_window(G.make_geometry("t", (40,), 3, 1000, 0, 73, True))
    assert not G.large_window(G.make_geometry("t", (40,), 3, 1000, 0, 71, True))  # 143 cells
