"""The GPU check (bench/gpu_check.sh) on a machine without a GPU: it must stop at once with one
clear line and a non-zero status, and never write a report that claims success. Its stages'
machinery (time limits, the report kept after each stage) is tested with stand-in commands.
Also: the tests' own data lookup, and --require-gpu turning missing data into a failure."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, mnist_dir

SCRIPT = REPO / "bench" / "gpu_check.sh"


def _fake_cupy_without_device(root: Path) -> Path:
    package = root / "fake" / "cupy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent("""
        import types
        def _no_device():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=_no_device))
    """))
    return package.parent


def _run_check(tmp_path, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_changes)
    began = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return done, time.monotonic() - began


def _claims_success(out: Path) -> bool:
    try:
        return json.loads((out / "gpu_check.json").read_text())["status"] == "passed"
    except FileNotFoundError:
        return False


def test_check_stops_at_once_when_cupy_has_no_device(tmp_path, mnist_dir_path):
    fake = _fake_cupy_without_device(tmp_path)
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake),
                         MNIST_GPU_DATA=str(mnist_dir_path.resolve()))
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no usable GPU" in lines[0] and "no CUDA device" in lines[0]
    assert not _claims_success(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["status"] == "not started" and report["stages"] == {}


def _fake_module(root: Path, name: str, source: str) -> Path:
    package = root / "fake" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    return package.parent


USABLE_CUPY = """
    import types
    class Device:
        def __init__(self, index=0): pass
        def __enter__(self): return self
        def __exit__(self, *exc): return False
    _one = types.SimpleNamespace(sum=lambda: types.SimpleNamespace(get=lambda: 0))
    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                 Device=Device)
    is_available = lambda: True
    zeros = lambda n: _one
"""
TORCH_WITHOUT_CUDA = """
    import types
    accelerator = types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)
"""


def _report(tmp_path):
    return json.loads((tmp_path / "out" / "gpu_check.json").read_text())


def test_without_pytorch_on_cuda_the_cupy_stages_still_run(tmp_path, mnist_dir_path):
    """PyTorch without CUDA does not stop the check: the CuPy stages run (here the device stage,
    on a stand-in CuPy, fails) and PyTorch's are reported as not run, failing the check."""
    _fake_module(tmp_path, "cupy", USABLE_CUPY)
    fake = _fake_module(tmp_path, "torch", TORCH_WITHOUT_CUDA)
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake),
                         MNIST_GPU_DATA=str(mnist_dir_path.resolve()))
    report = _report(tmp_path)
    assert done.returncode == 1 and report["status"] == "failed"
    assert "device" in report["stages"]  # it started
    assert report["torch"].startswith("no usable GPU for PyTorch: PyTorch has no cuda device")


def test_without_array_api_compat_pytorch_is_not_usable_and_cupy_still_is(tmp_path,
                                                                       mnist_dir_path):
    _fake_module(tmp_path, "cupy", USABLE_CUPY)
    fake = _fake_module(tmp_path, "array_api_compat",
                        "raise ImportError(\"No module named 'array_api_compat'\")")
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake),
                         MNIST_GPU_DATA=str(mnist_dir_path.resolve()))
    report = _report(tmp_path)
    assert done.returncode == 1 and "device" in report["stages"]
    assert "need array-api-compat" in report["torch"]


def test_a_stage_that_cannot_run_here_fails_the_check(tmp_path):
    gpu_check = _gpu_check_module()
    check = gpu_check.Check(tmp_path, 60)
    result = check.stage_if("no usable GPU for PyTorch: none", "bench_torch", ["true"], 10)
    assert result == {"status": "not run", "reason": "no usable GPU for PyTorch: none"}
    assert gpu_check.failed_stages(check.report) == ["bench_torch"]
    assert check.stage_if(None, "ok", ["true"], 10)["status"] == "passed"


