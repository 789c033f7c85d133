#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: what the device is, whether the GPU tests pass
# (with --require-gpu, so nothing passes by skipping), how fast both backends train, all in one
# JSON report. Run from the repository root:  bash bench/gpu_check.sh [OUTPUT_DIR]
# About 2-4 minutes on an H200. Needs CuPy (pip install -e ".[cuda13,test]" or [cuda12,test]).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/out}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Parity needs full-precision float32 products: TF32 off (the test suite sets these too).
export CUPY_TF32=0 NVIDIA_TF32_OVERRIDE=0
data_args=()
[ -n "${MNIST_GPU_DATA:-}" ] && data_args=(--data-dir "$MNIST_GPU_DATA")

echo "== device"
python3 - "$out/device.json" <<'PY'
import json, sys
from mnist_gpu.backend import get_backend
info = get_backend("cupy").describe()
print(json.dumps(info, indent=1))
json.dump(info, open(sys.argv[1], "w"), indent=1)
PY
[ $? -eq 0 ] || { echo "gpu_check: no usable GPU through CuPy"; exit 2; }

echo "== GPU tests (pytest -m gpu --require-gpu)"
python3 -m pytest -m gpu --require-gpu -q -p no:cacheprovider -o addopts="" 2>&1 | tee "$out/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== the tutorial on the GPU: fused kernel, then the array path"
python3 -m mnist_gpu.cli train --backend cupy --quiet --json "${data_args[@]}" > "$out/train_fused.json"
train_rc=$?
python3 -m mnist_gpu.cli train --backend cupy --kernel array --quiet --json "${data_args[@]}" \
    > "$out/train_array.json" || train_rc=$?

echo "== benchmark, both backends side by side"
python3 -m mnist_gpu.cli bench --backend numpy,cupy --dtype float32,float64 --repeats 3 \
    "${data_args[@]}" --json "$out/bench.json" 2>&1 | tee "$out/bench.log"
bench_rc=${PIPESTATUS[0]}

python3 - "$out" "$tests_rc" "$train_rc" "$bench_rc" <<'PY'
import datetime, json, os, sys
out, tests_rc, train_rc, bench_rc = sys.argv[1], *map(int, sys.argv[2:])
def load(name):
    path = os.path.join(out, name)
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None
tail = open(os.path.join(out, "gpu_tests.log")).read().strip().splitlines()[-1:]
report = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "device": load("device.json"),
    "gpu_tests": {"exit_status": tests_rc, "summary": tail},
    "train_fused": load("train_fused.json"),
    "train_array": load("train_array.json"),
    "bench": load("bench.json"),
    "exit_statuses": {"tests": tests_rc, "train": train_rc, "bench": bench_rc},
}
json.dump(report, open(os.path.join(out, "gpu_check.json"), "w"), indent=1)
for name in ("train_fused", "train_array"):
    r = report[name]
    if r:
        print(f"{name}: final accuracy {r['final_accuracy']:.2%}, {r['seconds']:.4f} s training, "
              f"{r['images_per_second']:,.0f} images/s, kernel {r['kernel']}")
print(f"wrote {os.path.join(out, 'gpu_check.json')}")
PY
[ "$tests_rc" -eq 0 ] && [ "$train_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
