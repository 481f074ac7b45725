"""``nan_policy="omit"``: NaN cells (nodata) skipped, on every CPU kernel and on Dask.

The rule (:func:`poolkit.geometry.check_nan_policy`): a window's max is over its
valid cells (ties: the first; no valid cell: propagate's answer, the last NaN and its
index); an average divides the valid cells' sum by their count, plus the padding
cells when ``count_include_pad`` (or by ``divisor_override``); adaptive averages
divide once by the valid count. Backward passes follow the same rule: max routes to
the omit argmax, an average spreads ``grad / divisor`` over the valid cells only.

Every result must equal ``poolkit.reference`` bit for bit (the plain loops are the
specification), and ``np.nanmax`` / ``np.nanmean`` on non-overlapping windows. The
inputs are mostly NaN on purpose: windows with no valid cell, a single valid cell,
or all valid are all common. GPU runs are in tests/test_gpu.py.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import poolkit
from backends import examples, float_dtypes, run, with_nd
from poolkit import cpu
from poolkit import reference as R
from strategies import adaptive_problem, nan_patterns, nodata, random_grad, window_problem

#: The property tests run the serial twins (every dtype and array layout they draw is
#: one more compile); the prange twins, the same source, compile slowly (seconds per
#: kernel and signature), so test_parallel_twins_agree runs each of them once, on
#: C-contiguous float32 input in both layouts.
SERIAL = ["cpu-serial"]


def settings_for(backend):
    return examples(backend, on_cpu=25, on_gpu=4)


def assert_bitwise(got, want):
    """Same shape, dtype and bits: NaN positions, values, signs of zero and each NaN's bits."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype, want.shape, want.dtype)
    np.testing.assert_array_equal(got, want)
    if got.dtype.kind == "f":
        u = np.dtype(f"u{got.dtype.itemsize}")
        np.testing.assert_array_equal(np.ascontiguousarray(got).view(u), np.ascontiguousarray(want).view(u))


# ------------------------------------------------------------------ forward, against the reference
@pytest.mark.parametrize("nd, backend", with_nd(SERIAL))
def test_max_omit_matches_reference(nd, backend):
    @settings_for(backend)
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op="max", dtypes=float_dtypes(backend), allow_nan=False))
        x = nodata(x, data)
        name = f"max_pool{nd}d"
        want, want_idx = getattr(R, name)(x, return_indices=True, layout=layout, nan_policy="omit", **kw)
        got, idx = run(backend, name, x, return_indices=True, layout=layout, nan_policy="omit", **kw)
        assert_bitwise(got, want)
        assert_bitwise(idx, want_idx)
        assert_bitwise(run(backend, name, x, layout=layout, nan_policy="omit", **kw), want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd(SERIAL))
def test_avg_omit_matches_reference(nd, backend):
    @settings_for(backend)
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op="avg", dtypes=float_dtypes(backend), allow_nan=False))
        x = nodata(x, data)
        name = f"avg_pool{nd}d"
        with np.errstate(invalid="ignore", divide="ignore"):
            want = getattr(R, name)(x, layout=layout, nan_policy="omit", **kw)
        assert_bitwise(run(backend, name, x, layout=layout, nan_policy="omit", **kw), want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd(SERIAL))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_omit_matches_reference(kind, nd, backend):
    @settings_for(backend)
    @given(st.data())
    def check(data):
        x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=float_dtypes(backend), allow_nan=False))
        x = nodata(x, data)
        name = f"adaptive_{kind}_pool{nd}d"
        if kind == "max":
            want, want_idx = getattr(R, name)(x, out_size, True, layout=layout, nan_policy="omit")
            got, idx = run(backend, name, x, out_size, True, layout=layout, nan_policy="omit")
            assert_bitwise(idx, want_idx)
        else:
            want = getattr(R, name)(x, out_size, layout=layout, nan_policy="omit")
            got = run(backend, name, x, out_size, layout=layout, nan_policy="omit")
        assert_bitwise(got, want)

    check()


