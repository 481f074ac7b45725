"""poolkit.xarray: the ``DataArray.pool`` accessor.

Values are compared bit for bit with the plain poolkit functions on the same data laid out
channels-first by hand (tests/test_forward_*.py check those against the plain-loop
reference); coordinates with ``coarsen(...).mean()`` and with the window-centre formula
``c(o) = o*s - p + d*(k-1)/2``; Dask-backed results with NumPy-backed ones.
"""
import doctest
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

xr = pytest.importorskip("xarray")
dsa = pytest.importorskip("dask.array")

import poolkit  # noqa: E402
import poolkit.xarray as px  # noqa: E402
from poolkit import functional  # noqa: E402
from poolkit import geometry as G  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None)


def _assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN == NaN here; bitwise for floats


def _expected(a, dims, pooled, kind, kernel, **kw):
    """poolkit on ``a`` with the pooled axes moved last (in the array's order), channels-first."""
    axes = [i for i, d in enumerate(dims) if d in pooled]
    rest = [i for i in range(a.ndim) if i not in axes]
    moved = np.transpose(a, rest + axes)
    other = moved.shape[:len(rest)]
    x = moved.reshape((-1, 1) + moved.shape[len(rest):])
    nd = len(axes)
    if nd == 1 and kw.get("divisor_override") is not None:  # avg_pool1d has none: 2-d over a unit axis
        x = x[:, :, None]
        kernel, nd = (1, kernel[0]), 2
        kw = {k: ((1,) + v if isinstance(v, tuple) and k != "divisor_override" else v) for k, v in kw.items()}
        kw["padding"] = (0,) + kw["padding"][1:] if isinstance(kw.get("padding"), tuple) else kw.get("padding", 0)
    out = getattr(poolkit, f"{kind}_pool{nd}d")(x, kernel, **kw)
    out = out.reshape(other + out.shape[-len(axes):])
    return np.transpose(out, np.argsort(rest + axes))


