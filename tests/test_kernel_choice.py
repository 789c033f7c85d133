"""Which path trains on a GPU, on a stand-in CuPy: correct before fast on what has never run.

The fused CUDA kernel has been checked only on the CPU (tests/test_cuda_emulated.py), so on CuPy
``--kernel auto`` takes the array path (CuPy's own kernels and cuBLAS); ``--kernel fused`` runs
the kernel, saying once on stderr that no GPU has verified it and how to check it; a kernel that
does not compile, whose shared memory the device refuses, or whose launch fails ends the run with
exit status 2 and one line naming why, with nothing saved.

The stand-in (``emulated_cuda.stand_in_cupy``) is a ``cupy`` module on the host, under the real
``CupyBackend``: its ``RawModule`` is the kernel compiled by g++ (which then runs), or one that
fails as CuPy's does.
"""

from __future__ import annotations

import json

import pytest

import emulated_cuda
from mnist_gpu.backend import cupy_gpu
from mnist_gpu.backend import get_backend
from mnist_gpu.kernels import KernelUnavailable
from mnist_gpu.kernels.cuda import FusedCUDA
from mnist_gpu.training import TrainConfig, choose_kernel, to_device_data, train

UNVERIFIED = "has not yet been verified on a GPU"


@pytest.fixture
def cupy_with(monkeypatch):
    """``cupy_with(raw_module=..., library=...)``: CuPy as ``get_backend("cupy")`` finds it,
    the stand-in, with the given ``RawModule``."""
    def install(raw_module=None, library=None):
        cupy = emulated_cuda.stand_in_cupy(library, raw_module=raw_module)
        monkeypatch.setattr(cupy_gpu, "probe_cupy", lambda device=0: (cupy, ""))
        return get_backend("cupy")
    return install


def _warnings(err):
    return [line for line in err.splitlines() if UNVERIFIED in line]


def test_kernel_choice_auto_takes_the_array_path_on_cupy(cupy_with, run, tmp_path):
    # A kernel that cannot even compile: auto must never reach it.
    backend = cupy_with(raw_module=emulated_cuda.FailingModule("compile"))
    assert backend.name == "cupy"
    for config, models in ((TrainConfig(), 1), (TrainConfig(), 40),
                           (TrainConfig(batch_size=100), 1)):
        kernel = choose_kernel(backend, config, models)
        assert (kernel.name, kernel.training, kernel.note) == ("array", None, None)
    kernel = choose_kernel(backend, TrainConfig(kernel="fused"))
    assert kernel.name == "fused" and isinstance(kernel.training, FusedCUDA)
    assert not kernel.training.verified and kernel.note == FusedCUDA.unverified
    # No compiled inference on CuPy: the checkpoints score by the dense product.
    assert (kernel.evaluation, kernel.inference) == ("array", None)

    status, out, err = run("train", "--backend", "cupy", "--limit", "300", "--json",
                           "--save", str(tmp_path / "w.npz"))
    assert status == 0, err
    # Nothing on stderr but where the weights went (stdout carries the JSON).
    assert json.loads(out)["kernel"] == "array"
    assert err == f"mnist-gpu: saved weights to {tmp_path / 'w.npz'}\n"
    status, out, err = run("sweep", "--backend", "cupy", "--alpha", "0.01,0.003", "--seed", "0",
                           "--limit", "300", "--json", str(tmp_path / "s.json"))
    assert status == 0 and err == ""
    assert json.loads((tmp_path / "s.json").read_text())["kernel"] == "array"


def test_kernel_choice_fused_runs_the_kernel_with_one_warning(cupy_with, run, emulated_library,
                                                              tmp_path):
    backend = cupy_with(library=emulated_library)
    note = choose_kernel(backend, TrainConfig(kernel="fused")).note
    assert UNVERIFIED in note and "bench/gpu_check.sh" in note

    status, out, err = run("train", "--backend", "cupy", "--kernel", "fused", "--limit", "100",
                           "--checkpoints", "0,50", "--save", str(tmp_path / "w.npz"))
    assert status == 0, err
    assert err.splitlines() == [f"mnist-gpu: {note}"]
    assert "(fused kernel)" in out and (tmp_path / "w.npz").exists()
    # A sweep, trained in one launch per segment: the same one line.
    status, out, err = run("sweep", "--backend", "cupy", "--kernel", "fused", "--alpha",
                           "0.01,0.003", "--seed", "0", "--limit", "100")
    assert status == 0, err
    assert err.splitlines() == [f"mnist-gpu: {note}"]
    assert "fused kernel" in out


def test_kernel_choice_fused_is_what_the_python_api_logs(cupy_with, emulated_library, mnist):
    backend = cupy_with(library=emulated_library)
    data = to_device_data(backend, type(mnist)(mnist.train_images[:200], mnist.train_labels[:200],
                                               mnist.test_images[:100], mnist.test_labels[:100]))
    said = []
    result = train(data, TrainConfig(kernel="fused", checkpoints=(0, 200)), log=said.append)
    assert result.kernel == "fused" and len(said) == 1 and UNVERIFIED in said[0]
    said.clear()
    assert train(data, TrainConfig(checkpoints=(0, 200)), log=said.append).kernel == "array"
    assert said == [] and choose_kernel(backend, TrainConfig()).name == "array"


