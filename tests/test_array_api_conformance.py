"""The math is written against the array API standard alone, and keeps its arrays on their device.

array_api_strict (the test suite's CPU stand-in for a GPU) offers only the standard's functions,
on a fake device, and refuses what the standard leaves out: a call outside the standard, a dtype
promotion the standard does not define, a hidden conversion to NumPy or to the host. It computes
with NumPy, so the training, the mini-batches and the predictions run there must give NumPy's
weights and predictions **bit for bit**: anything else is a conversion or a dtype change that
the namespace let through. (A tolerance means something only against a second arithmetic: that
is ``tests/test_parity.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_gpu.backend import BackendUnavailable, array_namespace, get_backend
from mnist_gpu.model import tutorial
from mnist_gpu.training import TrainConfig, evaluate_weights, to_device_data, train

DTYPES = ["float64", "float32"]


@pytest.fixture(scope="module")
def strict():
    try:
        return get_backend("array_api_strict")
    except BackendUnavailable as err:
        pytest.skip(f"array_api_strict backend unavailable: {err}")


def _trained(backend, mnist, dtype, limit=None, **config):
    data = to_device_data(backend, mnist, dtype, limit=limit)
    return train(data, TrainConfig(checkpoints=(), kernel="array", **config),
                 init_weights=tutorial.init_weights(123, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_image_training_gives_numpys_bits(strict, numpy_backend, mnist, dtype):
    ours = _trained(strict, mnist, dtype, limit=1000)
    reference = _trained(numpy_backend, mnist, dtype, limit=1000)
    assert ours.weights.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(ours.weights, reference.weights)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [32, 1000, 60000])
def test_minibatch_training_gives_numpys_bits(strict, numpy_backend, mnist, dtype, batch_size):
    ours = _trained(strict, mnist, dtype, batch_size=batch_size, alpha=0.01)
    reference = _trained(numpy_backend, mnist, dtype, batch_size=batch_size, alpha=0.01)
    np.testing.assert_array_equal(ours.weights, reference.weights)
    assert ours.final_accuracy == reference.final_accuracy


@pytest.mark.parametrize("dtype", DTYPES)
def test_predictions_on_the_test_set_are_numpys(strict, numpy_backend, mnist, dtype):
    weights = _trained(numpy_backend, mnist, dtype, limit=2000).weights
    ours = to_device_data(strict, mnist, dtype)
    with strict.activate():
        scores = tutorial.predict(strict.to_device(weights), ours.test_x)
        predictions = strict.to_host(strict.xp.argmax(scores, axis=1))
    reference = to_device_data(numpy_backend, mnist, dtype)
    np.testing.assert_array_equal(predictions, np.argmax(reference.test_x @ weights, axis=1))
    assert (evaluate_weights(ours, weights).accuracy
            == evaluate_weights(reference, weights).accuracy)


def test_a_numpy_array_in_the_math_is_refused_not_converted(strict):
    """A host array where a device array belongs: refused, as CuPy refuses it, rather than
    copied to the device or the device's array copied to the host."""
    W = strict.to_device(np.zeros((3, 2)))
    X = np.ones((1, 3))
    with strict.activate(), pytest.raises((TypeError, RuntimeError),
                                          match="different array libraries|Can't convert"):
        tutorial.predict(W, X)
    with pytest.raises(TypeError, match="different array libraries"):
        array_namespace(W, X)


def test_a_device_array_is_never_turned_into_numpy_implicitly(strict):
    on_device = strict.to_device(np.arange(3.0))
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(on_device)
    # Only the backend's explicit copy brings it to the host.
    np.testing.assert_array_equal(strict.to_host(on_device), [0.0, 1.0, 2.0])
