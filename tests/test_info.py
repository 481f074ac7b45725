"""``python -m poolkit info`` says what poolkit runs on (layer, threads, fork, cache, CUDA)."""
from __future__ import annotations

import os
import subprocess
import sys


def _info(*args, **env_overrides):
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-m", "poolkit", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_info_names_the_layer_and_what_is_safe():
    proc = _info("info", NUMBA_THREADING_LAYER="workqueue", NUMBA_NUM_THREADS="2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "threading layer: workqueue (requested: workqueue;" in out
    assert "threads: 2 of 2" in out
    assert "workqueue is not thread-safe: one parallel launch at a time" in out
    assert "after fork: safe (workqueue is fork-safe)" in out
    assert "numba cache:" in out and "CUDA:" in out
    assert len(out.splitlines()) <= 12


def test_info_says_when_the_simulator_is_on(tmp_path):
    cache = tmp_path / "cache"
    proc = _info("info", NUMBA_ENABLE_CUDASIM="1", NUMBA_CACHE_DIR=str(cache))
    assert proc.returncode == 0, proc.stderr
    assert "CUDA: Numba's CUDA simulator" in proc.stdout
    assert f"numba cache: {cache} (NUMBA_CACHE_DIR; writable)" in proc.stdout


def test_unknown_command_prints_usage():
    proc = _info("frobnicate")
    assert proc.returncode == 2 and "usage: python -m poolkit info" in proc.stderr
