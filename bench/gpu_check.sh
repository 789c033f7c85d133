#!/usr/bin/env bash
# The GPU check, one command for a machine with an NVIDIA GPU, CuPy and PyTorch (CUDA):
#     bash bench/gpu_check.sh [OUTPUT_DIR] [--full]
# It finds MNIST in $MNIST_GPU_DATA, else ./data, and stops at once (one line, exit status 2)
# if the four files, array-api-compat or a GPU that CuPy and PyTorch both reach are missing;
# then it runs the device query, the GPU tests (pytest -m gpu --require-gpu), the tutorial on
# CuPy and on PyTorch's CUDA tensors (--backend torch --device cuda) and the quick benchmark of
# both, each under its own time limit, in about 8 minutes at most on an H200, never touching
# the network. It writes OUTPUT_DIR/gpu_check.json after every stage (status "passed" only if
# every stage passed), with gpu_check.log, gpu_tests.xml, bench.json and bench_torch.json.
# --full runs the full benchmark (~17 min). It needs Python, CuPy, PyTorch, NumPy, Numba,
# array-api-compat, pytest, and runs the package from this checkout on PYTHONPATH: no install
# needed. Details: the docstring of bench/gpu_check.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec python3 "$repo/bench/gpu_check.py" "$@"