def _array(shape, dims, seed=0, dtype=np.float64, nan=False):
    rng = np.random.default_rng(seed)
    a = (rng.integers(-3, 4, size=shape) + rng.random(shape)).astype(dtype)
    if nan and a.size:
        a.flat[rng.integers(0, a.size, size=max(1, a.size // 8))] = np.nan
    coords = {d: np.arange(n) * 0.5 + 10 for d, n in zip(dims, shape) if n > 1}
    return xr.DataArray(a, dims=dims, coords=coords, name="v", attrs={"units": "K"})


# ------------------------------------------------------------------ values
LAYOUTS = [  # dims, pooled, windows: every way the pooled dims can sit among the others
    (("band", "y", "x"), ("y", "x"), (2, 3)),        # NCHW as it is
    (("y", "x", "band"), ("y", "x"), (3, 2)),        # NHWC as it is
    (("y", "band", "x"), ("y", "x"), (2, 2)),        # transposed to NHWC
    (("t", "y", "x", "band"), ("y", "x"), (2, 2)),   # batch and channels
    (("a", "b", "c", "y", "x"), ("y", "x"), (2, 2)),  # merged batch dims
    (("y", "x"), ("y", "x"), (3, 3)),                # no other dims
    (("band", "x"), ("x",), (3,)),                   # 1-d
    (("x", "band", "t"), ("x",), (2,)),              # 1-d, channels-last, merged channels
    (("t", "z", "y", "x"), ("z", "y", "x"), (2, 2, 2)),  # 3-d
    (("z", "band", "y", "x"), ("z", "y", "x"), (2, 3, 2)),  # 3-d, transposed
]


@pytest.mark.parametrize("dims,pooled,windows", LAYOUTS)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_values_equal_poolkit_on_the_transposed_array(dims, pooled, windows, kind):
    shape = tuple(3 if d not in pooled else 7 - i for i, d in enumerate(dims))
    da = _array(shape, dims, nan=kind == "max")
    kw = dict(stride=1, padding=1, ceil_mode=True)
    out = getattr(da.pool, "max" if kind == "max" else "mean")(dict(zip(pooled, windows)), **kw)
    assert out.dims == dims and out.name == "v" and out.attrs == {"units": "K"}
    _assert_same(out.values, _expected(da.values, dims, pooled, kind, windows, **kw))


@st.composite
def pool_problem(draw, *, dims_from=("t", "y", "x", "band"), max_size=7):
    ndim = draw(st.integers(1, 4))
    dims = tuple(draw(st.permutations(dims_from))[:ndim])
    chosen = draw(st.sets(st.sampled_from(dims), min_size=1, max_size=3))
    pooled = tuple(d for d in dims if d in chosen)
    kind = draw(st.sampled_from(["max", "avg"]))
    nd = len(pooled)
    k = tuple(draw(st.integers(1, 3)) for _ in pooled)
    s = tuple(draw(st.integers(1, 3)) for _ in pooled)
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    d = tuple(draw(st.integers(1, 2)) for _ in pooled) if kind == "max" else (1,) * nd
    ceil_mode = draw(st.booleans())
    shape = tuple(draw(st.integers(1, max_size)) if dim in pooled else draw(st.integers(1, 3)) for dim in dims)
    try:
        G.make_geometry("test", tuple(shape[dims.index(q)] for q in pooled), k, s, p, d, ceil_mode)
    except ValueError:
        assume(False)
    kw = dict(stride=s, padding=p, ceil_mode=ceil_mode)
    if kind == "max":
        kw["dilation"] = d
    else:
        kw["count_include_pad"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            kw["divisor_override"] = draw(st.sampled_from([1, 3, -2]))
    return dims, pooled, kind, k, kw, shape, draw(st.integers(0, 2**32 - 1))


def _accessor_kw(pooled, kw):
    """Per-dim tuples -> the accessor's ``{dim: int}`` mappings."""
    return {n: (dict(zip(pooled, v)) if isinstance(v, tuple) else v) for n, v in kw.items()}


@SETTINGS
@given(pool_problem())
def test_values_property(problem):
    dims, pooled, kind, k, kw, shape, seed = problem
    da = _array(shape, dims, seed=seed, nan=kind == "max")
    method = da.pool.max if kind == "max" else da.pool.mean
    out = method(**dict(zip(pooled, k)), **_accessor_kw(pooled, kw))
    assert out.dims == dims
    _assert_same(out.values, _expected(da.values, dims, pooled, kind, k, **kw))


def test_stride_defaults_to_the_window_and_dicts_fill_defaults():
    da = _array((6, 8), ("y", "x"))
    a = da.pool.max(y=2, x=4)
    _assert_same(a.values, poolkit.max_pool2d(da.values[None, None], (2, 4))[0, 0])
    b = da.pool.max(y=3, x=2, stride={"y": 1}, padding={"x": 1}, dilation={"y": 2})
    _assert_same(b.values, poolkit.max_pool2d(da.values[None, None], (3, 2), (1, 2), (0, 1), (2, 1))[0, 0])
    c = da.pool.mean({"y": 2}, padding="same", stride=1)  # a mapping first; padding="same"
    assert c.sizes == da.sizes


def test_a_dim_named_like_an_argument():
    da = xr.DataArray(np.arange(8.).reshape(2, 4), dims=("stride", "dilation"))
    _assert_same(da.pool.max({"stride": 2}).values, np.array([[4., 5., 6., 7.]]))
    _assert_same(da.pool.mean(dilation=2).values, np.array([[0.5, 2.5], [4.5, 6.5]]))


def test_integer_data_for_max_and_float32_kept():
    da = xr.DataArray(np.arange(16, dtype=np.int16).reshape(4, 4), dims=("y", "x"))
    assert da.pool.max(y=2, x=2).dtype == np.int16
    assert da.astype(np.float32).pool.mean(y=2, x=2).dtype == np.float32


# ------------------------------------------------------------------ coordinates
@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 4), st.integers(1, 4),
       st.floats(-1e6, 1e6), st.floats(1e-3, 1e3), st.booleans(), st.integers(0, 2**32 - 1))
def test_coords_equal_coarsen_for_non_overlapping_windows(H, W, kh, kw, x0, step, descending, seed):
    assume(kh <= H and kw <= W)
    rng = np.random.default_rng(seed)
    y = x0 + np.arange(H) * (-step if descending else step)
    x = np.sort(rng.random(W)) * 100  # irregular: coarsen averages the cells too
    da = xr.DataArray(rng.random((2, H, W)), dims=("band", "y", "x"), coords={"y": y, "x": x})
    want = da.coarsen(y=kh, x=kw, boundary="trim").mean()
    got = da.pool.mean(y=kh, x=kw)
    _assert_same(got.y.values, want.y.values)  # exactly, not just close
    _assert_same(got.x.values, want.x.values)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12)
    _assert_same(da.pool.max(y=kh, x=kw).y.values, want.y.values)


@pytest.mark.parametrize("coord", [
    np.arange(9) * 3 + 1,                                                   # int64
    np.arange(9, dtype=np.float32) * np.float32(0.1),                      # float32 stays float32
    np.datetime64("2000-01-01", "ns") + np.arange(9) * np.timedelta64(6, "h"),
    np.datetime64("2000-01-01", "s") + np.arange(9) * np.timedelta64(1, "D"),
    np.arange(9) * np.timedelta64(7, "m"),
], ids=["int", "float32", "datetime-ns", "datetime-s", "timedelta"])
def test_coords_of_other_dtypes_equal_coarsen(coord):
    da = xr.DataArray(np.arange(18.).reshape(2, 9), dims=("band", "t"), coords={"t": coord})
    for k in (2, 3, 4):
        want = da.coarsen(t=k, boundary="trim").mean()
        got = da.pool.mean(t=k)
        _assert_same(got.t.values, want.t.values)


CENTRE_CASES = [  # k, s, p, d, ceil_mode: overlapping windows, padding, ceil_mode, dilation
    (2, 1, 0, 1, False), (3, 1, 1, 1, False), (2, 1, 1, 1, False), (4, 1, 2, 1, True), (3, 2, 1, 1, True),
    (2, 3, 1, 1, True), (2, 1, 0, 2, False), (3, 2, 1, 3, True), (5, 2, 2, 1, True), (1, 2, 0, 1, True),
]


@pytest.mark.parametrize("k,s,p,d,ceil_mode", CENTRE_CASES)
@pytest.mark.parametrize("x0,step", [(0.0, 1.0), (-120.25, 0.1), (5000.0, -30.0)])
def test_coords_are_window_centres(k, s, p, d, ceil_mode, x0, step):
    L = 11
    da = xr.DataArray(np.zeros(L), dims="x", coords={"x": x0 + np.arange(L) * step})
    out = da.pool.max(x=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
    n = G.pool_output_size(L, k, s, p, d, ceil_mode)
    o = np.arange(n)
    want = x0 + (o * s - p + d * (k - 1) / 2) * step
    assert out.sizes["x"] == n
    np.testing.assert_allclose(out.x.values, want, rtol=1e-13, atol=1e-12 * abs(step) * L)


def test_coords_by_hand():
    da = xr.DataArray(np.zeros(5), dims="x", coords={"x": [0., 10., 20., 30., 40.]})
    assert da.pool.max(x=2, stride=1).x.values.tolist() == [5., 15., 25., 35.]
    assert da.pool.max(x=2, stride=1, padding=1).x.values.tolist() == [-5., 5., 15., 25., 35., 45.]
    assert da.pool.max(x=3, stride=2, padding=1, ceil_mode=True).x.values.tolist() == [0., 20., 40.]
    assert da.pool.max(x=2, stride=1, dilation=2).x.values.tolist() == [10., 20., 30.]
    assert da.pool.max(x=2, ceil_mode=True).x.values.tolist() == [5., 25., 45.]  # last window overhangs
    assert da.pool.mean(x=3, stride=1, padding="same").x.values.tolist() == [0., 10., 20., 30., 40.]


def test_irregular_coords():
    x = np.array([0., 1., 3., 7., 15.])
    da = xr.DataArray(np.zeros(5), dims="x", coords={"x": x})
    assert da.pool.max(x=2, stride=1).x.values.tolist() == [0.5, 2., 5., 11.]  # mean of the cells
    assert da.pool.max(x=3, stride=1, dilation=2).x.values.tolist() == [(0 + 3 + 15) / 3]
    # a window in the padding: linear interpolation at its centre when that lies inside
    assert da.pool.max(x=3, stride=2, padding=1, ceil_mode=True).x.values.tolist() == [0., 11 / 3, 15.]
    with pytest.raises(ValueError, match=r"coordinate 'x' is not a regular grid.*drop_vars\('x'\)"):
        da.pool.max(x=2, stride=1, padding=1)  # centre -0.5 lies outside
    assert da.drop_vars("x").pool.max(x=2, stride=1, padding=1).sizes["x"] == 6
    one = xr.DataArray(np.zeros(1), dims="x", coords={"x": [3.0]})
    assert one.pool.max(x=1).x.values.tolist() == [3.0]
    assert one.pool.max(x=3, padding=1).x.values.tolist() == [3.0]  # centre on the one cell
    with pytest.raises(ValueError, match=r"coordinate 'x' has fewer than 2 values, and window centres \[-0.5\]"):
        one.pool.max(x=2, padding=1)


def test_nearly_regular_coords_count_as_regular():
    # a grid written with 7 decimals (steps differ by up to 1e-7, 3e-7 of the step) is regular
    x = np.round(5 + np.arange(10) / 3, 7)
    da = xr.DataArray(np.zeros(10), dims="x", coords={"x": x})
    out = da.pool.max(x=2, stride=1, padding=1)
    np.testing.assert_allclose(out.x.values[[0, -1]], [5 - 1 / 6, 5 + 9 / 3 + 1 / 6], rtol=1e-7)
    x[5] += 1e-3  # but not one that is off by 0.3 % of a step
    with pytest.raises(ValueError, match="is not a regular grid"):
        da.assign_coords(x=x).pool.max(x=2, stride=1, padding=1)


def test_datetime_coords_in_the_padding():
    t = np.datetime64("2000-01-01", "ns") + np.arange(4) * np.timedelta64(1, "D")
    da = xr.DataArray(np.arange(4.), dims="t", coords={"t": t})
    out = da.pool.mean(t=2, stride=1, padding=1)
    assert out.t.dtype == t.dtype
    assert out.t.values[0] == np.datetime64("1999-12-31T12:00", "ns")
    assert out.t.values[-1] == np.datetime64("2000-01-04T12:00", "ns")
    np.testing.assert_array_equal(out.t.values[1:-1], t[:-1] + np.timedelta64(12, "h"))


def test_other_coords_kept_1d_coords_along_pooled_dims_pooled_2d_ones_dropped():
    da = _array((2, 4, 6), ("band", "y", "x"))
    da = da.assign_coords(band=["r", "g"], wavelength=("band", [650., 550.]), time=np.datetime64("2020-01-01"),
                          xkm=("x", np.arange(6) * 2.0), lat=(("y", "x"), np.ones((4, 6))))
    da.x.attrs["units"] = "m"
    out = da.pool.max(y=2, x=2)
    assert set(out.coords) == {"band", "wavelength", "time", "y", "x", "xkm"}
    _assert_same(out.band.values, da.band.values)
    _assert_same(out.wavelength.values, da.wavelength.values)
    assert out.time.values == da.time.values
    assert out.xkm.values.tolist() == [1., 5., 9.]
    assert out.x.attrs == {"units": "m"}
    assert "band" in out.indexes and "x" in out.indexes


def test_string_coords_along_a_pooled_dim_are_refused():
    da = xr.DataArray(np.zeros(4), dims="x", coords={"x": list("abcd")})
    with pytest.raises(TypeError, match=r"coordinate 'x' has dtype <U1.*drop_vars\('x'\)"):
        da.pool.max(x=2)


# ------------------------------------------------------------------ attrs, georeference
def _geo(dims=("band", "y", "x"), shape=(2, 6, 8), transform=(10.0, 0.0, 100.0, 0.0, -10.0, 200.0)):
    a, b, c, d, e, f = transform
    ny, nx = shape[dims.index(dims[-2])], shape[-1]
    da = xr.DataArray(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), dims=dims, name="dem",
                      attrs={"transform": transform, "res": (abs(a), abs(e)), "units": "m"})
    da = da.assign_coords({dims[-1]: c + a * (np.arange(nx) + 0.5), dims[-2]: f + e * (np.arange(ny) + 0.5)})
    gt = f"{c} {a} {b} {f} {d} {e}"
    return da.assign_coords(spatial_ref=xr.Variable((), 0, attrs={"GeoTransform": gt, "crs_wkt": "X"}))


@pytest.mark.parametrize("args,transform,res", [
    (dict(y=2, x=2), (20.0, 0.0, 100.0, 0.0, -20.0, 200.0), (20.0, 20.0)),
    (dict(y=3, x=3, stride=1, padding=1), (10.0, 0.0, 100.0, 0.0, -10.0, 200.0), (10.0, 10.0)),
    (dict(y=2, x=2, stride=1), (10.0, 0.0, 105.0, 0.0, -10.0, 195.0), (10.0, 10.0)),
    (dict(x=4), (40.0, 0.0, 100.0, 0.0, -10.0, 200.0), (40.0, 10.0)),
    (dict(y=2, x=2, padding=1), (20.0, 0.0, 90.0, 0.0, -20.0, 210.0), (20.0, 20.0)),
    (dict(y=3, x=3, stride=2, padding={"y": 1}), (20.0, 0.0, 105.0, 0.0, -20.0, 205.0), (20.0, 20.0)),
], ids=["2x2", "3x3-same", "2x2-s1", "x-only", "2x2-p1", "3x3-s2-py1"])
def test_transform_by_hand(args, transform, res):
    da = _geo()
    before = da.spatial_ref.attrs["GeoTransform"]
    out = da.pool.max(**args)
    assert out.attrs["transform"] == transform
    assert out.attrs["res"] == res
    a, b, c, d, e, f = transform
    assert out.spatial_ref.attrs == {"GeoTransform": f"{c} {a} {b} {f} {d} {e}", "crs_wkt": "X"}
    assert da.spatial_ref.attrs["GeoTransform"] == before and da.attrs["transform"][0] == 10.0  # input untouched
    # output pixel centres (from the transform) are the new coordinates
    np.testing.assert_allclose(out.x.values, c + a * (np.arange(out.sizes["x"]) + 0.5))
    np.testing.assert_allclose(out.y.values, f + e * (np.arange(out.sizes["y"]) + 0.5))


def test_transform_other_conventions():
    # dims without x/y names: the last two are (rows, cols); a 9-sequence keeps its tail; scalar resolution
    da = _geo(dims=("band", "row", "col"))
    da.attrs["transform"] = [10.0, 0.0, 100.0, 0.0, -10.0, 200.0, 0.0, 0.0, 1.0]
    del da.attrs["res"]
    da.attrs["resolution"] = 10.0
    out = da.pool.mean(row=2, col=2)
    assert out.attrs["transform"] == [20.0, 0.0, 100.0, 0.0, -20.0, 200.0, 0.0, 0.0, 1.0]
    assert out.attrs["resolution"] == 20.0
    assert da.pool.mean(row=1, col=2).attrs["resolution"] == (20.0, 10.0)
    # pooling a dim that is not spatial leaves the georeference alone
    same = _geo().pool.max(band=2)
    assert same.attrs["transform"] == _geo().attrs["transform"]
    assert same.spatial_ref.attrs == _geo().spatial_ref.attrs
    # a rotated transform: the full affine algebra
    assert px.pooled_transform((1.0, 2.0, 3.0, 4.0, 5.0, 6.0), (2, 2, 0, 1), (2, 1, 0, 1)) == \
        (2.0, 2.0, 3.0 + 2.0 * 0.5, 8.0, 5.0, 6.0 + 5.0 * 0.5)


def test_attrs_name_encoding_kept():
    da = _array((4, 4), ("y", "x"))
    da.encoding = {"dtype": "float64", "chunks": (2, 2), "preferred_chunks": {"y": 2},
                   "grid_mapping": "spatial_ref"}
    out = da.pool.mean(y=2, x=2)
    assert out.name == "v" and out.attrs == {"units": "K"} and out.attrs is not da.attrs
    assert out.encoding == {"dtype": "float64", "grid_mapping": "spatial_ref"}


# ------------------------------------------------------------------ Dask
@st.composite
def chunks_for(draw, shape):
    out = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3))) if n > 1 else []
        bounds = [0, *cuts, n]
        out.append(tuple(b - a for a, b in zip(bounds[:-1], bounds[1:])))
    return tuple(out)


