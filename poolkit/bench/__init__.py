"""Benchmarks of poolkit's kernels against a memory copy and PyTorch.

* :mod:`poolkit.bench.cpu` times the serial and parallel Numba kernels, a NumPy copy of
  the input and PyTorch CPU pooling, in interleaved rounds; it also measures import and
  first-call latency;
* :mod:`poolkit.bench.gpu` times the naive and optimized CUDA kernels, a device copy and
  PyTorch CUDA pooling with CUDA events (``--smoke`` only checks the code paths, also on
  Numba's CUDA simulator);
* :mod:`poolkit.bench.cases` holds the case suite both run.

Run them from the command line (``python -m poolkit.bench --help``)::

    python -m poolkit.bench                  # CPU benchmark
    python -m poolkit.bench --first-call     # import and first-call latency
    python -m poolkit.bench --gpu            # GPU benchmark (needs a GPU)

Importing this package imports neither benchmark (nor numba): import
``poolkit.bench.cpu`` or ``poolkit.bench.gpu`` for their ``run`` and ``format_table``.
"""
from .cases import CASES, INDEX_CASES

__all__ = ["CASES", "INDEX_CASES"]
