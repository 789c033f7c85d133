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


def test_check_stops_at_once_when_pytorch_has_no_cuda(tmp_path, mnist_dir_path):
    _fake_module(tmp_path, "cupy", USABLE_CUPY)
    fake = _fake_module(tmp_path, "torch", TORCH_WITHOUT_CUDA)
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake),
                         MNIST_GPU_DATA=str(mnist_dir_path.resolve()))
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "no usable GPU for PyTorch: PyTorch has no cuda device" in lines[0]
    assert not _claims_success(tmp_path / "out")


def test_check_stops_at_once_without_array_api_compat(tmp_path, mnist_dir_path):
    fake = _fake_module(tmp_path, "array_api_compat",
                        "raise ImportError(\"No module named 'array_api_compat'\")")
    done, _ = _run_check(tmp_path, PYTHONPATH=str(fake),
                         MNIST_GPU_DATA=str(mnist_dir_path.resolve()))
    assert done.returncode == 2
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "array-api-compat does not import" in lines[0]
    assert "pip install --no-index" in lines[0]


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
def test_check_script_header_states_what_it_needs():
    header = SCRIPT.read_text()
    for fact in ("MNIST_GPU_DATA", "--require-gpu", "8 minutes", "PYTHONPATH", "--full",
                 "--backend torch --device cuda", "array-api-compat"):
        assert fact in header
