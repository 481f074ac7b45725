"""poolkit survives threads and fork under every threading layer (issue: never crash, never hang).

The workloads run in subprocesses: what is tested is that the *process* survives
(an unsafe parallel launch aborts it with SIGABRT/SIGTERM, or hangs it), and the
threading layer is chosen per process with ``NUMBA_THREADING_LAYER``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from poolkit import threads

# Inputs of 2*8*48*48 = 36,864 elements: above config.CPU_PARALLEL_MIN_SIZE (32,768),
# so every call below takes the parallel path when the slot admits it.
WORKLOAD = textwrap.dedent("""
    import sys, threading
    import numpy as np
    import poolkit
    from poolkit import threads

    rng = np.random.default_rng(0)
    x4 = rng.standard_normal((2, 8, 48, 48)).astype(np.float32)
    x5 = rng.standard_normal((2, 4, 8, 24, 24)).astype(np.float32)
    cl = np.ascontiguousarray(x4.transpose(0, 2, 3, 1))
    g2 = np.ones((2, 8, 24, 24), np.float32)
    calls = [
        lambda: poolkit.max_pool2d(x4, 3, 2, 1),
        lambda: poolkit.avg_pool2d(x4, 2),
        lambda: poolkit.max_pool2d(x4, 2, return_indices=True)[1],
        lambda: poolkit.max_pool2d(cl, 3, 2, 1, layout="NHWC"),
        lambda: poolkit.avg_pool2d(cl, 2, layout="NHWC"),
        lambda: poolkit.max_pool3d(x5, 2),
        lambda: poolkit.avg_pool3d(x5, 2),
        lambda: poolkit.adaptive_avg_pool2d(x4, 5),
        lambda: poolkit.adaptive_max_pool2d(x4, 7),
        lambda: poolkit.lp_pool2d(x4, 2, 2),
        lambda: poolkit.max_pool2d_backward(g2, x4, 2),
        lambda: poolkit.avg_pool2d_backward(g2, x4, 2),
        lambda: poolkit.max_pool1d(x4.reshape(2, 8, -1), 4),
    ]
    expected = [f() for f in calls]          # one thread: the reference results
    bad = []

    def work(t):
        for i in range(40):
            j = (i + 3 * t) % len(calls)
            if not np.array_equal(calls[j](), expected[j], equal_nan=True):
                bad.append((t, j))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    s = threads.state()
    print("layer", s["layer"], "fallbacks", s["serial_fallbacks"], "bad", len(bad))
    sys.exit(1 if bad else 0)
""")

FORK = textwrap.dedent("""
    import multiprocessing as mp
    import numpy as np
    import poolkit

    def child(i):
        x = np.full((2, 8, 48, 48), float(i), np.float32)
        x[0, 0, 0, 0] = 100.0 + i
        return float(poolkit.max_pool2d(x, 2).sum()), float(poolkit.avg_pool3d(x[None], 2).sum())

    if __name__ == "__main__":
        if STARTER == "poolkit":
            poolkit.max_pool2d(np.ones((2, 8, 48, 48), np.float32), 2)   # the parent starts its pool
        else:  # the user's own parallel Numba code, not poolkit, starts the pool
            from numba import njit, prange

            @njit(parallel=True)
            def total(a):
                s = 0.0
                for i in prange(a.size):
                    s += a[i]
                return s
            total(np.ones(100_000))
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map_async(child, range(6)).get(timeout=120)
        want = [child(i) for i in range(6)]  # after the fork: the parent's own calls come later
        print("fork ok", got == want)
        raise SystemExit(0 if got == want else 1)
""")

LAYERS = [pytest.param("default", id="default-layer"), pytest.param("workqueue", id="workqueue")]


def _run(code, layer, tmp_path, timeout=300):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["NUMBA_NUM_THREADS"] = "2"  # a pool of its own even on a 1-core runner
    if layer == "default":
        env.pop("NUMBA_THREADING_LAYER", None)
    else:
        env["NUMBA_THREADING_LAYER"] = layer
    script = tmp_path / "script.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (f"exit {proc.returncode} under layer {layer}\n"
                                  f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}")
    return proc.stdout


@pytest.mark.parametrize("layer", LAYERS)
def test_threads_calling_parallel_kernels_at_once_survive_and_agree(layer, tmp_path):
    out = _run(WORKLOAD, layer, tmp_path)
    assert "bad 0" in out


@pytest.mark.parametrize("starter", ["poolkit", "numba"])
@pytest.mark.parametrize("layer", LAYERS)
def test_a_pool_forked_after_a_parallel_call_gets_correct_results(layer, starter, tmp_path):
    out = _run(f"STARTER = {starter!r}\n" + FORK, layer, tmp_path)
    assert "fork ok True" in out


def test_the_slot_admits_one_parallel_launch_at_a_time():
    inside, release = threading.Event(), threading.Event()
    seen = []

    def holder():
        with threads.parallel_slot(True) as par:
            seen.append(("holder", par))
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(10)
        before = threads.state()["serial_fallbacks"]
        with threads.parallel_slot(True) as par:
            seen.append(("other", par))
        assert threads.state()["serial_fallbacks"] == before + 1
    finally:
        release.set()
        t.join()
    with threads.parallel_slot(True) as par:
        seen.append(("after", par))
    with threads.parallel_slot(False) as par:
        seen.append(("not wanted", par))
    assert seen == [("holder", True), ("other", False), ("after", True), ("not wanted", False)]


def test_an_exception_inside_the_slot_releases_it():
    with pytest.raises(RuntimeError):
        with threads.parallel_slot(True):
            raise RuntimeError("kernel failed")
    with threads.parallel_slot(True) as par:
        assert par


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("layer", LAYERS)
def test_a_child_forked_after_a_launch_runs_serial_unless_the_layer_is_fork_safe(layer, tmp_path):
    code = textwrap.dedent("""
        import os, numpy as np, poolkit
        from poolkit import threads
        poolkit.avg_pool2d(np.ones((2, 8, 48, 48), np.float32), 2)
        parent = threads.state()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            with threads.parallel_slot(True) as par:
                os.write(w, b"1" if par else b"0")
            os._exit(0)
        os.waitpid(pid, 0)
        safe = parent["layer"] in threads.FORK_SAFE_LAYERS
        print("started", parent["pool_started"], "ok", os.read(r, 1).decode() == ("1" if safe else "0"))
    """)
    out = _run(code, layer, tmp_path)
    assert "started True ok True" in out


def test_results_are_the_same_whichever_twin_runs():
    from poolkit import cpu
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 48, 48)).astype(np.float32)
    x[0, 0, :4, :4] = np.nan
    for fn in (lambda p: cpu.max_pool2d(x, 3, 2, 1, parallel=p),
               lambda p: cpu.avg_pool2d(x, 3, 2, 1, parallel=p),
               lambda p: cpu.max_pool2d(x, 2, return_indices=True, parallel=p)[1]):
        assert np.array_equal(fn(True), fn(False), equal_nan=True)