# ------------------------------------------------------------------ backward, against the reference
@pytest.mark.parametrize("nd, backend", with_nd(SERIAL))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_window_backward_omit_matches_reference(kind, nd, backend):
    @settings_for(backend)
    @given(st.data())
    def check(data):
        x, kw, layout = data.draw(window_problem(nd, op=kind, dtypes=float_dtypes(backend), allow_nan=False))
        x = nodata(x, data)
        fwd = getattr(R, f"{kind}_pool{nd}d")(x, layout=layout, nan_policy="omit", **kw)
        g = random_grad(fwd.shape, x.dtype, data.draw(st.integers(0, 99)))
        name = f"{kind}_pool{nd}d_backward"
        want = getattr(R, name)(g, x, layout=layout, nan_policy="omit", **kw)
        assert_bitwise(run(backend, name, g, x, layout=layout, nan_policy="omit", **kw), want)
        if kind == "max":  # with the forward's indices: the same routing
            _, idx = getattr(R, f"max_pool{nd}d")(x, return_indices=True, layout=layout, nan_policy="omit",
                                                  **kw)
            assert_bitwise(run(backend, name, g, x, indices=idx, layout=layout, nan_policy="omit", **kw), want)

    check()


@pytest.mark.parametrize("nd, backend", with_nd(SERIAL))
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_adaptive_backward_omit_matches_reference(kind, nd, backend):
    @settings_for(backend)
    @given(st.data())
    def check(data):
        x, out_size, layout = data.draw(adaptive_problem(nd, dtypes=float_dtypes(backend), allow_nan=False))
        x = nodata(x, data)
        fwd = getattr(R, f"adaptive_{kind}_pool{nd}d")(x, out_size, layout=layout, nan_policy="omit")
        g = random_grad(fwd.shape, x.dtype, data.draw(st.integers(0, 99)))
        name = f"adaptive_{kind}_pool{nd}d_backward"
        want = getattr(R, name)(g, x, out_size, layout=layout, nan_policy="omit")
        assert_bitwise(run(backend, name, g, x, out_size, layout=layout, nan_policy="omit"), want)

    check()


