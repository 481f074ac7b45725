"""``python -m poolkit info``: what poolkit runs on here, in a dozen lines (like ``numba -s``, short).

Versions, Numba's threading layer (the one in use and the ones available),
thread count, whether parallel kernels are safe from threads and after fork, the
Numba cache directory, and whether CUDA kernels would run on a GPU, on Numba's
simulator, or not at all. Attach its output to bug reports.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from pathlib import Path

from . import config
from . import threads

__all__ = ["facts", "report"]

_LAYER_MODULES = {"tbb": "numba.np.ufunc.tbbpool", "omp": "numba.np.ufunc.omppool",
                  "workqueue": "numba.np.ufunc.workqueue"}
_THREAD_SAFE = {"tbb": True, "omp": True, "workqueue": False}


def _available_layers() -> dict[str, str | None]:
    """Layer -> None if it loads, else why not (as ``numba -s`` finds out: import it)."""
    found = {}
    for name, module in _LAYER_MODULES.items():
        try:
            importlib.import_module(module)
            found[name] = None
        except Exception as exc:  # a missing shared library is an OSError/ImportError
            found[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:100]
    return found


def _cache_dir() -> tuple[str, bool, str]:
    import numba
    configured = numba.config.CACHE_DIR
    if configured:
        path = Path(configured)
        how = "NUMBA_CACHE_DIR"
    else:
        path = Path(__file__).resolve().parent / "cpu" / "__pycache__"
        how = "next to poolkit's sources"
    probe = path if path.exists() else path.parent
    return str(path), os.access(probe, os.W_OK), how


def _version() -> str:
    try:
        return importlib.metadata.version("poolkit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "(not installed)"


def facts() -> dict:
    """Everything :func:`report` prints, as a dict (starts Numba's thread pool to learn its layer)."""
    import numba
    import numpy as np

    available = _available_layers()
    # get_num_threads() starts the thread pool (without compiling anything), after
    # which Numba can say which layer it picked.
    n_threads = numba.get_num_threads()
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    cache, writable, how = _cache_dir()
    gpu = config.detect_gpu()
    sim = os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")
    return dict(
        poolkit=_version(), python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
        layer=layer, requested_layer=numba.config.THREADING_LAYER, available=available,
        threads=n_threads, max_threads=numba.config.NUMBA_NUM_THREADS,
        thread_safe_layer=_THREAD_SAFE.get(layer), fork_safe_layer=layer in threads.FORK_SAFE_LAYERS,
        gate=threads.state(), cache_dir=cache, cache_writable=writable, cache_how=how,
        gpu=gpu, simulator=sim,
    )


def report() -> str:
    f = facts()
    avail = ", ".join(k for k, v in f["available"].items() if v is None) or "none"
    missing = [k for k, v in f["available"].items() if v is not None]
    lines = [
        f"poolkit {f['poolkit']} · Python {f['python']} · NumPy {f['numpy']} · Numba {f['numba']}",
        f"threading layer: {f['layer']} (requested: {f['requested_layer']}; available: {avail}"
        + (f"; not found: {', '.join(missing)}" if missing else "") + ")",
        f"threads: {f['threads']} of {f['max_threads']} (NUMBA_NUM_THREADS sets the pool size)",
    ]
    if f["thread_safe_layer"]:
        lines.append(f"parallel kernels from threads: safe ({f['layer']} is thread-safe; poolkit also runs one "
                     "parallel launch at a time, other threads run the serial kernel)")
    else:
        lines.append(f"parallel kernels from threads: safe through poolkit's gate ({f['layer']} is not "
                     "thread-safe: one parallel launch at a time, other threads run the serial kernel)")
    if f["fork_safe_layer"]:
        lines.append(f"parallel kernels after fork: safe ({f['layer']} is fork-safe)")
    else:
        lines.append(f"parallel kernels after fork: a child forked after the first parallel call runs "
                     f"serial kernels ({f['layer']} is not fork-safe); spawned processes are unaffected")
    if "tbb" in missing:
        lines.append("TBB (thread- and fork-safe layer): `pip install tbb` (or `conda install tbb`), then "
                     "NUMBA_THREADING_LAYER=tbb")
    lines.append(f"numba cache: {f['cache_dir']} ({f['cache_how']}; "
                 + ("writable)" if f["cache_writable"] else
                    "NOT writable: Numba falls back to a per-user cache directory; set NUMBA_CACHE_DIR)"))
    if f["simulator"]:
        cuda = "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): poolkit.gpu runs on the CPU, slowly"
    elif f["gpu"]:
        cuda = f"GPU found: {f['gpu']}"
    else:
        cuda = ("no GPU and no simulator: poolkit.gpu needs one (NUMBA_ENABLE_CUDASIM=1 runs it on "
                "Numba's CUDA simulator)")
    lines.append(f"CUDA: {cuda}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["info"] or len(argv) > 1:
        print("usage: python -m poolkit info    (what poolkit runs on here)\n"
              "       python -m poolkit.bench   (benchmarks)", file=sys.stderr)
        return 2
    print(report())
    return 0
