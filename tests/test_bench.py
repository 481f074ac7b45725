"""The benchmarks' plumbing (``python -m poolkit.bench``, package ``poolkit.bench``) on tiny cases.

No timing is asserted. The GPU benchmark's own runs (``--gpu --smoke`` on the simulator, the
message without a GPU) are in test_gpu.py; here only its command line and the layering.
"""
import ast
import pathlib
import subprocess
import sys

import numba
import numpy as np
import pytest

from poolkit import bench
from poolkit.bench import __main__ as cli
from poolkit.bench import cases, cpu, family

TINY = [("max 3x3 s2 p1", "max", (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1), True),
        ("avg 7x7", "avg", (2, 5, 7, 7), dict(kernel_size=7), False),
        ("max +indices", "max", (2, 3, 9, 8), dict(kernel_size=3, stride=2, padding=1, return_indices=True), False)]

BENCH_DIR = pathlib.Path(bench.__file__).parent


def test_package_reexports_the_cases():
    assert bench.CASES is cases.CASES and bench.INDEX_CASES is cases.INDEX_CASES
    assert all(len(c) == 5 and c[1] in ("max", "avg") and len(c[2]) == 4 for c in cases.CASES + cases.INDEX_CASES)
    assert all(c[3].get("return_indices") for c in cases.INDEX_CASES)


