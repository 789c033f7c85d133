#!/usr/bin/env bash
# The GPU check, one command for a machine with an NVIDIA GPU and CuPy:
#     bash bench/gpu_check.sh [OUTPUT_DIR] [--full]
# It finds MNIST in $MNIST_GPU_DATA, else ./data, and stops at once (one line, exit status 2)
# if the four files or a usable GPU are missing; then it runs the device query, the tutorial on
# CuPy by the CUDA kernel and by the array path in float32 and float64 (their weights compared:
# the evidence for making the kernel the default), the GPU tests (pytest -m gpu --require-gpu)
# and the quick benchmark, each under its own time limit, in about 6 minutes at most on an H200,
# never touching the network. It writes OUTPUT_DIR/gpu_check.json after every stage (status
# "passed" only if every stage passed), with gpu_check.log, gpu_tests.xml, bench.json and the
# runs' weights. --full runs the full benchmark (~10 min).
# It needs Python, CuPy, NumPy, Numba, pytest (PyTorch, if present, is benchmarked as a peer),
# and runs the package from this checkout on PYTHONPATH: no install needed. Details: the
# docstring of bench/gpu_check.py.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec python3 "$repo/bench/gpu_check.py" "$@"
