"""Choosing a backend: installed is not usable, auto says what it took and why (CuPy, else PyTorch
on an accelerator, else NumPy), an explicit CuPy or PyTorch that cannot run fails clearly. CuPy
and PyTorch are stood in by fakes in ``sys.modules``, so that every branch runs on any machine."""

from __future__ import annotations

import os
import subprocess
import textwrap
import sys
import types

import numpy as np
import pytest
from conftest import REPO

from mnist_gpu import cli
from mnist_gpu.backend import BackendUnavailable, array_namespace, get_backend, parse_device


def test_importing_the_package_imports_no_optional_library():
    code = (
        "import sys, mnist_gpu, mnist_gpu.cli, mnist_gpu.training;"
        "loaded = [m for m in ('cupy', 'numba', 'array_api_strict', 'matplotlib', 'torch')"
        " if m in sys.modules];"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _fake_cupy_without_device(error: Exception):
    """A module that imports like CuPy but whose runtime finds no device."""
    def no_device():
        raise error

    runtime = types.SimpleNamespace(getDeviceCount=no_device)
    return types.SimpleNamespace(
        __name__="cupy", __version__="99.0", cuda=types.SimpleNamespace(runtime=runtime),
        is_available=lambda: False,
    )


class CUDARuntimeError(RuntimeError):
    pass


CUPY_STATES = {
    "absent": (None, "CuPy is not installed"),
    "no device": (_fake_cupy_without_device(CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable "
                                                             "device is detected")),
                  "no CUDA device answers (CUDARuntimeError: cudaErrorNoDevice"),
    "driver error": (_fake_cupy_without_device(CUDARuntimeError(
        "cudaErrorInsufficientDriver: CUDA driver version is insufficient")),
        "cudaErrorInsufficientDriver"),
}


@pytest.fixture(params=list(CUPY_STATES), ids=list(CUPY_STATES))
def unusable_cupy(request, monkeypatch):
    module, reason = CUPY_STATES[request.param]
    monkeypatch.setitem(sys.modules, "cupy", module)
    return reason


def test_auto_falls_back_to_numpy_and_says_why(unusable_cupy):
    lines = []
    backend = get_backend("auto", log=lines.append)
    assert backend.name == "numpy"
    assert len(lines) == 1 and "using NumPy" in lines[0] and unusable_cupy in lines[0]


def test_explicit_cupy_without_a_usable_gpu_is_a_clear_error(unusable_cupy):
    with pytest.raises(BackendUnavailable, match="--backend cupy") as info:
        get_backend("cupy")
    assert unusable_cupy in str(info.value)


