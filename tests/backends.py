"""The backends as pytest parameters, and one way to call an op on any of them.

The course's ladder, every rung tested against the reference (``poolkit.reference``,
plain loops, the specification):

* ``"cpu-serial"`` -- :mod:`poolkit.cpu` with ``parallel=False`` (the ``@njit`` kernels);
* ``"cpu"`` -- :mod:`poolkit.cpu` with ``parallel=True`` and its size threshold
  (``poolkit.config.CPU_PARALLEL_MIN_SIZE``) lowered to 0, so the ``prange`` kernels run
  even on the tiny inputs of the property tests (inputs that small would otherwise
  take the serial twin); its property tests draw float32 and int32 only
  (:data:`PRANGE_DTYPES`);
* ``"gpu"`` -- :mod:`poolkit.gpu` (the optimized kernels where an op has two);
* ``"gpu-naive"`` -- :mod:`poolkit.gpu` with ``kernel="naive"`` (lesson 05's one thread
  per output), in :data:`BACKENDS_2D` only: for the ops that have both GPU kernels
  (max and average pooling, 1-d and 2-d).

The GPU parameters carry the ``gpu`` mark: the first session of ``tasks.py test``
deselects them, the second runs them on Numba's CUDA simulator (or on a real GPU with
``POOLKIT_REAL_GPU=1``); with neither they skip. Every test with the ``gpu`` mark runs
with a tiny launch configuration (``tests/conftest.py``), so small inputs span several
blocks and tiles.

:func:`run` calls an op by name with NumPy arrays in and out, on any backend.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from poolkit import config, cpu, gpu

#: NUMBA_ENABLE_CUDASIM=1: GPU tests run on Numba's CUDA simulator (about 0.2 ms per simulated thread).
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")
GPU_AVAILABLE = SIM or config.detect_gpu() is not None
NO_GPU = "no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"

#: Hypothesis examples of a GPU property test of the 2-d kernels: fewer on the simulator ...
GPU_EXAMPLES_2D = 60 if SIM else 200
#: ... and of the rest of the family and every backward (POOLKIT_GPU_FAMILY_EXAMPLES raises it).
GPU_EXAMPLES_FAMILY = int(os.environ.get("POOLKIT_GPU_FAMILY_EXAMPLES", 6 if SIM else 60))

#: The marks of everything that runs CUDA kernels: deselected by the first session, run by the second.
GPU_MARKS = (pytest.mark.gpu, pytest.mark.skipif(not GPU_AVAILABLE, reason=NO_GPU))


def gpu_param(value="gpu", **kw):
    """A pytest parameter that runs CUDA kernels (``gpu`` mark; skipped without a GPU or the simulator)."""
    return pytest.param(value, marks=GPU_MARKS, **kw)


def needs_gpu(test):
    """Decorator: the GPU marks on one test function."""
    for mark in GPU_MARKS:
        test = mark(test)
    return test


CPU_BACKENDS = ["cpu", "cpu-serial"]
BACKENDS = CPU_BACKENDS + [gpu_param("gpu")]
BACKENDS_2D = BACKENDS + [gpu_param("gpu-naive")]


def is_gpu(backend: str) -> bool:
    return backend.startswith("gpu")


def _value_and_marks(param):
    return (param.values[0], param.marks) if hasattr(param, "values") else (param, ())


def with_nd(backends=BACKENDS, nds=(1, 2, 3)):
    """``(nd, backend)`` parameters; ``gpu-naive`` only where there is a naive kernel (nd < 3)."""
    out = []
    for nd in nds:
        for b in backends:
            value, marks = _value_and_marks(b)
            if not (value == "gpu-naive" and nd == 3):
                out.append(pytest.param(nd, value, marks=marks, id=f"{nd}d-{value}"))
    return out


def with_dtypes(dtypes, backends=BACKENDS, kind="max"):
    """``(backend, dtype)`` parameters: the dtypes of ``dtypes`` that each backend runs
    (on ``"cpu"``, the prange twins, those in :data:`PRANGE_DTYPES`, as :func:`dtypes_for`)."""
    out = []
    for b in backends:
        value, marks = _value_and_marks(b)
        out += [pytest.param(value, np.dtype(dt), marks=marks, id=f"{value}-{np.dtype(dt).name}")
                for dt in dtypes_for(value, dtypes, kind)]
    return out


# ------------------------------------------------------------------ dtypes
def supports(backend: str, dtype, kind: str = "max") -> bool:
    """Whether ``backend`` runs ``dtype``; ``kind`` is ``"max"`` (max-type ops: integers too) or ``"float"``."""
    dtype = np.dtype(dtype)
    if is_gpu(backend):
        return dtype.name in gpu.ND_SUPPORTED_DTYPES[kind]
    return kind == "max" or dtype.kind == "f"


FLOATS = ("float32", "float64")

#: The dtypes the property tests of ``"cpu"`` draw. The prange twins are the serial kernels'
#: own source compiled with ``parallel=True``: dtype handling is shared code (``"cpu-serial"``
#: draws every dtype); what differs is how the loops are split, which every geometry
#: exercises. On an empty Numba cache each (kernel, dtype, array layout) is a compile of
#: its own, a parallel one about 7 s of a CI core (a serial one about 2 s), so one float and
#: one integer type; the example tests on ``"cpu"`` keep to them too (:func:`with_dtypes`,
#: :func:`example_float`).
PRANGE_DTYPES = ("float32", "int32")


def dtypes_for(backend: str, dtypes, kind: str = "max") -> tuple:
    """The dtypes of ``dtypes`` that a property test draws on ``backend``: those it runs
    (the GPU: float32, float64, int32, uint8); on ``"cpu"``, those in :data:`PRANGE_DTYPES`."""
    dtypes = tuple(d for d in dtypes if supports(backend, d, kind))
    if backend == "cpu":
        dtypes = tuple(d for d in dtypes if np.dtype(d).name in PRANGE_DTYPES) or dtypes[:1]
    return dtypes


def float_dtypes(backend: str) -> tuple:
    """:func:`dtypes_for` float32 and float64."""
    return dtypes_for(backend, FLOATS, "float")


def example_float(backend: str):
    """The float dtype of an example test whose subject is not the dtype: float64, but float32
    on ``"cpu"`` (the prange twins), so the example reuses a specialization the property tests
    compile anyway instead of adding a float64 parallel compile of its own (see :data:`PRANGE_DTYPES`)."""
    return np.dtype(float_dtypes(backend)[-1])


def examples(backend: str, *, on_cpu: int, on_gpu: int) -> settings:
    """Hypothesis settings: ``on_cpu`` examples on the CPU backends, ``on_gpu`` on the GPU ones."""
    if is_gpu(backend):
        return settings(max_examples=on_gpu, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                               HealthCheck.filter_too_much])
    return settings(max_examples=on_cpu, deadline=None)


# ------------------------------------------------------------------ calling an op
def is_device(a) -> bool:
    """A Numba device array (real or simulated)."""
    return type(a).__module__.startswith("numba.cuda")


def to_device(a):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return a.copy_to_host() if is_device(a) else a


@contextlib.contextmanager
def parallel_threshold(size):
    """Set the size threshold of the CPU ``prange`` kernels (``poolkit.config``)."""
    saved = config.CPU_PARALLEL_MIN_SIZE
    config.CPU_PARALLEL_MIN_SIZE = size
    try:
        yield
    finally:
        config.CPU_PARALLEL_MIN_SIZE = saved


def op(backend: str, name: str):
    """Op ``name`` of ``backend`` as a plain function, with the backend's own argument
    handling (no copies, no checks): what the error tests call."""
    if not is_gpu(backend):
        fn = getattr(cpu, name)
        if backend == "cpu-serial":
            return functools.partial(fn, parallel=False)

        def parallel(*args, **kwargs):
            with parallel_threshold(0):
                return fn(*args, parallel=True, **kwargs)
        return parallel
    fn = getattr(gpu, name)
    if backend == "gpu-naive" and "kernel" in inspect.signature(fn).parameters:
        return functools.partial(fn, kernel="naive")
    return fn


def run(backend: str, name: str, *args, device=False, **kwargs):
    """Call op ``name`` (``poolkit.geometry.OPS``) of ``backend``; NumPy results, as the op returns them.

    ``device`` (GPU only, ignored on the CPU): ``True`` moves every NumPy argument
    (``indices=`` too) to the device first (a C-contiguous copy); a collection of
    positions moves those positional arguments only. The results must live where
    ``x`` lives (the first argument; the second of a backward) -- device arrays for a
    device ``x``, NumPy arrays for a NumPy ``x`` -- and come back as NumPy arrays.
    """
    fn = op(backend, name)
    if not is_gpu(backend):
        return fn(*args, **kwargs)
    if device is True:
        kwargs = {k: to_device(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    move = range(len(args)) if device is True else (device or ())
    args = tuple(to_device(a) if i in move and isinstance(a, np.ndarray) else a for i, a in enumerate(args))
    x = args[1] if name.endswith("_backward") else args[0]
    result = fn(*args, **kwargs)
    outs = result if isinstance(result, tuple) else (result,)
    for out in outs:
        if is_device(x):
            assert is_device(out), f"{name}: device input, but a {type(out).__name__} result"
        else:
            assert isinstance(out, np.ndarray), f"{name}: NumPy input, but a {type(out).__name__} result"
    return tuple(host(o) for o in outs) if isinstance(result, tuple) else host(result)