@pytest.mark.parametrize("backend", SERIAL)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_global_omit(kind, layout, backend):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 6, 4)).astype(np.float32)
    x[rng.random(x.shape) < 0.6] = np.nan
    x[1] = np.nan  # a whole sample of nodata
    name = f"global_{kind}_pool2d"
    want = getattr(R, name)(x, layout=layout, nan_policy="omit")
    assert_bitwise(run(backend, name, x, layout=layout, nan_policy="omit"), want)
    g = random_grad(want.shape, x.dtype, 0)
    assert_bitwise(run(backend, name + "_backward", g, x, layout=layout, nan_policy="omit"),
                   getattr(R, name + "_backward")(g, x, layout=layout, nan_policy="omit"))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_parallel_twins_agree(layout):
    """Every omit kernel's prange twin gives its serial twin's bits (forward and backward)."""
    rng = np.random.default_rng(5)
    cl = layout == "NHWC"
    for nd, shape, kw in [(2, (3, 4, 11, 13), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                          (1, (3, 4, 17), dict(kernel_size=4, stride=3, padding=2)),
                          (3, (2, 3, 5, 6, 7), dict(kernel_size=2, stride=(1, 2, 2), padding=1))]:
        lay = {1: "NCL", 2: "NCHW", 3: "NCDHW"}[nd] if not cl else {1: "NLC", 2: "NHWC", 3: "NDHWC"}[nd]
        x = rng.standard_normal((shape[0],) + shape[2:] + (shape[1],) if cl else shape).astype(np.float32)
        x[rng.random(x.shape) < 0.6] = np.nan
        calls = [(f"max_pool{nd}d", (x,), dict(kw, return_indices=True)),
                 (f"avg_pool{nd}d", (x,), dict(kw, count_include_pad=nd != 1)),
                 (f"adaptive_max_pool{nd}d", (x, 3), dict(return_indices=True)),
                 (f"adaptive_avg_pool{nd}d", (x, 3), {})]
        for name, args, kwargs in calls:
            with np.errstate(invalid="ignore", divide="ignore"):
                serial = run("cpu-serial", name, *args, layout=lay, nan_policy="omit", **kwargs)
                parallel = run("cpu", name, *args, layout=lay, nan_policy="omit", **kwargs)
            for u, v in zip(parallel, serial) if isinstance(serial, tuple) else [(parallel, serial)]:
                assert_bitwise(u, v)


# ------------------------------------------------------------------ what omit means, by example
def test_omit_is_nanmax_and_nanmean_on_tiles():
    """Non-overlapping windows: omit is NumPy's nan-reductions over each tile (nanmean: to a few ulp,
    since NumPy sums pairwise; max bit for bit)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 12, 20)).astype(np.float64)
    x[rng.random(x.shape) < 0.5] = np.nan
    x[0, 0, :4, :4] = np.nan  # an all-nodata tile
    tiles = x.reshape(2, 3, 3, 4, 5, 4)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        want_max, want_mean = np.nanmax(tiles, axis=(3, 5)), np.nanmean(tiles, axis=(3, 5))
    np.testing.assert_array_equal(poolkit.max_pool2d(x, 4, nan_policy="omit"), want_max)
    np.testing.assert_allclose(poolkit.avg_pool2d(x, 4, nan_policy="omit"), want_mean, rtol=1e-14, atol=1e-15)
    assert np.isnan(poolkit.max_pool2d(x, 4, nan_policy="omit")[0, 0, 0, 0])


def test_omit_rules_by_hand():
    nan = np.nan
    x = np.array([[[nan, 1., 2., nan],
                   [nan, nan, 5., nan],
                   [nan, nan, nan, nan],
                   [nan, nan, nan, -0.]]], np.float32)
    out, idx = poolkit.max_pool2d(x, 2, return_indices=True, nan_policy="omit")
    np.testing.assert_array_equal(out, [[[1., 5.], [nan, -0.]]])
    np.testing.assert_array_equal(idx, [[[1, 6], [13, 15]]])  # all-NaN window: its last cell, as propagate
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, nan_policy="omit"), [[[1., 3.5], [nan, -0.]]])
    # 3x3 s2 p1: the window of output (0, 0) has 5 padding cells and one valid cell (1.0)
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 3, 2, 1, nan_policy="omit")[0, 0, 0], np.float32(1 / 6))
    np.testing.assert_array_equal(
        poolkit.avg_pool2d(x, 3, 2, 1, count_include_pad=False, nan_policy="omit")[0, 0, 0], 1.0)
    # padding cells are valid zeros when counted: an all-NaN window with padding averages to 0
    assert poolkit.avg_pool2d(x, 3, 2, 1, nan_policy="omit")[0, 1, 0] == 0
    assert np.isnan(poolkit.avg_pool2d(x, 3, 2, 1, count_include_pad=False, nan_policy="omit")[0, 1, 0])
    # divisor_override replaces the count
    np.testing.assert_array_equal(poolkit.avg_pool2d(x, 2, divisor_override=4, nan_policy="omit"),
                                  [[[0.25, 1.75], [0., -0.]]])
    np.testing.assert_array_equal(poolkit.adaptive_avg_pool2d(x, 1, nan_policy="omit"),
                                  [[[np.float32(8.) / 4]]])
    # the gradient of an omitted cell is zero; valid cells share grad / count
    g = np.ones((1, 2, 2), np.float32)
    np.testing.assert_array_equal(poolkit.avg_pool2d_backward(g, x, 2, nan_policy="omit"),
                                  [[[0, 1, .5, 0], [0, 0, .5, 0], [0, 0, 0, 0], [0, 0, 0, 1]]])


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("layout", ["NCL", "NLC"])
def test_omit_window_without_valid_cell_gives_propagates_last_nan(layout, parallel):
    """A window of NaNs only gives what propagate gives: its last NaN, bits and index,
    also where it runs into padding at either end (k3 s2 p1 with ceil_mode: windows
    [pad, 0, 1], [1, 2, 3], [3, pad, pad]). Padding holds the kernels' starting NaN:
    read after a window's cells, it would replace the window's last NaN."""
    a, b, c = nan_patterns(np.float32)
    x = np.array([[[a, c, a, b]]], np.float32)  # NumPy's NaN, a payload, NumPy's, a signed one
    x = x if layout == "NCL" else np.moveaxis(x, 1, -1)
    bits = [c.view(np.uint32), b.view(np.uint32), b.view(np.uint32)]
    for policy in ("omit", "propagate"):
        kw = dict(layout=layout, nan_policy=policy, parallel=parallel)
        out, idx = cpu.max_pool1d(x, 3, 2, 1, ceil_mode=True, return_indices=True, **kw)
        assert out.view(np.uint32).ravel().tolist() == bits and idx.ravel().tolist() == [1, 3, 3]
        out = cpu.max_pool1d(x, 3, 2, 1, ceil_mode=True, **kw)
        assert out.view(np.uint32).ravel().tolist() == bits
        h = 1 if layout == "NCL" else 0
        row = np.expand_dims(x, 1 + h)
        for plane in (row, np.concatenate([np.full_like(row, a), row], axis=1 + h)):  # 1 and 2 rows
            lay2, rows = ("NCHW" if layout == "NCL" else "NHWC"), plane.shape[1 + h]
            for ri in (False, True):
                out = cpu.max_pool2d(plane, (rows, 3), (rows, 2), (0, 1), ceil_mode=True, return_indices=ri,
                                     layout=lay2, nan_policy=policy, parallel=parallel)
                assert (out[0] if ri else out).view(np.uint32).ravel().tolist() == bits
                if ri:
                    assert out[1].ravel().tolist() == [4 * (rows - 1) + i for i in (1, 3, 3)]


#: (kind, kwargs): windows with padding at both ends, ceil_mode's overhang, dilation; adaptive bins;
#: a window as large as the input (the global kernels).
_ALL_NAN_CASES = [("max", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                  ("max", dict(kernel_size=2, stride=1, padding=1, dilation=2)),
                  ("max", dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
                  ("adaptive", dict(output_size=3)), ("adaptive", dict(output_size=1)),
                  ("max", dict(kernel_size=(5, 7, 9)))]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_omit_all_nan_windows_on_every_max_kernel(nd, channels_last):
    """Every max kernel (serial twins), on input of NaNs only whose every cell has its own
    payload: each output must be its window's last NaN, bit for bit, and its index (the
    reference's rule). Deterministic, so it does not wait for hypothesis to draw such a window."""
    spatial = (9, 11, 7)[:nd] if nd < 3 else (5, 7, 9)
    n = 2 * 3 * int(np.prod(spatial))
    bits = (np.uint32(0x7FC00000) | np.arange(1, n + 1, dtype=np.uint32)) | np.where(
        np.arange(n) % 2, np.uint32(0x80000000), np.uint32(0))
    x = bits.view(np.float32).reshape((2, 3) + spatial)
    layout = ("NCL", "NCHW", "NCDHW")[nd - 1]
    if channels_last:
        x, layout = np.ascontiguousarray(np.moveaxis(x, 1, -1)), ("NLC", "NHWC", "NDHWC")[nd - 1]
    for kind, kw in _ALL_NAN_CASES:
        if kind == "max" and isinstance(kw["kernel_size"], tuple):
            kw = dict(kernel_size=spatial)
        name = f"max_pool{nd}d" if kind == "max" else f"adaptive_max_pool{nd}d"
        for ri in (False, True):
            want = getattr(R, name)(x, return_indices=ri, layout=layout, nan_policy="omit", **kw)
            got = getattr(cpu, name)(x, return_indices=ri, layout=layout, nan_policy="omit", parallel=False, **kw)
            for u, v in zip(got, want) if ri else [(got, want)]:
                assert_bitwise(u, v)


@pytest.mark.parametrize("backend", SERIAL)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_omit_equals_propagate_without_nan(layout, backend):
    """With no NaN the two policies give the same bits (sums, divisions and indices included)."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 9, 11, 3)) * 1e3).astype(np.float32)
    x[0, 0, 0] = -0.0
    for name, kw in [("max_pool2d", dict(kernel_size=3, stride=2, padding=1, return_indices=True)),
                     ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
                     ("avg_pool2d", dict(kernel_size=(2, 3), count_include_pad=False)),
                     ("adaptive_max_pool2d", dict(output_size=(4, 5), return_indices=True)),
                     ("adaptive_avg_pool2d", dict(output_size=1))]:
        a = run(backend, name, x, layout=layout, nan_policy="omit", **kw)
        b = run(backend, name, x, layout=layout, **kw)
        for u, v in zip(a, b) if isinstance(a, tuple) else [(a, b)]:
            assert_bitwise(u, v)


@pytest.mark.parametrize("backend", SERIAL)
def test_omit_on_integers_is_propagate(backend):
    x = np.random.default_rng(2).integers(-5, 5, size=(2, 3, 7, 7)).astype(np.int32)
    for name, xi, k in [("max_pool1d", x.reshape(2, 3, 49), 2), ("max_pool2d", x, 2),
                        ("max_pool3d", x[:, :, None], (1, 2, 2))]:
        a = run(backend, name, xi, k, return_indices=True, nan_policy="omit")
        b = run(backend, name, xi, k, return_indices=True)
        assert_bitwise(a[0], b[0])
        assert_bitwise(a[1], b[1])


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "global_max_pool2d",
                                  "avg_pool2d_backward", "adaptive_max_pool2d_backward"])
@pytest.mark.parametrize("bad", ["ignore", "OMIT", None, 1])
def test_bad_nan_policy_is_refused_before_any_kernel(name, bad, monkeypatch):
    called = []
    for key in list(cpu.KERNELS):
        monkeypatch.setitem(cpu.KERNELS, key, lambda *a, **k: called.append(a))
    nd = 2 if "2d" in name else 3 if "3d" in name else 1
    x = np.zeros((1, 2) + (4,) * nd, np.float32)
    args = {"max_pool2d": (2,), "avg_pool3d": (2,), "adaptive_avg_pool1d": (2,), "global_max_pool2d": (),
            "avg_pool2d_backward": (2,), "adaptive_max_pool2d_backward": (2,)}[name]
    call = [x] if not name.endswith("_backward") else [np.zeros((1, 2, 2, 2), np.float32), x]
    for backend_fn in (getattr(poolkit, name), getattr(R, name)):
        with pytest.raises(TypeError if bad is None or bad == 1 else ValueError, match="nan_policy"):
            backend_fn(*call, *args, nan_policy=bad)
    assert called == []


@pytest.mark.parametrize("backend", SERIAL)
def test_omit_empty_batch(backend):
    x = np.zeros((0, 3, 6, 6), np.float32)
    assert run(backend, "max_pool2d", x, 2, nan_policy="omit").shape == (0, 3, 3, 3)
    assert run(backend, "avg_pool3d", x[:, :, None], (1, 2, 2), nan_policy="omit").shape == (0, 3, 1, 3, 3)
    assert run(backend, "adaptive_avg_pool2d", x, 2, nan_policy="omit").shape == (0, 3, 2, 2)
    g = np.zeros((0, 3, 3, 3), np.float32)
    assert run(backend, "avg_pool2d_backward", g, x, 2, nan_policy="omit").shape == x.shape


# ------------------------------------------------------------------ Dask: the same bits, whatever the chunks
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_dask_omit_matches_in_memory(kind, layout):
    da = pytest.importorskip("dask.array")
    import dask

    rng = np.random.default_rng(4)
    shape = (2, 3, 21, 26) if layout == "NCHW" else (2, 21, 26, 3)
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < 0.6] = np.nan
    spatial = (slice(None), slice(None), slice(0, 9), slice(0, 9)) if layout == "NCHW" else \
        (slice(None), slice(0, 9), slice(0, 9))
    x[spatial] = np.nan  # a cloud bank across several chunks
    chunks = (1, 2, 5, 7) if layout == "NCHW" else (1, 5, 7, 2)
    xd = da.from_array(x, chunks=chunks)
    for k, s, p, cm in [(2, None, 0, False), (3, 2, 1, True), (4, 3, 2, False)]:
        if kind == "max":
            got = dask.compute(*poolkit.max_pool2d(xd, k, s, p, 1, cm, True, layout=layout, nan_policy="omit"))
            want = poolkit.max_pool2d(x, k, s, p, 1, cm, True, layout=layout, nan_policy="omit")
            for u, v in zip(got, want):
                assert_bitwise(u, v)
        else:
            for cip in (True, False):
                got = poolkit.avg_pool2d(xd, k, s, p, cm, cip, layout=layout, nan_policy="omit").compute()
                assert_bitwise(got, poolkit.avg_pool2d(x, k, s, p, cm, cip, layout=layout, nan_policy="omit"))


def test_int64_counts_give_the_same_bits(monkeypatch):
    """Windows with more cells than the dtype's mantissa holds count in int64 (_count_proto);
    forced here on small inputs, every omit average must give the same bits."""
    from poolkit.cpu import ops

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = np.nan
    cases = [("avg_pool2d", (3, 2, 1, True)), ("avg_pool1d", (3, 2, 1)), ("adaptive_avg_pool2d", ((4, 3),)),
             ("avg_pool3d", ((1, 3, 2), 2, (0, 1, 1)))]
    want = {}
    for name, args in cases:
        xi = x.reshape(2, 3, 90) if name.endswith("1d") else x[:, :, None] if name.endswith("3d") else x
        with np.errstate(invalid="ignore", divide="ignore"):
            want[name] = (xi, cpu.__dict__[name](xi, *args, parallel=False, nan_policy="omit"))
    monkeypatch.setattr(ops, "_count_proto", lambda dtype, cells: np.empty(0, np.int64))
    for name, args in cases:
        xi, w = want[name]
        for layout_x, layout in [(xi, None), (np.moveaxis(xi, 1, -1), "last")]:
            kw = {} if layout is None else {"layout": {1: "NLC", 2: "NHWC", 3: "NDHWC"}[xi.ndim - 2]}
            got = cpu.__dict__[name](layout_x, *args, parallel=False, nan_policy="omit", **kw)
            assert_bitwise(got if layout is None else np.moveaxis(got, -1, 1), w)
