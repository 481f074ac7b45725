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

Beyond PyTorch, ``padding`` may be a string (TensorFlow/Keras semantics):

* ``"valid"`` -- no padding (``padding=0``).
* ``"same"`` -- ``out = ceil(L / s)``; the total padding
  ``max((out-1)*s + d*(k-1) + 1 - L, 0)`` is split with the odd cell at the *end*
  (``padding`` is the begin part, ``padding_end`` the end part). Padded cells never
  win a max and are never counted in an average (``count_include_pad`` is
  ignored); ``ceil_mode=True`` is refused.

Adaptive pooling (PyTorch's ``adaptive_*_pool``) splits ``L`` cells into ``out``
bins ``[floor(i*L/out), ceil((i+1)*L/out))`` (uneven and possibly overlapping):
:func:`adaptive_bins`, :func:`make_adaptive_geometry`; :func:`adaptive_blocks` splits a huge output.
"""
from __future__ import annotations

import functools
import itertools
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
    "takes_zero_channels",
    "as_native_array",
    "plain_array",
    "prepare_array",
    "max_identity",
    "avg_divisor_table",
    "avg_divisors",
    "window_range",
    "LAYOUTS",
    "PADDING_MODES",
    "window_extents",
    "covering_windows",
    "adaptive_bins",
    "adaptive_covering",
    "ADAPTIVE_BLOCK",
    "adaptive_blocks",
    "AdaptiveGeometry",
    "make_adaptive_geometry",
    "unpool_output_size",
    "check_norm_type",
    "check_indices",
    "check_grad_output",
    "ceil_mode_windows",
    "window_cells",
    "with_unit_dims",
    "check_index_range",
    "is_int",
    "INT_LIMIT",
    "check_limit",
    "check_divisor_override",
    "tap_range",
    "first_window_missing_input",
    "large_window",
    "LARGE_WINDOW_SLACK",
    "OPS",
    "FORWARD_OPS",
]

#: The public operations, forward then backward: the one list of names that
#: ``poolkit``, ``functional``, ``reference``, ``cpu`` and ``gpu`` export.
FORWARD_OPS = (
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "global_max_pool2d", "global_avg_pool2d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
)
OPS = FORWARD_OPS + tuple(f"{name}_backward" for name in FORWARD_OPS)

#: Accepted layouts per number of spatial dimensions: (channels-first, channels-last).
LAYOUTS = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}

#: String paddings accepted by max/avg pooling (TensorFlow/Keras semantics).
PADDING_MODES = ("same", "valid")


def is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


#: The largest value any integer argument may take (``kernel_size``, ``stride``,
#: ``padding``, ``dilation``, ``|divisor_override|``, adaptive and unpooling output
#: sizes), and the largest dilated window ``(kernel_size - 1) * dilation + 1``.
#:
#: Why 2**60: the kernels compute positions in int64 (< 2**63 = 8 * 2**60). With every
#: argument and the window span at most B = 2**60, and an input dimension L < B (an
#: array that fits in memory), a window's start ``o*s - p`` lies in ``[-p, L)`` for
#: every output ``o`` (the output-size rule), so ``|o*s - p| <= 2B``; a tap
#: ``o*s - p + j*d`` (``j*d <= span - 1 < B``) stays below ``3B``; the clipping
#: arithmetic ``(L - 1 - start) // d`` and ``start + span`` below ``4B``; a count of
#: windows or cells below ``2B``. Everything stays under ``2**63`` with room to spare,
#: and a value past the limit is refused with a ValueError that names it instead of
#: reaching a kernel as an overflow or a Numba typing error (``2**64`` is no int64).
INT_LIMIT = 2 ** 60


def check_limit(v: int, name: str, op: str, shown=None) -> None:
    """Refuse ``|v| > INT_LIMIT`` with a ValueError naming the argument and the limit."""
    if abs(v) > INT_LIMIT:
        raise ValueError(f"{op}: {name} must be at most 2**60 = {INT_LIMIT} in absolute value "
                         f"(int64 arithmetic in the kernels), got {v if shown is None else shown!r}")


def normalize_tuple(value, nd: int, name: str, op: str, *, minimum: int) -> tuple[int, ...]:
    """Turn an int or a sequence of ``nd`` ints into a tuple, checking each is ``>= minimum``.

    >>> normalize_tuple(2, 2, "kernel_size", "max_pool2d", minimum=1)
    (2, 2)
    """
    if is_int(value):
        items = (operator.index(value),) * nd
    elif isinstance(value, (tuple, list)):
        if len(value) == 1 and nd > 1 and is_int(value[0]):
            items = (operator.index(value[0]),) * nd
        elif len(value) != nd:
            raise ValueError(
                f"{op}: {name} must be an int or a sequence of {nd} ints, got {value!r} "
                f"(length {len(value)})"
            )
        else:
            if not all(is_int(v) for v in value):
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
        check_limit(v, name, op, value)
    return items


def pool_output_size(L: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Number of windows along one dimension (PyTorch's ``pooling_output_shape``)."""
    return ceil_mode_windows(L, k, s, p, d)[1] if ceil_mode else ceil_mode_windows(L, k, s, p, d)[0]


def ceil_mode_windows(L: int, k: int, s: int, p: int, d: int = 1) -> tuple[int, int, bool]:
    """``(floor_count, ceil_count, dropped)`` along one dimension.

    ``floor_count`` and ``ceil_count`` are the window counts without and with
    ``ceil_mode``; ``dropped`` says the ceil rule's extra window was removed
    because it would start at or after ``L + p`` (in the right padding).

    >>> ceil_mode_windows(5, 2, 2, 0)   # ceil_mode adds a window reading cell 4
    (2, 3, False)
    >>> ceil_mode_windows(5, 2, 2, 1)   # ... but here it would start in the padding
    (3, 3, True)
    """
    eff = d * (k - 1) + 1
    floor_count = (L + 2 * p - eff) // s + 1  # floor division, like PyTorch's div_rtn
    ceil_count = (L + 2 * p - eff + s - 1) // s + 1
    dropped = (ceil_count - 1) * s >= L + p  # last window must start inside input or left pad
    return floor_count, ceil_count - 1 if dropped else ceil_count, dropped


def tap_range(start: int, L: int, k: int, d: int = 1) -> tuple[int, int]:
    """The in-range taps ``[j0, j1)`` of a window starting at ``start`` (``j0 == j1``: none).

    Tap ``j`` (``0 <= j < k``) reads input index ``start + j*d``; it is inside the
    input when ``0 <= start + j*d < L``, i.e. for ``j0 = ceil(-start / d)`` (0 if
    ``start >= 0``) up to ``j1 = floor((L - 1 - start) / d) + 1`` (at most ``k``).
    O(1): the kernels clip their tap loops with the same two lines.

    >>> tap_range(-5, 8, 10, 2)    # taps at -5, -3, -1, 1, 3, 5, 7, 9, ...: j = 3..6 are inside
    (3, 7)
    """
    j0 = 0 if start >= 0 else (-start + d - 1) // d
    j1 = min(k, (L - 1 - start) // d + 1) if start < L else 0
    return j0, max(j0, j1)


def window_range(o: int, L: int, k: int, s: int, p: int, d: int = 1):
    """Input indices read by output position ``o`` along one dimension.

    Returns ``(start, taps)`` where ``start = o*s - p`` is the unclipped start and
    ``taps`` the in-bounds input indices in scan order (computed from
    :func:`tap_range`: O(in-range taps), not O(k)).
    """
    start = o * s - p
    j0, j1 = tap_range(start, L, k, d)
    return start, list(range(start + j0 * d, start + j1 * d, d))


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
    #: Padding after the input along each dimension; ``None`` means "same as ``padding``"
    #: (always the case except for ``padding="same"`` with an odd total padding).
    padding_end: tuple[int, ...] | None = None
    #: ``"explicit"`` (integer padding), ``"same"`` or ``"valid"``.
    padding_mode: str = "explicit"

    def __post_init__(self):
        if self.padding_end is None:
            object.__setattr__(self, "padding_end", self.padding)

    @property
    def nd(self) -> int:
        return len(self.in_size)

    def describe(self) -> str:
        if self.padding_mode == "explicit":
            pad = f"padding {self.padding}"
        else:
            pad = f"padding={self.padding_mode!r} (begin {self.padding}, end {self.padding_end})"
        return (
            f"{self.op}: input {self.in_size} -> output {self.out_size} "
            f"(kernel {self.kernel}, stride {self.stride}, {pad}, "
            f"dilation {self.dilation}, ceil_mode={self.ceil_mode})"
        )


def _exact_key(value):
    """A hashable key that tells ``2``, ``2.0``, ``True`` and ``np.int64(2)`` apart
    (plain equality would not), so a cached result is only reused for arguments
    that validate exactly alike."""
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_exact_key(v) for v in value))
    return (type(value), value)


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

    Raises ``TypeError``/``ValueError`` naming the offending argument. Results are
    memoised (the geometry is immutable): a training loop pools the same shapes
    with the same arguments over and over, and validating them again costs more
    than pooling a small input. Failures are not cached; they raise every time.
    """
    in_size = tuple(int(v) for v in in_size)
    args = (kernel_size, stride, padding, dilation, ceil_mode)
    try:
        key = (op, in_size) + tuple(_exact_key(v) for v in args)
        return _GEOMETRY_CACHE[key]
    except TypeError:  # an unhashable argument (e.g. an array): validate and report it uncached
        return _make_geometry(op, in_size, *args)
    except KeyError:
        pass
    geom = _make_geometry(op, in_size, *args)
    if len(_GEOMETRY_CACHE) >= 512:
        _GEOMETRY_CACHE.clear()
    _GEOMETRY_CACHE[key] = geom
    return geom


#: make_geometry's memo: exact-type argument keys -> PoolGeometry (immutable).
_GEOMETRY_CACHE: dict = {}


def _make_geometry(op, in_size, kernel_size, stride, padding, dilation, ceil_mode) -> PoolGeometry:
    nd = len(in_size)
    k = normalize_tuple(kernel_size, nd, "kernel_size", op, minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = normalize_tuple(stride, nd, "stride", op, minimum=1)
    mode = "explicit"
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in PADDING_MODES:
            raise ValueError(
                f"{op}: padding must be an int, a sequence of {nd} ints, 'same' or 'valid', "
                f"got {padding!r}"
            )
    else:
        p = normalize_tuple(padding, nd, "padding", op, minimum=0)
    d = normalize_tuple(dilation, nd, "dilation", op, minimum=1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{op}: ceil_mode must be a bool, got {type(ceil_mode).__name__} {ceil_mode!r}")
    ceil_mode = bool(ceil_mode)
    for i in range(nd):  # the dilated window must stay in int64 too (see INT_LIMIT)
        if (k[i] - 1) * d[i] + 1 > INT_LIMIT:
            raise ValueError(
                f"{op}: the dilated window (kernel_size - 1) * dilation + 1 must be at most 2**60 = "
                f"{INT_LIMIT} (int64 arithmetic in the kernels), got kernel_size={kernel_size!r}, "
                f"dilation={dilation!r} ({(k[i] - 1) * d[i] + 1} cells along spatial dimension {i})"
            )
    pe = None
    if mode == "same":
        if ceil_mode:
            raise ValueError(
                f"{op}: ceil_mode=True cannot be combined with padding='same' "
                "(the output size is always ceil(L / stride))"
            )
        p, pe = same_padding(in_size, k, s, d)
        out = tuple(-(-in_size[i] // s[i]) for i in range(nd))
    else:
        if mode == "valid":
            p = (0,) * nd
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
    for i in range(nd):
        o = first_window_missing_input(in_size[i], k[i], s[i], p[i], d[i], out[i])
        if o >= 0:
            raise ValueError(
                f"{op}: with dilation={dilation!r} and padding={padding!r} the window at "
                f"output position {o} of spatial dimension {i} reads no input cell "
                f"(input size {in_size[i]}); reduce padding or dilation"
            )
    return PoolGeometry(op, in_size, out, k, s, p, d, ceil_mode, pe, mode)


def first_window_missing_input(L: int, k: int, s: int, p: int, d: int, out: int) -> int:
    """The first output position whose window reads no input cell, or -1 (any padding rule).

    O(1) when ``L >= d``, which is nearly always: then no window can miss the input.
    Proof. A window starts at ``t = o*s - p`` and reads ``t + j*d`` for ``j < k``.
    (a) ``t <= L - 1``: with ``ceil_mode`` the output rule drops a window starting at
    or after ``L + p``; without it the last window ends inside the right padding,
    ``t + (k-1)*d <= L + p - 1``, and ``p <= k//2 <= (k-1)*d``; with
    ``padding="same"`` ``(out-1)*s < L`` since ``out = ceil(L/s)``.
    (b) If ``t >= 0`` tap 0 reads cell ``t``. Otherwise the first tap at or after 0 is
    ``j0 = ceil(-t/d)`` and reads ``t + j0*d <= d - 1 <= L - 1``, an input cell, provided
    ``j0 <= k - 1``: ``j0 <= ceil(p/d)`` and ``p <= k//2`` (explicit padding), or
    ``p <= (k-1)*d/2`` ("same": its total padding is at most ``(k-1)*d + (out-1)*s + 1 - L``,
    ``(out-1)*s <= L - 1``), so ``j0 <= k - 1`` for ``k >= 2``; ``k = 1`` has ``p = 0``.
    When ``L < d`` each window reads at most one cell and there are few windows
    (``out <= max(2, L)``: a span ``(k-1)*d + 1 > (k-1)*L`` leaves at most one floor-mode
    window, plus ceil_mode's one, and "same" has ``ceil(L/s) <= L``), so they are all
    checked, vectorised. tests/test_geometry.py checks this against the brute-force rule.

    >>> first_window_missing_input(2, 2, 1, 1, 3, 1)    # taps -1 and 2, both outside L = 2
    0
    """
    if L >= d or k == 1:
        return -1
    start = np.arange(out, dtype=np.int64) * s - p  # out <= max(2, L) here (see above)
    j0 = np.where(start >= 0, 0, -(start // d))
    missing = (j0 >= k) | (start + j0 * d >= L)
    return int(np.argmax(missing)) if missing.any() else -1


def same_padding(in_size, kernel, stride, dilation):
    """Begin and end paddings of ``padding="same"`` (TensorFlow's rule).

    ``out = ceil(L/s)``; the total padding ``max((out-1)*s + d*(k-1) + 1 - L, 0)``
    is split as ``total // 2`` before and the rest (one more when odd) after.

    >>> same_padding((5,), (2,), (1,), (1,))
    ((0,), (1,))
    """
    begin, end = [], []
    for L, k, s, d in zip(in_size, kernel, stride, dilation):
        out = -(-L // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - L, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return tuple(begin), tuple(end)


def avg_divisor_table(geom: PoolGeometry, count_include_pad: bool) -> list[np.ndarray]:
    """Per-dimension window counts; the divisor of an output cell is their product.

    ``table[i][o]`` is the number of cells window ``o`` covers along dimension ``i``:
    clipped to the padded input ``[-p, L+p)`` when ``count_include_pad`` (the
    ceil_mode overhang past the right padding never counts), else to ``[0, L)``.
    With ``padding="same"`` the count is always clipped to ``[0, L)``.
    """
    if geom.padding_mode == "same":
        count_include_pad = False  # TensorFlow: padded cells are never counted
    tables = []
    for i in range(geom.nd):
        L, k, s, p = geom.in_size[i], geom.kernel[i], geom.stride[i], geom.padding[i]
        o = np.arange(geom.out_size[i], dtype=np.int64)
        start = o * s - p
        end = np.minimum(start + k, L + geom.padding_end[i])
        if count_include_pad:
            cnt = end - start
        else:
            cnt = np.minimum(end, L) - np.maximum(start, 0)
        tables.append(cnt.astype(np.int64))
    return tables


@functools.lru_cache(maxsize=256)
def avg_divisors(geom: PoolGeometry, count_include_pad: bool, dtype) -> tuple[np.ndarray, ...]:
    """:func:`avg_divisor_table` in ``dtype``, memoised; the arrays are read-only.

    What the kernels take: an output cell's divisor is the product of its
    per-dimension entries, computed in the input dtype as PyTorch does.
    """
    tables = tuple(t.astype(dtype) for t in avg_divisor_table(geom, bool(count_include_pad)))
    for t in tables:
        t.flags.writeable = False
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
    if any(v == 0 for v in spatial) or (channels == 0 and not takes_zero_channels(op)):
        zero_c = "" if channels or takes_zero_channels(op) else (
            "; as in PyTorch, only adaptive pooling and unpooling take zero channels")
        raise ValueError(
            f"{op}: x must have non-zero channel and spatial sizes ({names}), got shape {shape}{zero_c}"
        )
    return channels_last, batched, spatial


def takes_zero_channels(op: str) -> bool:
    """Whether ``op`` (forward or ``_backward``) takes an input with zero channels.

    The rule for empty inputs, :func:`check_input`'s: every spatial size must be
    positive; the batch may be empty (``N = 0``) for every op; ``C = 0`` is taken by
    adaptive pooling (``global_*`` too) and unpooling, which give an empty result of
    the right shape, and refused by max/avg/Lp pooling, as PyTorch (2.13) does.
    PyTorch's own checks differ from op to op -- adaptive and unpooling kernels treat an
    unbatched input's leading axis as the batch, ``adaptive_avg_pool1d/2d`` check only
    the spatial sizes, its backward refuses a batched ``C = 0`` that its forward takes --
    so poolkit takes ``C = 0`` for these ops batched or not, forward and backward: a
    superset of PyTorch's. One deliberate difference the other way: an adaptive average
    to output size 1 over an empty plane (PyTorch's ``mean()`` of nothing, NaN) is refused.
    """
    return op.removesuffix("_backward").startswith(("adaptive_", "global_", "max_unpool"))


def max_init(dtype, omit: bool):
    """The value a max scan starts from: :func:`max_identity`, or NaN ("no valid cell yet")
    for a float scan that skips NaN (``nan_policy="omit"``)."""
    return np.dtype(dtype).type(np.nan) if omit else max_identity(dtype)


def max_identity(dtype):
    """The value a max-pooling window starts from (and implicit padding holds):
    ``-inf`` for floats, the smallest integer for integer dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(-np.inf)
    return dtype.type(np.iinfo(dtype).min)


def plain_array(a, name: str, op: str) -> np.ndarray:
    """``a`` (already known to be an ndarray) as a plain ``numpy.ndarray`` view.

    Subclasses (``np.memmap``, ``np.matrix``, user subclasses) are viewed as the
    base class -- what the kernels read is exactly their data; unaligned arrays are
    copied to aligned memory. A masked array is refused: the kernels would read the values under its mask as if they were valid.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{op}: {name} is a numpy.ma.MaskedArray; poolkit does not read masks and would pool "
            f"the masked-out values. Pass {name}.filled(np.nan) (masked cells become NaN, which "
            f"propagates) or {name}.filled(value), or np.asarray({name}) to pool the data as it is"
        )
    a = a if type(a) is np.ndarray else a.view(np.ndarray)
    # Unaligned data (e.g. a view into a byte buffer at an odd offset) is copied once:
    # Numba would otherwise compile every kernel again for unaligned arrays.
    return a if a.flags.aligned else np.array(a)


def as_native_array(x, op: str) -> np.ndarray:
    """Check ``x`` is a NumPy array and return it plain and in native byte order (no copy if already)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: x must be a NumPy array (or a GPU/Dask array), got {type(x).__name__}"
        )
    x = plain_array(x, "x", op)
    if x.dtype.kind in "fiu" and not x.dtype.isnative:
        # Big-endian data (e.g. raw medical images) -> native order; Numba needs it.
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def prepare_array(x, op: str, nd: int, layout, *, allow_int: bool):
    """Validate a NumPy input and return it batched and in native byte order.

    Returns ``(x, channels_last, batched, spatial_shape)``; ``x`` gains a leading
    batch axis (a view) when the input was unbatched.
    """
    x = as_native_array(x, op)
    channels_last, batched, spatial = check_input(x.shape, x.dtype, nd, layout, op, allow_int=allow_int)
    return (x if batched else x[None]), channels_last, batched, spatial


def check_divisor_override(divisor_override, op: str):
    """``None`` (returns 0) or a non-zero int, returned as is.

    PyTorch divides by any non-zero ``divisor_override``, a negative one too (the
    sums change sign); zero is refused ("divisor must be not zero").
    """
    if divisor_override is None:
        return 0
    if not is_int(divisor_override):
        raise TypeError(f"{op}: divisor_override must be None or a non-zero int, got {divisor_override!r}")
    if divisor_override == 0:
        raise ValueError(f"{op}: divisor_override must be a positive int or a negative int (any non-zero "
                         f"int: PyTorch divides by it), got {divisor_override!r}")
    check_limit(int(divisor_override), "divisor_override", op)
    return int(divisor_override)


#: ``nan_policy`` values of the max/avg family: PyTorch's rule (the default) and skipping NaN.
NAN_POLICIES = ("propagate", "omit")


def check_nan_policy(nan_policy, op: str) -> bool:
    """``"propagate"`` (False) or ``"omit"`` (True): whether NaN cells are skipped.

    ``"propagate"`` is PyTorch's rule: a NaN in a window makes its max and its
    average NaN. ``"omit"`` skips NaN cells (nodata): a max is over the valid cells
    (ties: the first), and a window with none gives what propagate gives there, its
    last NaN (bits included) and, with indices, that cell's index;
    an average divides by the number of valid cells, plus the window's padding
    cells when ``count_include_pad`` (they are zeros, and valid), or by
    ``divisor_override`` when given. With the tables of :func:`avg_divisor_table`
    the divisor of output cell ``o`` is::

        valid(o) + prod(table(cip)[i][o_i]) - prod(table(False)[i][o_i])

    (the second and third terms cancel unless ``count_include_pad``). An adaptive
    average whose bin lost a cell divides once by ``valid(o)``; a bin with every cell
    valid is divided by its sizes one after the other, as with ``"propagate"``, so
    that on data without NaN both policies give the same bits everywhere. Integer
    arrays hold no NaN: both policies agree.
    """
    if not isinstance(nan_policy, str):
        raise TypeError(f"{op}: nan_policy must be the string 'propagate' or 'omit', got "
                        f"{type(nan_policy).__name__} {nan_policy!r}")
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"{op}: nan_policy must be 'propagate' or 'omit', got {nan_policy!r}")
    return nan_policy == "omit"


def check_bool(value, name: str, op: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


# ------------------------------------------------------------------ windows, for backward and explain
def with_unit_dims(geom: PoolGeometry, nd: int) -> PoolGeometry:
    """The same (already validated) geometry with unit spatial dimensions in front, up to ``nd``.

    A 1-d pooling is the 2-d pooling of an ``H = 1`` view with kernel, stride and
    dilation 1 and no padding along H: this gives that 2-d geometry without
    validating the arguments again.

    >>> g = make_geometry("max_pool1d", (7,), 3, 2, 1)
    >>> h = with_unit_dims(g, 2)
    >>> h.in_size, h.out_size, h.kernel, h.stride, h.padding
    ((1, 7), (1, 4), (1, 3), (1, 2), (0, 1))
    """
    u = nd - geom.nd
    if u < 0:
        raise ValueError(f"with_unit_dims: geometry has {geom.nd} dims, more than {nd}")
    one, zero = (1,) * u, (0,) * u
    return PoolGeometry(geom.op, one + geom.in_size, one + geom.out_size, one + geom.kernel,
                        one + geom.stride, zero + geom.padding, one + geom.dilation, geom.ceil_mode,
                        zero + geom.padding_end, geom.padding_mode)


def check_index_range(lo: int, hi: int, n_cells: int, op: str, *, name: str = "indices") -> None:
    """User-given indices (smallest ``lo``, largest ``hi``) must name cells of one spatial plane."""
    if lo < 0 or hi >= n_cells:
        raise ValueError(f"{op}: {name} must lie in [0, {n_cells}) (flat positions in one "
                         f"spatial plane), got values from {lo} to {hi}")


def window_extents(geom: PoolGeometry) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per dimension, ``(start, stop)`` of every window's span in input coordinates.

    ``start = o*s - p`` and ``stop = start + d*(k-1) + 1``, unclipped: cells below
    0 or at/after ``L`` are padding (or, past ``L + padding_end``, a ceil_mode
    overhang that is no cell at all). With dilation the window reads only every
    ``d``-th cell of its span.
    """
    spans = []
    for i in range(geom.nd):
        o = np.arange(geom.out_size[i], dtype=np.int64)
        start = o * geom.stride[i] - geom.padding[i]
        spans.append((start, start + geom.dilation[i] * (geom.kernel[i] - 1) + 1))
    return spans


def covering_windows(start, stop, L: int) -> tuple[np.ndarray, np.ndarray]:
    """For each input index ``i < L``, the output range ``[lo[i], hi[i])`` whose spans contain ``i``.

    ``start`` and ``stop`` are the per-window spans along one dimension (both
    non-decreasing, as for regular and adaptive windows). A gradient written as a
    gather -- each input cell sums over the windows that read it -- loops over
    exactly this range, in increasing order.

    >>> lo, hi = covering_windows(np.array([0, 2]), np.array([3, 5]), 5)
    >>> lo.tolist(), hi.tolist()
    ([0, 0, 0, 1, 1], [1, 1, 2, 2, 2])
    """
    i = np.arange(L, dtype=np.int64)
    start = np.asarray(start, dtype=np.int64)
    stop = np.asarray(stop, dtype=np.int64)
    lo = np.searchsorted(stop, i, side="right")  # first window with stop > i
    hi = np.searchsorted(start, i, side="right")  # first window with start > i
    return lo.astype(np.int64), np.maximum(hi, lo).astype(np.int64)


# ------------------------------------------------------------------ adaptive pooling
def adaptive_bins(L: int, out: int, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive bins: ``start = floor(i*L/out)``, ``stop = ceil((i+1)*L/out)``,
    for bins ``lo <= i < hi`` (default: all ``out``).

    Integer arithmetic only (PyTorch's ``start_index``/``end_index``). Bins are
    uneven when ``out`` does not divide ``L`` and overlap when neither divides.

    >>> [a.tolist() for a in adaptive_bins(5, 3)]
    [[0, 1, 3], [2, 4, 5]]
    >>> [a.tolist() for a in adaptive_bins(5, 3, 1, 3)]
    [[1, 3], [4, 5]]
    """
    hi = out if hi is None else hi
    if out * L < 2 ** 62:  # i*L fits in int64 (the usual case); in place: two arrays in all
        start = np.arange(lo, hi, dtype=np.int64)
        stop = start + 1
        start *= L
        start //= out
        stop *= -L
        stop //= out  # floor(-(i+1)*L/out) = -ceil((i+1)*L/out)
        np.negative(stop, out=stop)
        return start, stop
    # i*L would overflow int64: q, r = divmod(L, out) gives i*L/out = i*q + i*r/out, i*r < out**2
    q, r = divmod(L, out)
    o = np.arange(lo, hi, dtype=object)
    start = (o * q + (o * r) // out).astype(np.int64)
    stop = (-((-(o + 1) * L) // out)).astype(np.int64)
    return start, stop


def adaptive_covering(L: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`covering_windows` of the ``out`` adaptive bins of ``L`` cells, without the bins:
    input cell ``i`` lies in bins ``[floor(i*out/L), ceil((i+1)*out/L))`` -- the adaptive bins
    of ``out`` cells into ``L``. Input-sized, whatever the output size (an adaptive
    average's backward to a huge output needs no table of its bins).

    >>> [a.tolist() for a in adaptive_covering(5, 2)]
    [[0, 0, 0, 1, 1], [1, 1, 2, 2, 2]]
    """
    if out == 0:
        return np.zeros(L, np.int64), np.zeros(L, np.int64)
    return adaptive_bins(out, L)


#: Most bins along one dimension whose ``(start, stop)`` tables one kernel call gets
#: (1 MiB of int64): an adaptive pooling with a longer output dimension runs in blocks
#: of it (:func:`adaptive_blocks`), so its tables never grow with the output.
ADAPTIVE_BLOCK = 2 ** 16


def adaptive_blocks(out_size) -> list[tuple[tuple[int, int], ...]]:
    """The output of an adaptive pooling in blocks of at most :data:`ADAPTIVE_BLOCK` bins per
    dimension: per block, one ``(o0, o1)`` range per spatial dimension. One block (the whole
    output) unless a dimension is longer; none for an empty output.

    >>> adaptive_blocks((3, 2 * ADAPTIVE_BLOCK + 1))[-1]
    ((0, 3), (131072, 131073))
    """
    ranges = [[(o, min(o + ADAPTIVE_BLOCK, n)) for o in range(0, n, ADAPTIVE_BLOCK)] for n in out_size]
    return list(itertools.product(*ranges))


@dataclass(frozen=True)
class AdaptiveGeometry:
    """Validated geometry of one adaptive pooling call: bin ``[start, stop)`` per output index.

    Only the sizes are stored; bins are computed when asked for (:meth:`bin` for one,
    :meth:`bins` for a dimension's arrays), so the geometry costs O(nd) memory
    whatever the output size.
    """

    op: str
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def nd(self) -> int:
        return len(self.in_size)

    def bin(self, i: int, o: int) -> tuple[int, int]:
        """``(start, stop)`` of bin ``o`` along spatial dimension ``i`` (Python ints).

        >>> make_adaptive_geometry("t", (5,), 3).bin(0, 1)
        (1, 4)
        """
        L, out = self.in_size[i], self.out_size[i]
        return (o * L) // out, -((-(o + 1) * L) // out)

    def bins(self, i: int, lo: int = 0, hi: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(start, stop)`` int64 arrays of the bins ``lo <= o < hi`` (default all) along spatial
        dimension ``i``."""
        return adaptive_bins(self.in_size[i], self.out_size[i], lo, hi)

    def describe(self) -> str:
        return f"{self.op}: input {self.in_size} -> output {self.out_size} (adaptive bins)"


def make_adaptive_geometry(op: str, in_size, output_size) -> AdaptiveGeometry:
    """Validate ``output_size`` (an int, or ``nd`` ints/``None``; ``None`` keeps that size).

    Sizes must be ``>= 0`` (PyTorch allows an empty output) and at most :data:`INT_LIMIT`.
    """
    in_size = tuple(int(v) for v in in_size)
    nd = len(in_size)
    expected = f"an int or a sequence of {nd} ints (None keeps that size)"
    if is_int(output_size):
        items = (operator.index(output_size),) * nd
    elif isinstance(output_size, (tuple, list)):
        if len(output_size) != nd:
            raise ValueError(f"{op}: output_size must be {expected}, got {output_size!r} "
                             f"(length {len(output_size)})")
        if not all(v is None or is_int(v) for v in output_size):
            raise TypeError(f"{op}: output_size must contain ints or None only, got {output_size!r}")
        items = tuple(in_size[i] if v is None else operator.index(v) for i, v in enumerate(output_size))
    else:
        raise TypeError(f"{op}: output_size must be {expected}, got {type(output_size).__name__} "
                        f"{output_size!r}")
    if any(v < 0 for v in items):
        raise ValueError(f"{op}: output_size must be >= 0, got {output_size!r}")
    for v in items:
        check_limit(v, "output_size", op, output_size)
    return AdaptiveGeometry(op, in_size, items)


# ------------------------------------------------------------------ lp pooling, unpooling, gradients
def check_norm_type(norm_type, op: str) -> float:
    """``norm_type`` must be a real number other than 0 and NaN (``inf`` means max of |x|)."""
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"{op}: norm_type must be a real number, got {type(norm_type).__name__} {norm_type!r}")
    try:
        value = float(norm_type)
    except OverflowError:
        raise ValueError(f"{op}: norm_type must be representable as a float (at most ~1.8e308; "
                         f"use float('inf') for max pooling of |x|), got an int of "
                         f"{int(norm_type).bit_length()} bits") from None
    if value == 0 or value != value:
        raise ValueError(f"{op}: norm_type must be non-zero and not NaN, got {norm_type!r}")
    return value


def unpool_output_size(op: str, in_size, kernel_size, stride, padding, output_size, *,
                       channels_last: bool = False) -> tuple[int, ...]:
    """Spatial output size of ``max_unpool`` (PyTorch's ``_unpool_output_size``).

    Default ``(L - 1)*s + k - 2*p``; an explicit ``output_size`` (``nd`` spatial sizes,
    or ``nd + 2`` ints in the layout's order -- ``(N, C, *spatial)``, or
    ``(N, *spatial, C)`` when ``channels_last`` -- whose N and C are not read, as
    PyTorch does not read them) must lie strictly between ``default - s`` and
    ``default + s``.

    >>> unpool_output_size("t", (3, 3), 2, None, 0, (8, 6, 7, 16), channels_last=True)
    (6, 7)
    """
    in_size = tuple(int(v) for v in in_size)
    nd = len(in_size)
    k = normalize_tuple(kernel_size, nd, "kernel_size", op, minimum=1)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        s = k
    else:
        s = normalize_tuple(stride, nd, "stride", op, minimum=1)
    p = normalize_tuple(padding, nd, "padding", op, minimum=0)
    default = tuple((in_size[i] - 1) * s[i] + k[i] - 2 * p[i] for i in range(nd))
    if output_size is None:
        size = default
    else:
        if is_int(output_size) and nd == 1:
            output_size = (output_size,)
        if not isinstance(output_size, (tuple, list)) or not all(is_int(v) for v in output_size):
            raise TypeError(f"{op}: output_size must be None or a sequence of {nd} (or {nd + 2}) ints, "
                            f"got {output_size!r}")
        size = tuple(int(v) for v in output_size)
        for v in size:
            check_limit(v, "output_size", op, output_size)
        order = ""
        if len(size) == nd + 2:
            size = size[1:-1] if channels_last else size[2:]
            order = f" ({', '.join(LAYOUTS[nd][int(bool(channels_last))])})"
        if len(size) != nd:
            raise ValueError(f"{op}: output_size must contain {nd} or {nd + 2} elements, "
                             f"got {output_size!r} (length {len(output_size)})")
        for i in range(nd):
            lo, hi = default[i] - s[i], default[i] + s[i]
            if not lo < size[i] < hi:
                raise ValueError(f"{op}: invalid output_size {output_size!r}{order}: spatial dimension {i} "
                                 f"must be strictly between {lo} and {hi}")
    for i in range(nd):
        if size[i] <= 0:
            raise ValueError(f"{op}: the output size {size} is empty along spatial dimension {i}; "
                             f"check kernel_size, stride, padding and output_size")
        if size[i] > INT_LIMIT:
            raise ValueError(f"{op}: the output size (L - 1) * stride + kernel_size - 2 * padding = "
                             f"{size[i]} along spatial dimension {i} must be at most 2**60 = "
                             f"{INT_LIMIT}; check kernel_size={kernel_size!r} and stride={stride!r}")
    return size


def check_indices(indices, shape, op: str, *, name: str = "indices") -> np.ndarray:
    """``indices`` must be an integer NumPy array with the given shape; returns it as int64."""
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{op}: {name} must be a NumPy array of int64 (as returned with "
                        f"return_indices=True), got {type(indices).__name__}")
    indices = plain_array(indices, name, op)
    if indices.dtype.kind not in _INT_KINDS:
        raise TypeError(f"{op}: {name} must have an integer dtype, got {indices.dtype}")
    if tuple(indices.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(indices.shape)}")
    return indices.astype(np.int64, copy=False)


def check_grad_output(grad_output, x, shape, op: str) -> np.ndarray:
    """``grad_output`` must be a NumPy array with the forward output's shape and ``x``'s dtype."""
    if not isinstance(grad_output, np.ndarray):
        raise TypeError(f"{op}: grad_output must be a NumPy array, got {type(grad_output).__name__}")
    grad_output = plain_array(grad_output, "grad_output", op)
    if tuple(grad_output.shape) != tuple(shape):
        raise ValueError(f"{op}: grad_output must have the forward output's shape {tuple(shape)}, "
                         f"got {tuple(grad_output.shape)}")
    if grad_output.dtype.newbyteorder("=") != x.dtype.newbyteorder("="):
        raise TypeError(f"{op}: grad_output must have x's dtype {x.dtype}, got {grad_output.dtype}")
    if not grad_output.dtype.isnative:
        grad_output = grad_output.astype(grad_output.dtype.newbyteorder("="))
    return grad_output


def window_cells(geom: PoolGeometry) -> list[dict[str, np.ndarray]]:
    """Per dimension, what each window's ``k`` taps land on (for explanations and plots).

    For every output index along dimension ``i``: ``first``/``last`` (the first and
    last input index read, ``-1`` if none), ``inside`` (taps on input cells),
    ``padding`` (taps on padding cells, ``[-p, 0)`` or ``[L, L + padding_end)``)
    and ``overhang`` (taps past ``L + padding_end``: a ceil_mode window sticking out
    of the padded input; they are no cell at all). ``inside + padding`` is the
    ``count_include_pad`` divisor of :func:`avg_divisor_table` (without dilation).
    Computed per window from the tap arithmetic of :func:`tap_range` (O(outputs),
    whatever the kernel size).
    """
    tables = []
    for i, (start, _) in enumerate(window_extents(geom)):
        L, k, d = geom.in_size[i], geom.kernel[i], geom.dilation[i]
        j0 = np.minimum(np.maximum(-(start // d), 0), k)       # first tap at or after 0
        j1 = np.clip((L - 1 - start) // d + 1, j0, k)           # one past the last tap before L
        jo = np.clip(-((start - (L + geom.padding_end[i])) // d), j1, k)  # first tap past the padding
        inside = j1 - j0
        read = inside > 0
        tables.append(dict(first=np.where(read, start + j0 * d, -1),
                           last=np.where(read, start + (j1 - 1) * d, -1),
                           inside=inside, padding=k - inside - (k - jo), overhang=k - jo))
    return tables


#: :func:`large_window`'s slack: a window may span up to ``2 * L + LARGE_WINDOW_SLACK``
#: cells of an input dimension of ``L`` cells before it counts as large.
LARGE_WINDOW_SLACK = 64


def large_window(geom: PoolGeometry) -> bool:
    """True if a window spans far more cells than the input has, along some dimension.

    The one rule that routes a pooling call away from the fast kernels: those size
    scratch rows by the padded row (``L + 2*padding``) and the window span, and loop
    over every tap of a window, so a window of ``10**8`` cells over an 8-cell input
    would cost gigabytes and seconds. A large window (span ``(k-1)*d + 1 >
    2*L + LARGE_WINDOW_SLACK``) runs instead on kernels that clip each window's tap
    ranges to the input arithmetically (:func:`tap_range`): memory proportional to
    the output, time to the taps inside the input. Ordinary windows (at most the
    input plus a little) never qualify, so the fast path keeps its speed.

    >>> large_window(make_geometry("t", (8, 8), 10**8 + 1, 1, 5 * 10**7))
    True
    >>> large_window(make_geometry("t", (8, 8), 3, 1, 1))
    False
    """
    return any((k - 1) * d + 1 > 2 * L + LARGE_WINDOW_SLACK
               for L, k, d in zip(geom.in_size, geom.kernel, geom.dilation))
