"""When the parallel kernels may run: one parallel launch at a time, none in a forked child.

Numba's parallel kernels run on a *threading layer* picked once per process
(``tbb``, ``omp`` or ``workqueue``; see ``python -m poolkit info``). Two of its
limits can take a process down, and poolkit is called from threads (Jupyter,
``ThreadPoolExecutor``, web servers, Dask workers) and from forked processes
(``multiprocessing`` on Linux before Python 3.14):

* **workqueue is not thread-safe.** Two threads launching parallel kernels at
  once abort the process ("Concurrent access has been detected").
* **GNU OpenMP is not fork-safe.** A child forked after the parent used the
  ``omp`` layer aborts on its first parallel launch ("fork() called from a
  process already using GNU OpenMP"), so a ``multiprocessing.Pool`` breaks or hangs.

:func:`parallel_slot` is the one gate every parallel launch of :mod:`poolkit.cpu`
goes through (``poolkit`` imports this module first thing, so the fork handler
is in place before any fork):

* A **non-blocking lock** admits one parallel launch at a time. A thread that
  finds it taken runs the *serial* twin of the same kernel instead of waiting
  (the kernels release the GIL, so threads still run side by side, and one
  thread pool is not oversubscribed by several). No thread names, no guessing
  which layer is safe: it holds for every layer.
* A **fork handler** (:func:`os.register_at_fork`) marks a child forked after
  the parent started Numba's thread pool (through poolkit or any other code); that child runs serial kernels only,
  unless the layer is fork-safe (``tbb``, ``workqueue``). A child forked before any parallel
  launch, and any spawned process, starts its own pool as usual.

Serial and parallel twins are the same source compiled twice (see
``poolkit.cpu._jit.njit_pair``), so results are bitwise identical whichever
runs. This module is pure Python (rung 0: it never imports Numba; it reads
Numba's state only if Numba is already imported) and launches nothing itself.
"""
from __future__ import annotations

import os
import sys
import threading

__all__ = ["parallel_slot", "state", "FORK_SAFE_LAYERS"]

#: Threading layers that survive fork (Numba's threading-layer documentation: tbb
#: and workqueue are fork-safe, omp is not with GNU OpenMP, which is what pip's
#: wheels on Linux use; tests/test_threads.py checks workqueue and the default).
FORK_SAFE_LAYERS = ("tbb", "workqueue")

_lock = threading.Lock()
_launched = False       # this process has started Numba's thread pool
_layer = None           # the layer it picked (known after the first launch)
_forked_child = False   # forked after the pool started, on a layer that is not fork-safe
_fallbacks = 0          # launches that ran serial because another thread held the slot


def _note_layer() -> None:
    # After a parallel launch: which layer Numba picked (it raises ValueError until
    # a parallel kernel has run, e.g. if the launch failed before starting the pool).
    global _layer
    numba = sys.modules.get("numba")
    if _layer is None and numba is not None:
        try:
            _layer = numba.threading_layer()
        except ValueError:
            pass


def _pool_started() -> bool:
    # Started by poolkit, or by anything else in the process (the user's own
    # parallel Numba code, numba.get_num_threads()): Numba's own flag says so.
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    return _launched or bool(getattr(parallel, "_is_initialized", False))


def _after_fork_in_child() -> None:
    # Runs in the child right after fork. The lock may have been held by a thread
    # that does not exist here: make a fresh one, so nothing can wait on it.
    global _lock, _forked_child, _fallbacks
    _lock = threading.Lock()
    _fallbacks = 0
    if _pool_started():
        _note_layer()
        if _layer not in FORK_SAFE_LAYERS:
            _forked_child = True


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class parallel_slot:
    """``with parallel_slot(want) as par:`` -- ``par`` says whether this launch may use the
    parallel kernel: ``want``, not a forked child on an unsafe layer, and the slot free.

    Use it around the launch only, as ``with parallel_slot(p) as par:
    KERNELS[(name, par)](...)``; the slot is held until the block ends. (A class,
    not a generator: it costs a fraction of a microsecond per launch.)
    """

    __slots__ = ("want", "lock")

    def __init__(self, want: bool):
        self.want = bool(want)
        self.lock = None

    def __enter__(self) -> bool:
        global _fallbacks, _launched
        if not self.want or _forked_child:
            return False
        lock = _lock
        if not lock.acquire(blocking=False):
            _fallbacks += 1
            return False
        self.lock = lock
        # Marked before the launch: a fork from another thread during this launch
        # must already see the pool as started (its layer is then still unknown,
        # which the child treats as not fork-safe).
        _launched = True
        return True

    def __exit__(self, *exc) -> None:
        if self.lock is not None:
            _note_layer()
            self.lock.release()
            self.lock = None


def state() -> dict:
    """What the gate knows now (for ``python -m poolkit info`` and tests)."""
    return {
        "pool_started": _pool_started(),
        "layer": _layer,
        "forked_child": _forked_child,
        "parallel_allowed": not _forked_child,
        "serial_fallbacks": _fallbacks,
    }