FAILURES = {
    "compile": ("the fused CUDA kernel did not compile (/tmp/tmpd0e5/4b1a.cu(117): error: "
                "identifier \"lane\" is undefined)"),
    "shared memory": "the device refused the fused CUDA kernel's",
    "launch": ("the fused CUDA kernel failed to launch (CUDA_ERROR_LAUNCH_FAILED: unspecified "
               "launch failure)"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_kernel_choice_a_kernel_that_cannot_run_exits_2_and_saves_nothing(cupy_with, run,
                                                                          tmp_path, failure):
    cupy_with(raw_module=emulated_cuda.FailingModule(failure))
    save = tmp_path / "w.npz"
    status, out, err = run("train", "--backend", "cupy", "--kernel", "fused", "--limit", "300",
                           "--save", str(save))
    assert status == 2
    # The warning, then the error: one line naming why, before any training.
    assert err.splitlines()[0] == f"mnist-gpu: {FusedCUDA.unverified}"
    assert len(err.splitlines()) == 2 and "Traceback" not in err
    error = err.splitlines()[1]
    assert error.startswith("mnist-gpu: error: " + FAILURES[failure])
    assert error.endswith("kernel 'auto' trains without it")
    assert out == "" and not save.exists() and list(tmp_path.iterdir()) == []

    status, out, err = run("sweep", "--backend", "cupy", "--kernel", "fused", "--alpha",
                           "0.01,0.003", "--seed", "0", "--limit", "300", "--save", str(save),
                           "--json", str(tmp_path / "s.json"))
    assert status == 2 and FAILURES[failure] in err.splitlines()[-1]
    assert out == "" and list(tmp_path.iterdir()) == []


def test_kernel_choice_a_launch_that_fails_mid_run_exits_2_and_saves_nothing(cupy_with, run,
                                                                             tmp_path):
    # The trial launch and the first segment's pass; the second segment's launch fails.
    cupy_with(raw_module=emulated_cuda.FailingModule("launch", launches=3))
    save = tmp_path / "w.npz"
    status, out, err = run("train", "--backend", "cupy", "--kernel", "fused", "--limit", "300",
                           "--checkpoints", "0,100", "--save", str(save))
    assert status == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("mnist-gpu: error: " + FAILURES["launch"])
    assert "saved" not in out and not save.exists()


def test_kernel_choice_the_python_api_raises_kernel_unavailable(cupy_with, mnist):
    backend = cupy_with(raw_module=emulated_cuda.FailingModule("compile"))
    data = to_device_data(backend, type(mnist)(mnist.train_images[:50], mnist.train_labels[:50],
                                               mnist.test_images[:10], mnist.test_labels[:10]))
    with pytest.raises(KernelUnavailable, match="did not compile"):
        train(data, TrainConfig(kernel="fused"))


@pytest.fixture
def passes_made(monkeypatch):
    """How many times a run asked the kernels' registry for a training pass: once per choice."""
    from mnist_gpu import kernels

    made = []
    real = kernels.training_pass

    def counted(backend, batch_size=1):
        made.append(batch_size)
        return real(backend, batch_size)

    monkeypatch.setattr(kernels, "training_pass", counted)
    return made


def test_kernel_choice_is_made_once_per_run(run, passes_made, tmp_path):
    status, out, err = run("train", "--backend", "numpy", "--limit", "200", "--checkpoints",
                           "0,100", "--json")
    assert status == 0, err
    assert json.loads(out)["kernel"] == "fused" and passes_made == [1]
    passes_made.clear()
    # A sweep in three chunks, one after another: the chunks take the one choice.
    status, out, err = run("sweep", "--backend", "numpy", "--alpha", "0.01,0.003,0.001",
                           "--seed", "0", "--limit", "200", "--batch-size", "10",
                           "--chunk-models", "1", "--json")
    assert status == 0, err
    assert json.loads(out)["kernel"] == "fused" and passes_made == [10]


def test_kernel_choice_given_to_train_is_the_one_it_takes(mnist, passes_made):
    from mnist_gpu.backend import get_backend

    data = to_device_data(get_backend("numpy"), type(mnist)(
        mnist.train_images[:100], mnist.train_labels[:100], mnist.test_images[:50],
        mnist.test_labels[:50]))
    config = TrainConfig(checkpoints=(0, 100))
    array = choose_kernel(data.backend, TrainConfig(kernel="array"))
    result = train(data, config, kernel=array)
    assert result.kernel == "array" and result.evaluation == "array" and passes_made == []
    assert train(data, config).kernel == "fused" and passes_made == [1]