@SETTINGS
@given(pool_problem(dims_from=("t", "y", "x", "band")), st.data())
def test_dask_backed_is_lazy_and_independent_of_chunks(problem, data):
    dims, pooled, kind, k, kw, shape, seed = problem
    assume(len(pooled) < 3)
    da = _array(shape, dims, seed=seed, nan=kind == "max")
    lazy = da.chunk(dict(zip(dims, data.draw(chunks_for(shape)))))
    method = "max" if kind == "max" else "mean"
    args = {**dict(zip(pooled, k)), **_accessor_kw(pooled, kw)}
    out = getattr(lazy.pool, method)(**args)
    assert isinstance(out.data, dsa.Array)
    want = getattr(da.pool, method)(**args)
    got = out.compute()
    _assert_same(got.values, want.values)
    xr.testing.assert_identical(got, want)


def test_dask_3d_runs_per_block_when_the_pooled_dims_are_single_chunks():
    da = _array((3, 4, 5, 6), ("t", "z", "y", "x"), nan=True)
    lazy = da.chunk({"t": 1})
    out = lazy.pool.max(z=2, y=3, x=2, stride=1, padding={"y": 1})
    assert isinstance(out.data, dsa.Array) and out.chunks[0] == (1, 1, 1)
    _assert_same(out.values, da.pool.max(z=2, y=3, x=2, stride=1, padding={"y": 1}).values)
    with pytest.raises(ValueError, match=r"\('y', 'x'\) are chunked; rechunk first: "
                                         r"da.chunk\(\{'z': -1, 'y': -1, 'x': -1\}\)"):
        da.chunk({"y": 2, "x": 3}).pool.mean(z=2, y=2, x=2)
    with pytest.raises(TypeError, match="float32 or float64"):  # checked now, not when computed
        lazy.astype(np.int32).pool.mean(z=2, y=2, x=2)


