"""Pooling geometry and argument validation: one place for every rule.

Every backend (``reference`` loops, ``cpu`` Numba kernels, ``gpu`` CUDA kernels,
``dask`` blocks) calls the functions here, so a semantic fix touches one function.
Everything is pure Python / NumPy and works for any number of spatial dimensions
(1-d, 2-d, 3-d pooling share it).

The rules are PyTorch's (``aten/src/ATen/native/Pool.h``):

* ``stride=None`` (or an empty sequence) means ``stride = kernel_size``.
* Output size along one dimension::

      out = floor((L + 2*p - d*(k-1) - 1 + (s-1 if ceil_mode else 0)) / s) + 1
      if ceil_mode and (out-1)*s >= L + p: out -= 1   # last window must start
                                                       # inside input or left pad

* ``padding <= kernel_size // 2`` (PyTorch checks the kernel, not the dilated one).
* Average divisor: the window ``[start, start+k)`` is first clipped to the padded
  input ``[-p, L+p)`` (so a ceil_mode overhang past the right padding never
  counts), which gives the divisor for ``count_include_pad=True``; it is then
  clipped to ``[0, L)``, which gives the divisor for ``count_include_pad=False``.
  ``divisor_override`` replaces both.  The divisor is a product over dimensions
  of per-dimension counts, so :func:`avg_divisor_table` returns one small table
  per dimension.
"""
from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PoolGeometry",
    "pool_output_size",
    "normalize_tuple",
    "make_geometry",
    "check_input",
    "as_native_array",
    "avg_divisor_table",
    "window_range",
    "LAYOUTS",
]

#: Accepted layouts per number of spatial dimensions: (channels-first, channels-last).
LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def normalize_tuple(value, nd: int, name: str, op: str, *, minimum: int) -> tuple[int, ...]:
    """Turn an int or a sequence of ``nd`` ints into a tuple, checking each is ``>= minimum``.

    >>> normalize_tuple(2, 2, "kernel_size", "max_pool2d", minimum=1)
    (2, 2)
    """
    if _is_int(value):
        items = (operator.index(value),) * nd
    elif isinstance(value, (tuple, list)):
        if len(value) == 1 and nd > 1 and _is_int(value[0]):
            items = (operator.index(value[0]),) * nd
        elif len(value) != nd:
            raise ValueError(
                f"{op}: {name} must be an int or a sequence of {nd} ints, got {value!r} "
                f"(length {len(value)})"
            )
        else:
            if not all(_is_int(v) for v in value):
                raise TypeError(f"{op}: {name} must contain ints only, got {value!r}")
            items = tuple(operator.index(v) for v in value)
    else:
        raise TypeError(
            f"{op}: {name} must be an int or a sequence of {nd} ints, "
            f"got {type(value).__name__} {value!r}"
        )
    for v in items:
        if v < minimum:
            cmp = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{op}: {name} must be {cmp}, got {value!r}")
    return items


