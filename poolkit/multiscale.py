"""Pyramids: every level of a raster pooled 2x2 from the one before, in memory or to a multiscale Zarr.

:func:`pyramid` returns ``[x, pool(x), pool(pool(x)), ...]``; each step is one call of
the public :func:`poolkit.avg_pool2d` (``op="mean"``) or :func:`poolkit.max_pool2d`
(``op="max"``) with ``kernel_size=k, stride=k, ceil_mode=True``, so a level is, bit for
bit, what applying poolkit's own pooling ``level`` times gives. NumPy (and GPU) arrays
are pooled eagerly; Dask arrays stay lazy (the public functions send them to
:mod:`poolkit.dask`), and their values do not depend on the chunking. An
:class:`xarray.DataArray` is pooled by its ``.pool`` accessor (:mod:`poolkit.xarray`):
the same values, coordinates and georeference carried along.

>>> import numpy as np
>>> from poolkit.multiscale import pyramid
>>> x = np.arange(25, dtype=np.float32).reshape(5, 5)     # one band, (H, W)
>>> [level.shape for level in pyramid(x, 4)]
[(5, 5), (3, 3), (2, 2), (1, 1)]
>>> pyramid(x, 2)[1]                                       # the edge is kept (ceil_mode)
array([[ 3. ,  5. ,  6.5],
       [13. , 15. , 16.5],
       [20.5, 22.5, 24. ]], dtype=float32)

Shapes and odd sizes
--------------------
``x`` is ``(H, W)`` (one band), ``(C, H, W)`` or ``(N, C, H, W)``; with
``layout="NHWC"``, ``(H, W, C)`` or ``(N, H, W, C)``. A 2-D raster is pooled as one
channel and stays 2-D. Odd sides keep their edge: ``ceil_mode=True`` (the default)
adds a last window that starts inside the raster and covers what is left of it, so a
side of ``L`` becomes ``ceil(L / k)``. Its padding semantics are exactly poolkit's
(PyTorch's): no padding, and cells past the edge are never counted, so that window's
mean is the mean of the cells it covers and its max their max. ``ceil_mode=False``
drops the leftover rows and columns instead (``floor(L / k)``). Levels that would
no longer shrink (a 1x1 level with ``ceil_mode``) or would be empty are refused with a
ValueError that says how many levels the raster allows.

NaN (nodata)
------------
``nan_policy="propagate"`` (PyTorch's rule, the default) makes any window with a NaN
NaN, so nodata spreads by one window per level. ``nan_policy="omit"`` skips NaN cells:
a mean divides by the number of valid cells, and only a window without any valid cell
is NaN. The argument goes straight to the pooling functions.

Writing a multiscale Zarr (:func:`pyramid_to_zarr`)
---------------------------------------------------
Zarr arrays ``"0"``, ``"1"``, ... in one group, and a ``multiscales`` group attribute
read by OME-NGFF 0.4 tools (``version``, ``axes``, ``datasets`` with ``scale`` and
``translation`` transformations) and by ndpyramid-style readers (``type: "reduce"``,
``metadata: {method, version, kwargs}``). With ``zarr_format=3`` the same entry is also
written under ``ome`` (OME-NGFF 0.5).

Memory: level 0 is streamed from ``x`` into Zarr, one chunk per task. Level
``k + 1`` is then built *from the stored level k*, never from ``x``: one task per chunk
of level ``k + 1`` reads the stored chunks of level ``k`` that it covers, one at a
time, pools each into its part of one chunk-sized array and writes that. Tasks pass
nothing to each other, so no level is ever held in memory, the scheduler keeps no
intermediate results, and each source chunk is computed once. A task holds about
three chunks at its peak (its output, one stored chunk as Zarr reads it, the pooled
part); ``benchmarks/pyramid_bench.py`` measures it. All levels share one chunk shape
(capped at the level's shape); its spatial sides must be multiples of
``kernel_size``, so that a window never straddles two chunks.

Resuming: after each level the group attributes record how many levels are complete
(``poolkit_pyramid.levels_complete``) and ``multiscales`` lists only those levels, so
the store is a valid pyramid at every moment. ``resume=True`` skips the complete
levels (after checking that shape, dtype, chunks and pooling arguments match) and
writes the rest, which also extends a pyramid with more levels.

Dask, Zarr and xarray are imported only when needed (by :func:`pyramid_to_zarr`, for a
DataArray, or by ``poolkit.dask`` for a Dask array): ``import poolkit`` imports none of them.
"""
from __future__ import annotations

