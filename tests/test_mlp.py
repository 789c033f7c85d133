"""Deeper networks: gradient checks in float64, the tutorial as the special case, parity."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compared_with_numpy

from mnist_gpu.backend import get_backend
from mnist_gpu.model import network, tutorial
from mnist_gpu.model.architecture import Architecture
from mnist_gpu.model.layer import Context
from mnist_gpu.training import MLPConfig, train_mlp
from mnist_gpu.training import TrainConfig, to_device_data, train

ARCHS = [a.network() for a in (
    Architecture((), "relu", False, "mse"),
    Architecture((), "relu", True, "ce"),
    Architecture((7,), "relu", True, "mse"),
    Architecture((6,), "sigmoid", False, "ce"),
    Architecture((5, 4), "tanh", True, "ce"),
    Architecture((5, 4), "sigmoid", True, "mse"),
)]
CTX = Context(get_backend("numpy"), "float64")


def _small_problem(arch, seed=0):
    """A tiny float64 problem on a 784-input network: 5 images, random one-hot targets."""
    rng = np.random.default_rng(seed)
    X = rng.random((5, 784)) * (rng.random((5, 784)) < 0.2)  # sparse like MNIST
    Y = np.eye(10)[rng.integers(0, 10, 5)]
    params = network.init_params(arch, seed, "float64")
    # Non-zero biases and small weights so every activation sits in its curved region.
    params = [[p * 0.3 if p.ndim == 2 else rng.normal(0, 0.1, p.shape) for p in layer]
              for layer in params]
    return X, Y, params


@pytest.mark.parametrize("arch", ARCHS, ids=[a.spec() for a in ARCHS])
def test_gradients_match_finite_differences(arch):
    X, Y, params = _small_problem(arch)
    loss, grads = network.gradients(arch, params, X, Y, CTX)
    # The squared error's delta is out - Y, half the gradient of the summed squares.
    scale = 0.5 if arch.loss == "mse" else 1.0
    rng = np.random.default_rng(1)
    eps = 1e-6
    for layer in range(len(params)):
        assert len(grads[layer]) == len(params[layer])
        for array, grad in zip(params[layer], grads[layer]):
            flat = array.reshape(-1)
            for index in rng.choice(flat.size, size=min(12, flat.size), replace=False):
                saved = flat[index]
                flat[index] = saved + eps
                up = float(network.gradients(arch, params, X, Y, CTX)[0])
                flat[index] = saved - eps
                down = float(network.gradients(arch, params, X, Y, CTX)[0])
                flat[index] = saved
                numeric = scale * (up - down) / (2 * eps)
                analytic = grad.reshape(-1)[index]
                assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-7), (layer, index)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    out = np.array([[1000.0, 0.0, -1000.0] + [0.0] * 7])
    Y = np.eye(10)[[0]]
    loss, delta = network.loss_and_delta(out, Y, "ce", np)
    assert np.isfinite(loss) and loss == pytest.approx(0.0, abs=1e-12)
    assert np.all(np.isfinite(delta))


def test_the_tutorial_is_the_special_case(backend, mnist):
    """No hidden layer, no bias, squared error, plain SGD: the same weights as ``linear``."""
    arch = Architecture().network()
    assert arch.is_tutorial
    np.testing.assert_array_equal(network.init_params(arch, 3, "float64")[0][0],
                                  tutorial.init_weights(3, "float64"))
    data = to_device_data(backend, mnist, "float64", limit=3000)
    deep = train_mlp(data, MLPConfig(arch, lr=0.02, batch_size=100, epochs=2, seed=3,
                                     shuffle=True))
    flat = train(data, TrainConfig(alpha=0.02, batch_size=100, epochs=2, seed=3, shuffle=True,
                                   kernel="array"))  # the same array calls, to the bit
    np.testing.assert_array_equal(deep.params[0][0], flat.weights)
    assert deep.final_accuracy == flat.final_accuracy


DEEP = [Architecture((32,), "relu", True, "ce").network(),
        Architecture((16, 8), "tanh", True, "mse").network()]


@compared_with_numpy
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("arch", DEEP, ids=[a.spec() for a in DEEP])
def test_deep_network_parity(backend, numpy_backend, mnist, arch, dtype):
    config = MLPConfig(arch, lr=0.05, batch_size=64, epochs=1, schedule="cosine", seed=1,
                       settings={"momentum": 0.9, "weight_decay": 1e-4})
    ours = train_mlp(to_device_data(backend, mnist, dtype, limit=2000), config)
    reference = train_mlp(to_device_data(numpy_backend, mnist, dtype, limit=2000), config)
    # Measured on PyTorch's CPU (a real second arithmetic): at most 6e-16 in float64 and 2.4e-7
    # in float32 (docs/testing.md): the parity suite's float32 tolerance holds here too.
    tolerance = dict(rtol=1e-9, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    for p, p_ref in zip(network.flat(ours.params), network.flat(reference.params)):
        assert p.dtype == np.dtype(dtype)
        np.testing.assert_allclose(p, p_ref, **tolerance)


def test_a_hidden_layer_learns(numpy_backend, mnist):
    data = to_device_data(numpy_backend, mnist, "float32", limit=6000)
    result = train_mlp(data, MLPConfig(Architecture((64,), "relu", True, "ce").network(), lr=0.1,
                                       batch_size=64, epochs=2, settings={"momentum": 0.9}))
    assert result.final_accuracy > 0.88
    assert len(result.curve) == 3 and result.curve[0].images_seen == 0


def test_schedules():
    config = MLPConfig(lr=1.0, schedule="step")
    assert [config.lr_at(s, 100) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = MLPConfig(lr=1.0, schedule="cosine")
    assert cosine.lr_at(0, 100) == 1.0 and cosine.lr_at(50, 100) == pytest.approx(0.5)
    assert cosine.lr_at(100, 100) == pytest.approx(0.0)


def test_saved_parameters_round_trip():
    arch = Architecture((5,), "relu", True, "ce").network()
    params = network.init_params(arch, 0, "float32")
    arrays = network.params_to_arrays(params)
    assert sorted(arrays) == ["W0", "W1", "b0", "b1"]
    back = network.params_from_arrays(arrays, arch)
    assert [len(layer) for layer in back] == [2, 0, 2]
    for p, p2 in zip(network.flat(params), network.flat(back)):
        np.testing.assert_array_equal(p, p2)
    arrays["W1"] = arrays["W1"][:, :3]
    with pytest.raises(ValueError, match="W1 has shape"):
        network.params_from_arrays(arrays, arch)
