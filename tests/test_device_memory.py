"""A device out of memory: one line naming the batch size and what to change, whatever the
library's error type (NumPy's MemoryError, CuPy's own), and evaluation in bounded chunks."""

from __future__ import annotations

import types

import numpy as np
import pytest

from mnist_gpu import cli


def test_out_of_memory_names_the_batch_size(mnist_dir_path, monkeypatch, capsys):
    from mnist_gpu.model import tutorial

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Out of memory allocating 3,136,000 bytes")

    monkeypatch.setattr(tutorial, "minibatch_step", out_of_memory)
    status = cli.main(["train", "--backend", "numpy", "--batch-size", "1000", "--kernel", "array",
                       "--data-dir", str(mnist_dir_path), "--offline", "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ran out of memory" in err and "batches of 1,000 images" in err
    assert "3,136,000 bytes" in err and "MiB of data" in err and "smaller --batch-size" in err


def test_cupy_out_of_memory_takes_the_same_path():
    """CuPy's own error type, raised through the guard the training loops use."""
    from mnist_gpu.backend import CupyBackend
    from mnist_gpu.training.device_data import DeviceOutOfMemory, device_memory_guard

    class OutOfMemoryError(Exception):  # like cupy.cuda.memory.OutOfMemoryError: no MemoryError
        pass

    device = types.SimpleNamespace(synchronize=lambda: None)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda i: device, memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError)))
    backend = CupyBackend(fake, 0)
    assert OutOfMemoryError in backend.out_of_memory_errors()
    with pytest.raises(DeviceOutOfMemory, match="batches of 8,192 images .*smaller --batch-size"):
        with device_memory_guard(backend, "while training", 8192, 200 * 2**20):
            raise OutOfMemoryError("Out of memory allocating 25,690,112 bytes")


def test_evaluation_works_in_bounded_chunks(numpy_backend):
    from mnist_gpu.model import tutorial

    X = numpy_backend.to_device(np.random.default_rng(0).random((25, 784)))
    labels = numpy_backend.to_device(np.arange(25) % 10)
    Y = numpy_backend.to_device(np.eye(10)[np.arange(25) % 10])
    W = numpy_backend.to_device(np.random.default_rng(1).random((784, 10)))
    whole = tutorial.evaluate(W, X, labels, Y, chunk=1000)
    chunked = tutorial.evaluate(W, X, labels, Y, chunk=4)
    assert int(whole[0]) == int(chunked[0])
    assert float(whole[1]) == pytest.approx(float(chunked[1]), rel=1e-12)