def test_cli_explicit_cupy_exits_2_with_one_line(unusable_cupy, capsys):
    assert cli.main(["train", "--backend", "cupy", "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend cupy" in err and "Traceback" not in err


def test_a_missing_device_number_is_named(monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    fake = types.SimpleNamespace(__name__="cupy", cuda=types.SimpleNamespace(runtime=runtime),
                                 is_available=lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailable, match="CUDA device 3 does not exist"):
        get_backend("cupy", device=3)


# --------------------------------------------------------------------------- PyTorch, stood in


class FakeDevice:
    """What ``torch.device`` gives: a type and an index."""

    def __init__(self, type, index=None):
        self.type, self.index = type, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


def fake_torch(accelerator=None, count=1, answers=True):
    """A module that imports like PyTorch, with ``accelerator`` ("cuda", "mps", ...) or none;
    its device fails its first allocation unless ``answers``."""
    def zeros(*shape, device=None):
        if not answers:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return types.SimpleNamespace(sum=lambda: types.SimpleNamespace(cpu=lambda: 0))

    seen = types.SimpleNamespace(
        is_available=lambda: accelerator is not None, device_count=lambda: count,
        current_accelerator=lambda: FakeDevice(accelerator) if accelerator else None)
    return types.SimpleNamespace(__name__="torch", __version__="99.0", accelerator=seen,
                                 device=FakeDevice, zeros=zeros)


class _Context:
    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _usable_cupy():
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    one = types.SimpleNamespace(sum=lambda: types.SimpleNamespace(get=lambda: 0))
    return types.SimpleNamespace(__name__="cupy", cuda=types.SimpleNamespace(
        runtime=runtime, Device=_Context), is_available=lambda: True, zeros=lambda n: one)


@pytest.fixture
def stand_ins(monkeypatch):
    """``stand_ins(cupy=..., torch=...)``: each library as a fake module, or None for "not
    installed"."""
    def stand(cupy=None, torch=None):
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        monkeypatch.setitem(sys.modules, "torch", torch)
    return stand


def test_auto_takes_cupy_first(stand_ins):
    stand_ins(cupy=_usable_cupy(), torch=fake_torch("cuda"))
    assert get_backend("auto", log=None).name == "cupy"


@pytest.mark.parametrize("accelerator", ["cuda", "mps", "xpu"])
def test_auto_takes_pytorch_on_an_accelerator_without_cupy(stand_ins, accelerator):
    stand_ins(torch=fake_torch(accelerator))
    lines = []
    backend = get_backend("auto", log=lines.append)
    assert backend.name == "torch" and backend.device.type == accelerator
    assert not backend.runs_on_cpu
    assert lines == [f"backend auto: using PyTorch on {accelerator}:0 because CuPy is not "
                     "installed (No module named 'cupy')"]


@pytest.mark.parametrize("torch, why", [
    (None, "PyTorch is not installed"),
    (fake_torch(None), "PyTorch sees no accelerator"),  # never PyTorch on the CPU
    (fake_torch("cuda", answers=False), "PyTorch's cuda:0 device does not answer "
                                        "(RuntimeError: CUDA error: an illegal memory access"),
], ids=["no torch", "no accelerator", "no answer"])
def test_auto_falls_back_to_numpy_past_pytorch(stand_ins, torch, why):
    stand_ins(torch=torch)
    lines = []
    assert get_backend("auto", log=lines.append).name == "numpy"
    assert len(lines) == 1 and "using NumPy" in lines[0] and "CuPy is not installed" in lines[0]
    assert why in lines[0]


@pytest.mark.parametrize("cuda, says", [
    ("None", "PyTorch is a CPU-only build (9.9.0+cpu)"),  # read from its files, not imported
    ("'12.8'", "PyTorch failed to import (RuntimeError: imported)"),  # may have a GPU: imported
], ids=["cpu build", "cuda build"])
def test_auto_reads_a_cpu_only_pytorch_without_importing_it(monkeypatch, tmp_path, cuda, says):
    if sys.platform == "darwin":
        pytest.skip("on macOS every PyTorch build may have MPS: auto always imports it")
    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "version.py").write_text(
        "from typing import Optional\n__version__ = '9.9.0+cpu'\ndebug = False\n"
        f"cuda: Optional[str] = {cuda}\nhip: Optional[str] = None\nxpu: Optional[str] = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)
    lines = []
    assert get_backend("auto", log=lines.append).name == "numpy"
    assert says in lines[0]


def test_auto_passes_over_mps_for_float64(stand_ins):
    stand_ins(torch=fake_torch("mps"))
    lines = []
    assert get_backend("auto", log=lines.append, dtype="float64").name == "numpy"
    assert "PyTorch's mps:0 device has no float64" in lines[0]
    assert get_backend("auto", log=None, dtype="float32").name == "torch"


@pytest.mark.parametrize("torch, device, dtype, why", [
    (None, None, None, "--backend torch: PyTorch is not installed"),
    (fake_torch(None), "cuda:0", None, "PyTorch has no cuda device (it sees no accelerator)"),
    (fake_torch("cuda"), "mps", None, "PyTorch has no mps device (its accelerator is cuda)"),
    (fake_torch("cuda", count=2), "cuda:2", None, "cuda device 2 does not exist (2 device(s)"),
    (fake_torch("cuda", count=2), 5, None, "cuda device 5 does not exist (2 device(s)"),
    (fake_torch(None), 0, None, "device 0: PyTorch sees no accelerator"),
    (fake_torch("cuda", answers=False), None, None, "PyTorch's cuda:0 device does not answer"),
    (fake_torch("mps"), "mps", "float64", "--dtype float64: the torch:mps:0 device has no "
                                          "float64 (use --dtype float32)"),
], ids=["no torch", "no cuda", "not that accelerator", "no such index", "no such number",
        "an index without an accelerator", "no answer", "mps float64"])
def test_explicit_torch_that_cannot_run_is_a_clear_error(stand_ins, torch, device, dtype, why):
    stand_ins(torch=torch)
    with pytest.raises(BackendUnavailable) as info:
        get_backend("torch", device=device, dtype=dtype, log=None)
    assert why in str(info.value)


def test_explicit_torch_without_an_accelerator_runs_on_the_cpu_and_says_so(stand_ins):
    stand_ins(torch=fake_torch(None))
    lines = []
    backend = get_backend("torch", log=lines.append)
    assert backend.device.type == "cpu" and backend.runs_on_cpu
    assert lines == ["backend torch: on the CPU, because PyTorch sees no accelerator (CUDA, "
                     "ROCm, MPS or XPU)"]
    assert get_backend("torch", device="cpu", log=lines.append).runs_on_cpu and len(lines) == 1


def test_cupy_takes_a_cuda_device_only(stand_ins):
    stand_ins(cupy=_usable_cupy())
    with pytest.raises(BackendUnavailable, match="CuPy runs on CUDA devices only, not on 'mps'"):
        get_backend("cupy", device="mps")
    assert get_backend("cupy", device="cuda:0").device_id == 0


@pytest.mark.parametrize("argv, why", [
    (["--backend", "torch", "--device", "mps", "--dtype", "float64"], "has no float64"),
    (["--backend", "torch", "--device", "cuda"], "PyTorch has no cuda device"),
    (["--device", "tpu"], "not a device: 'tpu'"),
], ids=["mps float64", "no such device", "not a device"])
def test_cli_refuses_a_device_in_one_line(stand_ins, capsys, argv, why):
    stand_ins(torch=fake_torch("mps"))
    try:
        status = cli.main(["train", *argv, "--offline"])
    except SystemExit as exit:  # argparse's own refusal
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and why in err and "Traceback" not in err


@pytest.mark.parametrize("text, device", [("0", 0), ("3", 3), ("cpu", "cpu"), ("CUDA", "cuda:0"),
                                          ("cuda:1", "cuda:1"), ("mps", "mps"),
                                          ("xpu", "xpu:0")])
def test_device_names(text, device):
    assert parse_device(text) == device


@pytest.mark.parametrize("text", ["tpu", "cuda:x", "cpu:1", "-1", ""])
def test_not_device_names(text):
    with pytest.raises(ValueError, match="not a device"):
        parse_device(text)


def test_the_matrix_knows_every_compiled_pass():
    """The test matrix's FUSED (plain names) is the kernels' registry."""
    from conftest import BACKENDS, FUSED

    from mnist_gpu.kernels import TRAINING
    from mnist_gpu.kernels.cpu import FusedCPU
    from mnist_gpu.kernels.cuda import FusedCUDA

    assert set(FUSED) == set(TRAINING) and set(FUSED) <= set(BACKENDS)
    kinds = {"numpy": FusedCPU, "cupy": FusedCUDA}
    for name, passes in FUSED.items():
        assert passes == (("per-image", "mini-batch") if kinds[name].minibatch
                          else ("per-image",))


def test_unknown_backend():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        get_backend("tpu")


def test_array_namespace_refuses_mixed_libraries():
    strict = get_backend("array_api_strict")
    with pytest.raises(TypeError, match="different array libraries"):
        array_namespace(np.zeros(2), strict.to_device(np.zeros(2)))


def test_backends_copy_on_the_way_in_and_out(backend):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    on_device = backend.to_device(host)
    host[0, 0] = 99  # the device copy must not see this
    back = backend.to_host(on_device)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back[0, 0] == 0
    assert backend.describe()["backend"] == backend.name


def test_strict_device_refuses_hidden_host_copies():
    """The stand-in catches what CuPy would: an implicit conversion to NumPy."""
    strict = get_backend("array_api_strict")
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(strict.to_device(np.zeros(3)))


def test_numpy_and_cupy_need_no_array_api_compat_and_pytorch_says_it_does(mnist):
    """Run from a checkout where array-api-compat is missing (a GPU machine without a network),
    NumPy trains through its own namespace, and PyTorch is one clear reason."""
    code = textwrap.dedent("""
        import sys
        sys.modules["array_api_compat"] = None  # as if not installed
        import numpy as np
        import mnist_gpu as mg
        from mnist_gpu.backend import probe_torch
        backend = mg.get_backend("numpy")
        assert backend.xp is np and mg.backend.array_namespace(np.zeros(1)) is np
        mnist = mg.load_mnist(offline=True)
        data = mg.to_device_data(backend, mnist, limit=500)
        result = mg.train(data, mg.TrainConfig(kernel="array", checkpoints=(0, 500)))
        print(round(result.final_accuracy, 4))
        print(probe_torch("cpu")[2])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "MNIST_GPU_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    accuracy, reason = done.stdout.strip().splitlines()
    assert 0.1 < float(accuracy) < 0.9
    assert reason.startswith("PyTorch's tensors need array-api-compat")


def test_get_backend_auto_says_why_on_stderr_by_default():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['cupy'] = None\n"
         "import mnist_gpu as mg; print(mg.get_backend('auto').name)"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "numpy"
    assert "using NumPy on the CPU because CuPy is not installed" in done.stderr
