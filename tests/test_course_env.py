"""The course environment runs every lesson.

``python3 tasks.py lab`` installs poolkit with its ``course`` extra. Every module a
notebook imports unconditionally (not inside a ``try`` that catches ImportError) must
come from that environment: poolkit itself, its own dependencies, the standard
library, or a distribution the ``course`` extra names (directly or through another
of poolkit's extras, e.g. ``poolkit[dask]``).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

#: Import names whose distribution has another name, or which arrive as a dependency
#: of a distribution the environment names. Keys are dotted module prefixes (the most
#: specific one wins); values are requirements in ``name[extra]`` form, any of which
#: provides the module.
PROVIDED_BY = {
    "PIL": ["pillow", "matplotlib"],               # pillow is a dependency of matplotlib
    "IPython": ["ipython", "ipykernel"],           # ipython is a dependency of ipykernel
    "ipywidgets": ["ipywidgets"],
    "yaml": ["pyyaml"],
    "sklearn": ["scikit-learn"],
    "skimage": ["scikit-image"],
    "dask.array": ["dask[array]"],
    "dask.dataframe": ["dask[dataframe]"],
    "dask.distributed": ["dask[distributed]", "distributed"],
    "distributed": ["dask[distributed]", "distributed"],
    "poolkit.dask": ["dask[array]"],                # poolkit's only module with a third-party import
    "poolkit": [],                                  # the package itself
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse_requirement(req: str) -> tuple[str, set[str]]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?", req)
    name = _norm(m.group(1))
    extras = {_norm(e) for e in (m.group(2) or "").split(",") if e.strip()}
    return name, extras


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def provided_requirements(extra: str) -> set[str]:
    """Names (``dask``) and name[extra] tokens (``dask[array]``) that ``pip install
    .[extra]`` installs by name: poolkit's dependencies and the extra, with poolkit's
    self-references (``poolkit[dask]``) followed."""
    meta = _project()
    optional = meta.get("optional-dependencies", {})
    own = _norm(meta["name"])
    provided: set[str] = set()
    todo, seen = [extra], set()
    reqs = list(meta["dependencies"])
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        if e not in optional:
            raise AssertionError(f"pyproject.toml has no optional-dependencies extra {e!r}")
        for req in optional[e]:
            name, extras = _parse_requirement(req)
            if name == own:
                todo.extend(extras)
            else:
                reqs.append(req)
    for req in reqs:
        name, extras = _parse_requirement(req)
        provided.add(name)
        provided.update(f"{name}[{x}]" for x in extras)
    return provided


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type
    if types is None:
        return False  # a bare except hides every error, not a clear "optional" guard
    names = types.elts if isinstance(types, ast.Tuple) else [types]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def unconditional_imports(source: str) -> list[tuple[str, int]]:
    """(dotted module, line) for every absolute import not guarded by a ``try`` whose
    handlers catch ImportError/ModuleNotFoundError."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.Import) and not guarded:
            found.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not guarded and node.level == 0:
            found.append((node.module, node.lineno))
        if isinstance(node, ast.Try):
            body_guarded = guarded or any(_catches_import_error(h) for h in node.handlers)
            for child in node.body:
                visit(child, body_guarded)
            for child in node.handlers + node.orelse + node.finalbody:
                visit(child, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(ast.parse(source), False)
    return found


def _python_source(cell_source: str) -> str:
    # IPython magics and shell escapes are not Python: blank them (keeping line numbers).
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


def notebook_imports(path: Path) -> list[tuple[int, str, int]]:
    """(cell number, module, line in the cell) of a notebook's unconditional imports."""
    nb = json.loads(path.read_text())
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for module, line in unconditional_imports(_python_source(src)):
            out.append((i, module, line))
    return out


def needed_for(module: str) -> list[str] | None:
    """Requirements any of which provides ``module``; None for the standard library."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        return None
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in PROVIDED_BY:
            return PROVIDED_BY[prefix]
    return [_norm(top)]


def missing_from(extra: str, notebooks=NOTEBOOKS) -> list[str]:
    provided = provided_requirements(extra)
    problems = []
    for path in notebooks:
        for cell, module, line in notebook_imports(path):
            need = needed_for(module)
            if need is None or not need or any(_norm_token(r) in provided for r in need):
                continue
            problems.append(f"{path.name}, cell {cell} line {line}: `{module}` needs "
                            f"{' or '.join(need)}, which the {extra!r} extra does not install")
    return problems


HINT = ("add the distribution to [project.optional-dependencies] course in pyproject.toml, or guard "
        "the import with try/except ImportError and print what the lesson skips without it")


def _norm_token(req: str) -> str:
    name, extras = _parse_requirement(req)
    return f"{name}[{next(iter(extras))}]" if extras else name


# --- the tests ------------------------------------------------------------------

def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 11, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_come_from_the_course_extra(path):
    problems = missing_from("course", [path])
    assert not problems, "\n".join(problems + [HINT])


def test_course_extra_is_importable_here():
    """In this environment (installed with the test extra, which includes the course
    extra) every requirement of the course extra is importable."""
    for token in sorted(provided_requirements("course")):
        name = token.split("[")[0]
        module = {"pyyaml": "yaml", "ipykernel": "ipykernel", "numba-cuda": "numba.cuda",
                  "xarray-spatial": "xrspatial"}.get(
            name, name.replace("-", "_"))
        assert importlib.util.find_spec(module.split(".")[0]) is not None, f"{token} is not installed"


def test_the_check_catches_a_missing_distribution(monkeypatch):
    """Without dask in the course extra, lesson 10 is reported, naming the module."""
    meta = _project()
    course = [r for r in meta["optional-dependencies"]["course"]
              if _parse_requirement(r)[0] != "dask" and not r.startswith("poolkit[")]
    text = (ROOT / "pyproject.toml").read_text()
    patched = tomllib.loads(text)
    patched["project"]["optional-dependencies"]["course"] = course
    monkeypatch.setattr(sys.modules[__name__], "_project", lambda: patched["project"])
    problems = missing_from("course")
    assert any("10_beyond_one_machine.ipynb" in p and "`dask" in p for p in problems), problems


def test_guarded_imports_are_optional():
    src = ("import numpy\n"
           "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
           "try:\n    import ipywidgets\nexcept (ImportError, AttributeError):\n    pass\n"
           "try:\n    import leftpad\nexcept Exception:\n    pass\n"
           "def f():\n    import scipy\n")
    assert [m for m, _ in unconditional_imports(src)] == ["numpy", "leftpad", "scipy"]


def test_lab_installs_the_course_extra(monkeypatch, tmp_path):
    """`python3 tasks.py lab` installs `.[course]` (plus the CUDA wheels, `cuda`, where there is an
    NVIDIA driver) and starts JupyterLab from that environment."""
    spec = importlib.util.spec_from_file_location("poolkit_tasks", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    calls = []
    monkeypatch.setattr(tasks, "VENV", tmp_path)
    monkeypatch.setattr(tasks, "BIN", tmp_path / "bin")
    monkeypatch.setattr(tasks, "PY", tmp_path / "bin" / "python")
    monkeypatch.setattr(tasks, "run", lambda cmd, **kw: calls.append([str(c) for c in cmd]) or 0)
    for driver, extras in ((False, ".[course]"), (True, ".[course,cuda]")):
        calls.clear()
        monkeypatch.setattr(tasks, "has_nvidia_driver", lambda: driver)
        assert tasks.lab([]) == 0
        installs = [c for c in calls if c[1:4] == ["-m", "pip", "install"] and "-e" in c]
        assert installs, calls
        assert installs[0][installs[0].index("-e") + 1] == extras, installs
    assert calls[-1][0] == str(tmp_path / "bin" / "jupyter") and calls[-1][1] == "lab", calls
