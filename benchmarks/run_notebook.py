"""Run a course notebook without Jupyter and save it with its outputs.

    python benchmarks/run_notebook.py notebooks/05_first_cuda_kernel.ipynb OUT_DIR

For machines that have the notebooks' libraries but no Jupyter stack (nbclient, ipykernel,
pyzmq): the lent GPU machine (benchmarks/gpu_check.sh). The code cells run in order in one
namespace, in the notebook's folder, as a kernel would run them: printed text becomes a
stream output, the value of a cell's last expression an ``execute_result`` (its ``repr``),
and every open Matplotlib figure a PNG ``display_data`` (``plt.show()`` shows nothing here;
the figures are collected after the cell). The first cell that raises gets the traceback
as an ``error`` output and the run stops there, as ``jupyter nbconvert --execute`` does.

Writes ``OUT_DIR/<name>.ipynb`` (nbformat 4, plain JSON) and prints one line per cell
(seconds, outputs, error) and a summary; exits 1 if a cell raised.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import io
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path


def _figures():
    """PNG bytes of every open Matplotlib figure, which are then closed."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    plt = sys.modules["matplotlib.pyplot"]
    pngs = []
    for num in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(num).savefig(buf, format="png", bbox_inches="tight")
        pngs.append(buf.getvalue())
    plt.close("all")
    return pngs


def _run_cell(source, ns, count):
    """Run one code cell; return (outputs, error or None)."""
    outputs, error = [], None
    out, err = io.StringIO(), io.StringIO()
    value = None
    try:
        tree = ast.parse(source, filename=f"<cell {count}>")
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        body = ast.Module(tree.body[:-1] if last else tree.body, type_ignores=[])
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(body, f"<cell {count}>", "exec"), ns)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), f"<cell {count}>", "eval"), ns)
    except BaseException as e:  # a cell's error, reported like a kernel's
        error = dict(output_type="error", ename=type(e).__name__, evalue=str(e),
                     traceback=traceback.format_exception(type(e), e, e.__traceback__))
    for name, stream in (("stdout", out), ("stderr", err)):
        if stream.getvalue():
            outputs.append(dict(output_type="stream", name=name, text=stream.getvalue()))
    for png in _figures():
        outputs.append(dict(output_type="display_data", metadata={},
                            data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}))
    if value is not None and error is None:
        outputs.append(dict(output_type="execute_result", execution_count=count, metadata={},
                            data={"text/plain": repr(value)}))
    if error is not None:
        outputs.append(error)
    return outputs, error


def run(path, out_dir):
    """Execute ``path``; write the executed copy into ``out_dir``; return True if no cell raised."""
    path = Path(path).resolve()
    nb = json.loads(path.read_text())
    os.environ.setdefault("MPLBACKEND", "Agg")
    warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")  # plt.show() on Agg
    ns = {"__name__": "__main__"}
    here = os.getcwd()
    os.chdir(path.parent)
    ok, count = True, 0
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            if not ok:
                cell["outputs"], cell["execution_count"] = [], None
                continue
            count += 1
            t0 = time.perf_counter()
            outputs, error = _run_cell("".join(cell["source"]), ns, count)
            cell["outputs"], cell["execution_count"] = outputs, count
            print(f"  cell {count}: {time.perf_counter() - t0:.2f} s, {len(outputs)} outputs"
                  + (f", {error['ename']}: {error['evalue']}" if error else ""), flush=True)
            ok = error is None
    finally:
        os.chdir(here)
    out = Path(out_dir) / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb, indent=1) + "\n")
    print(f"{path.name}: {count} code cells run, {'ok' if ok else 'STOPPED at an error'} -> {out}", flush=True)
    return ok


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0 if run(argv[0], argv[1]) else 1


if __name__ == "__main__":
    sys.exit(main())
