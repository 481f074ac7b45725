"""benchmarks/gpu_check.sh, issue 16's one command for a lent GPU machine, and the notebook
runner it uses there (benchmarks/run_notebook.py: that machine has no Jupyter). Here both run
on what this machine has: the runner on a small notebook, the script in ``--smoke`` mode on
Numba's CUDA simulator (every stage, tiny sizes)."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ROOT / "benchmarks" / "run_notebook.py"


def _notebook(path, cells):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": src} for src in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    nb["cells"].insert(1, {"cell_type": "markdown", "metadata": {}, "source": "# a heading"})
    path.write_text(json.dumps(nb))


def _run(args, **kw):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, **kw)


def test_runner_records_what_a_kernel_shows_and_stops_at_an_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.txt").write_text("read from the notebook's folder")
    _notebook(src / "nb.ipynb", [
        "import pathlib\nprint(pathlib.Path('data.txt').read_text())\nx = 20",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nx + 1",
        "x = None\nx",                                  # a None value shows nothing
        "raise ValueError('stop here')",
        "print('never run')",
    ])
    run = _run([RUNNER, src / "nb.ipynb", tmp_path / "out"], env=dict(os.environ, MPLBACKEND="Agg"))
    assert run.returncode == 1 and "STOPPED at an error" in run.stdout, run.stdout + run.stderr
    cells = [c for c in json.loads((tmp_path / "out" / "nb.ipynb").read_text())["cells"] if c["cell_type"] == "code"]
    assert [c["execution_count"] for c in cells] == [1, 2, 3, 4, None]
    assert cells[0]["outputs"] == [{"output_type": "stream", "name": "stdout",
                                    "text": "read from the notebook's folder\n"}]
    kinds = [o["output_type"] for o in cells[1]["outputs"]]
    assert kinds == ["display_data", "execute_result"], cells[1]["outputs"]
    assert cells[1]["outputs"][0]["data"]["image/png"].startswith("iVBOR")  # a PNG, base64
    assert cells[1]["outputs"][1]["data"]["text/plain"] == "21"
    assert cells[2]["outputs"] == []
    err = cells[3]["outputs"][-1]
    assert err["output_type"] == "error" and err["ename"] == "ValueError" and err["evalue"] == "stop here"
    assert cells[4]["outputs"] == []


def test_gpu_check_smoke_runs_every_stage_on_the_simulator(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), NUMBA_ENABLE_CUDASIM="1", PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    log = (tmp_path / "check.log").read_text()
    stages = ["info", "tests", "bench-family", "bench-2d", "05_first_cuda_kernel", "06_faster_cuda_kernels"]
    for name in stages:
        assert f"== {name}: rc=0 (done)" in log, log
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(["check.log", "info.txt", "tests.log", "gpu_family.md", "gpu_2d.md",
                            "05_first_cuda_kernel.ipynb", "06_faster_cuda_kernels.ipynb"])
    assert len(files) <= 8  # what the device tool brings back
    assert "numba.cuda available: True" in (tmp_path / "info.txt").read_text()
    assert "Checks: no unexpected difference" in (tmp_path / "gpu_family.md").read_text()
    assert "15 code cells run, ok" in log and "25 code cells run, ok" in log
