"""Every CUDA kernel poolkit ships compiles to PTX with NVVM -- no GPU needed.

The CUDA simulator runs kernels as plain Python, so only a real compile catches code
that the CUDA compiler rejects (unsupported calls, type unification failures,
shared-memory misuse). ``numba.cuda.compile_ptx`` needs NVVM, which the
``numba-cuda[cu13]`` extra installs; these tests must run (not skip) in CI.

Two lists of specializations, both built by running the public functions on NumPy
stand-ins (a recording mode), so the argument types compiled here are the ones the
public functions pass (test_gpu.py checks that under the simulator):

* :func:`poolkit.gpu.kernel_specializations` -- the 2-d kernels, naive and tiled, and
  the 4-D copy;
* :func:`poolkit.gpu.nd_kernel_specializations` -- the family's kernels
  (:mod:`poolkit.gpu.kernels_nd`: 3-d, adaptive, the backward gathers, unpooling,
  Lp's element-wise steps, the ``nan_policy="omit"`` kernels); their device functions (:mod:`poolkit.gpu.rules`) are
  inlined at Numba's IR level (``inline="always"``).

Compiles run in a small process pool (about 1-3 s each).
"""
import concurrent.futures as cf
import multiprocessing
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.ptx

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("PTX compilation needs the real numba.cuda (unset NUMBA_ENABLE_CUDASIM)",
                allow_module_level=True)

from poolkit import gpu  # noqa: E402  (after the simulator check)

ALL_CCS = [(7, 5), (8, 0), (9, 0)]
#: The family's kernels that take floats only (the nan_policy="omit" ones too: integers
#: run the propagate kernels), and those that divide.
FLOAT_KERNELS = {"avg3d", "adaptive_avg", "avg_gather", "max_gather", "ewise", "max3d_omit",
                 "adaptive_max_omit", "avg_omit", "avg_gather_omit"}
DIVIDING = {"avg3d", "adaptive_avg", "avg_gather", "avg_omit"}


def _compile_chunk(cc, indices, family=False):
    """Worker: compile specializations ``indices`` of one list for ``cc``; return facts per kernel."""
    from numba import cuda

    from poolkit import gpu as g

    specs = g.nd_kernel_specializations() if family else g.kernel_specializations()
    results = []
    for i in indices:
        name, fn, sig = specs[i]
        try:
            ptx, _ = cuda.compile_ptx(fn, sig, cc=cc)
        except Exception as exc:  # reported with the kernel's name by the test
            results.append((i, name, str(sig), f"{type(exc).__name__}: {exc}"[:2000], None))
            continue
        facts = {
            "target": f".target sm_{cc[0]}{cc[1]}" in ptx,
            "entry": ".entry" in ptx,
            "dynamic_shared": ".extern .shared" in ptx,
            "call": "call.uni" in ptx or "\tcall " in ptx,
            "div_rn_f32": "div.rn.f32" in ptx,
            "div_approx": "div.approx" in ptx or "div.full" in ptx,
        }
        results.append((i, name, str(sig), None, facts))
    return results


