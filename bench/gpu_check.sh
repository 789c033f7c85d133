#!/usr/bin/env bash
# The GPU check, one command for a machine with an NVIDIA GPU, CuPy and PyTorch (CUDA):
#     bash bench/gpu_check.sh [OUTPUT_DIR] [--full]
# It finds MNIST in $MNIST_GPU_DATA, else ./data, and stops at once (one line, exit status 2)
# if the four files or a GPU that CuPy reaches are missing; then it runs the device query, the
# tutorial on CuPy by the CUDA kernel and by the array path in float32 and float64 (their weights
# compared: the evidence for making the kernel the default), the GPU tests (pytest -m gpu
# --require-gpu), the tutorial on PyTorch's CUDA tensors (--backend torch --device cuda) and the
# quick benchmark of both, each under its own time limit, in about 7 minutes at most on an H200,
# never touching the network. It writes OUTPUT_DIR/gpu_check.json after every stage (status
# "passed" only if every stage passed), with gpu_check.log, gpu_tests.xml, bench.json,
# bench_torch.json and the runs' weights. --full runs the full benchmark (~17 min).
# It needs Python, CuPy, NumPy, Numba, pytest, and for the PyTorch stages PyTorch (CUDA) and
# array-api-compat: a pure-Python wheel of it in data/ (pip download array-api-compat --no-deps
# -d data) is put on PYTHONPATH. It runs the package from this checkout: no install needed.
# Details: the docstring of bench/gpu_check.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Pure-Python wheels brought along in data/ (a machine without a network): importable as they are.
for wheel in "$repo"/data/*-py3-none-any.whl; do
    [ -e "$wheel" ] && PYTHONPATH="$wheel:$PYTHONPATH"
done
exec python3 "$repo/bench/gpu_check.py" "$@"
