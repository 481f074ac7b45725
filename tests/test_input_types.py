"""Every array argument of every public function, swept through odd array types and dtypes.

What reaches a kernel is a plain ``numpy.ndarray`` of a dtype the kernels support;
everything else is refused with a ``TypeError`` naming the argument, before any kernel
runs (never a Numba error, never a silently wrong answer):

* masked arrays are refused (their mask would be ignored) on every backend;
* other ndarray subclasses (``np.memmap``, user subclasses) and unaligned arrays
  give exactly the plain array's result;
* dtypes the op does not support (float16, complex, bool, object, datetime, strings,
  structured) are refused naming the argument.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import poolkit
from backends import gpu_param, needs_gpu
from poolkit import cpu, gpu, reference
from test_errors import CALLS

IMPLS = ["poolkit", "cpu-serial", "reference", gpu_param("gpu")]
ODD_DTYPES = ["float16", "complex64", "bool", "object", "datetime64[ns]", "U1", [("a", "<f4")]]


def _fn(impl, name):
    if impl == "cpu-serial":
        return lambda *a, **k: getattr(cpu, name)(*a, parallel=False, **k)
    return getattr({"poolkit": poolkit, "reference": reference, "gpu": gpu}[impl], name)


def _array_args(name):
    """``(position, parameter name)`` of the array arguments of ``name``'s valid call."""
    args, _ = CALLS[name]
    params = list(inspect.signature(getattr(poolkit, name)).parameters)
    return [(i, params[i]) for i, a in enumerate(args) if isinstance(a, np.ndarray)]


def _with(args, i, value):
    args = list(args)
    args[i] = value
    return args


def _masked(a):
    mask = np.zeros(a.shape, dtype=bool)
    mask.flat[0] = True
    return np.ma.masked_array(a, mask=mask)


class Tagged(np.ndarray):
    """A user subclass (like astropy's Quantity or xarray-free wrappers)."""


def _unaligned(a):
    buf = np.empty(a.nbytes + 1, dtype=np.uint8)[1:]
    out = buf.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.fixture
def no_cpu_kernel(monkeypatch):
    calls = []
    for key in list(cpu.KERNELS):
        monkeypatch.setitem(cpu.KERNELS, key, lambda *a, **k: calls.append(a))
    return calls


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_masked_arrays_are_refused_naming_the_argument(name, impl, no_cpu_kernel):
    args, kw = CALLS[name]
    for i, param in _array_args(name):
        with pytest.raises(TypeError, match=rf"{name}: {param} is a numpy\.ma\.MaskedArray.*filled"):
            _fn(impl, name)(*_with(args, i, _masked(args[i])), **kw)
    assert not no_cpu_kernel


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(CALLS))
def test_unsupported_dtypes_are_refused_naming_the_argument(name, impl, no_cpu_kernel):
    args, kw = CALLS[name]
    for i, param in _array_args(name):
        for dtype in ODD_DTYPES:
            bad = np.zeros(args[i].shape, dtype=dtype)
            with pytest.raises(TypeError, match=rf"{name}: {param} "):
                _fn(impl, name)(*_with(args, i, bad), **kw)
    assert not no_cpu_kernel


def _same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("impl", ["poolkit", "cpu-serial", "reference"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_subclasses_and_unaligned_arrays_give_the_plain_result(name, impl, tmp_path):
    args, kw = CALLS[name]
    fn = _fn(impl, name)
    want = fn(*args, **kw)
    for i, _ in _array_args(name):
        mm = np.memmap(tmp_path / f"a{i}.dat", dtype=args[i].dtype, mode="w+", shape=args[i].shape)
        mm[...] = args[i]
        for variant in (mm, args[i].view(Tagged), _unaligned(args[i]), args[i].astype(args[i].dtype.newbyteorder())):
            got = fn(*_with(args, i, variant), **kw)
            assert _same(got, want), (name, i, type(variant).__name__)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool3d", "max_unpool1d_backward"])
@needs_gpu
def test_gpu_subclasses_give_the_plain_result(name):
    args, kw = CALLS[name]
    want = getattr(gpu, name)(*args, **kw)
    for i, _ in _array_args(name):
        got = getattr(gpu, name)(*_with(args, i, args[i].view(Tagged)), **kw)
        assert _same(got, want)
