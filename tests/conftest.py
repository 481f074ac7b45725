"""Shared by every test module under tests/ (its directory is on ``sys.path``, so
tests/exercises/ imports ``backends`` and ``strategies`` too).

Every test with the ``gpu`` mark runs with a tiny GPU launch configuration: small
blocks and few of them, so the small inputs of the tests span several blocks, and
every block of the tiled kernels loops over several tiles (the simulator costs about
0.2 ms per simulated thread, so inputs stay small).
"""
import pytest

from poolkit import config

TINY_GPU_LAUNCH_CONFIG = dict(GPU_THREADS_PER_BLOCK=16, GPU_TILE_THREADS=32, GPU_TILE_WIDTH=4,
                              GPU_TILE_CHANNELS=2, GPU_OUTPUTS_PER_THREAD=2, GPU_MAX_BLOCKS=3)


@pytest.fixture(autouse=True)
def tiny_gpu_launch_config(request, monkeypatch):
    if request.node.get_closest_marker("gpu") is not None:
        for name, value in TINY_GPU_LAUNCH_CONFIG.items():
            monkeypatch.setattr(config, name, value)
