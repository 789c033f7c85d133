"""Convolutions, pooling and dropout: finite-difference gradients in float64, a 1x1 convolution as
a dense layer per pixel, a small CNN's weights the same on every backend, presets, and a saved
CNN that loads and predicts a picture."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compared_with_numpy

from mnist_gpu import cli
from mnist_gpu.cli.args import apply_preset
from mnist_gpu.cli.parser import build_parser
from mnist_gpu.model import layers, network
from mnist_gpu.model.architecture import Architecture, parse_network
from mnist_gpu.model.layer import Context
from mnist_gpu.model.presets import PRESETS
from mnist_gpu.training import MLPConfig, train_mlp
from mnist_gpu.training import to_device_data


def _numeric_check(params, X, Y, arch, ctx, rng, probes=4):
    """The largest relative gap between backpropagation and central differences. ``ctx()``
    gives each pass the same dropout masks: the function differentiated is deterministic."""
    loss, grads = network.gradients(arch, params, X, Y, ctx())
    worst = 0.0
    for layer in range(len(params)):
        for array, grad in zip(params[layer], grads[layer]):
            for _ in range(probes):
                index = tuple(int(rng.integers(0, d)) for d in array.shape)
                kept = array[index]
                array[index] = kept + 1e-6
                up, _ = network.gradients(arch, params, X, Y, ctx())
                array[index] = kept - 1e-6
                down, _ = network.gradients(arch, params, X, Y, ctx())
                array[index] = kept
                numeric = (up - down) / 2e-6
                worst = max(worst, abs(numeric - grad[index])
                            / max(1e-8, abs(numeric) + abs(grad[index])))
    return worst


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("channels", [(2,), (3, 4)])
def test_convolution_pooling_and_dropout_gradients(numpy_backend, padding, k, channels):
    rng = np.random.default_rng(k * 10 + len(channels))
    arch = Architecture(hidden=(6,), bias=True, loss="ce", conv=channels, conv_size=k,
                        padding=padding, dropout=0.3).network()
    params = [[p + (0.01 if p.ndim == 2 else 0.1) * rng.standard_normal(p.shape) for p in layer]
              for layer in network.init_params(arch, 1, "float64")]
    X = rng.random((3, 784))
    Y = np.eye(10)[rng.integers(0, 10, 3)]
    constants = {}

    def ctx():
        return Context(numpy_backend, "float64", np.random.default_rng(5), training=True,
                       constants=constants)
    assert _numeric_check(params, X, Y, arch, ctx, rng) < 1e-6


@pytest.mark.parametrize("k,pad", [(1, 0), (3, 0), (3, 1), (5, 2), (5, 0), (5, 4)])
def test_col2im_is_the_adjoint_of_im2col(numpy_backend, k, pad):
    # <im2col(x), C> = <x, col2im(C)> for every x and C is what makes col2im the exact gradient
    # of im2col: for valid, same and full (k - 1) padding, on an image that is not square.
    rng = np.random.default_rng(k + pad)
    shape = layers.ConvShape(7, 6, 3, k, pad)
    x = rng.standard_normal((2, 7, 6, 3))
    patches = rng.standard_normal((2 * shape.out_height * shape.out_width, k * k * 3))
    cols = layers.im2col(x, shape, numpy_backend.to_device(shape.host_indices()), np)
    back = layers.col2im(patches, x, shape, np)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * patches), np.sum(x * back), rtol=1e-12)


def test_pooling_gradient_goes_to_the_maximum_and_splits_ties():
    x = np.array([[1.0, 5.0], [2.0, 5.0]]).reshape(1, 2, 2, 1)
    out, windows = layers.pool_forward(x, np)
    assert out.reshape(-1).tolist() == [5.0]
    grad = layers.pool_backward(np.ones_like(out), windows, out, x.shape, np)
    assert grad.reshape(-1).tolist() == [0.0, 0.5, 0.0, 0.5]
    # An odd row and column are dropped, and get no gradient.
    odd = np.arange(9.0).reshape(1, 3, 3, 1)
    out, windows = layers.pool_forward(odd, np)
    assert out.reshape(-1).tolist() == [4.0]
    grad = layers.pool_backward(np.ones_like(out), windows, out, odd.shape, np)
    assert grad.reshape(3, 3).tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_a_1x1_convolution_is_a_dense_layer_per_pixel(numpy_backend):
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 4, 3))
    W, b = rng.random((3, 7)), rng.random(7)
    shape = layers.ConvShape(5, 4, 3, 1, 0)
    out, _ = layers.conv_forward(x, W, b, shape, numpy_backend.to_device(shape.host_indices()), np)
    np.testing.assert_allclose(out, (x.reshape(-1, 3) @ W + b).reshape(2, 5, 4, 7), rtol=1e-13)


def test_same_padding_keeps_the_size_and_valid_shrinks_it():
    same = Architecture(conv=(4,), conv_size=5, padding="same").network()
    assert same.layers[-1].inputs == 14 * 14 * 4
    assert Architecture(conv=(4, 8), conv_size=5).network().layers[-1].inputs == 4 * 4 * 8
    mixed = parse_network("conv4x5,pool2,relu,conv8x3+same,pool2,relu,dense10")
    assert mixed.layers[3].out_shape == (12, 12, 8) and mixed.layers[-1].inputs == 6 * 6 * 8
    with pytest.raises(ValueError, match="odd"):
        Architecture(conv=(4,), conv_size=4, padding="same")
    with pytest.raises(ValueError, match="odd"):
        parse_network("conv4x4+same,dense10")
    with pytest.raises(ValueError, match="leave no image"):
        Architecture(conv=(1, 1, 1, 1, 1), conv_size=3).network()


@compared_with_numpy
def test_a_small_cnn_trains_the_same_on_every_backend(backend, numpy_backend, mnist):
    small = type(mnist)(mnist.train_images[:256], mnist.train_labels[:256],
                        mnist.test_images[:200], mnist.test_labels[:200])
    # Kernels of 5x5 and then 3x3, padded and not.
    arch = parse_network("conv4x5+bias,pool2,relu,conv8x3+same+bias,pool2,relu,dropout0.2,"
                         "dense16+bias,relu,dropout0.2,dense10+bias", "ce")
    config = MLPConfig(arch, lr=0.05, batch_size=64, epochs=1, settings={"momentum": 0.9},
                       shuffle=True)
    got = train_mlp(to_device_data(backend, small, "float64"), config)
    want = train_mlp(to_device_data(numpy_backend, small, "float64"), config)
    for p, p0 in zip(network.flat(got.params), network.flat(want.params)):
        np.testing.assert_allclose(p, p0, rtol=1e-10, atol=1e-12)


def test_presets_fill_in_what_the_command_line_did_not_give(capsys):
    parser = build_parser()
    argv = ["train", "--preset", "mlp", "--epochs", "2"]
    args = apply_preset(parser.parse_args(argv), argv)
    assert args.layers == "dense256+bias,relu,dense10+bias" and args.loss == "ce"
    assert args.weight_decay == 5e-4
    assert args.epochs == 2  # given: kept
    argv = ["train", "--preset", "cnn", "--layers", "conv8x3,pool2,relu,dense10"]
    args = apply_preset(parser.parse_args(argv), argv)
    assert args.layers == "conv8x3,pool2,relu,dense10" and args.momentum == 0.9
    argv = ["train", "--preset", "cnn", "--conv-size", "3"]
    with pytest.raises(cli.UsageError, match="change it with --layers"):
        apply_preset(parser.parse_args(argv), argv)
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--preset", "list"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS) and "measured:" in out
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--preset", "nonsense"])
    assert exit.value.code == 2 and "choose from" in capsys.readouterr().err


def test_a_saved_cnn_loads_and_predicts_a_picture(mnist, mnist_dir_path, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "cnn.npz"
    assert cli.main(["train", "--conv", "4,8", "--conv-size", "3", "--hidden", "16", "--bias",
                     "--loss", "ce", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "64",
                     "--limit", "2000", "--dropout", "0.1", "--backend", "numpy", "--data-dir",
                     str(mnist_dir_path), "--offline", "--quiet", "--save", str(path)]) == 0
    assert "conv4x3+bias,pool2,relu,conv8x3+bias" in capsys.readouterr().out
    picture = tmp_path / "digit.png"
    Image.fromarray(255 - np.pad(mnist.test_images[0].reshape(28, 28), 10)).resize(
        (96, 96)).save(picture)
    assert cli.main(["predict", str(picture), "--weights", str(path)]) == 0
    assert "digit: " in capsys.readouterr().out
    assert cli.main(["eval", "--weights", str(path), "--backend", "numpy", "--data-dir",
                     str(mnist_dir_path), "--offline"]) == 0
    assert "conv4x3+bias,pool2,relu,conv8x3+bias" in capsys.readouterr().out
