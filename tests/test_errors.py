"""Bad input gets a ValueError/TypeError naming the op and the argument, before any kernel runs,
on every backend; and each public call validates its arguments exactly once.

The tables -- 2-d max/avg pooling (``MAX_CASES``, ``AVG_CASES``, also used by
test_dask.py), the family (``ERROR_CASES``), the gradients (``BACKWARD_ERRORS``) -- run on
the public functions, the reference and every backend (backends.py). Then the GPU
backend's own cases (device arrays, ``kernel=``, its dtypes) and the GPU against the
CPU, message for message (``GPU_VS_CPU``).
"""
import numpy as np
import pytest

import poolkit
from backends import BACKENDS, gpu_param, needs_gpu, op
from poolkit import cpu, gpu, reference
from poolkit.gpu import device as gpu_device

X = np.zeros((1, 2, 6, 6), dtype=np.float32)

#: Where a bad call goes: the public function, the reference, or a backend (backends.py).
IMPLS = ["poolkit", "reference"] + BACKENDS


def impl_of(impl, name):
    if impl == "poolkit":
        return getattr(poolkit, name)
    if impl == "reference":
        return getattr(reference, name)
    return op(impl, name)


@pytest.fixture
def kernel_runs(monkeypatch):
    """Every CPU kernel call and GPU launch, recorded instead of run (there should be none)."""
    calls = []
    for key in list(cpu.KERNELS):
        monkeypatch.setitem(cpu.KERNELS, key, lambda *a, **k: calls.append(a))
    monkeypatch.setattr(gpu_device, "launch", lambda *a: calls.append(a))
    return calls