def test_dask_1d_and_divisor_override_match_in_memory():
    da = _array((3, 11), ("band", "x"))
    for kw in (dict(x=3, padding=1), dict(x=3, stride=2, ceil_mode=True, divisor_override=2),
               dict(x=2, stride=1, count_include_pad=False, padding=1)):
        out = da.chunk({"x": 4}).pool.mean(**kw)
        assert isinstance(out.data, dsa.Array)
        _assert_same(out.values, da.pool.mean(**kw).values)


# ------------------------------------------------------------------ nan_policy
def _spy(monkeypatch, name):
    calls = []
    real = getattr(functional, name)

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(functional, name, spy)
    return calls


def test_nan_policy_is_passed_through(monkeypatch):
    da = _array((4, 4), ("y", "x"), nan=True)
    for name, call in (("max_pool2d", lambda **kw: da.pool.max(y=2, x=2, **kw)),
                       ("avg_pool1d", lambda **kw: da.pool.mean(x=2, **kw)),
                       ("avg_pool2d", lambda **kw: da.pool.mean(x=2, divisor_override=2, **kw))):
        calls = _spy(monkeypatch, name)
        call()
        call(nan_policy="omit")
        assert [c["nan_policy"] for c in calls] == ["propagate", "omit"], name


@pytest.mark.parametrize("dims,layout", [(("band", "y", "x"), "NCHW"), (("y", "x", "band"), "NHWC"),
                                         (("y", "band", "x"), "NHWC"), (("t", "band", "y", "x"), "NCHW")])