def _poolkit_imports(path):
    """Modules a file imports, relative imports resolved inside poolkit.bench."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not any(a.name == "*" for a in node.names), f"star import in {path.name}"
            mod = node.module or ""
            if node.level:
                mod = "poolkit.bench" + (f".{mod}" if mod else "")
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_layering_no_import_circles():
    imports = {p.stem: _poolkit_imports(p) for p in BENCH_DIR.glob("*.py")}
    assert not any(n.startswith(("poolkit", "numba")) for n in imports["cases"])
    assert "poolkit.bench.gpu" not in imports["cpu"] and "poolkit.bench.cpu" not in imports["gpu"]
    assert not any(n.startswith("poolkit.bench.gpu") for n in imports["family"])
    assert not any(n.startswith(("poolkit.bench.cpu", "poolkit.bench.gpu")) for n in imports["__init__"])
    for name, used in imports.items():  # only public names of poolkit's other modules
        assert not [n for n in used if n.startswith("poolkit.") and not n.startswith("poolkit.bench")
                    and n.split(".")[-1].startswith("_")], name


def test_cpu_benchmark_never_imports_cuda():
    code = ("import sys; from poolkit.bench import __main__ as m, cases; "
            "cases.CASES[:] = [('avg 7x7', 'avg', (1, 2, 7, 7), dict(kernel_size=7), True)]; "
            "assert m.main(['--repeat', '1', '--threads', '1', '--no-torch']) == 0; "
            "bad = [n for n in sys.modules if n.startswith(('numba.cuda', 'poolkit.gpu', 'poolkit.bench.gpu'))]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| avg 7x7 | NCHW | 1x2x7x7 |" in out.stdout and "| avg 7x7 | NHWC |" in out.stdout


def test_interleaved_rounds_time_every_contender_alike():
    calls = []
    times = cpu.interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=4)
    # 2 rounds of (1 untimed + BLOCK timed) calls each, contenders alternating by round
    per = 1 + cpu.BLOCK
    assert calls == (["a"] * per + ["b"] * per) * 2
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


@pytest.mark.parametrize("use_torch", [False, True])
def test_run_and_table(use_torch):
    if use_torch:
        pytest.importorskip("torch")
    threads = numba.get_num_threads()
    rows = cpu.run(threads=1, repeat=1, cases=TINY, use_torch=use_torch)
    assert numba.get_num_threads() == threads  # restored
    assert [(r["case"], r["layout"]) for r in rows] == [(c[0], lay) for c in TINY for lay in ("NCHW", "NHWC")]
    for r in rows:
        assert all(r[k] > 0 for k in ("serial", "parallel", "copy"))
        if use_torch:
            assert r["matches_torch"] == "bitwise"  # same order of operations as PyTorch's CPU kernels
        else:
            assert "torch" not in r
    table = cpu.format_table(rows, threads=1)
    assert table.count("\n| ") == len(rows)
    assert "large cases: poolkit/copy worst" in table
    assert [r["extra"] for r in rows] == [False] * 4 + [True] * 2  # index cases stay out of the summary
    assert ("speed-up vs torch min" in table) == use_torch


@pytest.mark.parametrize("indices", [False, True])
def test_cli_runs_the_cpu_suite_and_writes_the_report(monkeypatch, tmp_path, capsys, indices):
    monkeypatch.setattr(cases, "CASES", TINY[:2])
    monkeypatch.setattr(cases, "INDEX_CASES", TINY[2:])
    out = tmp_path / "cpu.md"
    argv = ["--repeat", "1", "--threads", "1", "--layout", "NHWC", "--no-torch", "--out", str(out)]
    assert cli.main(argv + ["--indices"] * indices) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("poolkit CPU benchmark -- ") and ", 1 threads, " in stdout.splitlines()[0]
    labels = [c[0] for c in TINY[:2 + indices]]
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "NHWC" in line]
    assert [line.split(" | ")[0][2:] for line in rows] == labels
    assert "NCHW |" not in stdout and "torch ms" not in stdout
    report = out.read_text()
    assert report.startswith("# poolkit CPU benchmark, ")
    assert f"Command: `python -m poolkit.bench {' '.join(argv + ['--indices'] * indices)}`" in report
    assert report.rstrip().endswith(stdout.rstrip().splitlines()[-1])


def test_cli_first_call_table(monkeypatch, capsys):
    monkeypatch.setattr(cpu, "first_call_latency", lambda: [("cold cache (compiles)", 0.5, 2.25, 1e-5)])
    assert cli.main(["--first-call"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| fresh process | import s | first max_pool2d s | second call s |", "|---|---|---|---|",
        "| cold cache (compiles) | 0.500 | 2.250 | 0.000010 |"]


def test_first_call_latency_runs_fresh_processes(monkeypatch):
    runs = []

    def fake_run(cmd, env, **kw):
        runs.append((cmd[0], env["NUMBA_CACHE_DIR"]))
        return subprocess.CompletedProcess(cmd, 0, stdout="0.1 0.2 0.003\n")
    monkeypatch.setattr(subprocess, "run", fake_run)
    rows = cpu.first_call_latency()
    assert [r[0] for r in rows] == ["cold cache (compiles)", "warm cache (loads)"]
    assert rows[0][1:] == (0.1, 0.2, 0.003)
    assert runs[0] == runs[1] and runs[0][0] == sys.executable  # same (fresh) cache directory for both


def test_cli_options_and_gpu_dispatch(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    cpu_help = capsys.readouterr().out
    assert e.value.code == 0 and "--first-call" in cpu_help and "--gpu" in cpu_help and "--smoke" not in cpu_help
    with pytest.raises(SystemExit) as e:
        cli.main(["--repeat", "3", "--gpu", "--help"])  # --gpu anywhere selects the GPU benchmark's options
    gpu_help = capsys.readouterr().out
    assert e.value.code == 0 and gpu_help.startswith("usage: python -m poolkit.bench --gpu")
    assert "--smoke" in gpu_help and "--min-mb" in gpu_help and "--first-call" not in gpu_help
    with pytest.raises(SystemExit):
        cli.main(["--gpu", "--threads", "2"])  # a CPU-only option
    assert "unrecognized arguments: --threads" in capsys.readouterr().err


def _gpu_cli_on_simulator(args, out):
    """``main(['--gpu', *args, '--out', out])`` on the simulator, in a subprocess (the simulator
    must be chosen before numba is imported): the report's table as (header, rows of dicts)."""
    import os

    code = f"import sys; from poolkit.bench.__main__ import main; sys.exit(main({['--gpu', *args, '--out', str(out)]!r}))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"))
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def test_gpu_table_has_the_copy_columns(tmp_path):
    """``--gpu`` reports host->device (input) and device->host (output) copy times, the
    columns lesson 05 reads (``h2d us``, ``d2h us``); here on the simulator."""
    header, rows = _gpu_cli_on_simulator(['--smoke', '--repeat', '1', '--case', 'max 2x2', '--no-torch'],
                                         tmp_path / "gpu.md")
    assert "h2d us" in header and "d2h us" in header
    assert [r["layout"] for r in rows] == ["NCHW", "NHWC"]
    assert all(float(r["h2d us"]) > 0 and float(r["d2h us"]) > 0 for r in rows)


