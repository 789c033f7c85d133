"""Layers and the networks they make: the words that name them, a layer type defined here,
outside the package, that trains through the public API, the older settings as the same list,
and each layer's PyTorch counterpart computing what it computes."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.model import network, presets
from mnist_gpu.model.architecture import (
    LAYERS, Architecture, parse_layers, parse_network, register_layer,
)
from mnist_gpu.model.layer import Context, Layer
from mnist_gpu.training import MLPConfig, to_device_data, train_mlp


class Scale(Layer):
    """``scale``: each feature times a learnt factor of its own, starting at 1."""

    name = "scale"

    def param_shapes(self):
        return [self.in_shape]

    def init(self, rng, dtype, he=False):
        return [np.ones(self.in_shape, dtype=dtype)]

    def forward(self, params, x, xp, ctx):
        return x * params[0], x

    def backward(self, params, x, grad, xp, ctx, need_input=True):
        return [xp.sum(x * grad, axis=0)], grad * params[0] if need_input else None

    def products(self, batch, need_input=True):
        return []

    def torch(self, nn):
        raise NotImplementedError


@pytest.fixture
def scale_layer():
    register_layer(Scale)
    yield Scale
    del LAYERS["scale"]


def test_a_layer_defined_outside_the_package_trains(scale_layer, numpy_backend, mnist):
    net = parse_network("dense32+bias,scale,relu,dense10+bias", "ce")
    assert isinstance(net.layers[1], Scale) and net.layers[1].in_shape == (32,)
    data = to_device_data(numpy_backend, mnist, "float64", limit=2000)
    result = train_mlp(data, MLPConfig(net, lr=0.1, batch_size=50, epochs=2,
                                       settings={"momentum": 0.9}))
    factors = result.params[1][0]
    assert factors.shape == (32,) and not np.allclose(factors, 1.0)  # it learnt
    assert result.final_accuracy > 0.8


def test_its_gradient_matches_finite_differences(scale_layer, numpy_backend):
    net = parse_network("dense6+bias,scale,tanh,dense10+bias", "ce")
    rng = np.random.default_rng(0)
    params = [[p + 0.1 * rng.standard_normal(p.shape) for p in layer]
              for layer in network.init_params(net, 0, "float64")]
    X, Y = rng.random((4, 784)), np.eye(10)[rng.integers(0, 10, 4)]
    ctx = Context(numpy_backend, "float64")
    _, grads = network.gradients(net, params, X, Y, ctx)
    for index in range(6):
        kept = params[1][0][index]
        params[1][0][index] = kept + 1e-6
        up = float(network.gradients(net, params, X, Y, ctx)[0])
        params[1][0][index] = kept - 1e-6
        down = float(network.gradients(net, params, X, Y, ctx)[0])
        params[1][0][index] = kept
        assert grads[1][0][index] == pytest.approx((up - down) / 2e-6, rel=1e-6, abs=1e-9)


def test_the_command_line_trains_saves_and_evaluates_it(scale_layer, mnist_dir_path, tmp_path,
                                                        capsys):
    path = tmp_path / "scaled.npz"
    data = ["--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline"]
    assert cli.main(["train", "--layers", "dense16,scale,relu,dense10", "--loss", "ce",
                     "--batch-size", "50", "--limit", "1000", "--lr", "0.1", "--quiet",
                     "--save", str(path), *data]) == 0
    assert "dense16,scale,relu,dense10; softmax cross-entropy" in capsys.readouterr().out
    assert cli.main(["eval", "--weights", str(path), *data]) == 0
    assert "dense16,scale,relu,dense10" in capsys.readouterr().out


@pytest.mark.parametrize("word", ["dense10", "dense256+bias", "conv32x5", "conv8x3+same+bias",
                                  "pool2", "relu", "sigmoid", "tanh", "dropout0.25"])
def test_every_word_reads_back_as_itself(word):
    assert [layer.spec() for layer in parse_layers(word)] == [word]


@pytest.mark.parametrize("spec, says", [
    ("", "empty layer list"), ("dense", "expected 1 number"), ("conv32", "expected 2"),
    ("flatten4", "names no layer"), ("dense10+same", "takes no option"),
    ("conv8x4+same,dense10", "odd kernel"), ("pool3,dense10", "only 2x2"),
    ("dropout1,dense10", "dropout must lie in"), ("dense256", "end with dense10"),
    ("dense64,conv8x3,dense10", "before any dense layer"),
    ("conv8x5,pool2,conv8x5,pool2,conv8x5,dense10", "leaves no image"),
])
def test_a_wrong_layer_list_says_what_is_wrong(spec, says):
    with pytest.raises(ValueError, match=says):
        parse_network(spec)


def test_a_layer_name_is_taken_once(scale_layer):
    class Other(Scale):
        pass

    with pytest.raises(ValueError, match="exists already"):
        register_layer(Other)


def test_the_older_settings_are_the_same_list():
    older = Architecture(hidden=(128,), bias=True, loss="ce", conv=(32, 64), conv_size=5,
                         dropout=0.25)
    assert older.network() == presets.network("cnn")
    assert Architecture().network().is_tutorial
    assert Architecture(hidden=(8,), activation="tanh").network().spec() == \
        "dense8,tanh,dense10"


def test_mixed_kernel_sizes_from_the_command_line(numpy_backend, mnist_dir_path, capsys):
    spec = "conv4x5,pool2,relu,conv6x3,pool2,relu,dense10"
    assert cli.main(["train", "--layers", spec, "--batch-size", "50", "--limit", "200",
                     "--lr", "0.05", "--quiet", "--backend", "numpy", "--data-dir",
                     str(mnist_dir_path), "--offline"]) == 0
    assert spec in capsys.readouterr().out
    assert cli.main(["train", "--layers", spec, "--hidden", "8", "--backend", "numpy"]) == 2
    assert "--layers gives the whole network: drop --hidden" in capsys.readouterr().err


def test_each_layers_torch_counterpart_computes_the_same(numpy_backend):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    net = parse_network("conv3x5+bias,pool2,relu,conv4x3+same+bias,pool2,tanh,dropout0.5,"
                        "dense8+bias,sigmoid,dense10+bias", "ce")
    params = network.init_params(net, 0, "float64")
    model = net.torch(torch.nn).double().eval()
    ours = [m for m in model if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        for module, (i, layer) in zip(ours, net.parametrised()):
            W = params[i][0]
            if isinstance(module, torch.nn.Conv2d):  # (k * k * C, F), in (dy, dx, c) order
                k, c = layer.k, layer.in_shape[2]
                W = W.reshape(k, k, c, -1).transpose(3, 2, 0, 1)
            elif len(layer.in_shape) == 3:  # features flattened (h, w, c); PyTorch's (c, h, w)
                h, w, c = layer.in_shape
                W = W.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1).T
            else:
                W = W.T
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            module.bias.copy_(torch.from_numpy(params[i][1]))
        X = np.random.default_rng(1).random((5, 784))
        want = model(torch.from_numpy(X).reshape(5, 1, 28, 28)).numpy()
    got = network.logits(net, params, X, Context(numpy_backend, "float64"))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
