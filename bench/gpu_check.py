"""The GPU check: evidence that the CuPy and PyTorch paths work, within one short window of GPU
time.

Run through ``bench/gpu_check.sh OUTPUT_DIR [--full]`` from the repository root, on a machine with
an NVIDIA GPU, CuPy and PyTorch (a CUDA build). The machine this was written for (a lent H200)
has Python 3.12, cupy-cuda13x 14.2, NumPy 2.5, Numba, PyTorch 2.11, pytest, hypothesis,
matplotlib, Pillow, tqdm and threadpoolctl; no array-api-strict, no ruff and no network. The
package runs from the checkout on ``PYTHONPATH``, not installed. The one pure-Python dependency
such a machine lacks, array-api-compat, is needed only by the PyTorch backend: bring its wheel in
``data/`` (``pip download array-api-compat --no-deps -d data``), where gpu_check.sh puts it on
``PYTHONPATH``.

Before anything runs, it checks that the four MNIST files are in ``$MNIST_GPU_DATA``, else
``./data``, and that CuPy answers on CUDA device 0; either missing stops it at once with one line
and exit status 2. PyTorch's stages also need PyTorch on CUDA and array-api-compat: without them
the CuPy stages still run and PyTorch's are reported as not run, which fails the check. Then
each stage runs in its own process under its own time limit, and under one overall deadline
(``DEADLINE_S``, so the whole check ends in about 7 minutes on an H200):

1. ``device``: the GPU, driver, CUDA, CuPy and PyTorch versions;
2. ``train_fused``, ``train_array``, ``train_fused_float64``, ``train_array_float64``: the
   tutorial on CuPy (``mnist-gpu train``, 60,000 images per image) by the hand-written CUDA kernel
   (``--kernel fused``, which no GPU had run before) and by the array path (CuPy's own kernels
   and cuBLAS, what ``--kernel auto`` takes on a GPU until this check has passed), in float32 and
   float64, each saving its weights; then ``compare_paths`` (on the host, no process): per dtype,
   the largest difference between the two paths' weights, against the parity suite's tolerance
   (tests/test_parity.py). That comparison, with the GPU tests' kernel checks and the benchmark's
   rows, is the evidence on which to make the kernel ``verified`` (``kernels/cuda.py``);
3. ``gpu_tests``: ``pytest -m gpu --require-gpu`` (a GPU test cannot pass by skipping: a missing
   device or missing data fails it), every skip listed with its reason: CuPy's, and PyTorch's
   on CUDA (the ``torch`` id of every backend-agnostic test, and tests/test_torch.py);
   ``train_torch``, ``train_torch_minibatch``: the tutorial on PyTorch's CUDA device
   (``--backend torch --device cuda``), per image and by batches of 100;
4. ``bench``: the quick benchmark on NumPy and CuPy side by side, with the sweep rows (on CuPy up
   to 1,024 models side by side, per image and by batches: the sweep's GPU target) (``--full``:
   the full one, both dtypes, which needs a longer window); ``bench_torch``: our rows on
   PyTorch's CUDA tensors, scored against the limits PyTorch measures on that device;
5. ``train_fast``, ``train_fast_torch``: ``--preset fast`` for one epoch on CuPy and on
   PyTorch's CUDA tensors (the ``bench`` stage holds the recipe's rows beside PyTorch's own on
   the same GPU, on the quick benchmark's 2,560 images);
   ``train_cnn_fast``, ``train_cnn``: ``--preset cnn-fast`` and ``--preset cnn`` on CuPy, their
   accuracy and training time (the CNN's GPU targets), each only if the deadline still leaves
   its whole limit: otherwise recorded as skipped, with the time that was left, which does not
   fail the check.

The GPU tests include the sweep's (each model of a stack equals its own run on CuPy, by the array
path and by the one-block-per-model kernel; neighbours; divergence).

The network is never touched (``MNIST_GPU_OFFLINE=1``). The report, ``gpu_check.json``, is
rewritten after every stage, so what finished is kept if a later stage dies; its ``status`` is
``passed`` only when every stage passed. Beside it: ``gpu_check.log`` (every stage's output),
``gpu_tests.xml`` (JUnit), ``bench.json`` and ``weights/`` (the four tutorial runs' weights).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 420  # the whole check, so that it ends within 7 minutes with its own start-up
FULL_DEADLINE_S = 1020
# Each stage's limit is cut to what the deadline leaves. The four tutorial runs on CuPy take
# seconds each (one launch per checkpoint segment for the kernel; about six small launches per
# image for the array path), most of it the process's start and CuPy's first compiles.
STAGE_LIMITS_S = {"device": 45, "train_fused": 25, "train_array": 35, "train_fused_float64": 25,
                  "train_array_float64": 35, "gpu_tests": 150, "train_torch": 40,
                  "train_torch_minibatch": 30, "bench": 150, "bench_torch": 90,
                  "train_cnn_fast": 40, "train_cnn": 60, "train_fast": 30,
                  "train_fast_torch": 30}
# The PyTorch stages' device, as --device names it.
TORCH_DEVICE = "cuda"
# What a training stage's --json result keeps in the report.
TRAINED_KEYS = ("final_accuracy", "seconds", "images_per_second", "kernel", "curve")
FULL_BENCH_LIMIT_S = 600
USAGE = (f"The GPU check: evidence that the CuPy and PyTorch paths work, within one short window "
         f"of GPU time (the stages' deadline: {DEADLINE_S} s). It needs the four MNIST files in "
         f"$MNIST_GPU_DATA (else ./data), CuPy and a GPU that answers, and for the PyTorch "
         f"stages PyTorch on CUDA and array-api-compat (a wheel in data/ will do); it runs the "
         f"package from this checkout on PYTHONPATH, the tutorial on CuPy by the CUDA kernel and "
         f"by the array path (their weights compared), the GPU tests (pytest -m gpu "
         f"--require-gpu), the tutorial on PyTorch's CUDA tensors and the quick benchmark of both "
         f"(--full: the full one, ~17 minutes), and never touches the network.")

# The two paths' weights must agree as the parity suite's CuPy runs agree with NumPy's
# (tests/test_parity.py's TOLERANCE): only the order of the sums differs. On this project's CPU
# the fused pass and the array path differ by 3.9e-7 (float32) and 7.8e-16 (float64) after the
# tutorial's 60,000 images.
PATH_TOLERANCE = {"float32": {"rtol": 1e-5, "atol": 1e-5},
                  "float64": {"rtol": 1e-10, "atol": 1e-12}}
DTYPES = ("float32", "float64")


class Check:
    """The report, written after every change, and the stages run under their limits."""

    def __init__(self, out: Path, deadline_s: float):
        self.out = out
        self.deadline = time.monotonic() + deadline_s
        self.report = {"status": "running", "started": _now(), "stages": {}}
        self.log = open(out / "gpu_check.log", "w")

    def save(self):
        path = self.out / "gpu_check.json"
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(self.report, indent=1))
        os.replace(part, path)

    def stage(self, name: str, command: list[str], limit_s: float) -> dict:
        """Run ``command`` with a time limit (the stage's, cut to what the deadline leaves)."""
        limit = max(1.0, min(limit_s, self.deadline - time.monotonic()))
        print(f"== {name} (limit {limit:.0f} s)", flush=True)
        self.log.write(f"\n== {name}: {' '.join(command)}\n")
        self.log.flush()
        began = time.monotonic()
        # A session of its own, so that a timeout kills the stage's children too.
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=limit)
            status = "passed" if process.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            status = "timeout"
        self.log.write(output)
        self.log.flush()
        result = {"status": status, "exit_status": process.returncode,
                  "seconds": round(time.monotonic() - began, 1), "limit_s": round(limit),
                  "output_tail": output.strip().splitlines()[-15:]}
        self.report["stages"][name] = result
        self.save()
        print(f"   {status} in {result['seconds']} s", flush=True)
        return result

    def stage_if_time(self, name: str, command: list[str], limit_s: float) -> dict:
        """``stage``, when the deadline still leaves ``limit_s``; else a skipped stage that says
        how much time was left."""
        left = self.deadline - time.monotonic()
        if left >= limit_s:
            return self.stage(name, command, limit_s)
        result = {"status": "skipped",
                  "reason": f"{left:.0f} s left before the deadline, under its {limit_s} s limit"}
        self.report["stages"][name] = result
        self.save()
        print(f"== {name}: skipped ({result['reason']})", flush=True)
        return result

    def stage_if(self, reason: str | None, name: str, command: list[str],
                 limit_s: float) -> dict:
        """``stage``, unless ``reason`` says why it cannot run here: then a stage skipped with
        that reason, which fails the check (a check that passes by skipping proves nothing)."""
        if reason is None:
            return self.stage(name, command, limit_s)
        result = {"status": "not run", "reason": reason}
        self.report["stages"][name] = result
        self.save()
        print(f"== {name}: not run ({reason})", flush=True)
        return result

    def finish(self, status: str, reason: str = "") -> int:
        self.report.update(status=status, finished=_now())
        if reason:
            self.report["reason"] = reason
        self.save()
        self.log.close()
        print(f"gpu_check: {status}{': ' + reason if reason else ''} "
              f"(report: {self.out / 'gpu_check.json'})", flush=True)
        return 0 if status == "passed" else (2 if status == "not started" else 1)


