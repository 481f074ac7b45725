"""Every CUDA kernel of poolkit.gpu.kernels_nd (the pooling family and the backward gathers) compiles to PTX.

No GPU and no simulator: ``numba.cuda.compile_ptx`` with NVVM from the
``numba-cuda[cu13]`` extra. The list comes from
:func:`poolkit.gpu.nd_kernel_specializations`, which runs every public function
in a recording mode, so the argument types compiled here are those the functions
pass (``test_gpu_family.py`` checks that under the simulator). The kernels' device
functions (:mod:`poolkit.gpu.rules`) are inlined at Numba's IR level
(``inline="always"``) and ``compile_ptx`` needs no device: this test runs on a
GPU-less CI machine and would catch a regression.
"""
import concurrent.futures as cf
import multiprocessing
import os

import pytest

pytestmark = pytest.mark.ptx

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("PTX compilation needs the real numba.cuda (unset NUMBA_ENABLE_CUDASIM)",
                allow_module_level=True)

from poolkit import gpu  # noqa: E402  (after the simulator check)

FLOAT_KERNELS = {"avg3d", "adaptive_avg", "avg_gather", "max_gather", "ewise"}
DIVIDING = {"avg3d", "adaptive_avg", "avg_gather"}


def _compile_chunk(cc, indices):
    from numba import cuda

    from poolkit import gpu as g

    specs = g.nd_kernel_specializations()
    results = []
    for i in indices:
        name, fn, sig = specs[i]
        try:
            ptx, _ = cuda.compile_ptx(fn, sig, cc=cc)
        except Exception as exc:
            results.append((i, name, str(sig), f"{type(exc).__name__}: {exc}"[:2000], None))
            continue
        facts = {
            "target": f".target sm_{cc[0]}{cc[1]}" in ptx,
            "entry": ".entry" in ptx,
            "call": "call.uni" in ptx or "\tcall " in ptx,
            "div_rn_f32": "div.rn.f32" in ptx,
            "div_approx": "div.approx" in ptx or "div.full" in ptx,
        }
        results.append((i, name, str(sig), None, facts))
    return results


WORKERS = max(1, min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def pool():
    with cf.ProcessPoolExecutor(max_workers=WORKERS,
                                mp_context=multiprocessing.get_context("spawn")) as ex:
        yield ex


def _compile_all(pool, cc, indices):
    chunks = [c for c in (indices[k::WORKERS * 2] for k in range(WORKERS * 2)) if c]
    out = []
    for res in pool.map(_compile_chunk, [cc] * len(chunks), chunks):
        out.extend(res)
    return sorted(out)


def _check(results):
    failures = [f"{name} {sig}: {err}" for _, name, sig, err, _ in results if err]
    assert not failures, "kernels the CUDA compiler rejects:\n" + "\n".join(failures)
    for _, name, sig, _, facts in results:
        assert facts["target"] and facts["entry"], (name, sig)
        if name in DIVIDING and "float32" in sig:
            # IEEE-rounded division: the result matches the CPU bit for bit
            assert facts["div_rn_f32"] and not facts["div_approx"], name


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
    results = _compile_all(pool, (9, 0), list(range(len(specs))))
    assert len(results) == len(specs)
    _check(results)


@pytest.mark.parametrize("cc", [(7, 5), (8, 0)], ids=["cc75", "cc80"])
def test_ptx_family_every_kernel_compiles_for_older_ccs(pool, cc):
    specs = gpu.nd_kernel_specializations()
    chosen = [i for i, (_, _, sig) in enumerate(specs) if str(sig[0].dtype) == "float32"]
    assert {specs[i][0] for i in chosen} == set(gpu.ND_KERNELS)
    _check(_compile_all(pool, cc, chosen))
