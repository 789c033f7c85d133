"""PyTorch as a backend, end to end: the commands a user runs give NumPy's results (float64 weights
within 1e-9, float32 accuracy within 0.2 points), PyTorch's settings are left as they were, and
no training step reads a value back to the host.

The sizes are cut (``--limit``, one epoch) so that the suite stays fast; the full commands were
measured once (docs/testing.md). PyTorch runs on its accelerator where the machine has one, else
on the CPU; without PyTorch every test here skips, saying why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import backend_or_skip

from mnist_gpu.io.weights import load_arrays
from mnist_gpu.model import network
from mnist_gpu.training import MLPConfig, TrainConfig, to_device_data, train_mlp
from mnist_gpu.training.tutorial import train_models

FLOAT64 = dict(rtol=0, atol=1e-9)
POINTS = 0.2  # percentage points of test accuracy, float32


@pytest.fixture
def torch_backend(request):
    return backend_or_skip(request, "torch")


def _trained(run, tmp_path, backend, *flags):
    """(the --json result, the --save arrays) of the command ``flags`` on ``backend``."""
    path, report = tmp_path / f"{backend}.npz", tmp_path / f"{backend}.json"
    json_flags = ["--json"] if flags[0] == "train" else ["--json", str(report)]  # sweep: a file
    status, out, err = run(*flags, "--backend", backend, *json_flags, "--save", str(path))
    assert status == 0, err
    result = json.loads(out if flags[0] == "train" else report.read_text())
    return result, load_arrays(path)[0]


def _same_results(run, tmp_path, dtype, *flags):
    """The command with ``flags`` on PyTorch and on NumPy: the same weights (float64) or the
    same accuracy (float32)."""
    ours, ours_arrays = _trained(run, tmp_path, "torch", *flags, "--dtype", dtype)
    numpy, numpy_arrays = _trained(run, tmp_path, "numpy", *flags, "--dtype", dtype)
    assert ours["backend"]["backend"] == "torch" and numpy["backend"]["backend"] == "numpy"
    assert sorted(ours_arrays) == sorted(numpy_arrays)
    for key, array in numpy_arrays.items():
        if array.dtype.kind == "f":
            assert ours_arrays[key].dtype == np.dtype(dtype)
            if dtype == "float64":
                np.testing.assert_allclose(ours_arrays[key], array, **FLOAT64, err_msg=key)
    return ours, numpy


def _accuracies(ours, numpy):
    final = [r.get("final_accuracy", r.get("accuracy")) for r in (ours, numpy)]
    return [100 * a for a in final]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", ["1", "100"], ids=["per-image", "B=100"])
def test_train_gives_numpys_results(torch_backend, run, tmp_path, dtype, batch):
    limit = "10000" if batch == "1" else "60000"
    ours, numpy = _same_results(run, tmp_path, dtype, "train", "--batch-size", batch,
                                "--limit", limit, "--alpha", "0.01" if batch == "1" else "0.02")
    assert ours["kernel"] == "array"  # no compiled pass for tensors: the array path
    a, b = _accuracies(ours, numpy)
    assert abs(a - b) <= (1e-9 if dtype == "float64" else POINTS), (a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sweep_gives_numpys_results(torch_backend, run, tmp_path, dtype):
    ours, numpy = _same_results(run, tmp_path, dtype, "sweep", "--alpha", "0.003,0.01",
                                "--seed", "0,1", "--limit", "3000", "--shuffle")
    for a, b in zip(ours["models"], numpy["models"]):
        assert abs(100 * (a["final_accuracy"] - b["final_accuracy"])) <= (
            1e-9 if dtype == "float64" else POINTS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_mlp_preset_gives_numpys_results(torch_backend, run, tmp_path, dtype):
    ours, numpy = _same_results(run, tmp_path, dtype, "train", "--preset", "mlp", "--limit",
                                "3000", "--epochs", "1")
    a, b = _accuracies(ours, numpy)
    assert abs(a - b) <= (1e-9 if dtype == "float64" else POINTS), (a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_cnn_fast_preset_gives_numpys_results(torch_backend, numpy_backend, mnist, dtype):
    """The preset's configuration as ``train --preset cnn-fast`` builds it, for one epoch of
    512 images, scored on 2,000 test images (the whole test set through a CNN on the CPU, at
    every checkpoint, would take most of this test's time)."""
    from mnist_gpu.cli.args import apply_preset, training_config
    from mnist_gpu.cli.parser import build_parser

    argv = ["train", "--preset", "cnn-fast", "--epochs", "1"]
    args = apply_preset(build_parser().parse_args(argv), argv)
    config = training_config(args, args.alpha, args.seed)
    small = type(mnist)(mnist.train_images[:512], mnist.train_labels[:512],
                        mnist.test_images[:2000], mnist.test_labels[:2000])
    ours, numpy = (train_mlp(to_device_data(b, small, dtype), config)
                   for b in (torch_backend, numpy_backend))
    for p, p0 in zip(network.flat(ours.params), network.flat(numpy.params)):
        assert p.dtype == np.dtype(dtype)
        if dtype == "float64":
            np.testing.assert_allclose(p, p0, **FLOAT64)
    assert abs(100 * (ours.final_accuracy - numpy.final_accuracy)) <= (
        1e-9 if dtype == "float64" else POINTS)


def test_eval_of_saved_weights_gives_numpys_accuracy(torch_backend, run, tmp_path,
                                                    mnist_dir_path, capsys):
    from mnist_gpu import cli

    path = tmp_path / "cnn.npz"
    status, _, err = run("train", "--conv", "4", "--conv-size", "3", "--hidden", "16", "--bias",
                         "--loss", "ce", "--batch-size", "64", "--limit", "500", "--backend",
                         "torch", "--save", str(path))
    assert status == 0, err
    accuracy = {}
    for backend in ("torch", "numpy"):
        assert cli.main(["eval", "--weights", str(path), "--backend", backend, "--json",
                         "--data-dir", str(mnist_dir_path), "--offline"]) == 0
        accuracy[backend] = json.loads(capsys.readouterr().out)["accuracy"]
    assert abs(accuracy["torch"] - accuracy["numpy"]) <= 2e-4  # float32: an image or two


@pytest.mark.parametrize("flags, says", [
    (("train", "--alpha", "5", "--limit", "2000", "--kernel", "array"),
     "at 100 images seen, over 1,000 times its"),
    (("train", "--hidden", "32", "--bias", "--lr", "1e4", "--batch-size", "100", "--limit",
      "2000"), "training diverged in epoch 1"),
], ids=["tutorial", "mlp"])
def test_divergence_is_found_at_numpys_step(torch_backend, run, flags, says):
    messages = []
    for backend in ("torch", "numpy"):
        status, _, err = run(*flags, "--backend", backend, "--dtype", "float64")
        assert status == 1 and says in err
        messages.append(err.strip().splitlines()[-1])
    assert messages[0] == messages[1]


def test_fused_on_tensors_is_a_one_line_error(torch_backend, run):
    """The compiled passes are NumPy's and CuPy's: PyTorch's tensors take the array path."""
    status, _, err = run("train", "--backend", "torch", "--kernel", "fused")
    assert status == 2 and "no fused per-image kernel for the torch backend" in err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("mnist-gpu: error")


def test_activate_restores_pytorchs_matmul_precision(torch_backend):
    """Full-precision float32 products inside ``activate`` (no TF32, no bfloat16), the user's
    setting before and after."""
    torch = torch_backend.torch
    if hasattr(torch.backends, "fp32_precision"):  # PyTorch 2.9 on: a switch per library
        switches = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
        before = [s.fp32_precision for s in switches]
        try:
            for switch in switches:
                switch.fp32_precision = "tf32"  # a user's setting
            with torch_backend.activate():
                assert [s.fp32_precision for s in switches] == ["ieee", "ieee"]
            assert [s.fp32_precision for s in switches] == ["tf32", "tf32"]
        finally:
            for switch, value in zip(switches, before):
                switch.fp32_precision = value
    else:
        before = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("medium")
            with torch_backend.activate():
                assert torch.get_float32_matmul_precision() == "highest"
            assert torch.get_float32_matmul_precision() == "medium"
        finally:
            torch.set_float32_matmul_precision(before)


# Every way a tensor's value reaches the host.
READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def host_reads(torch_backend, monkeypatch):
    """A count of the reads of a tensor's value on the host, from when the fixture is asked."""
    count = [0]
    tensor = torch_backend.torch.Tensor
    for name in READS:
        def counted(self, *args, _original=getattr(tensor, name), **kwargs):
            count[0] += 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(tensor, name, counted)
    return count


@pytest.mark.parametrize("what", ["per-image", "mini-batches", "a stack of 3", "mlp", "cnn"])
def test_no_host_read_per_step(torch_backend, mnist, host_reads, what):
    """Values come back only at the checkpoints (here two), however many steps there are."""
    data = to_device_data(torch_backend, mnist, "float32", limit=600)
    host_reads[0] = 0
    if what in ("mlp", "cnn"):
        from mnist_gpu.model.architecture import parse_network

        arch = parse_network("dense32+bias,relu,dropout0.1,dense10+bias" if what == "mlp" else
                             "conv4x3+bias,pool2,relu,dense8+bias,relu,dense10+bias", "ce")
        train_mlp(data, MLPConfig(arch, lr=0.05, batch_size=5, epochs=1,
                                  settings={"momentum": 0.9}, shuffle=True))
    else:
        config = TrainConfig(batch_size=5 if what == "mini-batches" else 1, shuffle=True,
                             checkpoints=(0, 600))
        models = 3 if what == "a stack of 3" else 1
        train_models(data, config, [0.01] * models,
                     np.concatenate([np.ones((784, 10), np.float32) / 784] * models, axis=1))
    # At each checkpoint, a few reads per layer (finite? correct? loss?), and the weights once
    # at the end: far fewer than the 120 (or 600) steps, one read per step would be.
    assert host_reads[0] <= 40, host_reads[0]
