"""``DataArray.pool``: poolkit's pooling on labelled arrays (xarray), coordinates and georeference kept.

``import poolkit.xarray`` registers a ``.pool`` accessor on every
:class:`xarray.DataArray`. Windows are named by dimension; every other
dimension (bands, time, ...) is carried along as a batch or channel dimension::

    >>> import numpy as np, xarray as xr
    >>> import poolkit.xarray  # registers DataArray.pool
    >>> da = xr.DataArray(np.arange(24.).reshape(2, 3, 4), dims=("band", "y", "x"),
    ...                   coords={"band": ["r", "g"], "y": [10., 20., 30.], "x": [1., 2., 3., 4.]},
    ...                   attrs={"units": "K"}, name="t")
    >>> out = da.pool.max(y=2, x=2)
    >>> out.values
    array([[[ 5.,  7.]],
    <BLANKLINE>
           [[17., 19.]]])
    >>> out.dims, out.x.values, out.y.values, out.band.values, out.attrs, out.name
    (('band', 'y', 'x'), array([1.5, 3.5]), array([15.]), array(['r', 'g'], dtype='<U1'), {'units': 'K'}, 't')
    >>> da.pool.mean(x=3, stride=1, padding=1, count_include_pad=False).x.values  # "same" size
    array([1., 2., 3., 4.])

The methods
-----------
``da.pool.max(y=2, x=2, *, stride=None, padding=0, dilation=1, ceil_mode=False, nan_policy="propagate")``
and ``da.pool.mean(y=2, x=2, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
divisor_override=None, nan_policy="propagate")`` pool 1, 2 or 3 dimensions with PyTorch's
semantics (those of :func:`poolkit.max_pool2d` and friends). Window sizes are keyword
arguments named by dimension, or a mapping given first (``da.pool.max({"y": 2, "x": 2})``,
for dimensions whose names clash with an argument). ``stride``, ``padding`` and ``dilation``
are an int (every pooled dimension) or a mapping ``{dim: int}`` (missing dimensions get
the default: the window for ``stride``, 0 and 1); ``padding`` may also be ``"same"`` or
``"valid"`` (TensorFlow's rule, as in poolkit). ``nan_policy`` is passed to poolkit
unchanged (``"propagate"``, the default, is PyTorch's rule; ``"omit"`` skips NaN cells).

How it maps onto poolkit (no copies where avoidable)
----------------------------------------------------
The pooled dimensions, taken in the array's own order, become the spatial axes of
:func:`poolkit.max_pool1d` / ``2d`` / ``3d`` (``avg_pool*`` for ``mean``). The other
dimensions before the first pooled one are the batch axis, those after it the channel
axis, and the array is transposed (a view) only when the pooled dimensions are not
already next to each other. With no dimension after the pooled ones the channels-first
layout is used (``(band, y, x)`` is ``NCHW`` as it is), otherwise channels-last
(``(y, x, band)`` is ``NHWC`` as it is). Several batch or channel dimensions are merged
by a reshape (a view for contiguous NumPy arrays). The result is put back in the input's
dimension order. Values are bit for bit those of the plain poolkit function.

Dask-backed arrays stay lazy. Pooling two dimensions runs :mod:`poolkit.dask` (through
:func:`poolkit.max_pool2d` / :func:`poolkit.avg_pool2d`): any chunking, halos across chunks.
Pooling one dimension runs the same 2-D Dask code over a size-1 axis (as does an in-memory
1-D ``mean`` with ``divisor_override``, which ``avg_pool1d`` lacks, as in PyTorch). Pooling
three dimensions of a Dask array runs one in-memory ``*_pool3d`` per block with
:func:`dask.array.map_blocks`, so each pooled dimension must be a single chunk (a
ValueError says which to rechunk; the other dimensions may be chunked at will). The
values never depend on the chunking: they are bit for bit those of the in-memory call.

Coordinates
-----------
Output cell ``o`` of a pooled dimension reads input positions ``o*s - p + j*d``
(``j < k``); its centre in index space is ``c(o) = o*s - p + d*(k-1)/2``. The output's
coordinate (its dimension coordinate, and every other 1-D coordinate along it) is:

* for a window that lies inside the input, the mean of its cells' coordinates, computed
  as xarray's ``coarsen(...).mean()`` does, so non-overlapping windows (``s = k``,
  ``p = 0``, ``d = 1``) give exactly ``coarsen({dim: k}, boundary="trim").mean()``'s
  coordinates; on a regular grid this is the coordinate at ``c(o)`` up to rounding;
* for a window that reaches into the padding (or past the end with ``ceil_mode``), on a
  regular grid ``coord[0] + c(o) * step`` (``step = (coord[-1] - coord[0]) / (L - 1)``);
  on an irregular grid, linear interpolation at ``c(o)``, and a ValueError when ``c(o)``
  lies outside the coordinate (drop the coordinate first, ``da.drop_vars(name)``);
* above :data:`TAP_LIMIT` window cells in all (huge overlapping windows), the second rule
  for every window (same values up to rounding, without the work).

"Regular" means every step equals ``step`` within ``1e-6 * |step|`` (plus a few units of
float rounding of the values). Integer coordinates give float64 centres; datetime64 and
timedelta64 coordinates stay in their unit. Coordinates of other dtypes (strings,
``cftime`` objects) along a pooled dimension raise a TypeError naming them. Coordinates
with two or more dimensions that include a pooled one (2-D ``lat``/``lon``) are dropped;
coordinates without a pooled dimension are kept as they are.

Georeference
------------
rioxarray's conventions are followed without needing rioxarray: a coordinate (usually the
scalar ``spatial_ref``) whose attrs hold a GDAL ``GeoTransform`` string ``"c a b f d e"``,
and ``attrs["transform"]``, a 6- (or 9-) sequence in Affine order ``(a, b, c, d, e, f)``
(``x = a*col + b*row + c``, ``y = d*col + e*row + f``, pixel corners). Columns are the
``x`` (or ``lon``/``longitude``) dimension and rows ``y`` (``lat``/``latitude``); without
such names, the last two dimensions (rows, then columns). When a pooled dimension is one
of them, the pixel size along it is multiplied by the stride and the origin moves by
``(d*(k-1) + 1 - s)/2 - p`` input pixels, so output pixel centres sit where the
coordinates say. ``attrs["res"]`` / ``attrs["resolution"]`` (``(x, y)``, or one number
when both strides agree) are multiplied by the strides. The input is never modified.

Attributes, the name and the encoding (less its chunk and shape entries) are kept.
"""
from __future__ import annotations