import os

from . import geometry as G
from .functional import avg_pool2d, backend_for, max_pool2d

__all__ = ["pyramid", "pyramid_to_zarr", "pyramid_shapes"]

#: ``op`` -> the public pooling function for one step.
_POOL = {"mean": avg_pool2d, "max": max_pool2d}
#: NGFF axis names and types per layout and number of dimensions.
_AXES = {
    (2, False): "yx", (3, False): "cyx", (4, False): "ncyx",
    (2, True): "yx", (3, True): "yxc", (4, True): "nyxc",
}
_AXIS_TYPES = {"y": "space", "x": "space", "c": "channel"}
_INSTALL = 'pip install "poolkit[xarray]"'


class _Plan:
    """The validated arguments of one pyramid: shapes of every level, spatial axes, pooling arguments."""

    def __init__(self, fn, shape, levels, op, kernel_size, ceil_mode, layout):
        if isinstance(op, str) and op in _POOL:
            self.op = op
        elif isinstance(op, str):
            raise ValueError(f"{fn}: op must be 'mean' or 'max', got {op!r}")
        else:
            raise TypeError(f"{fn}: op must be the string 'mean' or 'max', got {type(op).__name__} {op!r}")
        if not G.is_int(levels):
            raise TypeError(f"{fn}: levels must be an int (the number of levels, level 0 = x "
                            f"included), got {type(levels).__name__} {levels!r}")
        if levels < 1:
            raise ValueError(f"{fn}: levels must be >= 1 (level 0 is x itself), got {levels}")
        self.levels = int(levels)
        self.kernel = G.normalize_tuple(kernel_size, 2, "kernel_size", fn, minimum=1)
        self.ceil_mode = G.check_bool(ceil_mode, "ceil_mode", fn)
        self.channels_last = G.check_layout(layout, 2, fn)
        self.layout = G.LAYOUTS[2][1 if self.channels_last else 0]
        shape = tuple(int(v) for v in shape)
        if len(shape) not in (2, 3, 4):
            names = self.layout
            raise ValueError(f"{fn}: x must be 2-d (H, W), 3-d {names[1:]} or 4-d {names} "
                             f"(layout={layout!r}), got a {len(shape)}-d array of shape {shape}")
        self.ndim = len(shape)
        if self.ndim == 2:
            self.spatial = (0, 1)
        elif self.channels_last:
            self.spatial = (self.ndim - 3, self.ndim - 2)
        else:
            self.spatial = (self.ndim - 2, self.ndim - 1)
        if any(shape[a] == 0 for a in self.spatial):
            raise ValueError(f"{fn}: x must have non-zero spatial sizes, got shape {shape}")
        self.shapes = [shape]
        sizes = [shape[a] for a in self.spatial]
        for level in range(1, self.levels):
            new = [G.pool_output_size(L, k, k, 0, 1, self.ceil_mode) for L, k in zip(sizes, self.kernel)]
            if min(new) < 1 or new == sizes:
                why = "empty (ceil_mode=False drops a side shorter than kernel_size)" if min(new) < 1 \
                    else "no smaller than the level before"
                raise ValueError(
                    f"{fn}: levels={levels} is too many for a {shape[self.spatial[0]]}x"
                    f"{shape[self.spatial[1]]} raster with kernel_size={self.kernel} and "
                    f"ceil_mode={self.ceil_mode}: level {level} would be {why}; at most {level} levels")
            sizes = new
            full = list(shape)
            for a, v in zip(self.spatial, sizes):
                full[a] = v
            self.shapes.append(tuple(full))

    def check(self, fn, dtype, nan_policy):
        """What the pooling would refuse, refused even when ``levels == 1`` pools nothing."""
        G.check_nan_policy(nan_policy, fn)
        if self.op == "mean" and dtype.kind != "f":
            raise TypeError(f"{fn}: op='mean' needs a float32 or float64 x (average pooling), got {dtype}")

    def kwargs(self, nan_policy):
        """The pooling function's keyword arguments for one step."""
        return dict(kernel_size=self.kernel, stride=self.kernel, ceil_mode=self.ceil_mode, layout=self.layout,
                    nan_policy=nan_policy)

    def step(self, a, nan_policy):
        """One level up: pool ``a`` (a 2-D raster as one channel of a 3-D one)."""
        pool = _POOL[self.op]
        kw = self.kwargs(nan_policy)
        if self.ndim != 2:
            return pool(a, **kw)
        if self.channels_last:
            return pool(a[..., None], **kw)[..., 0]
        return pool(a[None], **kw)[0]

    def scale(self, level):
        """Each axis's pixel size at ``level`` in level-0 pixels (NGFF ``scale``)."""
        out = [1.0] * self.ndim
        for a, k in zip(self.spatial, self.kernel):
            out[a] = float(k ** level)
        return out

    def translation(self, level):
        """Where pixel 0 of ``level`` is centred, in level-0 pixels (NGFF ``translation``)."""
        return [(s - 1) / 2 for s in self.scale(level)]