WORKERS = max(1, min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def pool():
    # "spawn": fresh interpreters (no inherited Numba/CUDA state), started once per module
    with cf.ProcessPoolExecutor(max_workers=WORKERS,
                                mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def _compile_all(pool, cc, indices, family=False):
    n = WORKERS * (2 if family else 3)
    chunks = [c for c in (indices[k::n] for k in range(n)) if c]
    out = []
    for res in pool.map(_compile_chunk, [cc] * len(chunks), chunks, [family] * len(chunks)):
        out.extend(res)
    return sorted(out)


def _check(results, family=False):
    failures = [f"{name} {sig}: {err}" for _, name, sig, err, _ in results if err]
    assert not failures, "kernels the CUDA compiler rejects:\n" + "\n".join(failures)
    for _, name, sig, _, facts in results:
        assert facts["target"] and facts["entry"], (name, sig)
        if not family and "tiled" in name:
            assert facts["dynamic_shared"], f"{name}: expected a dynamic shared-memory tile"
        divides = name in DIVIDING if family else name.startswith("avg")
        if divides and "float32" in sig:
            # IEEE-rounded division: the result matches the CPU bit for bit
            assert facts["div_rn_f32"] and not facts["div_approx"], name


# ------------------------------------------------------------------ the 2-d kernels
def test_ptx_specializations_cover_every_kernel_and_dtype():
    specs = gpu.kernel_specializations()
    names = {name for name, _, _ in specs}
    expected = {f"{op}_{layout.lower()}_{'tiled' if stage == 'optimized' else 'naive'}"
                for (op, layout, stage) in gpu.KERNELS} | {"copy_4d"}
    assert names == expected
    for name in expected - {"copy_4d"}:
        dts = {str(sig[0].dtype) for n, _, sig in specs if n == name}
        want = gpu.SUPPORTED_DTYPES["avg_pool2d" if name.startswith("avg") else "max_pool2d"]
        assert dts == set(want), name
    # the arrays the kernels receive are C-contiguous (flat for the tiled kernels)
    for name, _, sig in specs:
        arrays = [a for a in sig if hasattr(a, "layout")]
        if name != "copy_4d":
            assert all(a.layout == "C" for a in arrays), (name, sig)
            assert all(a.ndim == (1 if "tiled" in name else 4) for a in arrays[:2]), (name, sig)


def test_ptx_every_specialization_compiles_for_cc90(pool):
    specs = gpu.kernel_specializations()
    results = _compile_all(pool, (9, 0), list(range(len(specs))))
    assert len(results) == len(specs)
    _check(results)


@pytest.mark.parametrize("cc", [(7, 5), (8, 0)], ids=["cc75", "cc80"])
def test_ptx_every_kernel_compiles_for_older_ccs(pool, cc):
    # Every kernel at float32: the code paths are the same for every dtype, and the
    # dtype sweep runs at cc 9.0 above.
    specs = gpu.kernel_specializations()
    chosen = [i for i, (_, _, sig) in enumerate(specs) if str(sig[0].dtype) == "float32"]
    assert len({specs[i][0] for i in chosen}) == len(gpu.KERNELS) + 1
    _check(_compile_all(pool, cc, chosen))


def test_ptx_import_compiles_nothing_and_needs_no_gpu():
    code = ("import poolkit.gpu as g; "
            "print(sum(len(k.overloads) for k in g.KERNELS.values()), g.simulator_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "False"]


# ------------------------------------------------------------------ the family's kernels
def test_ptx_family_specializations_cover_every_kernel_and_dtype():
    specs = gpu.nd_kernel_specializations()
    names = {name for name, _, _ in specs}
    assert names == set(gpu.ND_KERNELS)
    for name in names:
        dts = {str(sig[0].dtype) for n, _, sig in specs if n == name}
        kind = "float" if name in FLOAT_KERNELS else "max"
        assert dts == set(gpu.ND_SUPPORTED_DTYPES[kind]), name
    # one specialization per dtype: every array is C-contiguous, 5-D (ewise: flat)
    assert len(specs) == sum(len(gpu.ND_SUPPORTED_DTYPES["float" if n in FLOAT_KERNELS else "max"])
                             for n in names)
    for name, _, sig in specs:
        arrays = [a for a in sig if hasattr(a, "layout")]
        if name == "copy_5d":
            assert [a.layout for a in arrays] == ["A", "C"] and all(a.ndim == 5 for a in arrays)
        elif name == "ewise":
            assert all(a.layout == "C" and a.ndim == 1 for a in arrays), sig
        else:
            assert all(a.layout == "C" for a in arrays), (name, sig)
            assert all(a.ndim == 5 for a in arrays[:2]), (name, sig)


def test_ptx_family_every_specialization_compiles_for_cc90(pool):
    specs = gpu.nd_kernel_specializations()
    results = _compile_all(pool, (9, 0), list(range(len(specs))), family=True)
    assert len(results) == len(specs)
    _check(results, family=True)


@pytest.mark.parametrize("cc", [(7, 5), (8, 0)], ids=["cc75", "cc80"])
def test_ptx_family_every_kernel_compiles_for_older_ccs(pool, cc):
    specs = gpu.nd_kernel_specializations()
    chosen = [i for i, (_, _, sig) in enumerate(specs) if str(sig[0].dtype) == "float32"]
    assert {specs[i][0] for i in chosen} == set(gpu.ND_KERNELS)
    _check(_compile_all(pool, cc, chosen, family=True), family=True)
