"""Packaging and repository invariants."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_packages():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra, items in meta["optional-dependencies"].items():
        if extra == "torch":  # optional comparison target, not part of the environment
            continue
        reqs += [r for r in items if not r.startswith("poolkit")]
    names = set()
    for r in reqs:
        n = _name(r)
        names.add(n)
        if n == "dask" and "distributed" in r:
            names.add("distributed")
    return names


def _environment_packages():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep["pip"] if not d.startswith("-e")}
        elif _name(dep) not in ("python", "pip"):
            names.add(_name(dep))
    return names


def test_environment_yml_and_pyproject_agree():
    assert _pyproject_packages() == _environment_packages()


def test_numpy_pinned_below_2_5_everywhere():
    assert "<2.5" in (ROOT / "pyproject.toml").read_text().split("numpy", 1)[1].split("\n", 1)[0]
    assert "<2.5" in (ROOT / "environment.yml").read_text().split("- numpy", 1)[1].split("\n", 1)[0]


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 tasks.py test" in readme and "python3 tasks.py test" in ci


def test_every_notebook_is_collected_by_nbval():
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no notebooks"
    assert all(re.fullmatch(r"\d\d[a-z]?_[a-z0-9_]+\.ipynb", n) for n in notebooks), notebooks
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval", "--nbval-current-env",
         "-p", "no:cacheprovider", "notebooks"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    ).stdout
    collected = {Path(line.split("::")[0]).name for line in out.splitlines() if ".ipynb::" in line}
    assert collected == set(notebooks)


def test_import_compiles_nothing_and_skips_cuda():
    code = ("import sys, poolkit; "
            "print(any(m.startswith('numba.cuda') for m in sys.modules), 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False"]


def test_editing_the_inlined_helpers_recompiles_the_cached_kernels(tmp_path):
    """A change to ``poolkit/cpu/_jit.py`` alone (a ``git pull`` into the course's editable
    install) must not leave kernels running their cached machine code: the helpers are
    inlined into every kernel, but Numba's cache stamp is the kernel module's file only
    (``poolkit.cpu.ops`` adds the helpers' digest to it)."""
    import shutil
    shutil.copytree(ROOT / "poolkit", tmp_path / "poolkit", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import numpy as np; from poolkit import cpu; from poolkit.cpu.kernels2d import KERNELS; "
            "cpu.max_pool2d(np.ones((1, 1, 4, 4), np.float32), 2, parallel=False); "
            "s = KERNELS[('max_nchw', False)].stats; print(len(s.cache_hits), len(s.cache_misses))")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(tmp_path), NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def hits_and_misses():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=600)
        assert out.returncode == 0, out.stderr
        return tuple(int(v) for v in out.stdout.split())

    assert hits_and_misses() == (0, 1)  # compiled and saved
    assert hits_and_misses() == (1, 0)  # loaded from the cache
    with open(tmp_path / "poolkit" / "cpu" / "_jit.py", "a") as f:
        f.write("\n# an edit of the helpers only\n")
    assert hits_and_misses() == (0, 1)  # compiled again, not loaded stale
    assert hits_and_misses() == (1, 0)