def pool_output_size(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Number of windows along one dimension (PyTorch's ``pooling_output_shape``)."""
    eff = d * (k - 1) + 1
    num = L + 2 * p - eff + ((s - 1) if ceil_mode else 0)
    out = num // s + 1  # floor division, like PyTorch's div_rtn
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    return out


def window_range(o: int, L: int, k: int, s: int, p: int, d: int = 1):
    """Input indices read by output position ``o`` along one dimension.

    Returns ``(start, taps)`` where ``start = o*s - p`` is the unclipped start and
    ``taps`` the in-bounds input indices in scan order.
    """
    start = o * s - p
    return start, [start + j * d for j in range(k) if 0 <= start + j * d < L]


@dataclass(frozen=True)
class PoolGeometry:
    """Validated geometry of one pooling call (spatial dims only, any ``nd``)."""

    op: str
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool

    @property
    def nd(self) -> int:
        return len(self.in_size)

    def describe(self) -> str:
        return (
            f"{self.op}: input {self.in_size} -> output {self.out_size} "
            f"(kernel {self.kernel}, stride {self.stride}, padding {self.padding}, "
            f"dilation {self.dilation}, ceil_mode={self.ceil_mode})"
        )


def make_geometry(
    op: str,
    in_size,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
) -> PoolGeometry:
    """Validate pooling arguments against a spatial input size and compute the output size.

    Raises ``TypeError``/``ValueError`` naming the offending argument.
    """
    in_size = tuple(int(v) for v in in_size)
    nd = len(in_size)
    k = normalize_tuple(kernel_size, nd, "kernel_size", op, minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = normalize_tuple(stride, nd, "stride", op, minimum=1)
    p = normalize_tuple(padding, nd, "padding", op, minimum=0)
    d = normalize_tuple(dilation, nd, "dilation", op, minimum=1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{op}: ceil_mode must be a bool, got {type(ceil_mode).__name__} {ceil_mode!r}")
    ceil_mode = bool(ceil_mode)
    for i in range(nd):
        if p[i] > k[i] // 2:
            raise ValueError(
                f"{op}: padding must be at most half of kernel_size, got padding={padding!r} "
                f"with kernel_size={kernel_size!r} (dimension {i}: {p[i]} > {k[i]}//2)"
            )
    out = tuple(pool_output_size(in_size[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(nd))
    for i in range(nd):
        if out[i] < 1:
            eff = d[i] * (k[i] - 1) + 1
            raise ValueError(
                f"{op}: the window (kernel_size={kernel_size!r}, dilation={dilation!r}; "
                f"{eff} cells along spatial dimension {i}) is larger than the padded input "
                f"({in_size[i]} + 2*{p[i]} = {in_size[i] + 2 * p[i]} cells); the output would be empty"
            )
    # A dilated window can straddle the whole input and touch no input cell at all
    # (e.g. L=2, k=2, d=3, p=1 reads -1 and 2). PyTorch then returns -inf with an
    # out-of-range index; we refuse instead of returning a meaningless answer.
    if any(di > 1 for di in d):
        for i in range(nd):
            for o in range(out[i]):
                if not window_range(o, in_size[i], k[i], s[i], p[i], d[i])[1]:
                    raise ValueError(
                        f"{op}: with dilation={dilation!r} and padding={padding!r} the window at "
                        f"output position {o} of spatial dimension {i} reads no input cell "
                        f"(input size {in_size[i]}); reduce padding or dilation"
                    )
    return PoolGeometry(op, in_size, out, k, s, p, d, ceil_mode)


def avg_divisor_table(geom: PoolGeometry, count_include_pad: bool) -> list[np.ndarray]:
    """Per-dimension window counts; the divisor of an output cell is their product.

    ``table[i][o]`` is the number of cells window ``o`` covers along dimension ``i``:
    clipped to the padded input ``[-p, L+p)`` when ``count_include_pad`` (the
    ceil_mode overhang past the right padding never counts), else to ``[0, L)``.
    """
    tables = []
    for i in range(geom.nd):
        L, k, s, p = geom.in_size[i], geom.kernel[i], geom.stride[i], geom.padding[i]
        o = np.arange(geom.out_size[i], dtype=np.int64)
        start = o * s - p
        end = np.minimum(start + k, L + p)
        if count_include_pad:
            cnt = end - start
        else:
            cnt = np.minimum(end, L) - np.maximum(start, 0)
        tables.append(cnt.astype(np.int64))
    return tables


def check_layout(layout, nd: int, op: str) -> bool:
    """Return True for channels-last, False for channels-first; reject anything else."""
    first, last = LAYOUTS[nd]
    if not isinstance(layout, str):
        raise TypeError(f"{op}: layout must be a string, {first!r} or {last!r}, got {layout!r}")
    if layout.upper() == first:
        return False
    if layout.upper() == last:
        return True
    raise ValueError(f"{op}: layout must be {first!r} or {last!r}, got {layout!r}")


_FLOAT_KINDS = "f"
_INT_KINDS = "iu"


def check_input(shape, dtype, nd: int, layout, op: str, *, allow_int: bool):
    """Validate an input's shape and dtype (works for NumPy, GPU and Dask arrays alike).

    Returns ``(channels_last, batched, spatial_shape)``.
    """
    channels_last = check_layout(layout, nd, op)
    shape = tuple(int(v) for v in shape)
    names = LAYOUTS[nd][1 if channels_last else 0]
    if len(shape) not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: x must be {nd + 2}-d {names} (batched) or {nd + 1}-d {names[1:]} (unbatched), "
            f"got a {len(shape)}-d array of shape {shape}"
        )
    dtype = np.dtype(dtype)
    if dtype.kind not in _FLOAT_KINDS + (_INT_KINDS if allow_int else ""):
        allowed = "float32 or float64" + (" or an integer dtype" if allow_int else "")
        extra = "" if allow_int or dtype.kind not in _INT_KINDS else " (cast integers with x.astype(np.float32))"
        raise TypeError(f"{op}: x must have dtype {allowed}, got {dtype}{extra}")
    if dtype.kind == "f" and dtype.itemsize not in (4, 8):
        raise TypeError(f"{op}: x must have dtype float32 or float64, got {dtype} (cast with x.astype(np.float32))")
    batched = len(shape) == nd + 2
    full = shape if batched else (1,) + shape
    if channels_last:
        spatial, channels = full[1:-1], full[-1]
    else:
        spatial, channels = full[2:], full[1]
    if channels == 0 or any(v == 0 for v in spatial):
        raise ValueError(
            f"{op}: x must have non-zero channel and spatial sizes ({names}), got shape {shape}"
        )
    return channels_last, batched, spatial


def as_native_array(x, op: str) -> np.ndarray:
    """Check ``x`` is a NumPy array and return it in native byte order (no copy if already)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: x must be a NumPy array (or a GPU/Dask array), got {type(x).__name__}"
        )
    if x.dtype.kind in "fiu" and not x.dtype.isnative:
        # Big-endian data (e.g. raw medical images) -> native order; Numba needs it.
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def check_divisor_override(divisor_override, op: str):
    if divisor_override is None:
        return 0
    if not _is_int(divisor_override):
        raise TypeError(f"{op}: divisor_override must be None or a positive int, got {divisor_override!r}")
    if divisor_override <= 0:
        raise ValueError(f"{op}: divisor_override must be a positive int, got {divisor_override!r}")
    return int(divisor_override)


def check_bool(value, name: str, op: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)