def _is_xarray(x) -> bool:
    return type(x).__module__.split(".")[0] == "xarray"


def _check_x(x, fn):
    if _is_xarray(x) and fn != "pyramid":
        raise TypeError(f"{fn}: x is an xarray object; pass its array (x.data) and the matching layout")
    if _is_xarray(x) and type(x).__name__ != "DataArray":
        raise TypeError(f"{fn}: x must be a DataArray, not an xarray {type(x).__name__} (pick a variable)")
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise TypeError(f"{fn}: x must be a NumPy, Dask or GPU array, got {type(x).__name__}")


def pyramid_shapes(shape, levels, *, kernel_size=2, ceil_mode=True, layout="NCHW"):
    """The shape of every level of a pyramid of an array of shape ``shape`` (nothing is computed).

    Arguments as for :func:`pyramid`; a ValueError if ``levels`` is too many.

    >>> from poolkit.multiscale import pyramid_shapes
    >>> pyramid_shapes((3, 1000, 999), 4)
    [(3, 1000, 999), (3, 500, 500), (3, 250, 250), (3, 125, 125)]
    >>> pyramid_shapes((1000, 999), 4, ceil_mode=False)
    [(1000, 999), (500, 499), (250, 249), (125, 124)]
    """
    return list(_Plan("pyramid_shapes", shape, levels, "mean", kernel_size, ceil_mode, layout).shapes)


