"""The compiled CPU passes of convolutions and pooling (``kernels.conv_pass``) and the block of a
convolution, its pooling and relu (``kernels.layer_blocks``) against the array path they stand
in for (``model/layers.py``): the same values to the last bit, at the `fast` recipe's shapes
and at odd ones (padding, odd sizes, kernels wider than the padding, ties in pooling)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mnist_gpu import kernels
from mnist_gpu.backend import get_backend
from mnist_gpu.model import layers, network
from mnist_gpu.model.architecture import parse_network
from mnist_gpu.model.layers import ConvShape
from mnist_gpu.training import MLPConfig, to_device_data, train_mlp

pytest.importorskip("numba", reason="the compiled passes need Numba")

RUN = ("conv", "pool", "relu")  # the run of layers the CPU passes as one block

SHAPES = [  # (images, height, width, channels, k, pad, filters)
    (3, 28, 28, 1, 5, 0, 24),   # the recipe's first convolution (a few images)
    (3, 12, 12, 24, 3, 0, 32),  # its second
    (2, 7, 9, 3, 3, 1, 5),      # padded, odd sizes: pooling drops a row and a column
    (2, 5, 6, 2, 4, 2, 3),      # padding near the kernel's size, an even kernel
    (1, 6, 6, 2, 5, 4, 2),      # windows reaching across the image into the padding
    (1, 4, 5, 2, 2, 3, 2),      # padding wider than the kernel: windows wholly in it
]


@pytest.fixture
def conv():
    found = kernels.conv_pass(get_backend("numpy"))
    assert found is not None
    return found


def _case(shape, dtype, seed=0):
    n, h, w, c, k, pad, f = shape
    rng = np.random.default_rng(seed)
    s = ConvShape(h, w, c, k, pad)
    x = rng.normal(size=(n, h, w, c)).astype(dtype)
    return s, x, rng.normal(size=(k * k * c, f)).astype(dtype), rng.normal(size=f).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
def test_convolution_forward_and_backward_are_the_array_paths(conv, shape, dtype):
    s, x, W, b = _case(shape, dtype)
    want, want_cols = layers.conv_forward(x, W, b, s, s.host_indices(), np)
    got, cols = conv.conv_forward(x, W, b, s)
    np.testing.assert_array_equal(cols, want_cols)
    np.testing.assert_array_equal(got, want)
    grad = np.random.default_rng(1).normal(size=want.shape).astype(dtype)
    for need_input in (True, False):
        expected = layers.conv_backward(grad, x, want_cols, W, s, np, need_input)
        for a, e in zip(conv.conv_backward(grad, x, cols, W, s, need_input=need_input),
                        expected):
            if e is None:
                assert a is None
            else:
                np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
def test_pooling_splits_ties_as_the_array_path(conv, shape, dtype):
    s, x, W, b = _case(shape, dtype)
    z = layers.conv_forward(x, W, b, s, s.host_indices(), np)[0]
    z = np.round(z)                           # many equal corners
    z[:, :2, :2, :] = 1.5                     # a window of four equal corners
    want, windows = layers.pool_forward(z, np)
    got, corners = conv.pool_forward(z)
    np.testing.assert_array_equal(got, want)
    grad = np.random.default_rng(2).normal(size=want.shape).astype(dtype)
    np.testing.assert_array_equal(conv.pool_backward(grad, corners, got, z.shape),
                                  layers.pool_backward(grad, windows, want, z.shape, np))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
def test_the_fused_block_is_convolution_pooling_and_relu(conv, shape, dtype):
    s, x, W, b = _case(shape, dtype)
    x[:, : x.shape[1] // 2] = 0  # blank rows: equal corners, and maxima the relu cuts
    z, cols = layers.conv_forward(x, W, b, s, s.host_indices(), np)
    pooled_z, windows = layers.pool_forward(z, np)
    want = np.maximum(pooled_z, 0)
    got, saved = conv.conv_pool_relu_forward(x, W, b, s)
    np.testing.assert_array_equal(got, want)
    grad = np.random.default_rng(3).normal(size=want.shape).astype(dtype)
    d_z = layers.pool_backward(grad * (want > 0), windows, pooled_z, z.shape, np)
    expected = layers.conv_backward(d_z, x, cols, W, s, np)
    d_kernels, d_bias, d_x = conv.conv_pool_relu_backward(grad, saved, W)
    np.testing.assert_array_equal(d_kernels, expected[0])
    np.testing.assert_array_equal(d_x, expected[2])
    np.testing.assert_array_equal(d_bias, expected[1])  # summed in NumPy's order
    assert conv.conv_pool_relu_backward(grad, saved, W, need_input=False)[2] is None


def test_buffers_are_reused_and_a_new_shape_gets_its_own(conv):
    s, x, W, b = _case(SHAPES[1], "float32")
    conv.conv_pool_relu_forward(x, W, b, s)
    first = conv.buffers["cols"]
    conv.conv_pool_relu_forward(x, W, b, s)
    assert conv.buffers["cols"] is first
    conv.conv_pool_relu_forward(x[:1], W, b, s)
    assert conv.buffers["cols"].shape[0] == first.shape[0] // 3


def test_a_backend_without_compiled_passes_gets_none():
    class Other:
        name = "array_api_strict"
    assert kernels.conv_pass(Other()) is None
    assert kernels.layer_passes(Other(), ["conv", "pool"], "float32") == {}
    # A network without convolutions or pooling gets none either (and imports no Numba).
    assert kernels.layer_passes(get_backend("numpy"), ["dense", "relu"], "float32") == {}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_passes_are_ready_for_the_dtype_before_a_run_starts(dtype):
    # Compiled (or loaded) when the network's passes are made, so that no training clock counts
    # the compilation: in a fresh process, every loop then has a signature in the run's dtype.
    code = ("from mnist_gpu import kernels\n"
            "from mnist_gpu.backend import get_backend\n"
            "from mnist_gpu.kernels import cpu_conv_loops as loops\n"
            f"passes = kernels.layer_passes(get_backend('numpy'), ['conv', 'pool'], '{dtype}')\n"
            "print(sorted(passes), [any('{dtype}' in str(s) for s in loop.signatures)\n"
            "    for loop in (loops.im2col, loops.col2im, loops.pool_relu, loops.unpool_relu)])")
    done = subprocess.run([sys.executable, "-c", code.replace("{dtype}", dtype)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['conv', 'pool'] [True, True, True, True]"


@pytest.mark.parametrize("blocks", [True, False], ids=["blocks", "passes-alone"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_with_the_compiled_passes_gives_the_array_paths_weights(mnist, monkeypatch,
                                                                         dtype, blocks):
    """A CNN of mixed kernel sizes (5x5, then 3x3 padded, an odd image pooled), trained for two
    epochs (the evaluation between them uses the passes too) with the compiled passes (each
    convolution, pooling and relu as one block, or layer by layer) and without any."""
    small = type(mnist)(mnist.train_images[:320], mnist.train_labels[:320],
                        mnist.test_images[:100], mnist.test_labels[:100])
    net = parse_network("conv4x5+bias,pool2,relu,conv6x3+same+bias,pool2,relu,dense16+bias,"
                        "relu,dense10+bias", "ce")
    config = MLPConfig(net, lr=0.01, batch_size=64, epochs=2, optimizer="adam",
                       settings={"betas": (0.7, 0.9)}, schedule="one-cycle-lr")
    numpy, made = get_backend("numpy"), []
    original, original_block = kernels.CONV["numpy"], kernels.BLOCKS["numpy"][RUN]

    class Counted:  # the compiled pass, counting the functions the layers take from it
        def __init__(self, backend):
            self.inner, self.taken = original(backend), set()
            made.append(self)

        def __getattr__(self, name):
            self.taken.add(name)
            return getattr(self.inner, name)

    blocks_made = []

    def counted_block(backend):
        block = original_block(backend)

        def make(layers):
            blocks_made.append(layers[0].spec())
            return block(layers)
        return make

    monkeypatch.setitem(kernels.CONV, "numpy", Counted)
    monkeypatch.setitem(kernels.BLOCKS, "numpy", {RUN: counted_block} if blocks else {})
    compiled = train_mlp(to_device_data(numpy, small, dtype), config)
    if blocks:  # both convolutions as blocks, in training and in evaluation
        assert sorted(set(blocks_made)) == ["conv4x5+bias", "conv6x3+same+bias"]
    else:
        assert not blocks_made and {"conv_forward", "conv_backward", "pool_forward",
                                    "pool_backward"} <= set().union(*(p.taken for p in made))
    monkeypatch.delitem(kernels.CONV, "numpy")
    monkeypatch.delitem(kernels.BLOCKS, "numpy")
    assert kernels.layer_passes(numpy, ["conv", "pool"], dtype) == {}
    assert kernels.layer_blocks(numpy, ["conv", "pool", "relu"]) == {}
    reference = train_mlp(to_device_data(numpy, small, dtype), config)
    assert compiled.curve == reference.curve
    for got, want in zip(network.flat(compiled.params), network.flat(reference.params)):
        np.testing.assert_array_equal(got, want)


def test_blocks_take_only_a_convolution_pooled_then_relu():
    numpy = get_backend("numpy")
    assert set(kernels.layer_blocks(numpy, ["conv", "pool", "relu", "dense"])) == {RUN}
    for names in (["conv", "relu", "pool"], ["conv", "pool", "dropout", "relu"], ["dense"]):
        assert kernels.layer_blocks(numpy, names) == {}
