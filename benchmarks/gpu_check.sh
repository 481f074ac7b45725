#!/usr/bin/env bash
# Issue 16's device check as one command: everything a session with a lent GPU machine
# needs to run there once, writing its results under $OUT (7 files, each stage's own, so a
# stage that runs out of time still leaves the others'):
#
#   info.txt          card, driver, versions; whether numba.cuda sees the GPU
#   check.log         each stage's start, end and exit status
#   tests.log         the GPU tests on the device (POOLKIT_REAL_GPU=1: every test the
#                     simulator runs, plus the real-GPU-only ones: zero-copy by pointers,
#                     the default launch configuration on realistic shapes)
#   gpu_2d.md         python -m poolkit.bench --gpu (naive and tiled 2-d, device copy, PyTorch)
#   gpu_family.md     python -m poolkit.bench --gpu --family (the family and backward suite)
#   05_first_cuda_kernel.ipynb, 06_faster_cuda_kernels.ipynb
#                     lessons 05 and 06 run on the device (benchmarks/run_notebook.py: the
#                     machine has no Jupyter)
#
# On the device machine (device tool, from the repository root; about 8.5 minutes):
#   run(command="bash benchmarks/gpu_check.sh", timeout_s=600)
# numba-cuda may refuse the NumPy there (2.5; poolkit pins numpy<2.5), and a rerun costs
# minutes of the 15: carry NumPy 2.4 for Python 3.12 every time (here, once per checkout; see
# /work/.library/device/README.md's notes on wheels):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl "numpy==2.4.*"
# and run with carry=[".whl"]. The script installs what .whl holds only if numba.cuda cannot
# copy an array to the device with the machine's own packages (info.txt says which NumPy ran).
#
# Here, to try every stage on Numba's CUDA simulator with tiny sizes (no timings):
#   OUT=/tmp/gpucheck NUMBA_ENABLE_CUDASIM=1 bash benchmarks/gpu_check.sh --smoke
set -u
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/check.log"
: > "$LOG"

if compgen -G ".whl/*.whl" > /dev/null \
        && ! "$PY" -c "import numpy; from numba import cuda; cuda.to_device(numpy.ones(2))" > "$OUT/numba_cuda_check.txt" 2>&1; then
    echo "== numba.cuda failed with the machine's packages ($(tail -n 1 "$OUT/numba_cuda_check.txt" | cut -c1-120)): installing .whl" | tee -a "$LOG"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
rm -f "$OUT/numba_cuda_check.txt"

# stage NAME SECONDS OUTFILE COMMAND...: run COMMAND under a time limit, its output into OUTFILE.
stage() {
    local name=$1 limit=$2 file=$3
    shift 3
    echo "== $name: start $(date -u +%T), limit ${limit}s" | tee -a "$LOG"
    timeout "$limit" "$@" > "$file" 2>&1
    local rc=$?
    echo "== $name: rc=$rc ($( [ $rc = 124 ] && echo 'TIMED OUT' || echo done)) $(date -u +%T), $(tail -n 1 "$file" | cut -c1-160)" | tee -a "$LOG"
}

info() {
    date -u
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
    command -v nvidia-smi > /dev/null && nvidia-smi
    "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("numpy", "numba", "numba-cuda", "llvmlite", "torch", "cupy-cuda13x", "cupy-cuda12x", "pytest", "hypothesis"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
import numpy
print("numpy in use:", numpy.__version__, numpy.__file__)
from numba import cuda
print("numba.cuda available:", cuda.is_available())
if cuda.is_available():
    d = cuda.get_current_device()
    print("device:", getattr(d, "name", "?"), "cc", getattr(d, "compute_capability", None))
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
except Exception as e:
    print("torch:", e)
EOF
}

export -f info
export PY
stage info 60 "$OUT/info.txt" bash -c info

if [ $SMOKE = 1 ]; then
    TESTS=(tests/test_gpu.py -k "launch_argument or stay_on_the_device or zero_copy")
    BENCH=(--smoke --repeat 1)
else
    export POOLKIT_REAL_GPU=1
    TESTS=(tests -m "cudasim or gpu" -n 8 --dist loadfile)  # a file's tests share compiled kernels
    "$PY" -c "import dask" 2> /dev/null || TESTS+=(--ignore=tests/test_dask.py)  # not on the device image
    BENCH=(--repeat 15)
fi
stage tests 210 "$OUT/tests.log" "$PY" -m pytest -p no:nbval -p no:cacheprovider --continue-on-collection-errors \
    -q -rfEs --durations=10 "${TESTS[@]}"
stage bench-family 150 "$OUT/gpu_family.md" "$PY" -m poolkit.bench --gpu --family "${BENCH[@]}"
stage bench-2d 60 "$OUT/gpu_2d.md" "$PY" -m poolkit.bench --gpu "${BENCH[@]}"
for nb in 05_first_cuda_kernel 06_faster_cuda_kernels; do
    stage "$nb" 50 "$OUT/$nb.log" "$PY" benchmarks/run_notebook.py "notebooks/$nb.ipynb" "$OUT"
    cat "$OUT/$nb.log" >> "$LOG"
    rm -f "$OUT/$nb.log"
done
echo "== all stages done $(date -u +%T)" | tee -a "$LOG"
grep "^== " "$LOG"