import math

import numpy as np

try:
    import xarray as xr
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('poolkit.xarray needs xarray: pip install "poolkit[xarray]"') from err

from . import functional as F
from . import geometry as G

__all__ = ["PoolAccessor", "window_centres", "pooled_transform", "TAP_LIMIT"]

#: The most window cells (windows inside the input times ``k``) for which coordinates
#: are averaged cell by cell (coarsen's rule); above it, ``coord[0] + c(o)*step``.
TAP_LIMIT = 2 ** 22

_MAX_ARGS = ("stride", "padding", "dilation", "ceil_mode", "nan_policy")
_MEAN_ARGS = ("stride", "padding", "ceil_mode", "count_include_pad", "divisor_override", "nan_policy")
#: Dimension names taken as (columns, rows) of a transform, in this order of preference.
_SPATIAL_NAMES = (("x", "y"), ("lon", "lat"), ("longitude", "latitude"))
#: Encoding entries that describe the input's shape or storage chunks (dropped).
_SHAPE_ENCODING = ("chunks", "preferred_chunks", "chunksizes", "original_shape", "shards", "contiguous",
                   "source")


# ---------------------------------------------------------------- arguments
def _windows(obj, where, windows, window_kwargs):
    """The pooled dims in the array's order and their window sizes."""
    given = {}
    if windows is not None:
        if not hasattr(windows, "items"):
            raise TypeError(f"{where}: windows must be a mapping {{dim: size}} (or keyword arguments "
                            f"y=2, x=2), got {type(windows).__name__} {windows!r}")
        given.update(windows)
    for name, value in window_kwargs.items():
        if name in given:
            raise ValueError(f"{where}: dimension {name!r} given twice (in the mapping and as a keyword)")
        given[name] = value
    for name in given:
        if name not in obj.dims:
            hint = ""
            if name in _MAX_ARGS + _MEAN_ARGS:
                hint = f" ({name} is an argument of {'max' if name in _MAX_ARGS else 'mean'}, not of this method)"
            raise ValueError(f"{where}: {name!r} is not a dimension of the array{hint}; "
                             f"its dimensions are {tuple(obj.dims)}")
    if not given:
        raise ValueError(f"{where}: name the dimensions to pool with their window sizes, e.g. "
                         f"{where}({', '.join(f'{d}=2' for d in obj.dims[-2:])})")
    if len(given) > 3:
        raise ValueError(f"{where}: at most 3 dimensions can be pooled at once, got {tuple(given)}")
    for name, value in given.items():
        if not G.is_int(value):
            raise TypeError(f"{where}: the window for dimension {name!r} must be an int, "
                            f"got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"{where}: the window for dimension {name!r} must be positive, got {value!r}")
    dims = tuple(d for d in obj.dims if d in given)
    return dims, tuple(int(given[d]) for d in dims)


def _per_dim(value, name, dims, default, minimum, where):
    """An int or a ``{dim: int}`` mapping -> a tuple in ``dims``' order."""
    if hasattr(value, "items"):
        for d in value:
            if d not in dims:
                raise ValueError(f"{where}: {name} names {d!r}, which is not a pooled dimension "
                                 f"(pooled: {dims})")
        items = [value.get(d, default[i]) for i, d in enumerate(dims)]
        labels = [f"{name}[{d!r}]" for d in dims]
    elif G.is_int(value):
        items, labels = [value] * len(dims), [name] * len(dims)
    else:
        raise TypeError(f"{where}: {name} must be an int or a mapping {{dim: int}}, "
                        f"got {type(value).__name__} {value!r}")
    for v, label in zip(items, labels):
        if not G.is_int(v):
            raise TypeError(f"{where}: {label} must be an int, got {type(v).__name__} {v!r}")
        if v < minimum:
            raise ValueError(f"{where}: {label} must be {'positive' if minimum == 1 else '>= 0'}, got {v!r}")
    return tuple(int(v) for v in items)


def _geometry(op, in_size, kernel, stride, padding, dilation, ceil_mode, dims, where):
    try:
        return G.make_geometry(op, in_size, kernel, stride, padding, dilation, ceil_mode)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{where} over {dims}: {err}") from err


# ---------------------------------------------------------------- the data
def _work_layout(obj, dims):
    """``(batch dims, channel dims, order, channels_last)`` for the pooled ``dims``."""
    all_dims = list(obj.dims)
    first = all_dims.index(dims[0])
    lead = [d for d in all_dims[:first] if d not in dims]
    trail = [d for d in all_dims[first:] if d not in dims]
    return lead, trail, lead + list(dims) + trail, bool(trail)


def _is_dask(data) -> bool:
    return F.backend_for(data) == "dask"


def _call(kind, nd, x, geom, extra, channels_last):
    """One poolkit call on a batched work array (``(N, C, *P)`` or ``(N, *P, C)``)."""
    kernel, stride, dilation = geom.kernel, geom.stride, geom.dilation
    padding = geom.padding_mode if geom.padding_mode != "explicit" else geom.padding
    unit = nd == 1 and (_is_dask(x) or extra.get("divisor_override") is not None)
    if unit:  # one dim as two over a size-1 axis: poolkit.dask pools 2-D; avg_pool1d has no divisor_override
        axis = 1 if channels_last else 2
        x = x.reshape(x.shape[:axis] + (1,) + x.shape[axis:])
        kernel, stride, dilation = (1,) + kernel, (1,) + stride, (1,) + dilation
        padding = padding if isinstance(padding, str) else (0,) + padding
        nd = 2
    layout = G.LAYOUTS[nd][1 if channels_last else 0]
    kw = {"layout": layout, "nan_policy": extra["nan_policy"]}
    fn = getattr(F, f"{kind}_pool{nd}d")
    if kind == "max":
        out = fn(x, kernel, stride, padding, dilation, geom.ceil_mode, **kw)
    else:
        args = (x, kernel, stride, padding, geom.ceil_mode, extra["count_include_pad"])
        if nd > 1:
            args += (extra["divisor_override"],)
        out = fn(*args, **kw)
    if unit:
        out = out[:, 0] if channels_last else out[:, :, 0]
    return out


def _blockwise(kind, nd, x, geom, extra, channels_last):
    """``*_pool3d`` on each block of a Dask array whose pooled axes are single chunks."""
    def run(block):
        return _call(kind, nd, block, geom, extra, channels_last)

    spatial = range(1, 1 + nd) if channels_last else range(2, 2 + nd)
    empty = np.empty(tuple(0 if i == 0 else n for i, n in enumerate(x.shape)), x.dtype)
    dtype = run(empty).dtype  # checks every argument now, not when the graph runs
    chunks = list(x.chunks)
    for axis, n in zip(spatial, geom.out_size):
        chunks[axis] = (n,)
    from dask.base import tokenize

    name = f"{kind}_pool{nd}d-" + tokenize(x, geom, sorted(extra.items(), key=str), channels_last)
    return x.map_blocks(run, chunks=tuple(chunks), dtype=dtype, meta=np.empty((0,) * x.ndim, dtype), name=name)


def _pool_data(obj, kind, dims, geom, extra, where):
    lead, trail, order, channels_last = _work_layout(obj, dims)
    nd = len(dims)
    data = obj.transpose(*order).data if order != list(obj.dims) else obj.data
    lead_shape = tuple(obj.sizes[d] for d in lead)
    trail_shape = tuple(obj.sizes[d] for d in trail)
    if channels_last:
        work = (math.prod(lead_shape),) + geom.in_size + (math.prod(trail_shape),)
    elif lead:
        work = (math.prod(lead_shape[:-1]), lead_shape[-1]) + geom.in_size
    else:
        work = (1, 1) + geom.in_size
    x = data.reshape(work) if data.shape != work else data
    if _is_dask(x) and nd == 3:
        chunked = [d for d in dims if len(obj.chunksizes[d]) > 1]
        if chunked:
            raise ValueError(
                f"{where}: pooling 3 dimensions of a Dask-backed array runs one block at a time, so each "
                f"pooled dimension must be a single chunk, but {tuple(chunked)} "
                f"{'is' if len(chunked) == 1 else 'are'} chunked; rechunk first: "
                f"da.chunk({{{', '.join(f'{d!r}: -1' for d in dims)}}}) (chunk the other dimensions "
                f"instead), or pool 2 dimensions, which runs across chunks")
        out = _blockwise(kind, nd, x, geom, extra, channels_last)
    else:
        out = _call(kind, nd, x, geom, extra, channels_last)
    out = out.reshape(lead_shape + geom.out_size + trail_shape)
    return out, order


# ---------------------------------------------------------------- coordinates
def _mean_dtype(v):
    """The dtype xarray's mean (``coarsen(...).mean()``) gives for coordinate values ``v``."""
    return xr.Variable(("w", "t"), v[:1][None]).mean("t").dtype


def _is_regular(num, step, dtype):
    if len(num) < 2 or not np.all(np.isfinite(num)):
        return False
    scale = float(np.max(np.abs(num)))
    tol = 1e-6 * abs(step) + (8 * np.finfo(dtype).eps * scale if dtype.kind == "f" else 0.0)
    return bool(np.all(np.abs(np.diff(num) - step) <= tol))


def window_centres(values, kernel_size, stride, padding, dilation, out_size, *, name="coordinate",
                   where="window_centres"):
    """Coordinates of the window centres along one pooled dimension.

    ``values`` is the input's 1-D coordinate; the rest are the pooling arguments along
    that dimension (ints) and the output length. Windows inside the input get the mean
    of their cells' coordinates (exactly what ``coarsen(...).mean()`` gives), the others
    the coordinate at the fractional index ``c(o) = o*s - p + d*(k-1)/2`` (see the
    module docstring).

    >>> window_centres(np.array([0., 10., 20., 30.]), 2, 2, 0, 1, 2)
    array([ 5., 25.])
    >>> window_centres(np.array([0., 10., 20., 30.]), 3, 1, 1, 1, 4)   # padding: extrapolated
    array([ 0., 10., 20., 30.])
    """
    k, s, p, d, n = (int(v) for v in (kernel_size, stride, padding, dilation, out_size))
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{where}: coordinate {name!r} must be 1-D, got shape {v.shape}")
    if v.dtype.kind not in "iufMm":
        raise TypeError(f"{where}: coordinate {name!r} has dtype {v.dtype}: only numbers, datetime64 and "
                        f"timedelta64 coordinates can be pooled; drop it first (da.drop_vars({name!r})) or "
                        f"replace it (da.assign_coords(...))")
    L = v.shape[0]
    dtype = _mean_dtype(v) if L else (v.dtype if v.dtype.kind in "fMm" else np.dtype(np.float64))
    start = np.arange(n, dtype=np.int64) * s - p
    inside = (start >= 0) & (start + d * (k - 1) <= L - 1)
    n_in = int(np.count_nonzero(inside))
    by_cells = n_in * k <= TAP_LIMIT
    out = np.empty(n, dtype)
    if by_cells and n_in:
        taps = start[inside, None] + d * np.arange(k)
        out[inside] = xr.Variable(("w", "t"), v[taps]).mean("t").values
    rest = ~inside if by_cells else np.ones(n, bool)
    if not rest.any():
        return out
    centre = start[rest] + d * (k - 1) / 2
    if v.dtype.kind in "Mm":
        base = v[:1].astype(np.int64) if L else np.zeros(1, np.int64)
        num = (v.astype(np.int64) - base).astype(np.float64)
    else:
        num = v.astype(np.float64)
    step = (num[-1] - num[0]) / (L - 1) if L > 1 else 0.0
    if _is_regular(num, step, v.dtype):
        at = num[0] + centre * step
    elif L and np.all((centre >= 0) & (centre <= L - 1)):
        at = np.interp(centre, np.arange(L), num)
    else:
        why = ("has fewer than 2 values" if L < 2 else "has NaN or NaT values" if not np.all(np.isfinite(num))
               else "is not a regular grid")
        raise ValueError(
            f"{where}: coordinate {name!r} {why}, and window centres "
            f"{centre[(centre < 0) | (centre > L - 1)][:3].tolist()} (in index space) lie outside it, in the "
            f"padding: drop it first (da.drop_vars({name!r})), assign a regular coordinate, or use padding=0 "
            f"and ceil_mode=False")
    if v.dtype.kind in "Mm":
        out[rest] = (base + np.round(at).astype(np.int64)).astype(v.dtype)
    else:
        out[rest] = at.astype(dtype)
    return out


def _pooled_coords(obj, dims, geom, where):
    """``{name: Variable}`` of the new 1-D coordinates, and the names to drop."""
    new, drop = {}, []
    for name, coord in obj.coords.items():
        touched = [d for d in coord.dims if d in dims]
        if not touched:
            continue
        if coord.ndim != 1:
            drop.append(name)
            continue
        i = dims.index(touched[0])
        values = window_centres(coord.values, geom.kernel[i], geom.stride[i], geom.padding[i],
                                geom.dilation[i], geom.out_size[i], name=name, where=where)
        new[name] = xr.Variable(coord.dims, values, attrs=dict(coord.attrs))
    return new, drop


# ---------------------------------------------------------------- georeference
def pooled_transform(transform, col=(1, 1, 0, 1), row=(1, 1, 0, 1)):
    """An affine transform ``(a, b, c, d, e, f)`` after pooling columns and rows.

    ``col`` and ``row`` are ``(kernel_size, stride, padding, dilation)`` along each axis.
    The pixel size is multiplied by the stride and the origin moves by
    ``(d*(k-1) + 1 - s)/2 - p`` input pixels, so that output pixel ``o``'s centre is the
    centre of its window. Returns a tuple of 6 floats.

    >>> pooled_transform((10., 0., 100., 0., -10., 200.), (2, 2, 0, 1), (2, 2, 0, 1))
    (20.0, 0.0, 100.0, 0.0, -20.0, 200.0)
    >>> pooled_transform((10., 0., 100., 0., -10., 200.), (2, 1, 0, 1), (2, 1, 0, 1))
    (10.0, 0.0, 105.0, 0.0, -10.0, 195.0)
    """
    a, b, c, d, e, f = (float(t) for t in transform[:6])
    shifts = []
    for k, s, p, dil in (col, row):
        shifts.append(((dil * (k - 1) + 1 - s) / 2 - p, s))
    (bx, sx), (by, sy) = shifts
    return (a * sx, b * sy, c + a * bx + b * by, d * sx, e * sy, f + d * bx + e * by)


def _spatial_dims(obj, pooled=()):
    """``(column dim, row dim)`` of a georeferenced array, or None: x/y (lon/lat, ...) by
    name; else the last two pooled dims in the array's order (``(row, col, band)`` pooled
    over row and col: col, row); else the array's last two dims."""
    for x, y in _SPATIAL_NAMES:
        if x in obj.dims and y in obj.dims:
            return x, y
    ordered = [d for d in obj.dims if d in pooled]
    if len(ordered) >= 2:
        return ordered[-1], ordered[-2]
    return (obj.dims[-1], obj.dims[-2]) if obj.ndim >= 2 else None


def _axis_args(dim, dims, geom):
    if dim not in dims:
        return (1, 1, 0, 1)
    i = dims.index(dim)
    return (geom.kernel[i], geom.stride[i], geom.padding[i], geom.dilation[i])


def _scaled_res(res, sx, sy):
    if isinstance(res, (tuple, list)) and len(res) == 2:
        return type(res)((res[0] * sx, res[1] * sy))
    if isinstance(res, np.ndarray) and res.shape == (2,):
        return res * np.array([sx, sy])
    if np.isscalar(res) and not isinstance(res, (str, bytes)):
        return res * sx if sx == sy else (res * sx, res * sy)
    return res


def _georeference(obj, dims, geom, attrs, coords):
    """Update ``attrs`` (transform, res/resolution) and GeoTransform coords in place (copies)."""
    has_transform = "transform" in attrs
    geo = [n for n, c in obj.coords.items() if "GeoTransform" in c.attrs and not set(c.dims) & set(dims)]
    if not has_transform and not geo:
        return
    spatial = _spatial_dims(obj, dims)
    if spatial is None or not set(spatial) & set(dims):
        return
    col, row = _axis_args(spatial[0], dims, geom), _axis_args(spatial[1], dims, geom)
    if has_transform:
        t = attrs["transform"]
        if isinstance(t, (tuple, list, np.ndarray)) and len(t) in (6, 9):
            new = pooled_transform(t, col, row)
            if len(t) == 9:
                new = new + tuple(float(v) for v in t[6:])
            if isinstance(t, np.ndarray):
                attrs["transform"] = np.array(new, dtype=t.dtype)
            elif type(t) in (tuple, list):
                attrs["transform"] = type(t)(new)
            else:  # affine.Affine and other tuple subclasses
                try:
                    attrs["transform"] = type(t)(*new[:6])
                except TypeError:
                    attrs["transform"] = new
    for name in geo:
        var = obj.coords[name].variable.copy(deep=False)
        var.attrs = dict(var.attrs)
        gt = [float(v) for v in str(var.attrs["GeoTransform"]).split()]
        if len(gt) == 6:
            a, b, c, d, e, f = pooled_transform((gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]), col, row)
            var.attrs["GeoTransform"] = " ".join(repr(float(v)) for v in (c, a, b, f, d, e))
        coords[name] = var
    for key in ("res", "resolution"):
        if key in attrs:
            attrs[key] = _scaled_res(attrs[key], col[1], row[1])


