"""Bad input gets a ValueError/TypeError naming the argument, before any kernel runs."""
import numpy as np
import pytest

import poolkit
from poolkit import cpu, reference

X = np.zeros((1, 2, 6, 6), dtype=np.float32)

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


@pytest.mark.parametrize("impl", [poolkit.max_pool2d, cpu.max_pool2d, reference.max_pool2d])
@pytest.mark.parametrize("override,exc,msg", MAX_CASES)
def test_max_pool2d_errors(impl, override, exc, msg):
    kw = dict(x=X, kernel_size=2)
    kw.update(override)
    with pytest.raises(exc, match=msg.replace("(", r"\(").replace(")", r"\)")) as info:
        impl(**kw)
    assert "max_pool2d" in str(info.value)


AVG_CASES = [
    (dict(x=X.astype(np.int32)), TypeError, "float32 or float64"),
    (dict(divisor_override=0), ValueError, "divisor_override must be a positive int"),
    (dict(divisor_override=1.5), TypeError, "divisor_override"),
    (dict(count_include_pad=None), TypeError, "count_include_pad must be a bool"),
    (dict(kernel_size=(3, 2), padding=(1, 2)), ValueError, "padding must be at most half"),
    (dict(x=np.zeros((6, 6, 2), np.float32), layout="NHWC", kernel_size=8), ValueError, "larger than"),
]


@pytest.mark.parametrize("impl", [poolkit.avg_pool2d, cpu.avg_pool2d, reference.avg_pool2d])
@pytest.mark.parametrize("override,exc,msg", AVG_CASES)
def test_avg_pool2d_errors(impl, override, exc, msg):
    kw = dict(x=X, kernel_size=2)
    kw.update(override)
    with pytest.raises(exc, match=msg) as info:
        impl(**kw)
    assert "avg_pool2d" in str(info.value)


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
        assert [p.name for p in ps if p.kind == p.KEYWORD_ONLY] == ["layout"]
    torch = pytest.importorskip("torch")
    t = inspect.signature(torch.nn.functional._max_pool2d).parameters
    assert [(n, p.default) for n, p in list(t.items())[1:]] == expected["max_pool2d"]


def test_memoised_geometry_keeps_validating():
    """make_geometry caches results by argument value *and type*: a cached (2, 2)
    must not let (2.0, 2), True or a bool ceil_mode look-alike through."""
    from poolkit import geometry as G

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


@pytest.mark.parametrize("backend", ["poolkit", "cpu", "cpu-serial", "reference"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_each_public_call_validates_once(name, backend, builder_calls):
    """No backend calls another public function (which would check everything again)."""
    module = {"poolkit": poolkit, "cpu": cpu, "cpu-serial": cpu, "reference": reference}[backend]
    args, kw = CALLS[name]
    if backend == "cpu-serial":
        kw = dict(kw, parallel=False)
    getattr(module, name)(*args, **kw)
    assert len(builder_calls) == 1, builder_calls