def test_a_wheel_in_data_is_put_on_the_path(tmp_path):
    """A pure-Python wheel brought along in data/ is importable by the check."""
    import shutil
    import zipfile

    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "data").mkdir()
    shutil.copy(SCRIPT, repo / "bench" / "gpu_check.sh")
    (repo / "bench" / "gpu_check.py").write_text(
        "import sys, brought_along\nprint(brought_along.WHERE)\n")
    with zipfile.ZipFile(repo / "data" / "brought_along-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("brought_along/__init__.py", "WHERE = 'from the wheel'\n")
    done = subprocess.run(["bash", str(repo / "bench" / "gpu_check.sh")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from the wheel"


def test_check_stops_at_once_without_the_data(tmp_path):
    fake = _fake_cupy_without_device(tmp_path)
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake), MNIST_GPU_DATA=str(tmp_path / "none"))
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "MNIST not found" in lines[0]
    assert "train-images-idx3-ubyte" in lines[0] and "MNIST_GPU_DATA" in lines[0]
    assert not _claims_success(tmp_path / "out")


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stage_that_hangs_costs_its_limit_and_the_report_keeps_what_finished(tmp_path):
    gpu_check = _gpu_check_module()
    check = gpu_check.Check(tmp_path, deadline_s=60)
    check.stage("quick", [sys.executable, "-c", "print('done')"], limit_s=30)
    began = time.monotonic()
    # The stage's child (a grandchild of the check) is killed with it.
    hang = check.stage("hangs", [sys.executable, "-c",
                                 "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                                 "'import time; time.sleep(60)'])"], limit_s=1)
    assert time.monotonic() - began < 10
    assert hang["status"] == "timeout"
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "running"  # written after each stage, before the end
    assert report["stages"]["quick"]["status"] == "passed"
    assert report["stages"]["hangs"]["status"] == "timeout"
    assert check.finish("failed", "stages not passed: hangs") == 1
    assert json.loads((tmp_path / "gpu_check.json").read_text())["status"] == "failed"


def test_the_deadline_cuts_every_later_stage(tmp_path):
    gpu_check = _gpu_check_module()
    check = gpu_check.Check(tmp_path, deadline_s=2)
    result = check.stage("long", [sys.executable, "-c", "import time; time.sleep(30)"],
                         limit_s=300)
    assert result["status"] == "timeout" and result["limit_s"] <= 2


def test_an_optional_stage_runs_only_if_its_whole_limit_is_left(tmp_path):
    gpu_check = _gpu_check_module()
    check = gpu_check.Check(tmp_path, deadline_s=20)
    ran = check.stage_if_time("fits", [sys.executable, "-c", "print('done')"], limit_s=10)
    skipped = check.stage_if_time("too long", [sys.executable, "-c", "raise SystemExit(1)"],
                                  limit_s=60)
    assert ran["status"] == "passed" and skipped["status"] == "skipped"
    assert "left before the deadline" in skipped["reason"]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["stages"]["too long"]["status"] == "skipped"
    # Skipped for want of time is not a failure; a failed stage is.
    assert gpu_check.failed_stages(report) == []
    check.stage("fails", [sys.executable, "-c", "raise SystemExit(1)"], limit_s=10)
    assert gpu_check.failed_stages(check.report) == ["fails"]


def test_junit_summary_lists_every_skip_with_its_reason(tmp_path):
    gpu_check = _gpu_check_module()
    (tmp_path / "t.xml").write_text(
        '<testsuites><testsuite><testcase classname="a" name="ok"/>'
        '<testcase classname="a" name="skip"><skipped message="no fused pass"/></testcase>'
        '<testcase classname="a" name="bad"><failure message="boom"/></testcase>'
        '</testsuite></testsuites>')
    summary = gpu_check.junit_summary(tmp_path / "t.xml")
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (1, 1, 1)
    assert summary["skips"] == [{"test": "a::skip", "reason": "no fused pass"}]


def test_the_data_fixture_looks_where_the_loader_looks(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_GPU_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert mnist_dir() is None
    (tmp_path / "data").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / "data" / f"{name}.gz").write_bytes(b"")
    assert mnist_dir() is None  # three of the four
    (tmp_path / "data" / "t10k-labels-idx1-ubyte").write_bytes(b"")  # raw counts too
    assert mnist_dir().resolve() == (tmp_path / "data").resolve()


def test_require_gpu_fails_rather_than_skips_without_data(tmp_path):
    env = {**os.environ, "MNIST_GPU_DATA": str(tmp_path / "none")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--require-gpu",
         "tests/test_bench.py::test_quick_bench_writes_a_complete_report"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout
    assert "--require-gpu: real MNIST not found" in done.stdout
    assert "1 error" in done.stdout or "1 failed" in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_check_says_what_it_needs():
    done = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    deadline = f"deadline: {_gpu_check_module().DEADLINE_S} s"
    for fact in ("MNIST_GPU_DATA", "--require-gpu", deadline, "PYTHONPATH", "--full",
                 "array-api-compat"):
        assert fact in said


def test_the_tutorial_runs_by_both_paths_in_both_dtypes_saving_their_weights(tmp_path):
    gpu_check = _gpu_check_module()
    stages = gpu_check.tutorial_stages("python3", tmp_path / "weights")
    assert [name for name, _ in stages] == ["train_fused", "train_array", "train_fused_float64",
                                            "train_array_float64"]
    for name, command in stages:
        kernel = command[command.index("--kernel") + 1]
        dtype = command[command.index("--dtype") + 1]
        assert name == f"train_{kernel}" + ("" if dtype == "float32" else "_float64")
        assert command[command.index("--backend") + 1] == "cupy" and "--json" in command
        assert command[command.index("--save") + 1] == str(
            tmp_path / "weights" / f"tutorial-{kernel}-{dtype}.npz")
        assert gpu_check.STAGE_LIMITS_S[name] <= gpu_check.DEADLINE_S


def _runs(tmp_path, difference):
    """The four runs' weights (the array path's, and the kernel's ``difference[dtype]`` away)
    and their passed stages, as the check leaves them."""
    from mnist_gpu.io.weights import save_weights

    gpu_check = _gpu_check_module()
    stages = {}
    for dtype in gpu_check.DTYPES:
        array = np.random.default_rng(0).random((784, 10)).astype(dtype)
        fused = array.copy()
        fused[3, 4] += difference[dtype]
        for kernel, weights in (("fused", fused), ("array", array)):
            save_weights(tmp_path / f"tutorial-{kernel}-{dtype}.npz", weights, {})
            stages[gpu_check._stage_name(kernel, dtype)] = {
                "status": "passed", "result": {"final_accuracy": 0.6815}}
    return gpu_check, stages


def test_the_paths_are_compared_per_dtype_against_the_parity_tolerance(tmp_path):
    gpu_check, stages = _runs(tmp_path, {"float32": 3e-7, "float64": 1e-15})
    result = gpu_check.compare_paths(stages, tmp_path)
    assert result["status"] == "passed"
    assert result["float32"]["agree"] and result["float64"]["agree"]
    assert result["float32"]["max_abs_difference"] == pytest.approx(3e-7, rel=0.5)
    assert result["float64"]["max_abs_difference"] == pytest.approx(1e-15, rel=0.5)
    assert result["float64"]["differing_weights"] == 1
    assert result["float32"]["final_accuracy"] == {"fused": 0.6815, "array": 0.6815}

    gpu_check, stages = _runs(tmp_path, {"float32": 3e-7, "float64": 1e-6})
    result = gpu_check.compare_paths(stages, tmp_path)
    assert result["status"] == "failed" and not result["float64"]["agree"]
    assert gpu_check.failed_stages({"stages": {"compare_paths": result}}) == ["compare_paths"]


def test_the_paths_are_not_compared_when_a_run_failed(tmp_path):
    gpu_check, stages = _runs(tmp_path, {"float32": 0.0, "float64": 0.0})
    stages["train_fused_float64"]["status"] = "failed"
    result = gpu_check.compare_paths(stages, tmp_path)
    assert result["status"] == "skipped" and "train_fused_float64" in result["reason"]