def _tiny_family():
    """Every family case on arrays of batch 2 and sides of at most 10 (at ``--scale 0.02``: batch 1)."""
    return [(label, (2, 3) + tuple(min(n, 10) for n in shape[2:]), build, bitwise)
            for label, shape, build, bitwise in family.FAMILY_CASES]


def test_family_cases_cover_the_family():
    labels = [c[0] for c in family.FAMILY_CASES]
    assert len(labels) == 17 and len(set(labels)) == 17
    assert sum(label.startswith("channels-last") for label in labels) == 2
    assert [c[0] for c in family.FAMILY_CASES if not c[3]] == ["adaptive_avg_pool2d ->1", "lp_pool2d p=2 k2"]


def test_family_run_matches_torch_and_scales_the_batch():
    pytest.importorskip("torch")
    threads = numba.get_num_threads()
    rows = family.run(threads=1, repeat=1, scale=2.0, cases=_tiny_family())
    assert numba.get_num_threads() == threads  # restored
    assert [r["case"] for r in rows] == [c[0] for c in family.FAMILY_CASES]
    by_case = {r["case"]: r for r in rows}
    assert by_case["max_unpool2d k2"]["shape"] == (4, 3, 5, 5)  # the pooled array is the input
    assert by_case["channels-last: max_pool3d k2 s2 NDHWC"]["shape"] == (4, 10, 10, 10, 3)
    for r, (_, _, _, bitwise) in zip(rows, family.FAMILY_CASES):
        assert r["shape"][0] == 4 and all(r[k] > 0 for k in ("serial", "parallel", "copy", "torch"))
        if bitwise:
            assert r["matches_torch"] == "bitwise", r
        else:  # bitwise, or a difference in ulp
            assert not r["matches_torch"].startswith("DIFFERS"), r
    table = family.format_table(rows, threads=1)
    assert "channels-first (15 rows): x torch geometric mean" in table
    assert "channels-last (2 rows): x torch geometric mean" in table


def test_family_compare_reports_ulp_and_indices():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, -2.0, 3e-8], np.float32)
    b = a.copy()
    b[2] = np.nextafter(np.nextafter(b[2], np.float32(1)), np.float32(1))
    assert family.compare(a, torch.from_numpy(a.copy())) == "bitwise"
    assert family.compare(a, torch.from_numpy(b), bitwise=False) == "max 2 ulp, abs 7.1e-15"
    assert family.compare(a, torch.from_numpy(b)).startswith("DIFFERS: max 2 ulp")
    assert family.compare(-a, torch.from_numpy(-b), bitwise=False).startswith("max 2 ulp")
    idx = np.arange(3)
    assert family.compare((a, idx), (torch.from_numpy(a), torch.from_numpy(idx[::-1].copy()))) == \
        "DIFFERS: indices differ"
    x = np.zeros((1, 2, 3, 4), np.float32)
    assert family.compare(x.transpose(0, 2, 3, 1).copy(), torch.from_numpy(x), channels_last=True) == "bitwise"