def missing_data(directory: Path) -> list[str]:
    from mnist_gpu.data import MNIST_FILES

    return [spec.name for spec in MNIST_FILES
            if not ((directory / f"{spec.name}.gz").is_file() or (directory / spec.name).is_file())]


def junit_summary(path: Path) -> dict:
    """Counts and every skip's reason from pytest's JUnit XML, or {} if there is none."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    skips, failures = [], []
    for case in root.iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        skipped = case.find("skipped")
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        if skipped is not None:
            counts["skipped"] += 1
            skips.append({"test": test, "reason": skipped.get("message", "")})
        elif failed is not None:
            counts["failed"] += 1
            failures.append({"test": test, "message": (failed.get("message") or "")[:300]})
        else:
            counts["passed"] += 1
    return {**counts, "skips": skips, "failures": failures}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check",
                                     description=textwrap.fill(USAGE, break_on_hyphens=False),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default="bench/out", help="report folder [bench/out]")
    parser.add_argument("--full", action="store_true",
                        help="the full benchmark (both dtypes, every batch size): ~10 minutes")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MNIST_GPU_OFFLINE"] = "1"
    # Parity needs full-precision float32 products: TF32 off (the test suite sets these too).
    os.environ["CUPY_TF32"] = os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    check = Check(out, FULL_DEADLINE_S if args.full else DEADLINE_S)
    check.report["settings"] = {"full": args.full, "python": sys.version.split()[0]}
    from mnist_gpu.data import resolve_data_dir

    data = resolve_data_dir().resolve()
    os.environ["MNIST_GPU_DATA"] = str(data)
    check.report["data"] = str(data)
    missing = missing_data(data)
    if missing:
        return check.finish("not started", f"MNIST not found in {data}: missing "
                            f"{', '.join(missing)} (.gz or raw); copy the four files there or set "
                            "MNIST_GPU_DATA")
    from mnist_gpu.backend import probe_cupy, probe_torch

    cupy, reason = probe_cupy(0)
    if cupy is None:
        return check.finish("not started", f"no usable GPU: {reason}")
    # PyTorch's stages need PyTorch on CUDA and array-api-compat (a pure-Python wheel, which
    # bench/gpu_check.sh finds in data/): without them the CuPy stages still run, and the
    # PyTorch ones are reported as not run, failing the check.
    torch, _, torch_reason = probe_torch(TORCH_DEVICE)
    torch_reason = None if torch is not None else f"no usable GPU for PyTorch: {torch_reason}"
    check.report["torch"] = torch_reason or "usable"

    python = sys.executable
    device = check.stage("device", [python, "-c", (
        "import json, subprocess; from mnist_gpu.backend import get_backend; "
        "info = get_backend('cupy').describe(); "
        + (f"info['torch'] = get_backend('torch', {TORCH_DEVICE!r}).describe(); "
           if torch_reason is None else "") +
        "smi = subprocess.run(['nvidia-smi', '--query-gpu=driver_version,name,memory.total', "
        "'--format=csv,noheader'], capture_output=True, text=True); "
        "info['nvidia_smi'] = smi.stdout.strip() or smi.stderr.strip(); "
        "print(json.dumps(info))")], STAGE_LIMITS_S["device"])
    if device["status"] != "passed":
        return check.finish("failed", "the device stage failed")
    check.report["device"] = _last_json(device["output_tail"])
    check.save()

    # The kernel against the array path first: the evidence this check exists for.
    for name, command in tutorial_stages(python, out / "weights"):
        _keep_training_result(check, check.stage(name, command, STAGE_LIMITS_S[name]))
    print("== compare_paths", flush=True)
    check.report["stages"]["compare_paths"] = compare_paths(check.report["stages"],
                                                            out / "weights")
    check.save()

    xml = out / "gpu_tests.xml"
    # Without a usable PyTorch its tests are left out here (its stages below say why).
    only = [] if torch_reason is None else ["-k", "not torch"]
    check.stage("gpu_tests", [python, "-m", "pytest", "-m", "gpu", "--require-gpu", *only, "-q",
                              "-p", "no:cacheprovider", "-o", "addopts=-ra",
                              f"--junitxml={xml}"], STAGE_LIMITS_S["gpu_tests"])
    check.report["stages"]["gpu_tests"]["summary"] = junit_summary(xml)
    check.save()

    for name, flags in (("train_torch", []),
                        ("train_torch_minibatch", ["--batch-size", "100", "--alpha", "0.02"])):
        command = [python, "-m", "mnist_gpu.cli", "train", "--backend", "torch", "--device",
                   TORCH_DEVICE, *flags, "--quiet", "--json"]
        _keep_training_result(check, check.stage_if(torch_reason, name, command,
                                                    STAGE_LIMITS_S[name]))

    # No startup rows: they time the CPU's time to a result, and on a GPU each would be a whole
    # tutorial run by CuPy's small launches, the window's time for little evidence.
    size = ["--dtype", "float32,float64", "--repeats", "3", "--no-startup"] if args.full else [
        "--quick", "--repeats", "3", "--no-startup"]
    bench = [python, "-m", "mnist_gpu.cli", "bench", "--backend", "numpy,cupy",
             "--json", str(out / "bench.json"), *size]
    check.stage("bench", bench, FULL_BENCH_LIMIT_S if args.full else STAGE_LIMITS_S["bench"])
    # Our rows on PyTorch's tensors; the peers (PyTorch's own loop among them) are in "bench".
    check.stage_if(torch_reason, "bench_torch",
                   [python, "-m", "mnist_gpu.cli", "bench", "--backend", "torch", "--device",
                    TORCH_DEVICE, "--no-peers", "--json", str(out / "bench_torch.json"), *size],
                   FULL_BENCH_LIMIT_S if args.full else STAGE_LIMITS_S["bench_torch"])

    # The fast recipe for one epoch, on CuPy and on PyTorch's CUDA tensors (both through the
    # array path); PyTorch's own on the same GPU is among the peers of "bench".
    for name, backend in (("train_fast", ["cupy"]), ("train_fast_torch", ["torch", "--device",
                                                                          TORCH_DEVICE])):
        command = [python, "-m", "mnist_gpu.cli", "train", "--backend", *backend, "--preset",
                   "fast", "--epochs", "1", "--quiet", "--json"]
        _keep_training_result(check, check.stage_if_time(name, command, STAGE_LIMITS_S[name])
                              if backend[0] == "cupy" else
                              check.stage_if(torch_reason, name, command, STAGE_LIMITS_S[name]))

    for preset in ("cnn-fast", "cnn"):
        name = f"train_{preset.replace('-', '_')}"
        result = check.stage_if_time(name, [python, "-m", "mnist_gpu.cli", "train", "--backend",
                                            "cupy", "--preset", preset, "--quiet", "--json"],
                                     STAGE_LIMITS_S[name])
        _keep_training_result(check, result)

    failed = failed_stages(check.report)
    return check.finish("failed" if failed else "passed",
                        f"stages not passed: {', '.join(failed)}" if failed else "")


def _stage_name(kernel: str, dtype: str) -> str:
    return f"train_{kernel}" + ("" if dtype == "float32" else f"_{dtype}")


def tutorial_stages(python: str, weights: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of the tutorial's four runs on CuPy: by the fused kernel and by the array
    path, in each dtype, each saving its weights in ``weights``."""
    weights.mkdir(parents=True, exist_ok=True)
    return [(_stage_name(kernel, dtype),
             [python, "-m", "mnist_gpu.cli", "train", "--backend", "cupy", "--kernel", kernel,
              "--dtype", dtype, "--quiet", "--json", "--save",
              str(weights / f"tutorial-{kernel}-{dtype}.npz")])
            for dtype in DTYPES for kernel in ("fused", "array")]


