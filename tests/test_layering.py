"""The package's layering, read from its imports with ``ast`` (nothing is executed).

The ladder, bottom to top (a module may import only from its own rung or below):

0. ``geometry``, ``config``, ``_layout``, ``_docs``, ``threads`` -- rules and plumbing:
   no poolkit module, never numba;
1. ``reference``, ``explain`` -- plain Python on top of rung 0;
2. ``cpu``, ``gpu`` -- the backends; neither imports the other;
3. ``dask`` -- runs the CPU kernels per block;
4. ``functional`` -- the dispatch;
5. ``xarray`` -- the ``DataArray.pool`` accessor (public functions by dimension name);
6. ``multiscale`` -- pyramids and multiscale Zarr; 7. ``poolkit`` itself;
8. ``bench``, ``exercises``, ``info`` -- tools that use the public API;
9. ``__main__`` (``python -m poolkit info``).

Inside ``cpu``/``gpu``, kernel modules import numba and their own kernel helpers only.
Also: no star imports, no private names from another package, no import circles.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import poolkit

ROOT = Path(poolkit.__file__).resolve().parent

RANKS = {
    "geometry": 0, "config": 0, "_layout": 0, "_docs": 0, "threads": 0,
    "reference": 1, "explain": 1,
    "cpu": 2, "gpu": 2,
    "dask": 3, "functional": 4, "xarray": 5, "multiscale": 6, "__init__": 7,
    "bench": 8, "exercises": 8, "info": 8, "__main__": 9,
}
#: Kernel modules: numba (and numpy/math) and their package's kernel helpers only.
KERNEL_MODULES = {
    "poolkit.cpu._jit": {"poolkit.geometry"},  # compiles geometry.tap_range
    "poolkit.cpu.kernels2d": {"poolkit.cpu._jit"},
    "poolkit.cpu.kernels_nd": {"poolkit.cpu._jit"},
    "poolkit.gpu.rules": {"poolkit.geometry"},  # compiles geometry.tap_range
    "poolkit.gpu.naive2d": {"poolkit.gpu.rules"},
    "poolkit.gpu.tiled2d": {"poolkit.gpu.rules"},
    "poolkit.gpu.index5": set(),
    "poolkit.gpu.kernels_nd": {"poolkit.gpu.rules", "poolkit.gpu.index5"},
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        yield ".".join(parts), path, is_pkg


MODULES = {name: (path, is_pkg) for name, path, is_pkg in _modules()}


def _resolve(module, is_pkg, node):
    """The poolkit modules an import node names (``from a import b``: ``a.b`` if a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.split(".")[0] == "poolkit"]
    if node.level:
        base = module.split(".")
        base = base if is_pkg else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "poolkit":
        return []
    out = []
    for a in node.names:
        sub = f"{target}.{a.name}"
        out.append((sub, None) if sub in MODULES else (target, a.name))
    return out


def _imports():
    """``{module: [(imported module, imported name or None, lineno, node)]}`` over every import."""
    table = {}
    for module, (path, is_pkg) in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        rows = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                rows += [(t, n, node.lineno, node) for t, n in _resolve(module, is_pkg, node)]
        table[module] = rows
    return table


IMPORTS = _imports()


def _rung(module):
    parts = module.split(".")
    return RANKS["__init__"] if len(parts) == 1 else RANKS[parts[1]]


def _package(module):
    parts = module.split(".")
    return ".".join(parts[:2])


def test_every_module_has_a_rung():
    assert {m.split(".")[1] for m in MODULES if "." in m} <= set(RANKS)


def _upward(imports):
    return [f"{m}:{line} imports {t}" for m, rows in imports.items() for t, _, line, _ in rows
            if _rung(t) > _rung(m) or (_rung(t) == _rung(m) and _package(t) != _package(m))]


def test_no_upward_imports():
    bad = _upward(IMPORTS)
    assert not bad, "imports that climb the ladder (or cross between cpu and gpu):\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["poolkit.geometry", "poolkit.config", "poolkit._layout", "poolkit._docs",
                                    "poolkit.threads"])
def test_rules_import_no_poolkit_module_and_no_numba(module):
    path, _ = MODULES[module]
    assert not IMPORTS[module]
    names = {a.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Import)
             for a in node.names}
    names |= {node.module for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(n.split(".")[0] == "numba" for n in names)


@pytest.mark.parametrize("module", sorted(KERNEL_MODULES))
def test_kernel_modules_import_only_numba_and_their_helpers(module):
    assert module in MODULES, f"{module} is gone: update KERNEL_MODULES"
    path, _ = MODULES[module]
    allowed_outside = {"numba", "llvmlite", "numpy", "math", "types", "functools", "__future__"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] in allowed_outside for a in node.names), ast.dump(node)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            assert node.module.split(".")[0] in allowed_outside, ast.dump(node)
    assert {t for t, *_ in IMPORTS[module]} <= KERNEL_MODULES[module]


