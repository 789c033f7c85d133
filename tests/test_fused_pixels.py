"""The fused CPU passes on the uint8 pixels: lists of 3 bytes per lit pixel, each pixel scaled as it
is read, with the very bits of the dense copy they no longer need."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from mnist_gpu import get_backend, to_device_data, train  # noqa: E402
from mnist_gpu.kernels.cpu import FusedCPU  # noqa: E402
from mnist_gpu.model import tutorial  # noqa: E402
from mnist_gpu.training import TrainConfig  # noqa: E402

DTYPES = ("float32", "float64")


def _both_lists(images, dtype):
    fused = FusedCPU()
    return fused, fused.prepare(images), fused.prepare(
        tutorial.scale_images(images, dtype, xp=np))


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_lists_train_bit_for_bit_as_the_scaled_images(mnist, dtype):
    images, labels = mnist.train_images[:3000], mnist.train_labels[:3000]
    fused, pixels, scaled = _both_lists(images, dtype)
    assert pixels.values.dtype == np.uint8 and scaled.values.dtype == dtype
    np.testing.assert_array_equal(pixels.indptr, scaled.indptr)
    np.testing.assert_array_equal(pixels.indices, scaled.indices)
    order = np.random.default_rng(1).permutation(3000)
    for alphas, batch, use_order in (([0.01], 1, None), ([0.02], 100, order),
                                     ([0.001, 0.01, 0.03], 1, order), ([0.01, 0.02], 250, None)):
        w0 = np.concatenate([tutorial.init_weights(s, dtype) for s in range(len(alphas))], axis=1)
        a, b = w0.copy(), w0.copy()
        fused.train(a, pixels, labels, alphas, batch, 0, 3000, use_order)
        fused.train(b, scaled, labels, alphas, batch, 0, 3000, use_order)
        np.testing.assert_array_equal(a, b)
    W = np.ascontiguousarray(a[:, :10])
    test_pixels, test_scaled = fused.prepare(mnist.test_images), fused.prepare(
        tutorial.scale_images(mnist.test_images, dtype, xp=np))
    np.testing.assert_array_equal(fused.classify(W, test_pixels), fused.classify(W, test_scaled))
    ours, theirs = (fused.evaluate(W, lit, mnist.test_labels) for lit in (test_pixels,
                                                                            test_scaled))
    assert ours[0] == theirs[0] and ours[1] == theirs[1] and ours[1].dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_pixel_value_is_scaled_as_scale_images_scales_it(dtype):
    # Images holding each of the 256 values, in random places: one step per image makes every
    # weight it touches depend on the value's exact bits.
    rng = np.random.default_rng(0)
    images = np.zeros((256, 784), dtype=np.uint8)
    for value in range(256):
        images[value, rng.choice(784, 40, replace=False)] = value
    labels = rng.integers(0, 10, 256).astype(np.uint8)
    fused, pixels, scaled = _both_lists(images, dtype)
    a, b = (tutorial.init_weights(3, dtype) for _ in range(2))
    fused.train(a, pixels, labels, [0.5], 1, 0, 256)
    fused.train(b, scaled, labels, [0.5], 1, 0, 256)
    np.testing.assert_array_equal(a, b)


def test_the_lists_are_compact_and_read_only(mnist):
    lit = FusedCPU().prepare(mnist.test_images)
    assert lit.indices.dtype == np.int16 and lit.values.dtype == np.uint8
    assert not any(a.flags.writeable for a in (lit.indptr, lit.indices, lit.values))
    with pytest.raises(ValueError, match="the lists index at most"):
        FusedCPU().prepare(np.zeros((1, 2**15 + 1), dtype=np.uint8))


def test_weights_of_another_dtype_are_refused_for_pixel_lists(mnist):
    lit = FusedCPU().prepare(mnist.test_images[:10])
    with pytest.raises(ValueError, match="weights in the data's dtype"):
        FusedCPU().classify(np.zeros((784, 10), np.float16), lit)


def test_the_fused_path_makes_no_dense_copy_and_the_array_path_makes_it_once(mnist):
    data = to_device_data(get_backend("numpy"), mnist, limit=2000)
    held = data.resident_bytes
    fused = train(data, TrainConfig())
    assert fused.kernel == "fused" and data.resident_bytes == held  # neither image set scaled
    array = train(data, TrainConfig(kernel="array"))
    assert data.resident_bytes == held + (2000 + 10_000) * 784 * 4
    assert data.train_x is data.train_x
    np.testing.assert_array_equal(
        data.train_x, tutorial.scale_images(mnist.train_images[:2000], np.float32, xp=np))
    np.testing.assert_allclose(fused.weights, array.weights, rtol=0, atol=1e-4)