def pyramid(x, levels, op="mean", *, kernel_size=2, ceil_mode=True, nan_policy="propagate", layout="NCHW",
            dims=None):
    """Every level of a pyramid: ``[x, pool(x), pool(pool(x)), ...]``, ``levels`` arrays in all.

    Parameters
    ----------
    x : array
        NumPy (pooled now), Dask (lazy) or GPU array (pooled on the device):
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``; with ``layout="NHWC"``,
        ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``. float32 or float64 for
        ``op="mean"``; integers too for ``op="max"``. Or an :class:`xarray.DataArray`
        (see ``dims``).
    levels : int
        Number of levels returned, level 0 (``x`` itself) included.
    op : {"mean", "max"}
        :func:`poolkit.avg_pool2d` or :func:`poolkit.max_pool2d` per step.
    kernel_size : int or (int, int)
        Window and stride of each step (2: each level halves each side).
    ceil_mode : bool
        True (default): odd sides keep their edge (``ceil(L / k)``), the last window
        covering the cells left; False: they drop it (``floor(L / k)``).
    nan_policy : {"propagate", "omit"}
        Passed to the pooling function: NaN spreads (PyTorch), or NaN cells are skipped.
    layout : {"NCHW", "NHWC"}
        Where the channels are (see ``x``).
    dims : (str, str), optional
        DataArray only: the (rows, columns) dimensions to pool; default its last two.
        Each step is ``x.pool.mean(...)`` / ``x.pool.max(...)`` (:mod:`poolkit.xarray`):
        the same values, with coordinates, attributes and georeference carried along;
        every other dimension is a batch or channel axis wherever it is.

    Returns
    -------
    list of arrays
        ``levels`` arrays of ``x``'s kind and dtype. Dask levels are lazy and each is
        built on the one before; to store a large pyramid use :func:`pyramid_to_zarr`,
        which never keeps a level in memory.

    Examples
    --------
    >>> import numpy as np
    >>> from poolkit.multiscale import pyramid
    >>> x = np.array([[1., np.nan], [3., 4.]])
    >>> [float(level[0, 0]) for level in pyramid(x, 2, "max")]
    [1.0, nan]

    See Also
    --------
    pyramid_to_zarr : the same levels written to a multiscale Zarr group.
    """
    _check_x(x, "pyramid")
    if _is_xarray(x):
        return _dataarray_pyramid(x, levels, op, kernel_size, ceil_mode, nan_policy, layout, dims)
    if dims is not None:
        raise TypeError(f"pyramid: dims is for DataArrays; x is a {type(x).__name__} (use layout=)")
    plan = _Plan("pyramid", x.shape, levels, op, kernel_size, ceil_mode, layout)
    plan.check("pyramid", x.dtype, nan_policy)
    out = [x]
    for _ in range(1, plan.levels):
        out.append(plan.step(out[-1], nan_policy))
    return out


def _dataarray_pyramid(x, levels, op, kernel_size, ceil_mode, nan_policy, layout, dims):
    fn = "pyramid"
    if not (isinstance(layout, str) and layout.upper() == "NCHW"):
        raise ValueError(f"pyramid: layout is for plain arrays; a DataArray's dimensions are named "
                         f"(use dims=), got layout={layout!r}")
    if dims is None:
        if x.ndim < 2:
            raise ValueError(f"{fn}: x must have at least 2 dimensions, got {x.dims}")
        dims = tuple(x.dims[-2:])
    if not (isinstance(dims, (tuple, list)) and len(dims) == 2 and dims[0] != dims[1]
            and all(d in x.dims for d in dims)):
        raise ValueError(f"{fn}: dims must name two different dimensions of x (rows, columns), "
                         f"got {dims!r}; x has {x.dims}")
    plan = _Plan(fn, (x.sizes[dims[0]], x.sizes[dims[1]]), levels, op, kernel_size, ceil_mode, "NCHW")
    plan.check(fn, x.dtype, nan_policy)
    from . import xarray as _registers_the_accessor  # noqa: F401  (DataArray.pool)

    windows = dict(zip(dims, plan.kernel))
    out = [x]
    for _ in range(1, plan.levels):
        pool = out[-1].pool.mean if plan.op == "mean" else out[-1].pool.max
        out.append(pool(windows, ceil_mode=plan.ceil_mode, nan_policy=nan_policy))
    return out


# ---------------------------------------------------------------------- Zarr
def _import_zarr():
    try:
        import zarr
    except ImportError as e:
        raise ImportError(f"pyramid_to_zarr needs zarr: {_INSTALL}") from e
    try:
        import dask.array as da
    except ImportError as e:
        raise ImportError(f"pyramid_to_zarr needs dask: {_INSTALL}") from e
    return zarr, da


def _zarr_major(zarr) -> int:
    return int(str(zarr.__version__).split(".")[0])