# ---------------------------------------------------------------- the accessor
def _pool(obj, kind, windows, window_kwargs, *, stride, padding, dilation, ceil_mode, extra):
    where = f"DataArray.pool.{'max' if kind == 'max' else 'mean'}"
    dims, kernel = _windows(obj, where, windows, window_kwargs)
    G.check_nan_policy(extra["nan_policy"], where)  # checked here too, to fail before any coordinate work
    nd = len(dims)
    strides = kernel if stride is None else _per_dim(stride, "stride", dims, kernel, 1, where)
    if isinstance(padding, str):
        pads = padding
    else:
        pads = _per_dim(padding, "padding", dims, (0,) * nd, 0, where)
    dils = _per_dim(dilation, "dilation", dims, (1,) * nd, 1, where)
    in_size = tuple(obj.sizes[d] for d in dims)
    geom = _geometry(f"{kind}_pool{nd}d", in_size, kernel, strides, pads, dils, ceil_mode, dims, where)
    new_coords, drop = _pooled_coords(obj, dims, geom, where)
    data, order = _pool_data(obj, kind, dims, geom, extra, where)
    attrs = dict(obj.attrs)
    _georeference(obj, dims, geom, attrs, new_coords)
    kept = obj.drop_vars(drop + list(new_coords)).coords
    out = xr.DataArray(data, coords=kept, dims=order, name=obj.name, attrs=attrs)
    out = out.assign_coords(new_coords)
    out.encoding = {k: v for k, v in obj.encoding.items() if k not in _SHAPE_ENCODING}
    return out.transpose(*obj.dims)