@pytest.mark.parametrize("use_torch", [False, True])
def test_cli_runs_the_family_suite(monkeypatch, tmp_path, capsys, use_torch):
    if use_torch:
        pytest.importorskip("torch")
    monkeypatch.setattr(family, "FAMILY_CASES", _tiny_family())
    out = tmp_path / "family.md"
    argv = ["--family", "--scale", "0.02", "--repeat", "3", "--threads", "1", "--out", str(out)]
    argv += [] if use_torch else ["--no-torch"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("poolkit CPU family benchmark -- ")
    assert "[17/17] channels-last: max_pool2d" in captured.err  # progress on stderr
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    times = ["serial ms", "parallel ms", "copy ms"] + ["torch ms"] * use_torch
    assert header == ["case", "shape"] + times + ["x torch"] * use_torch + ["/ copy"] + ["same values"] * use_torch
    rows = [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]
    assert [r["case"] for r in rows] == [c[0] for c in family.FAMILY_CASES]
    for r in rows:
        assert r["shape"].startswith("1x")  # the batch, scaled, is at least 1
        assert all(float(r[k]) >= 0 for k in times + ["/ copy"])  # tiny arrays: some print 0.00
        if use_torch:
            assert r["x torch"].endswith("x") and float(r["x torch"][:-1]) > 0
    assert ("geometric mean" in captured.out) == use_torch
    report = out.read_text()
    assert report.startswith("# poolkit CPU family benchmark, ")
    assert f"Command: `python -m poolkit.bench {' '.join(argv)}`" in report
    assert report.rstrip().endswith(captured.out.rstrip().splitlines()[-1])


def test_cli_family_refuses_options_of_the_default_suite(capsys):
    for extra in (["--layout", "NHWC"], ["--indices"], ["--first-call"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["--family"] + extra)
        assert e.value.code == 2 and "--family runs its own cases" in capsys.readouterr().err


def test_gpu_family_cases_mirror_the_cpu_family():
    from poolkit.bench import gpu_family

    assert [c[0] for c in gpu_family.CASES] == [c[0] for c in family.FAMILY_CASES]
    assert not any(n.startswith(("poolkit.bench.cpu", "poolkit.bench.family"))
                   for n in _poolkit_imports(BENCH_DIR / "gpu_family.py"))


def test_gpu_family_torch_calls_match_poolkit():
    """The GPU family benchmark's torch calls (``_torch_call``: the aten backward ops with their
    positional arguments, unpooling's output size) and the arrays it prepares for each case
    (``_case_arrays``), run here on the CPU: torch's results equal poolkit.cpu's bit for bit where
    the CPU family benchmark expects it, so a wrong argument shows before a device run."""
    torch = pytest.importorskip("torch")
    from poolkit import cpu
    from poolkit.bench import gpu_family as gf

    rng = np.random.default_rng(3)

    def random(shape):
        g = rng.standard_normal(shape, dtype=np.float32)
        return g, torch.from_numpy(g)

    for label, base, kind, name, args, kw in gf.CASES:
        x, t = random((2, 3) + tuple(min(n, 10) for n in base[2:]))
        cl = "layout" in kw
        if cl:
            t = t.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)
            x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        x, grad, idx, t, gt, ti = gf._case_arrays(cpu, torch, kind, name, args, x, t, random)
        outs = gf._as_tuple(gf._call(cpu, kind, name, args, kw, x, grad, idx))
        refs = [r.movedim(1, -1) if cl else r for r in gf._as_tuple(gf._torch_call(torch, kind, name, args, kw,
                                                                                 t, gt, ti))]
        same = gf._same_on_device(torch, outs, refs)
        if label.startswith(gf._NOT_BITWISE_TORCH):
            assert same.startswith("max abs"), (label, same)
        else:
            assert same == "bitwise", (label, same)


def test_cli_runs_the_gpu_family_suite_on_the_simulator(tmp_path):
    """``--gpu --family --smoke`` on the simulator: the table's rows, and the first batch item
    of the GPU's results equal to poolkit.cpu's bit for bit."""
    out = tmp_path / "gpu_family.md"
    _, rows = _gpu_cli_on_simulator(['--family', '--smoke', '--repeat', '1', '--case', 'max_pool3d k2',
                                     '--case', 'max_unpool2d', '--case', 'NHWC', '--no-torch'], out)
    assert [r["case"] for r in rows] == ["max_pool3d k2 s2", "max_unpool2d k2", "channels-last: max_pool3d k2 s2 NDHWC",
                                         "channels-last: max_pool2d k3 s2 p1 return_indices NHWC"]
    assert [r["= CPU (batch item 0)"] for r in rows] == ["bitwise"] * 4
    assert [r["shape"] for r in rows[1:]] == ["1x2x6x6", "1x12x12x12x2", "1x12x12x2"]
    assert "Checks: no unexpected difference" in out.read_text()