def test_poolkit_gets_a_view_of_the_data(monkeypatch, dims, layout):
    seen = []
    real = functional.max_pool2d

    def spy(x, *args, **kw):
        seen.append((x, kw["layout"]))
        return real(x, *args, **kw)

    monkeypatch.setattr(functional, "max_pool2d", spy)
    da = _array(tuple(2 if d in ("band", "t") else 4 for d in dims), dims)
    da.pool.max(y=2, x=2)
    (x, used), = seen
    assert used == layout and x.ndim == 4 and np.shares_memory(x, da.values)


def test_nan_propagates_by_default():
    da = xr.DataArray(np.array([np.nan, 1., 2., 3.]), dims="x")
    assert np.isnan(da.pool.max(x=2).values[0]) and np.isnan(da.pool.mean(x=2).values[0])


def test_nan_policy_omit_1d():
    da = xr.DataArray(np.array([np.nan, 1., np.nan, np.nan, 1., np.nan, 3., 5.]), dims="x")
    _assert_same(da.pool.max(x=2, nan_policy="omit").values, np.array([1., np.nan, 1., 5.]))
    _assert_same(da.pool.mean(x=2, nan_policy="omit").values, np.array([1., np.nan, 1., 4.]))
    db = xr.DataArray(np.array([1., np.nan, 3., 5.]), dims="x")
    # padding cells count as zeros only with count_include_pad
    _assert_same(db.pool.mean(x=2, padding=1, nan_policy="omit").values, np.array([0.5, 3., 2.5]))
    _assert_same(db.pool.mean(x=2, padding=1, count_include_pad=False, nan_policy="omit").values,
                 np.array([1., 3., 5.]))