# ------------------------------------------------------------------ 2-d max and average pooling
MAX_CASES = [
    (dict(x=[[1.0]]), TypeError, "x must be a NumPy array"),
    (dict(x=np.zeros((6, 6), np.float32)), ValueError, "x must be 4-d NCHW"),
    (dict(x=np.zeros((1, 1, 1, 6, 6), np.float32)), ValueError, "5-d"),
    (dict(x=X.astype(np.complex64)), TypeError, "dtype"),
    (dict(x=X.astype(object)), TypeError, "dtype"),
    (dict(x=X.astype(bool)), TypeError, "dtype"),
    (dict(x=X.astype(np.float16)), TypeError, "float32 or float64"),
    (dict(kernel_size=0), ValueError, "kernel_size must be positive"),
    (dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size must be an int or a sequence of 2 ints"),
    (dict(kernel_size=2.5), TypeError, "kernel_size"),
    (dict(kernel_size=(2, 2.0)), TypeError, "kernel_size must contain ints"),
    (dict(kernel_size=True), TypeError, "kernel_size"),
    (dict(stride=0), ValueError, "stride must be positive"),
    (dict(stride=-1), ValueError, "stride"),
    (dict(dilation=0), ValueError, "dilation must be positive"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=2), ValueError, "padding must be at most half of kernel_size"),
    (dict(kernel_size=7), ValueError, "larger than the padded input"),
    (dict(kernel_size=2, padding=1, dilation=7), ValueError, "reads no input cell"),
    (dict(layout="NCWH"), ValueError, "layout must be 'NCHW' or 'NHWC'"),
    (dict(layout=None), TypeError, "layout"),
    (dict(ceil_mode="yes"), TypeError, "ceil_mode must be a bool"),
    (dict(return_indices=1), TypeError, "return_indices must be a bool"),
    (dict(x=np.zeros((1, 0, 6, 6), np.float32)), ValueError, "non-zero channel and spatial"),
    (dict(x=np.zeros((1, 2, 0, 6), np.float32)), ValueError, "non-zero channel and spatial"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("override,exc,msg", MAX_CASES)
def test_max_pool2d_errors(impl, override, exc, msg, kernel_runs):
    kw = dict(x=X, kernel_size=2)
    kw.update(override)
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")) as info:
        impl_of(impl, "max_pool2d")(**kw)
    assert "max_pool2d" in str(info.value)
    assert not kernel_runs


AVG_CASES = [
    (dict(x=X.astype(np.int32)), TypeError, "float32 or float64"),
    (dict(divisor_override=0), ValueError, "divisor_override must be a positive int"),
    (dict(divisor_override=1.5), TypeError, "divisor_override"),
    (dict(count_include_pad=None), TypeError, "count_include_pad must be a bool"),
    (dict(kernel_size=(3, 2), padding=(1, 2)), ValueError, "padding must be at most half"),
    (dict(x=np.zeros((6, 6, 2), np.float32), layout="NHWC", kernel_size=8), ValueError, "larger than"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("override,exc,msg", AVG_CASES)
def test_avg_pool2d_errors(impl, override, exc, msg, kernel_runs):
    kw = dict(x=X, kernel_size=2)
    kw.update(override)
    with pytest.raises(exc, match=msg) as info:
        impl_of(impl, "avg_pool2d")(**kw)
    assert "avg_pool2d" in str(info.value)
    assert not kernel_runs


def test_errors_raised_before_compiling(monkeypatch):
    """Validation happens in Python: no kernel is called for bad input."""
    called = []
    for key in list(cpu.KERNELS):
        monkeypatch.setitem(cpu.KERNELS, key, lambda *a, **k: called.append(a))
    with pytest.raises(ValueError):
        poolkit.max_pool2d(X, 2, padding=5)
    with pytest.raises(TypeError):
        poolkit.avg_pool2d(X.astype(np.int64), 2)
    assert called == []


def test_signature_mirrors_torch():
    import inspect
    expected = {
        "max_pool2d": [("kernel_size", inspect._empty), ("stride", None), ("padding", 0), ("dilation", 1),
                       ("ceil_mode", False), ("return_indices", False)],
        "avg_pool2d": [("kernel_size", inspect._empty), ("stride", None), ("padding", 0), ("ceil_mode", False),
                       ("count_include_pad", True), ("divisor_override", None)],
    }
    for name, want in expected.items():
        ps = list(inspect.signature(getattr(poolkit, name)).parameters.values())
        assert ps[0].name == "x"
        assert [(p.name, p.default) for p in ps[1:] if p.kind != p.KEYWORD_ONLY] == want
        assert [p.name for p in ps if p.kind == p.KEYWORD_ONLY] == ["layout", "nan_policy"]
    torch = pytest.importorskip("torch")
    t = inspect.signature(torch.nn.functional._max_pool2d).parameters
    assert [(n, p.default) for n, p in list(t.items())[1:]] == expected["max_pool2d"]


# ------------------------------------------------------------------ the family
X1 = np.zeros((1, 2, 8), np.float32)
X2 = np.zeros((1, 2, 6, 6), np.float32)
X3 = np.zeros((1, 2, 4, 4, 4), np.float32)
I1 = np.zeros((1, 2, 4), np.int64)

ERROR_CASES = [
    ("max_pool1d", ([[1.0]], 2), {}, TypeError, "x must be a NumPy array"),
    ("max_pool1d", (X2, 2), {}, ValueError, "x must be 3-d NCL"),
    ("max_pool1d", (X1, 0), {}, ValueError, "kernel_size must be positive"),
    ("max_pool1d", (X1, (2, 2)), {}, ValueError, "kernel_size must be an int or a sequence of 1 ints"),
    ("max_pool1d", (X1, 2), dict(layout="NHWC"), ValueError, "layout must be 'NCL' or 'NLC'"),
    ("max_pool1d", (X1, 2), dict(padding="full"), ValueError, "padding must be an int, a sequence of 1 ints, 'same' or 'valid'"),
    ("max_pool1d", (X1, 2), dict(padding="same", ceil_mode=True), ValueError, "ceil_mode=True cannot be combined with padding='same'"),
    ("max_pool3d", (X3, 2), dict(dilation=0), ValueError, "dilation must be positive"),
    ("max_pool3d", (X3, 5), {}, ValueError, "larger than the padded input"),
    ("max_pool3d", (X3, 2), dict(return_indices="yes"), TypeError, "return_indices must be a bool"),
    ("max_pool3d", (X3.astype(np.float16), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool1d", (X1.astype(np.int32), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool1d", (X1, 2), dict(padding=2), ValueError, "padding must be at most half of kernel_size"),
    ("avg_pool3d", (X3, 2), dict(divisor_override=0), ValueError, "divisor_override must be a positive int"),
    ("avg_pool3d", (X3, 2), dict(count_include_pad=None), TypeError, "count_include_pad must be a bool"),
    ("avg_pool3d", (X3, 2), dict(layout="NCHW"), ValueError, "layout must be 'NCDHW' or 'NDHWC'"),
    ("adaptive_max_pool2d", (X2, -1), {}, ValueError, "output_size must be >= 0"),
    ("adaptive_max_pool2d", (X2, (2, 2, 2)), {}, ValueError, "output_size must be an int or a sequence of 2 ints"),
    ("adaptive_avg_pool2d", (X2, 2.5), {}, TypeError, "output_size must be an int"),
    ("adaptive_avg_pool3d", (X3, None), {}, TypeError, "output_size"),
    ("adaptive_avg_pool1d", (X1, ("a",)), {}, TypeError, "output_size must contain ints or None"),
    ("adaptive_max_pool1d", (X1, 2), dict(return_indices=None), TypeError, "return_indices must be a bool"),
    ("global_max_pool2d", (X2,), dict(keepdims=1), TypeError, "keepdims must be a bool"),
    ("global_avg_pool2d", (X1[0],), {}, ValueError, "x must be 4-d NCHW"),
    ("lp_pool2d", (X2, 0, 2), {}, ValueError, "norm_type must be non-zero"),
    ("lp_pool2d", (X2, "2", 2), {}, TypeError, "norm_type must be a real number"),
    ("lp_pool2d", (X2, True, 2), {}, TypeError, "norm_type must be a real number"),
    ("lp_pool1d", (X1, 2, 9), {}, ValueError, "larger than the padded input"),
    ("lp_pool3d", (X3.astype(np.int64), 2, 2), {}, TypeError, "float32 or float64"),
    ("max_unpool1d", (X1[..., :4], I1.astype(np.float32), 2), {}, TypeError, "indices must have an integer dtype"),
    ("max_unpool1d", (X1[..., :4], I1[..., :3], 2), {}, ValueError, "indices must have shape (1, 2, 4)"),
    ("max_unpool1d", (X1[..., :4], I1 + 8, 2), {}, ValueError, "indices must lie in [0, 8)"),
    ("max_unpool1d", (X1[..., :4], I1 - 1, 2), {}, ValueError, "indices must lie in [0, 8)"),
    ("max_unpool1d", (X1[..., :4], I1.tolist(), 2), {}, TypeError, "indices must be a NumPy array"),
    ("max_unpool1d", (X1[..., :4], I1, 2), dict(output_size=(10,)), ValueError, "invalid output_size"),
    ("max_unpool1d", (X1[..., :4], I1, 2), dict(output_size=(8, 8)), ValueError, "output_size must contain 1 or 3 elements"),
    ("max_unpool2d", (X2, np.zeros(X2.shape, np.int64), 2), dict(output_size="big"), TypeError, "output_size must be None or a sequence"),
    ("max_unpool3d", (X3, np.zeros(X3.shape, np.int64), 0), {}, ValueError, "kernel_size must be positive"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,msg", ERROR_CASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_bad_input_names_the_argument(name, args, kwargs, exc, msg, impl, kernel_runs):
    with pytest.raises(exc) as info:
        impl_of(impl, name)(*args, **kwargs)
    assert msg in str(info.value)
    assert name in str(info.value)
    assert not kernel_runs


def test_gpu_or_dask_inputs_without_a_backend_function_get_a_clear_type_error():
    da = pytest.importorskip("dask.array")
    import poolkit.dask as pdask

    x = da.zeros((1, 2, 8), chunks=4, dtype=np.float32)
    for name in ("max_pool1d", "adaptive_avg_pool1d"):
        if hasattr(pdask, name):
            continue
        with pytest.raises(TypeError, match=f"{name}: x is a Dask array, but {name} runs on NumPy arrays only"):
            getattr(poolkit, name)(x, 2)


# ------------------------------------------------------------------ the gradients
XB = np.zeros((1, 2, 6, 6))
GB = np.zeros((1, 2, 3, 3))

BACKWARD_ERRORS = [
    ("max_pool2d_backward", (GB[..., :2], XB, 2), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 3, 3)"),
    ("max_pool2d_backward", (GB.astype(np.float32), XB, 2), {}, TypeError, "grad_output must have x's dtype float64"),
    ("max_pool2d_backward", (GB.tolist(), XB, 2), {}, TypeError, "grad_output must be a NumPy array"),
    ("max_pool2d_backward", (GB, XB.astype(np.int32), 2), {}, TypeError, "x must have dtype float32 or float64"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=np.zeros((1, 2, 3), np.int64)), ValueError, "indices must have shape (1, 2, 3, 3)"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=np.full((1, 2, 3, 3), 36)), ValueError, "indices must lie in [0, 36)"),
    ("max_pool2d_backward", (GB, XB, 2), dict(indices=GB), TypeError, "indices must have an integer dtype"),
    ("max_pool2d_backward", (GB, XB, 2), dict(return_indices=2), TypeError, "return_indices must be a bool"),
    ("avg_pool2d_backward", (GB, XB, 2), dict(padding=3), ValueError, "padding must be at most half of kernel_size"),
    ("avg_pool1d_backward", (GB[0], XB[0], 2), dict(count_include_pad="no"), TypeError, "count_include_pad must be a bool"),
    ("adaptive_avg_pool2d_backward", (GB, XB, (3, 4)), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 3, 4)"),
    ("adaptive_max_pool3d_backward", (GB, XB[0, 0], 3), {}, ValueError, "x must be 5-d NCDHW"),
    ("lp_pool2d_backward", (GB, XB, float("nan"), 2), {}, ValueError, "norm_type must be non-zero and not NaN"),
    ("global_avg_pool2d_backward", (GB, XB), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 1, 1)"),
    ("max_unpool2d_backward", (GB, GB, np.zeros((1, 2, 3, 3), np.int64), 2), {}, ValueError, "grad_output must have the forward output's shape (1, 2, 6, 6)"),
]


@pytest.mark.parametrize("name,args,kwargs,exc,msg", BACKWARD_ERRORS)
@pytest.mark.parametrize("impl", IMPLS)
def test_backward_bad_input_names_the_argument(name, args, kwargs, exc, msg, impl, kernel_runs):
    with pytest.raises(exc) as info:
        impl_of(impl, name)(*args, **kwargs)
    assert msg in str(info.value) and name in str(info.value)
    assert not kernel_runs


# ------------------------------------------------------------------ the GPU backend
@pytest.mark.parametrize("call,exc,msg", [
    (lambda d: gpu.max_pool2d(d, 2, kernel="fast"), ValueError, "kernel must be 'optimized' or 'naive'"),
    (lambda d: gpu.max_pool2d(d, 0), ValueError, "kernel_size must be positive"),
    (lambda d: gpu.max_pool2d(d, 2, padding=2), ValueError, "padding must be at most half"),
    (lambda d: gpu.max_pool2d(d, 2, layout="NWHC"), ValueError, "layout"),
    (lambda d: gpu.max_pool2d(d, 2, return_indices=1), TypeError, "return_indices must be a bool"),
    (lambda d: gpu.avg_pool2d(d, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda d: gpu.max_pool2d(d[0, 0], 2), ValueError, "x must be 4-d NCHW"),
    (lambda d: gpu.max_pool2d([[1.0]], 2), TypeError, "x must be a NumPy array or a GPU array"),
    (lambda d: gpu.max_pool2d(np.zeros((1, 1, 4, 4), np.int16), 2), TypeError, "GPU kernels support dtypes"),
    (lambda d: gpu.avg_pool2d(np.zeros((1, 1, 4, 4), np.int32), 2), TypeError, "float32 or float64"),
])
@needs_gpu
def test_bad_arguments_raise_before_any_launch(monkeypatch, call, exc, msg):
    from numba import cuda

    seen = []
    monkeypatch.setattr(gpu_device, "launch", lambda *a: seen.append(a))
    d = cuda.to_device(np.zeros((1, 2, 4, 4), np.float32))
    with pytest.raises(exc, match=msg) as info:
        call(d)
    assert "pool2d" in str(info.value)
    assert not seen


GPU_VS_CPU = [
    ("max_pool3d", (np.zeros((1, 1, 4, 4, 4), np.float32), 2), dict(padding=2), ValueError, "padding"),
    ("max_pool1d", (np.zeros((1, 1, 4), np.float32), 0), {}, ValueError, "kernel_size"),
    ("avg_pool3d", (np.zeros((1, 1, 4, 4, 4), np.int32), 2), {}, TypeError, "float32 or float64"),
    ("avg_pool3d", (np.zeros((1, 1, 4, 4, 4), np.float32), 2), dict(divisor_override=0), ValueError,
     "divisor_override"),
    ("adaptive_max_pool2d", (np.zeros((1, 1, 4, 4), np.float32), (2, 2, 2)), {}, ValueError, "output_size"),
    ("lp_pool1d", (np.zeros((1, 1, 4), np.float32), 0, 2), {}, ValueError, "norm_type"),
    ("max_unpool1d", (np.zeros((1, 1, 2), np.float32), np.full((1, 1, 2), 9)), dict(kernel_size=2), ValueError,
     "indices must lie in"),
    ("max_unpool1d", (np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 3), np.int64), 2), {}, ValueError,
     "indices must have shape"),
    ("max_pool3d_backward", (np.zeros((1, 1, 1, 1, 1), np.float64), np.zeros((1, 1, 2, 2, 2), np.float32), 2),
     {}, TypeError, "grad_output must have x's dtype"),
    ("avg_pool1d_backward", (np.zeros((1, 1, 3), np.float32), np.zeros((1, 1, 4), np.float32), 2), {},
     ValueError, "grad_output must have the forward output's shape"),
    ("global_avg_pool2d", (np.zeros((1, 1, 4, 4), np.float32),), dict(layout="NDHWC"), ValueError, "layout"),
]


@needs_gpu
@pytest.mark.parametrize("name,args,kwargs,exc,msg", GPU_VS_CPU, ids=[b[0] + "-" + b[4][:12] for b in GPU_VS_CPU])
def test_bad_input_raises_like_the_cpu_before_any_launch(monkeypatch, name, args, kwargs, exc, msg):
    launched = []
    monkeypatch.setattr(gpu_device, "launch", lambda *a: launched.append(a))
    with pytest.raises(exc, match=msg) as cpu_info:
        getattr(cpu, name)(*args, **kwargs)
    with pytest.raises(exc, match=msg) as gpu_info:
        getattr(gpu, name)(*args, **kwargs)
    assert str(gpu_info.value) == str(cpu_info.value)
    assert not launched


@needs_gpu
def test_gpu_only_dtype_limits_name_the_supported_dtypes():
    with pytest.raises(TypeError, match="GPU kernels support dtypes"):
        gpu.max_pool3d(np.zeros((1, 1, 2, 2, 2), np.int16), 2)


# ------------------------------------------------------------------ arguments are validated once
def _call_table():
    """One valid call per public op: ``{name: (args, kwargs)}`` (small inputs, all layouts NC...)."""
    rng = np.random.default_rng(0)
    xs = {1: rng.standard_normal((2, 3, 10)), 2: rng.standard_normal((2, 3, 8, 10)),
          3: rng.standard_normal((1, 2, 4, 6, 8))}
    calls = {}
    for nd, x in xs.items():
        s = f"{nd}d"
        calls[f"max_pool{s}"] = ((x, 3, 2, 1), {})
        calls[f"avg_pool{s}"] = ((x, 3, 2, 1), {})
        calls[f"adaptive_max_pool{s}"] = ((x, 3), {})
        calls[f"adaptive_avg_pool{s}"] = ((x, 3), {})
        calls[f"lp_pool{s}"] = ((x, 2, 2), {})
        y, idx = getattr(reference, f"max_pool{s}")(x, 2, return_indices=True)
        calls[f"max_unpool{s}"] = ((y, idx, 2), {})
    calls["global_max_pool2d"] = ((xs[2],), {})
    calls["global_avg_pool2d"] = ((xs[2],), {})
    for name in list(calls):
        args, kw = calls[name]
        out = getattr(reference, name)(*args, **kw)
        calls[f"{name}_backward"] = ((np.ones_like(out),) + args, kw)
    return calls


CALLS = _call_table()


def test_the_call_table_covers_every_op():
    assert sorted(CALLS) == sorted(poolkit.geometry.OPS)


@pytest.fixture
def builder_calls(monkeypatch):
    """Count calls of the geometry builders (the step that validates the window arguments)."""
    from poolkit import geometry as G
    counts = []
    for name in ("make_geometry", "make_adaptive_geometry", "unpool_output_size"):
        original = getattr(G, name)

        def counted(*a, _original=original, _name=name, **k):
            counts.append(_name)
            return _original(*a, **k)
        monkeypatch.setattr(G, name, counted)
    return counts


@pytest.mark.parametrize("backend", ["poolkit", "cpu", "cpu-serial", "reference", gpu_param("gpu")])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_public_call_validates_once(name, backend, builder_calls):
    """No backend calls another public function (which would check everything again)."""
    module = {"poolkit": poolkit, "cpu": cpu, "cpu-serial": cpu, "reference": reference, "gpu": gpu}[backend]
    args, kw = CALLS[name]
    if backend == "cpu-serial":
        kw = dict(kw, parallel=False)
    getattr(module, name)(*args, **kw)
    assert len(builder_calls) == 1, builder_calls