def compare_paths(stages: dict, weights: Path) -> dict:
    """The ``compare_paths`` stage: per dtype, how far the fused kernel's weights are from the
    array path's after the same run, and whether that is within ``PATH_TOLERANCE``. Passed when
    both dtypes agree; skipped (and the check failed by the training stage) when a run did not
    pass."""
    import numpy as np

    from mnist_gpu.io.weights import WeightsFileError, load_weights

    missing = [_stage_name(k, d) for d in DTYPES for k in ("fused", "array")
               if stages.get(_stage_name(k, d), {}).get("status") != "passed"]
    if missing:
        return {"status": "skipped", "reason": f"not trained: {', '.join(missing)}"}
    result = {"status": "passed"}
    for dtype in DTYPES:
        try:
            fused, _ = load_weights(weights / f"tutorial-fused-{dtype}.npz")
            array, _ = load_weights(weights / f"tutorial-array-{dtype}.npz")
        except (OSError, WeightsFileError) as err:
            return {"status": "failed", "reason": f"{dtype}: {err}"}
        difference = np.abs(fused.astype(np.float64) - array.astype(np.float64))
        agree = bool(fused.dtype == array.dtype == np.dtype(dtype)
                     and np.allclose(fused, array, **PATH_TOLERANCE[dtype]))
        accuracy = {kernel: stages[_stage_name(kernel, dtype)].get("result", {})
                    .get("final_accuracy") for kernel in ("fused", "array")}
        result[dtype] = {"max_abs_difference": float(difference.max()),
                         "max_abs_weight": float(np.abs(array).max()),
                         "differing_weights": int(np.count_nonzero(difference)),
                         "final_accuracy": accuracy, "tolerance": PATH_TOLERANCE[dtype],
                         "agree": agree}
        print(f"   {dtype}: the kernel's weights {'agree' if agree else 'DISAGREE'} with the "
              f"array path's: max |difference| {difference.max():.3g}, accuracy "
              f"{accuracy['fused']} against {accuracy['array']}", flush=True)
        if not agree:
            result["status"] = "failed"
    return result


def failed_stages(report: dict) -> list[str]:
    """The stages that neither passed nor were skipped for want of time."""
    return [name for name, stage in report["stages"].items()
            if stage["status"] not in ("passed", "skipped")]


def _keep_training_result(check: Check, result: dict) -> None:
    """A passed training stage's figures, from its --json line, into the report."""
    if result["status"] == "passed":
        trained = _last_json(result["output_tail"])
        result["result"] = {k: trained.get(k) for k in TRAINED_KEYS}
        check.save()


def _last_json(lines: list[str]) -> dict:
    """The last line of a stage's output that is a JSON object (its --json result)."""
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return {}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
