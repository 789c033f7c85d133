"""Parity: a second real arithmetic gives NumPy's weights to within rounding, from the same host
weights; the compiled passes give the array path's; and what every backend keeps invariant.

One oracle, as scikit-learn does it: run with NumPy, run with the backend under test, bring the
result to the host, compare with a tolerance that depends on the dtype. The backends compared
are those with an arithmetic of their own (PyTorch on the CPU or a GPU, CuPy); where none is
installed they skip, saying so. array_api_strict computes with NumPy and gives its very bits: it
is checked for that, and for refusing implicit conversions, in
``tests/test_array_api_conformance.py``.

Tolerances. Backends may sum the 784-term dot products in different orders (BLAS blocking, the
fused kernels' lit-pixel order, PyTorch's MKL and oneDNN kernels, a GPU's reduction tree), so
results agree to rounding, not to the bit. Measured on PyTorch's CPU against NumPy, the first
arithmetic besides NumPy's that the suite meets on every machine (docs/testing.md): at most
3e-15 in float64 and 1.5e-6 in float32 (the relative difference is large only on weights near
zero). float64: 1e-10 relative, 1e-12 absolute. float32: 1e-5 relative and absolute (weights
are O(1); the array and fused paths differ by 4e-7 over 60,000 images), which leaves a GPU's
reductions room and still fails any real difference in the update: a single image trained
twice, or skipped, moves weights by about 1e-3. NumPy is never compared with itself here.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import backend_params, with_a_second_arithmetic, with_fused, with_fused_minibatch

from mnist_gpu import kernels
from mnist_gpu.model import tutorial
from mnist_gpu.training import TrainConfig, evaluate_weights, to_device_data, train

TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}
DTYPES = ["float64", "float32"]


@pytest.fixture(scope="module")
def host_start():
    """One set of initial weights per dtype, drawn once on the host."""
    return {d: tutorial.init_weights(123, d) for d in DTYPES}


def trained(backend, mnist, dtype, start, limit=None, **config):
    data = to_device_data(backend, mnist, dtype, limit=limit)
    return train(data, TrainConfig(checkpoints=(), **config), init_weights=start[dtype])


def assert_same_weights(result, reference, dtype):
    assert result.weights.dtype == np.dtype(dtype)
    np.testing.assert_allclose(result.weights, reference.weights, **TOLERANCE[dtype])


@with_a_second_arithmetic
@pytest.mark.parametrize("dtype", DTYPES)
def test_per_image_parity(backend, numpy_backend, mnist, host_start, dtype):
    ours = trained(backend, mnist, dtype, host_start, limit=1000, kernel="array")
    reference = trained(numpy_backend, mnist, dtype, host_start, limit=1000, kernel="array")
    assert_same_weights(ours, reference, dtype)


@with_a_second_arithmetic
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [32, 1000, 60000])
def test_minibatch_parity(backend, numpy_backend, mnist, host_start, dtype, batch_size):
    # A rate at which every batch size converges: at 0.05, batches of 32 blow the weights up to
    # 1e12, and the rounding of a second arithmetic (PyTorch's) grows with them.
    ours = trained(backend, mnist, dtype, host_start, batch_size=batch_size, alpha=0.01,
                   kernel="array")
    reference = trained(numpy_backend, mnist, dtype, host_start, batch_size=batch_size,
                        alpha=0.01, kernel="array")
    assert_same_weights(ours, reference, dtype)
    # The same test-set accuracy (a handful of borderline images may flip in float32).
    assert abs(ours.final_accuracy - reference.final_accuracy) <= (0 if dtype == "float64"
                                                                    else 3e-4)


@with_a_second_arithmetic
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_predictions_on_the_test_set(backend, numpy_backend, mnist, host_start, dtype):
    weights = trained(numpy_backend, mnist, dtype, host_start, limit=2000, kernel="array").weights
    ours = to_device_data(backend, mnist, dtype)
    reference = to_device_data(numpy_backend, mnist, dtype)
    with backend.activate():
        predictions = backend.to_host(
            backend.xp.argmax(tutorial.predict(backend.to_device(weights), ours.test_x), axis=1))
    expected = np.argmax(reference.test_x @ weights, axis=1)
    assert np.mean(predictions == expected) >= (1.0 if dtype == "float64" else 0.9995)
    assert evaluate_weights(ours, weights).accuracy == pytest.approx(
        evaluate_weights(reference, weights).accuracy, abs=5e-4)


# --------------------------------------------------------------------------- the fused kernels


def fused_or_skip(backend):
    from mnist_gpu.backend import BackendUnavailable

    try:
        kernels.training_pass(backend, 1)
    except BackendUnavailable as err:
        pytest.skip(str(err))


def tutorial_loop(images, labels, W, alpha):
    """An independent reference: the tutorial's loop in plain NumPy, in W's dtype."""
    W = W.copy()
    X = images.astype(W.dtype) / 255
    eye = np.eye(10, dtype=W.dtype)
    for x, label in zip(X, labels):
        delta = x @ W - eye[label]
        W -= W.dtype.type(alpha) * np.outer(x, delta)
    return W


@with_fused
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shuffle", [False, True], ids=["file-order", "shuffled"])
def test_fused_matches_the_array_path(backend, mnist, host_start, dtype, shuffle):
    fused_or_skip(backend)
    fused = trained(backend, mnist, dtype, host_start, limit=3000, kernel="fused", shuffle=shuffle,
                    epochs=2)
    array = trained(backend, mnist, dtype, host_start, limit=3000, kernel="array", shuffle=shuffle,
                    epochs=2)
    assert fused.kernel == "fused" and array.kernel == "array"
    assert_same_weights(fused, array, dtype)


@with_fused
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_matches_the_plain_numpy_loop(backend, mnist, host_start, dtype):
    fused_or_skip(backend)
    fused = trained(backend, mnist, dtype, host_start, limit=1000, kernel="fused")
    expected = tutorial_loop(mnist.train_images[:1000], mnist.train_labels[:1000],
                             host_start[dtype], 0.01)
    np.testing.assert_allclose(fused.weights, expected, **TOLERANCE[dtype])


@with_fused
def test_fused_segments_equal_one_pass(backend, mnist, host_start):
    """Checkpoints split a pass into launches; the split must not change the weights."""
    fused_or_skip(backend)
    data = to_device_data(backend, mnist, "float64", limit=2500)
    one = train(data, TrainConfig(kernel="fused", checkpoints=()),
                init_weights=host_start["float64"])
    split = train(data, TrainConfig(kernel="fused", checkpoints=(1, 100, 999, 2000)),
                  init_weights=host_start["float64"])
    np.testing.assert_array_equal(one.weights, split.weights)


def fused_minibatch_or_skip(backend):
    from mnist_gpu.backend import BackendUnavailable

    try:
        kernels.training_pass(backend, 2)
    except BackendUnavailable as err:
        pytest.skip(str(err))


@with_fused_minibatch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [7, 256, 1000, 3000])
@pytest.mark.parametrize("shuffle", [False, True], ids=["file-order", "shuffled"])
def test_fused_minibatches_match_the_array_path(backend, mnist, host_start, dtype, batch_size,
                                                shuffle):
    """Batches of one chunk, of exactly one, of several with a short last one, of every image."""
    fused_minibatch_or_skip(backend)
    runs = [trained(backend, mnist, dtype, host_start, limit=3000, kernel=kernel,
                    batch_size=batch_size, shuffle=shuffle, epochs=2)
            for kernel in ("fused", "array")]
    assert [r.kernel for r in runs] == ["fused", "array"]
    assert_same_weights(*runs, dtype)


@with_fused_minibatch
def test_fused_minibatch_segments_equal_one_pass(backend, mnist, host_start):
    fused_minibatch_or_skip(backend)
    data = to_device_data(backend, mnist, "float64", limit=2500)
    one, split = (train(data, TrainConfig(kernel="fused", batch_size=300, checkpoints=c),
                        init_weights=host_start["float64"])
                  for c in ((), (1, 300, 999, 2000)))
    np.testing.assert_array_equal(one.weights, split.weights)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_kept_on_the_device(backend, mnist, dtype):
    xp = backend.xp
    data = to_device_data(backend, mnist, dtype, limit=64)
    want = getattr(xp, dtype)
    assert data.train_x.dtype == want and data.train_y.dtype == want and data.test_x.dtype == want
    with backend.activate():
        W = backend.to_device(tutorial.init_weights(0, dtype))
        tutorial.per_image_steps(W, data.train_x, data.train_y, 0.01, range(8))
        tutorial.minibatch_steps(W, data.train_x, data.train_y, 0.01, 16, 0, 64, xp=xp)
        assert W.dtype == want  # no float64 creeping in through Python scalars
        correct, errors = tutorial.evaluate(W, data.test_x, data.test_labels, data.test_y, xp=xp)
        assert errors.dtype == want
        # Results stay in the backend's library (and, for the stand-in, on its fake device).
        assert type(W) is type(data.train_x)
        for result in (W, correct, errors):
            assert result.device == data.train_x.device


def test_per_image_equals_minibatch_of_one(backend, mnist, host_start):
    xp = backend.xp
    data = to_device_data(backend, mnist, "float64", limit=300)
    with backend.activate():
        a = backend.to_device(host_start["float64"])
        b = backend.to_device(host_start["float64"])
        tutorial.per_image_steps(a, data.train_x, data.train_y, 0.01, range(300))
        tutorial.minibatch_steps(b, data.train_x, data.train_y, 0.01, 1, 0, 300, xp=xp)
        np.testing.assert_allclose(backend.to_host(a), backend.to_host(b), **TOLERANCE["float64"])


SEEDED = {"per-image array": (dict(kernel="array"), None),
          "per-image fused": (dict(kernel="fused"), "per-image"),
          "shuffled mini-batches array": (dict(batch_size=50, shuffle=True, epochs=2,
                                                kernel="array"), None),
          "shuffled mini-batches fused": (dict(batch_size=50, shuffle=True, epochs=2,
                                                kernel="fused"), "mini-batch")}


@pytest.mark.parametrize("backend, config", [
    pytest.param(p.values[0], config, marks=p.marks, id=f"{p.values[0]}-{name}")
    for name, (config, fused) in SEEDED.items() for p in backend_params(fused=fused)],
    indirect=["backend"])
def test_same_seed_is_bit_identical(backend, mnist, config):
    if config["kernel"] == "fused":
        (fused_or_skip if "batch_size" not in config else fused_minibatch_or_skip)(backend)
    data = to_device_data(backend, mnist, "float32", limit=1500)
    first = train(data, TrainConfig(seed=5, **config))
    second = train(data, TrainConfig(seed=5, **config))
    np.testing.assert_array_equal(first.weights, second.weights)
    assert [c.accuracy for c in first.curve] == [c.accuracy for c in second.curve]
    third = train(data, TrainConfig(seed=6, **config))
    assert not np.array_equal(first.weights, third.weights)


ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def test_inputs_are_not_modified(backend, mnist):
    before = {k: getattr(mnist, k).copy() for k in ARRAYS}
    start = tutorial.init_weights(0, "float32")
    start_copy = start.copy()
    data = to_device_data(backend, mnist, "float32", limit=500)
    x_before = backend.to_host(data.train_x)
    train(data, TrainConfig(kernel="array"), init_weights=start)
    train(data, TrainConfig(batch_size=20, shuffle=True))
    for key in ARRAYS:
        np.testing.assert_array_equal(getattr(mnist, key), before[key])
    np.testing.assert_array_equal(start, start_copy)
    np.testing.assert_array_equal(backend.to_host(data.train_x), x_before)


# --------------------------------------------------------------------------- worked by hand


def test_golden_toy_problem_worked_by_hand(backend):
    """Three pixels, two classes, alpha 0.5, every number written out as the tutorial does.

    W0 = [[0.5, 0.0],     image 1: x = [1, 0, 0.5], label 0, y = [1, 0]
          [0.0, 1.0],       pred  = [1*0.5 + 0.5*0.25, 1*0 + 0.5*0.5] = [0.625, 0.25]
          [0.25, 0.5]]      delta = pred - y = [-0.375, 0.25]
                            outer(x, delta) = [[-0.375, 0.25], [0, 0], [-0.1875, 0.125]]
                            W1 = W0 - 0.5 * outer = [[0.6875, -0.125], [0, 1], [0.34375, 0.4375]]
                          image 2: x = [0, 1, 1], label 1, y = [0, 1]
                            pred  = [0 + 0.34375, 1 + 0.4375] = [0.34375, 1.4375]
                            delta = [0.34375, 0.4375]
                            W2 = W1 - 0.5 * outer(x, delta)
                               = [[0.6875, -0.125], [-0.171875, 0.78125], [0.171875, 0.21875]]
    """
    W = backend.to_device(np.array([[0.5, 0.0], [0.0, 1.0], [0.25, 0.5]]))
    X = backend.to_device(np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 1.0]]))
    Y = backend.to_device(np.array([[1.0, 0.0], [0.0, 1.0]]))
    with backend.activate():
        tutorial.per_image_steps(W, X, Y, 0.5, [0])
        np.testing.assert_array_equal(backend.to_host(W),
                                      [[0.6875, -0.125], [0.0, 1.0], [0.34375, 0.4375]])
        tutorial.per_image_steps(W, X, Y, 0.5, [1])
        np.testing.assert_array_equal(backend.to_host(W),
                                      [[0.6875, -0.125], [-0.171875, 0.78125], [0.171875, 0.21875]])
        # The same two images as one batch of two: W0 - (0.5/2) * X^T (X W0 - Y).
        B = backend.to_device(np.array([[0.5, 0.0], [0.0, 1.0], [0.25, 0.5]]))
        tutorial.minibatch_step(B, X, Y, 0.5)
        # X W0 - Y = [[-0.375, 0.25], [0.25, 0.5]]; X^T of that = [[-0.375, 0.25], [0.25, 0.5],
        # [0.0625, 0.625]]; times 0.25 subtracted from W0:
        np.testing.assert_array_equal(backend.to_host(B),
                                      [[0.59375, -0.0625], [-0.0625, 0.875], [0.234375, 0.34375]])
