#!/usr/bin/env python3
"""poolkit's one task runner. Needs only Python 3.11+; sets everything else up itself.

    python3 tasks.py lab     # create .venv if missing, install poolkit, open the course in JupyterLab
                             # (the CUDA toolkit wheels only where an NVIDIA driver is found)
    python3 tasks.py test    # create .venv if missing, install poolkit, run every test and notebook
    python3 tasks.py bench   # CPU benchmark (python -m poolkit.bench) in the same environment

The environment lives in ``.venv`` next to this file; it is (re)installed when
pyproject.toml changes. Set POOLKIT_VENV to use another location.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("POOLKIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")


def run(cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, **kw).returncode


def ensure_env(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"poolkit needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        if run([sys.executable, "-m", "venv", VENV]) != 0:
            sys.exit("could not create the virtual environment (on Debian/Ubuntu: apt install python3-venv)")
    stamp = VENV / f".poolkit-{extras}.stamp"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    pip = [PY, "-m", "pip", "install", "--disable-pip-version-check"]
    if run(pip + ["--upgrade", "pip"]) != 0 or run(pip + ["-e", f".[{extras}]"]) != 0:
        sys.exit("installing poolkit failed (see pip's output above)")
    # PyTorch is optional: tests and benchmarks compare with it when it is importable.
    if extras == "test" and run(pip + ["torch==2.13.0"]) != 0:
        print("note: PyTorch could not be installed; comparisons with it will be skipped", flush=True)
    stamp.write_text(want)


def _workers(dist: str) -> list[str]:
    """pytest-xdist options. Most of the suite's time is Numba compiling kernels, on
    one core per compile, so the tests run in several processes: one per core, at
    most 4 (2 on CI's 2 cores). POOLKIT_TEST_WORKERS=1 runs them in one process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n = os.environ.get("POOLKIT_TEST_WORKERS", str(min(4, cores)))
    if not n.isdigit():
        sys.exit(f"POOLKIT_TEST_WORKERS must be a whole number of worker processes, got {n!r}")
    return ["-n", n, "--dist", dist] if int(n) > 1 else []


def test(args) -> int:
    ensure_env("test")
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    # 1. Unit and property tests on the CPU, PTX compilation of every CUDA kernel, and
    #    the examples in the package's docstrings (doctests of every poolkit module).
    #    Whole files per worker (loadfile): the tests of a file share compiled kernels.
    #    No nbval here: its plugin imports nbformat, hence jsonschema and rfc3987_syntax,
    #    which builds a grammar at import (~3 s of CPU in every pytest process).
    rc1 = run([PY, "-m", "pytest", "tests", "poolkit", "--doctest-modules", "-m", "not (cudasim or gpu)",
               "-p", "no:nbval", *_workers("loadfile"), "--durations=15", *args], env=env)
    # 2. GPU tests and every notebook under Numba's CUDA simulator (it must be set
    #    before numba is imported, hence a second process). On a machine with a GPU,
    #    POOLKIT_REAL_GPU=1 runs them on the device instead. A notebook's cells run in
    #    order on one worker (loadscope), as nbval needs.
    if env.get("POOLKIT_REAL_GPU") != "1":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    rc2 = run([PY, "-m", "pytest", "tests", "-m", "cudasim or gpu or notebook", "notebooks", "--nbval",
               "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
               "-p", "no:cacheprovider", *_workers("loadscope"), "--durations=15", *args], env=env)
    return rc1 or rc2


def has_nvidia_driver() -> bool:
    """An NVIDIA driver is installed (then the course also gets the CUDA toolkit wheels)."""
    return (shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()
            or (os.name == "nt" and Path(os.environ.get("SystemRoot", "C:/Windows"), "System32", "nvcuda.dll").exists()))


def lab(args) -> int:
    # Without a GPU the lessons run CUDA on Numba's simulator, which needs numba-cuda but
    # not its ~0.5 GB of CUDA toolkit wheels (the ``cuda`` extra).
    ensure_env("course,cuda" if has_nvidia_driver() else "course")
    extra = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # containers
    return run([BIN / "jupyter", "lab", "--notebook-dir", ROOT / "notebooks", *extra, *args])


def bench(args) -> int:
    ensure_env("test")
    return run([PY, "-m", "poolkit.bench", *args])


def main() -> int:
    tasks = {"test": test, "lab": lab, "bench": bench}
    if len(sys.argv) < 2 or sys.argv[1] not in tasks:
        print(__doc__)
        return 2
    return tasks[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