@pytest.mark.parametrize("kind", ["max", "mean"])
def test_nan_policy_omit_2d_3d_and_dask(kind):
    da = _array((2, 4, 6, 8), ("t", "z", "y", "x"), nan=True)
    da[0, :2, :2, :4] = np.nan  # a window of NaN only, for each pooling below
    for pooled in ({"y": 2, "x": 2}, {"z": 2, "y": 2, "x": 2}, {"x": 4}):
        out = getattr(da.pool, kind)(pooled, nan_policy="omit")
        v = da.values
        moved = np.moveaxis(v, [da.dims.index(d) for d in pooled], range(-len(pooled), 0))
        windows = moved.reshape(moved.shape[:-len(pooled)] + sum(((n // k, k) for n, k in
                                zip(moved.shape[-len(pooled):], pooled.values())), ()))
        axes = tuple(range(moved.ndim - len(pooled) + 1, windows.ndim, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
            want = (np.nanmax if kind == "max" else np.nanmean)(windows, axis=axes)
        want = np.moveaxis(want, range(-len(pooled), 0), [da.dims.index(d) for d in pooled])
        np.testing.assert_allclose(out.values, want, rtol=1e-12)
        assert np.isnan(out.values[0, 0, 0, 0])
        lazy = da.chunk({"t": 1, "x": 3} if len(pooled) < 3 else {"t": 1})
        _assert_same(getattr(lazy.pool, kind)(pooled, nan_policy="omit").values, out.values)


# ------------------------------------------------------------------ bad input
ERRORS = [
    (dict(q=2), ValueError,
     r"DataArray.pool.max: 'q' is not a dimension of the array; its dimensions are \('y', 'x'\)"),
    (dict(), ValueError,
     r"name the dimensions to pool with their window sizes, e.g. DataArray.pool.max\(y=2, x=2\)"),
    (dict(y=0), ValueError, r"the window for dimension 'y' must be positive, got 0"),
    (dict(y=2.0), TypeError, r"the window for dimension 'y' must be an int, got float 2.0"),
    (dict(y=True), TypeError, r"the window for dimension 'y' must be an int"),
    (dict(y=2, stride={"x": 1}), ValueError,
     r"stride names 'x', which is not a pooled dimension \(pooled: \('y',\)\)"),
    (dict(y=2, stride=1.5), TypeError, r"stride must be an int or a mapping \{dim: int\}, got float 1.5"),
    (dict(y=2, stride={"y": "1"}), TypeError, r"stride\['y'\] must be an int, got str '1'"),
    (dict(y=2, stride=0), ValueError, r"stride must be positive, got 0"),
    (dict(y=2, padding=-1), ValueError, r"padding must be >= 0, got -1"),
    (dict(y=2, dilation={"y": 0}), ValueError, r"dilation\['y'\] must be positive, got 0"),
    (dict(y=2, padding=2), ValueError, r"DataArray.pool.max over \('y',\): max_pool1d: padding"),
    (dict(y=2, x=9), ValueError, r"DataArray.pool.max over \('y', 'x'\): max_pool2d: .*kernel"),
    (dict(y=2, count_include_pad=True), ValueError,
     r"'count_include_pad' is not a dimension of the array \(count_include_pad is an argument of mean"),
    (dict(y=2, ceil_mode="yes"), TypeError, r"ceil_mode"),
    (dict(y=2, nan_policy="skip"), ValueError, r"DataArray.pool.max: nan_policy must be 'propagate' or 'omit'"),
]


@pytest.mark.parametrize("kw,exc,msg", ERRORS)
def test_errors_name_the_argument(kw, exc, msg):
    da = _array((5, 6), ("y", "x"))
    with pytest.raises(exc, match=msg):
        da.pool.max(**kw)


def test_more_errors():
    da = _array((2, 3, 4, 5), ("t", "z", "y", "x"))
    with pytest.raises(ValueError, match=r"dimension 'y' given twice"):
        da.pool.max({"y": 2}, y=2)
    with pytest.raises(ValueError, match=r"at most 3 dimensions can be pooled at once, got \('t', 'z', 'y', 'x'\)$"):
        da.pool.max(t=1, z=1, y=1, x=1)
    with pytest.raises(TypeError, match=r"windows must be a mapping"):
        da.pool.max(2)
    with pytest.raises(ValueError, match=r"'dilation' is not a dimension.*argument of max"):
        da.pool.mean(y=2, dilation=2)
    with pytest.raises(TypeError, match=r"float32 or float64"):
        da.astype(np.int64).pool.mean(y=2)


# ------------------------------------------------------------------ import, docs
def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_poolkit_does_not_import_xarray_and_a_missing_xarray_says_what_to_install():
    res = _run("import sys, poolkit; print('xarray' in sys.modules)")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    res = _run("import sys; sys.modules['xarray'] = None\nimport poolkit.xarray")
    assert 'ImportError: poolkit.xarray needs xarray: pip install "poolkit[xarray]"' in res.stderr


def test_docstring_examples_run():
    assert doctest.testmod(px, raise_on_error=False).failed == 0


def test_transform_of_unnamed_channels_last_grid():
    """No x/y names: the pooled dims are the grid, whatever comes after them (a band)."""
    da = xr.DataArray(np.zeros((4, 6, 3), np.float32), dims=("row", "col", "band"),
                      attrs={"transform": (10., 0., 100., 0., -10., 200.)})
    want = (20.0, 0.0, 100.0, 0.0, -20.0, 200.0)
    assert tuple(da.pool.mean(row=2, col=2).attrs["transform"]) == want
    assert tuple(da.transpose("band", "row", "col").pool.mean(row=2, col=2).attrs["transform"]) == want