def _chunk_shape(fn, x, chunks, plan, da):
    """The chunk shape of every stored level (capped at each level's shape)."""
    shape = plan.shapes[0]
    if chunks is None:
        if isinstance(x, da.Array):
            base = list(x.chunksize)
        else:
            base = [1] * plan.ndim
            for a in plan.spatial:
                base[a] = 1024
        for a, k in zip(plan.spatial, plan.kernel):  # round up to whole windows
            base[a] = -(-base[a] // k) * k
    else:
        if G.is_int(chunks):
            base = [1] * plan.ndim
            for a in plan.spatial:
                base[a] = int(chunks)
        elif isinstance(chunks, (tuple, list)) and len(chunks) == plan.ndim and all(G.is_int(c) for c in chunks):
            base = [int(c) for c in chunks]
        else:
            raise TypeError(f"{fn}: chunks must be an int (the spatial sides) or a tuple of "
                            f"{plan.ndim} ints, got {chunks!r}")
        if min(base) < 1:
            raise ValueError(f"{fn}: chunks must be positive, got {chunks!r}")
        bad = [(base[a], k) for a, k in zip(plan.spatial, plan.kernel) if base[a] % k and base[a] < shape[a]]
        if bad:
            raise ValueError(f"{fn}: chunks must be multiples of kernel_size={plan.kernel} along H and W "
                             f"(a window must not straddle two chunks), got {chunks!r}")
    return [tuple(min(c, s) for c, s in zip(base, level_shape)) for level_shape in plan.shapes]


def _metadata(plan, name, done, nan_policy, zarr_format):
    """The ``multiscales`` entry listing levels ``0 .. done - 1`` (OME-NGFF 0.4 + ndpyramid fields)."""
    from importlib import metadata

    try:
        version = metadata.version("poolkit")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        version = "unknown"
    axes = [{"name": n, **({"type": _AXIS_TYPES[n]} if n in _AXIS_TYPES else {})}
            for n in _AXES[plan.ndim, plan.channels_last]]
    datasets = [{"path": str(i), "coordinateTransformations": [
        {"type": "scale", "scale": plan.scale(i)},
        {"type": "translation", "translation": plan.translation(i)}]} for i in range(done)]
    method = "poolkit." + ("avg_pool2d" if plan.op == "mean" else "max_pool2d")
    entry = {
        "version": "0.4", "name": name, "axes": axes, "datasets": datasets, "type": "reduce",
        "metadata": {"method": method, "version": version, "args": [],
                     "kwargs": {"kernel_size": list(plan.kernel), "stride": list(plan.kernel),
                                "ceil_mode": plan.ceil_mode, "nan_policy": nan_policy,
                                "layout": plan.layout}},
    }
    attrs = {"multiscales": [entry]}
    if zarr_format == 3:
        ome = {k: v for k, v in entry.items() if k != "version"}
        attrs["ome"] = {"version": "0.5", "multiscales": [ome]}
    return attrs


def _create_array(group, name, shape, dtype, chunks, compressors, axes, zarr_format):
    if hasattr(group, "create_array"):  # zarr-python 3
        kw = {} if isinstance(compressors, str) and compressors == "auto" else {"compressors": compressors}
        if zarr_format == 3:
            kw["dimension_names"] = list(axes)
        return group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, overwrite=True, **kw)
    kw = {} if isinstance(compressors, str) and compressors == "auto" else {"compressor": compressors}
    return group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, overwrite=True, **kw)