@xr.register_dataarray_accessor("pool")
class PoolAccessor:
    """``da.pool.max(...)`` and ``da.pool.mean(...)``: pooling by dimension name (see :mod:`poolkit.xarray`)."""

    def __init__(self, obj):
        self._obj = obj

    def max(self, windows=None, /, *, stride=None, padding=0, dilation=1, ceil_mode=False,
            nan_policy="propagate", **window_kwargs):
        """Max pooling over the named dimensions (:func:`poolkit.max_pool2d`'s semantics).

        Parameters
        ----------
        windows : mapping {dim: int}, optional
            Window sizes; or give them as keywords, ``y=2, x=2`` (1 to 3 dimensions).
        stride : int or mapping {dim: int}, optional
            Default: the window (PyTorch's rule).
        padding : int, mapping {dim: int}, "same" or "valid"
            Implicit ``-inf`` cells on both sides, at most half the window.
        dilation : int or mapping {dim: int}
        ceil_mode : bool
        nan_policy : str
            ``"propagate"`` (a NaN in a window gives NaN, as PyTorch) or ``"omit"``
            (NaN cells are skipped; a window with no valid cell gives NaN); passed to poolkit.

        Returns
        -------
        DataArray
            Same dims (in the same order), dtype, name and attrs; pooled dimensions get
            window-centre coordinates and the georeference is updated. Lazy for Dask data.

        Examples
        --------
        >>> import numpy as np, xarray as xr, poolkit.xarray
        >>> da = xr.DataArray(np.arange(6.), dims="t", coords={"t": np.arange(6) * 10})
        >>> out = da.pool.max(t=3, stride=1)
        >>> out.values, out.t.values
        (array([2., 3., 4., 5.]), array([10., 20., 30., 40.]))
        """
        return _pool(self._obj, "max", windows, window_kwargs, stride=stride, padding=padding,
                     dilation=dilation, ceil_mode=ceil_mode, extra={"nan_policy": nan_policy})

    def mean(self, windows=None, /, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, nan_policy="propagate", **window_kwargs):
        """Average pooling over the named dimensions (:func:`poolkit.avg_pool2d`'s semantics).

        Parameters
        ----------
        windows : mapping {dim: int}, optional
            Window sizes; or give them as keywords, ``y=2, x=2`` (1 to 3 dimensions).
        stride : int or mapping {dim: int}, optional
            Default: the window (PyTorch's rule).
        padding : int, mapping {dim: int}, "same" or "valid"
            Implicit zero cells on both sides, at most half the window.
        ceil_mode : bool
        count_include_pad : bool
            Count padding cells in the divisor.
        divisor_override : int, optional
            Divide every sum by this instead.
        nan_policy : str
            ``"propagate"`` (PyTorch's rule) or ``"omit"`` (NaN cells are skipped and not
            counted; padding cells count as zeros when ``count_include_pad``, so a window
            with no valid cell gives NaN only without counted padding and without
            ``divisor_override``); passed to poolkit.

        Returns
        -------
        DataArray
            As :meth:`max`; float data only (cast integers with ``da.astype("float32")``).
        """
        return _pool(self._obj, "avg", windows, window_kwargs, stride=stride, padding=padding, dilation=1,
                     ceil_mode=ceil_mode,
                     extra={"nan_policy": nan_policy, "count_include_pad": count_include_pad,
                            "divisor_override": divisor_override})