def test_no_star_imports():
    bad = [f"{m}:{line}" for m, rows in IMPORTS.items() for _, n, line, _ in rows if n == "*"]
    for module, (path, _) in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                bad.append(f"{module}:{node.lineno}")
    assert not bad


def test_no_private_names_across_packages():
    bad = [f"{m}:{line} imports {t}.{n}" for m, rows in IMPORTS.items() for t, n, line, _ in rows
           if n and n.startswith("_") and _package(t) != _package(m)]
    # private *modules* are shared plumbing only at the top (poolkit._layout, poolkit._docs)
    bad += [f"{m}:{line} imports {t}" for m, rows in IMPORTS.items() for t, _, line, _ in rows
            if any(p.startswith("_") and p != "__init__" for p in t.split(".")[2:])
            and _package(t) != _package(m)]
    assert not bad, "\n".join(bad)


def _cycles(graph):
    state, cycles = {}, []

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t] if t in path else [m, t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def _private_attribute_uses(module, tree, rows):
    """``alias._name`` where ``alias`` names a poolkit module of another package."""
    aliases = {}
    for target, name, _, node in rows:
        if name is None and isinstance(node, ast.ImportFrom):
            for a in node.names:
                if target.endswith("." + a.name) or target == a.name:
                    aliases[a.asname or a.name] = target
        elif name is None and isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name == target:
                    aliases[a.asname] = target
    return [f"{module}:{n.lineno} uses {aliases[n.value.id]}.{n.attr}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
            and n.attr.startswith("_") and not n.attr.startswith("__")
            and _package(aliases[n.value.id]) != _package(module)]


def test_no_private_attributes_of_other_packages():
    bad = []
    for module, (path, _) in MODULES.items():
        bad += _private_attribute_uses(module, ast.parse(path.read_text()), IMPORTS[module])
    assert not bad, "\n".join(bad)


def test_private_attribute_check_catches_one():
    tree = ast.parse("from .. import geometry as G\nG._is_int(3)\nG.is_int(3)\n")
    rows = [(t, n, node.lineno, node) for node in tree.body[:1]
            for t, n in _resolve("poolkit.gpu.ops", False, node)]
    assert _private_attribute_uses("poolkit.gpu.ops", tree, rows) == ["poolkit.gpu.ops:2 uses poolkit.geometry._is_int"]


def test_no_import_circles():
    cycles = _cycles({m: {t for t, *_ in rows if t != m} for m, rows in IMPORTS.items()})
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_catch_what_they_claim():
    """Each check fails on the bug it is for (today's gpu <-> gpu_nd circle, cpu importing gpu)."""
    assert _cycles({"poolkit.gpu": {"poolkit.gpu_nd"}, "poolkit.gpu_nd": {"poolkit.gpu"}})
    assert not _cycles({"poolkit.gpu": {"poolkit.geometry"}, "poolkit.geometry": set()})
    assert _upward({"poolkit.cpu.ops": [("poolkit.gpu.ops", None, 1, None)]})
    assert _upward({"poolkit.geometry": [("poolkit.cpu", None, 1, None)]})
    assert not _upward({"poolkit.dask": [("poolkit.cpu", None, 1, None)]})
    node = ast.parse("from ..cpu import _jit").body[0]
    assert _resolve("poolkit.gpu.ops", False, node) == [("poolkit.cpu._jit", None)]
    node = ast.parse("from .. import geometry as G").body[0]
    assert _resolve("poolkit.cpu", True, node) == [("poolkit.geometry", None)]


# Today's bug that this layout prevents: importing one module of a backend first must
# not lose functions from the backend or from poolkit (the old gpu.py ended in a star
# import from gpu_nd, which imported private names back from gpu).
FIRST = sorted(m for m in MODULES if m.startswith(("poolkit.cpu", "poolkit.gpu", "poolkit.functional")))


@pytest.mark.parametrize("first", FIRST)
def test_import_order_cannot_lose_functions(first):
    code = (f"import {first}\n"
            "import poolkit, poolkit.cpu, poolkit.gpu, poolkit.reference\n"
            "from poolkit.geometry import OPS\n"
            "missing = [f'{m.__name__}.{n}' for m in (poolkit, poolkit.cpu, poolkit.gpu, poolkit.reference)\n"
            "           for n in OPS if not callable(getattr(m, n, None))]\n"
            "print(missing)\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