def pyramid_to_zarr(x, store, levels, op="mean", *, kernel_size=2, ceil_mode=True, nan_policy="propagate",
                    layout="NCHW", chunks=None, compressors="auto", zarr_format=2, name="",
                    overwrite=False, resume=False, compute_kwargs=None):
    """Write every level of :func:`pyramid` to a multiscale Zarr group, one chunk at a time.

    Parameters
    ----------
    x : numpy.ndarray or dask.array.Array
        The raster (shapes, dtypes and layouts as :func:`pyramid`). A Dask array is
        read one chunk per task and never held whole.
    store : str, os.PathLike or zarr store
        Where the group goes (anything ``zarr.open_group`` takes).
    levels, op, kernel_size, ceil_mode, nan_policy, layout
        As :func:`pyramid`.
    chunks : int or tuple of ints, optional
        Chunk shape of every level (capped at the level's shape); an int gives the
        spatial sides (other axes 1). Spatial sides must be multiples of
        ``kernel_size``. Default: a Dask array's chunk shape (rounded up to whole
        windows), or 1024 x 1024 for a NumPy array.
    compressors : "auto", None or codecs
        Zarr's default codec (``"auto"``), none (``None``: fastest on local disks) or
        codecs for ``zarr.create_array`` (``compressor=`` under zarr-python 2).
    zarr_format : {2, 3}
        Zarr format; 2 (default) is what OME-NGFF 0.4 and ndpyramid readers expect.
    name : str
        The ``name`` of the multiscales entry.
    overwrite : bool
        Replace whatever ``store`` holds.
    resume : bool
        Keep the complete levels of a pyramid written before with the same
        arguments and write the rest (also: add levels to it).
    compute_kwargs : dict, optional
        Passed to Dask's compute (``scheduler=``, ``num_workers=``, ...).

    Returns
    -------
    list of dask.array.Array
        The ``levels`` stored levels, read back lazily (``dask.array.from_zarr``).

    Raises
    ------
    FileExistsError
        ``store`` holds something and neither ``overwrite`` nor ``resume`` is set.

    Examples
    --------
    >>> import tempfile, numpy as np, zarr
    >>> from poolkit.multiscale import pyramid_to_zarr
    >>> x = np.arange(36, dtype=np.float32).reshape(6, 6)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     levels = pyramid_to_zarr(x, tmp, 3, chunks=4)
    ...     print([lv.shape for lv in levels], levels[2].compute())
    ...     ms = zarr.open_group(tmp, mode="r").attrs["multiscales"][0]
    ...     print([d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]])
    [(6, 6), (3, 3), (2, 2)] [[10.5 13.5]
     [28.5 31.5]]
    [[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]]

    See Also
    --------
    pyramid : the levels without Zarr.
    """
    fn = "pyramid_to_zarr"
    _check_x(x, fn)
    plan = _Plan(fn, x.shape, levels, op, kernel_size, ceil_mode, layout)
    plan.check(fn, x.dtype, nan_policy)
    for flag, value in (("overwrite", overwrite), ("resume", resume)):
        G.check_bool(value, flag, fn)
    if zarr_format not in (2, 3) or isinstance(zarr_format, bool):
        raise ValueError(f"{fn}: zarr_format must be 2 or 3, got {zarr_format!r}")
    if compute_kwargs is not None and not isinstance(compute_kwargs, dict):
        raise TypeError(f"{fn}: compute_kwargs must be a dict, got {type(compute_kwargs).__name__}")
    compute_kwargs = dict(compute_kwargs or {})
    store = os.fspath(store) if isinstance(store, os.PathLike) else store  # zarr-python 2 wants str
    zarr, da = _import_zarr()
    kind = "dask" if isinstance(x, da.Array) else backend_for(x)
    if kind == "gpu":
        raise TypeError(f"{fn}: x is a GPU array; copy it to the host first (x.copy_to_host() or cupy.asnumpy(x))")
    chunk_shapes = _chunk_shape(fn, x, chunks, plan, da)
    dtype = str(x.dtype)
    if plan.levels > 1:  # the pooling function checks its arguments (and x's kind) on a corner, before any write
        corner = tuple(slice(0, 2 * plan.kernel[plan.spatial.index(a)]) if a in plan.spatial else slice(0, 1)
                       for a in range(plan.ndim))
        tiny = x[corner]
        plan.step(tiny if kind == "dask" else da.from_array(tiny, chunks=tiny.shape), nan_policy)
    if zarr_format == 3 and _zarr_major(zarr) < 3:
        raise ValueError(f"{fn}: zarr_format=3 needs zarr-python 3 (installed: {zarr.__version__})")
    fmt = {"zarr_format": zarr_format} if _zarr_major(zarr) >= 3 else {}

    record = {"op": plan.op, "kernel_size": list(plan.kernel), "ceil_mode": plan.ceil_mode,
              "nan_policy": nan_policy, "layout": plan.layout, "shape": list(plan.shapes[0]),
              "dtype": dtype, "chunks": list(chunk_shapes[0])}
    group = zarr.open_group(store, mode="w" if overwrite else "a", **fmt)
    done = 0
    old = dict(group.attrs).get("poolkit_pyramid")
    if not overwrite and (old is not None or len(list(group.keys())) or "multiscales" in group.attrs):
        if not resume:
            raise FileExistsError(f"{fn}: {store!r} already holds a Zarr group with content; pass "
                                  f"overwrite=True to replace it or resume=True to finish a pyramid")
        if old is None:
            raise ValueError(f"{fn}: resume=True, but {store!r} holds no poolkit pyramid "
                             f"(no 'poolkit_pyramid' attribute); pass overwrite=True")
        stale = {k: (old.get(k), v) for k, v in record.items() if old.get(k) != v}
        if stale:
            raise ValueError(f"{fn}: resume=True, but the pyramid in {store!r} was written with other "
                             f"arguments (stored, requested): {stale}; pass overwrite=True")
        done = min(int(old.get("levels_complete", 0)), plan.levels)

    axes = _AXES[plan.ndim, plan.channels_last]
    for level in range(done, plan.levels):
        z = _create_array(group, str(level), plan.shapes[level], dtype, chunk_shapes[level],
                          compressors, axes, zarr_format)
        if level == 0:
            src = x if kind == "dask" else da.from_array(x, chunks=chunk_shapes[0])
            _store_level(src.rechunk(chunk_shapes[0]), z, compute_kwargs)
        else:  # from the stored level, never from x: no chain to the source
            _store_level(_pool_stored(group[str(level - 1)], z, plan, nan_policy), z, compute_kwargs)
        group.attrs.update({**_metadata(plan, name, level + 1, nan_policy, zarr_format),
                            "poolkit_pyramid": {**record, "levels_complete": level + 1}})
    return [da.from_zarr(group[str(level)]) for level in range(plan.levels)]


