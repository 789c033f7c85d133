"""The CPU's fused lit-pixel loops outside training: the listing of lit pixels and inference.

Inference over the lit pixels must give what the dense product gives: the same classes (argmax
as NumPy defines it, ties and NaN included) and the same squared error to rounding, whatever the
number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import kernel_params

from mnist_gpu.model import tutorial
from mnist_gpu import kernels
from mnist_gpu.backend import BackendUnavailable
from mnist_gpu.training import TrainConfig, to_device_data, train

DTYPES = ["float64", "float32"]


@pytest.fixture
def fused(numpy_backend):
    try:
        return kernels.inference_pass(numpy_backend)
    except BackendUnavailable as err:
        pytest.skip(str(err))


def dense_lists(X):
    """The lit pixels of every row of ``X`` as NumPy finds them: an independent reference."""
    rows, columns = np.nonzero(X)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=X.shape[0]))])
    return indptr, columns, X[rows, columns]


def test_lit_pixel_listing_matches_numpy(fused, mnist):
    X = np.zeros((6, 784), dtype=np.float32)
    X[1, :3] = 0.5  # lit at the start, zeros to the end: they must not spill into row 2
    X[2, 5] = 1.0
    X[3, :] = 0.25  # every pixel lit
    X[5, 783] = 0.75  # row 4 blank, row 5 lit only at its last pixel
    for images in (X, tutorial.scale_images(mnist.test_images[:500], "float64", xp=np)):
        lit = fused.prepare(images)
        for ours, expected in zip((lit.indptr, lit.indices, lit.values), dense_lists(images)):
            np.testing.assert_array_equal(ours, expected)
        assert lit.values.dtype == images.dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_classes_and_errors_match_the_dense_product(fused, mnist, dtype):
    X = tutorial.scale_images(mnist.test_images, dtype, xp=np)
    Y = np.eye(10, dtype=dtype)[mnist.test_labels]
    lit = fused.prepare(X)
    for seed in range(3):
        W = tutorial.init_weights(seed, dtype) - 0.5  # mixed signs, so the classes vary
        classes = fused.classify(W, lit)
        assert classes.dtype == np.int64
        agree = np.mean(classes == np.argmax(X @ W, axis=1))
        assert agree == 1.0 if dtype == "float64" else agree >= 0.9995
        correct, errors = fused.evaluate(W, lit, mnist.test_labels)
        expected_correct, expected_errors = tutorial.evaluate(W, X, mnist.test_labels, Y, xp=np)
        assert abs(int(correct) - int(expected_correct)) <= (0 if dtype == "float64" else 5)
        assert errors.dtype == np.dtype(dtype)
        assert float(errors) == pytest.approx(float(expected_errors),
                                              rel=1e-12 if dtype == "float64" else 1e-5)


def test_argmax_follows_numpy_on_ties_and_nan(fused):
    X = np.zeros((3, 784), dtype=np.float32)
    X[:, :2] = 2.0
    W = np.zeros((784, 10), dtype=np.float32)
    W[0, [3, 7]] = 1.0  # image 0: a tie between 3 and 7 -> the first, 3
    # Image 1 alone: 2 * 3e38 overflows to inf in class 5, then 2 * -3e38 to -inf: inf - inf is
    # NaN, and NumPy's argmax picks the first NaN over the larger class 1.
    X[1, 2:4] = 2.0
    W[2, 5], W[3, 5], W[2, 1] = 3e38, -3e38, 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.argmax(X @ W, axis=1)
    assert expected.tolist() == [3, 5, 3]
    np.testing.assert_array_equal(fused.classify(W, fused.prepare(X)), expected)


def test_results_do_not_depend_on_the_number_of_threads(fused, mnist):
    X = tutorial.scale_images(mnist.test_images, "float32", xp=np)
    W = tutorial.init_weights(4, "float32") - 0.5
    lit = fused.prepare(X)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fused.prepare(X), fused.evaluate(W, lit, mnist.test_labels), fused.classify(W, lit)
    finally:
        numba.set_num_threads(threads)
    many = lit, fused.evaluate(W, lit, mnist.test_labels), fused.classify(W, lit)
    for field in ("indptr", "indices", "values"):
        np.testing.assert_array_equal(getattr(one[0], field), getattr(many[0], field))
    assert one[1] == many[1]
    np.testing.assert_array_equal(one[2], many[2])


def test_refuses_weights_it_would_disagree_on(fused, mnist):
    """The dense product spreads a NaN or infinite weight to every image; skipping the unlit
    pixels would not, so such weights are refused."""
    X = tutorial.scale_images(mnist.test_images[:10], "float32", xp=np)
    lit = fused.prepare(X)
    for bad in (np.nan, np.inf):
        W = tutorial.init_weights(0, "float32")
        W[700, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            fused.classify(W, lit)
    with pytest.raises(ValueError, match="dtype"):
        fused.classify(tutorial.init_weights(0, "float64"), lit)
    with pytest.raises(ValueError, match=r"\(784, 10\)"):  # rows the listed pixels would overrun
        fused.classify(tutorial.init_weights(0, "float32", shape=(700, 10)), lit)
    with pytest.raises(ValueError, match="labels"):
        fused.evaluate(tutorial.init_weights(0, "float32"), lit, mnist.test_labels[:9])


@pytest.mark.parametrize("backend, kernel, batch_size",
                         kernel_params([("fused", 1), ("array", 1), ("fused", 100),
                                        ("array", 100)]), indirect=["backend"])
def test_training_evaluates_with_the_fused_pass_only_beside_it(backend, mnist, kernel,
                                                               batch_size):
    """Evaluation at the checkpoints is fused beside a fused training pass, where the backend
    has fused inference, and gives the dense product's curve either way."""
    config = dict(kernel=kernel, batch_size=batch_size)
    fused_training = kernel == "fused"
    try:
        kernels.inference_pass(backend)
        has_inference = True
    except BackendUnavailable:
        has_inference = False
    data = to_device_data(backend, mnist, "float64", limit=2000)
    result = train(data, TrainConfig(checkpoints=(0, 500, 2000), **config))
    assert result.evaluation == ("fused" if fused_training and has_inference else "array")
    reference = train(data, TrainConfig(checkpoints=(0, 500, 2000),
                                        **{**config, "kernel": "array"}))
    assert reference.evaluation == "array"
    assert [c.accuracy for c in result.curve] == [c.accuracy for c in reference.curve]
    for ours, theirs in zip(result.curve, reference.curve):
        assert ours.mse == pytest.approx(theirs.mse, rel=1e-9)