def _store_level(src, z, compute_kwargs):
    """Write one level: ``src`` is a Dask array (level 0, stored chunk by chunk) or the
    list of :func:`_pool_stored`'s delayed tasks (each writes its own chunk)."""
    import dask
    import dask.array as da

    if isinstance(src, da.Array):
        da.store(src, z, lock=False, **compute_kwargs)
    else:
        dask.compute(*src, **compute_kwargs)


def _pool_stored(below, z, plan, nan_policy):
    """The tasks that write level ``k + 1`` (Zarr array ``z``) from the stored level ``k`` (``below``).

    One task per chunk of ``z``: it pools the stored chunks of ``below`` that the chunk
    covers, one at a time, into one chunk-sized array, and writes it. Chunk sides are
    whole windows, so no window straddles two stored chunks and pooling them one by one
    is pooling the level. A task holds its output chunk, one stored chunk and its pooled
    part; nothing passes between tasks, so the scheduler keeps no intermediate results.
    """
    import itertools

    import dask

    starts = itertools.product(*(range(0, s, c) for s, c in zip(z.shape, z.chunks)))
    return [dask.delayed(_pool_chunk, pure=False)(below, z, plan, nan_policy, tuple(s)) for s in starts]


def _pool_chunk(below, z, plan, nan_policy, starts):
    """One chunk of ``z`` (its corner at ``starts``): pooled from ``below`` and written."""
    import itertools

    import numpy as np

    stops = [min(a + c, s) for a, c, s in zip(starts, z.chunks, z.shape)]
    out = np.empty([b - a for a, b in zip(starts, stops)], dtype=z.dtype)
    pieces = []  # per axis: the (start, stop) of each stored chunk of ``below`` the output chunk covers
    for a in range(plan.ndim):
        if a in plan.spatial:
            k = plan.kernel[plan.spatial.index(a)]
            lo, hi = starts[a] * k, min(stops[a] * k, below.shape[a])
            pieces.append([(p, min(p + below.chunks[a], hi)) for p in range(lo, hi, below.chunks[a])])
        else:  # every level has the same chunks along the other axes
            pieces.append([(starts[a], stops[a])])
    for piece in itertools.product(*pieces):
        pooled = plan.step(below[tuple(slice(p, q) for p, q in piece)], nan_policy)
        at = []
        for a, (p, _) in enumerate(piece):
            o = p // plan.kernel[plan.spatial.index(a)] - starts[a] if a in plan.spatial else 0
            at.append(slice(o, o + pooled.shape[a]))
        out[tuple(at)] = pooled
    z[tuple(slice(a, b) for a, b in zip(starts, stops))] = out
