"""Pictures rendered headless and checked; your own digit through the MNIST-style pipeline."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import data_flags, run_cli, saved_cnn

from mnist_gpu import cli
from mnist_gpu.backend import get_backend
from mnist_gpu.model import network, saved
from mnist_gpu.model.architecture import parse_network
from mnist_gpu.model.layer import Context
from mnist_gpu.viz import figures as visual
from mnist_gpu.training import MLPConfig, train_mlp
from mnist_gpu.training import to_device_data
from mnist_gpu.io.weights import save_weights


def assert_png(path, size):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape == (size[1], size[0])
    assert image.std() > 5  # something was drawn


@pytest.fixture(scope="module")
def small_mlp(mnist, tmp_path_factory):
    """A quickly trained 784-64-10 network saved as train --save would."""
    from mnist_gpu.backend import get_backend

    data = to_device_data(get_backend("numpy"), mnist, "float32", limit=12000)
    result = train_mlp(data, MLPConfig(parse_network("dense64+bias,relu,dense10+bias", "ce"),
                                       lr=0.1, batch_size=64, epochs=2,
                                       settings={"momentum": 0.9}, shuffle=True))
    path = tmp_path_factory.mktemp("model") / "mlp.npz"
    arrays = network.params_to_arrays(result.params)
    save_weights(path, arrays.pop("W0"), result.to_json(), **arrays)
    return path, result


def test_curve_command_draws_the_seed_band(mnist_dir_path, tmp_path, capsys):
    png = tmp_path / "curve.png"
    status = cli.main(["curve", "--backend", "numpy", "--seeds", "2", "--checkpoints",
                       "0,100,1k,5k", "--compare-batch-size", "50", "--plot", str(png),
                       "--json", "--data-dir", str(mnist_dir_path), "--offline", "--quiet"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    per_image = report["series"]["per-image"]
    assert per_image["images_seen"][:4] == [0, 100, 1000, 5000]
    assert len(per_image["per_seed"]) == 2
    assert all(lo <= med <= hi for lo, med, hi in zip(per_image["min"], per_image["median"],
                                                      per_image["max"]))
    assert "mini-batch 50" in report["series"]
    assert_png(png, (800, 500))


def test_eval_prints_and_draws(small_mlp, mnist_dir_path, tmp_path, capsys):
    path, result = small_mlp
    status = cli.main(["eval", "--weights", str(path), "--backend", "numpy", "--json",
                       "--plot", str(tmp_path / "cm.png"), "--weight-map", str(tmp_path / "w.png"),
                       "--data-dir", str(mnist_dir_path), "--offline"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(result.final_accuracy)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10000
    assert len(report["per_class_accuracy"]) == 10
    assert_png(tmp_path / "cm.png", (650, 550))
    assert_png(tmp_path / "w.png", (1120, 1320))


def test_tutorial_weight_map(tmp_path):
    W = np.random.default_rng(0).random((784, 10))
    visual.save_png(visual.plot_weight_maps(W), tmp_path / "maps.png")
    assert_png(tmp_path / "maps.png", (1400, 200))


def test_weight_maps_are_drawn_as_the_images_see_them(mnist):
    """The tutorial's trained weights keep much of their random start; drawn in the images' main
    directions, each output's map looks like its digit: it correlates best with the mean image of
    its own class (the raw weights do not, for most digits)."""
    from mnist_gpu.backend import get_backend
    from mnist_gpu.training import TrainConfig, to_device_data, train

    W = train(to_device_data(get_backend("numpy"), mnist), TrainConfig()).weights
    directions = visual.image_directions(mnist.train_images)
    assert directions.shape == (784, visual.MAP_DIRECTIONS)
    np.testing.assert_allclose(directions.T @ directions, np.eye(visual.MAP_DIRECTIONS),
                               atol=1e-9)
    images = mnist.train_images / 255
    means = np.stack([images[mnist.train_labels == d].mean(axis=0) for d in range(10)])
    centred = means - means.mean(axis=0)

    def own_class_matches(maps):
        corr = np.corrcoef(np.vstack([maps.T, centred]))[:10, 10:]
        return int((corr.argmax(axis=1) == np.arange(10)).sum())

    seen = directions @ (directions.T @ W)
    assert own_class_matches(seen) >= 8
    assert own_class_matches(seen) > own_class_matches(W)


def test_confusion_matrix_counts():
    matrix = visual.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), n=3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [0, 0, 1]])


@pytest.mark.parametrize("style", ["light on dark", "dark on light"])
def test_predict_on_mnist_images_written_as_png(small_mlp, mnist, tmp_path, capsys, style):
    path, result = small_mlp
    arch, params = saved.load_model(path)
    images = mnist.test_images[:60]
    expected = network.classify(arch, params, images / np.float32(255),
                                Context(get_backend("numpy"), "float32"))
    agree = 0
    for index, image in enumerate(images.reshape(-1, 28, 28)):
        picture = image if style == "light on dark" else 255 - image
        # Scaled up 4x with a margin, as a scanned or drawn digit would be.
        file = tmp_path / f"{index}.png"
        Image.fromarray(np.pad(picture, 10, constant_values=int(picture[0, 0]))).resize(
            (192, 192), Image.Resampling.BILINEAR).save(file)
        assert cli.main(["predict", str(file), "--weights", str(path),
                         "--show", str(tmp_path / "seen.png")]) == 0
        out = capsys.readouterr().out
        agree += int(out.split("digit: ")[1].split()[0]) == expected[index]
    assert agree >= 0.9 * len(images), agree
    seen = np.asarray(Image.open(tmp_path / "seen.png"))
    assert seen.shape == (280, 280)  # each of the 28x28 pixels drawn 10x10, to be seen
    assert np.array_equal(seen, np.kron(seen[::10, ::10], np.ones((10, 10), np.uint8)))
    seen = seen[::10, ::10]
    assert seen.max() > 200 and seen[0].max() < 50  # light on black


def test_predict_refuses_a_blank_image_and_bad_weights(small_mlp, tmp_path, capsys):
    path, _ = small_mlp
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "blank.png")
    assert cli.main(["predict", str(tmp_path / "blank.png"), "--weights", str(path)]) == 2
    assert "no digit found" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((10, 784)))
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "digit.png")
    assert cli.main(["predict", str(tmp_path / "digit.png"), "--weights",
                     str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shape" in err


@pytest.mark.parametrize("argv", [["bench", "--plot", "b.png"], ["curve", "--plot", "c.png"],
                                  ["eval", "--weights", "w.npz", "--plot", "m.png"]])
def test_a_missing_plot_extra_is_named_before_any_work(argv, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert cli.main([*argv, "--offline", "--data-dir", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'mnist-gpu[plot]'" in err


def test_a_cnn_weight_map_draws_its_first_kernels(mnist_dir_path, tmp_path, capsys):
    weights = saved_cnn(tmp_path / "cnn.npz")
    picture, confusion = tmp_path / "kernels.png", tmp_path / "confusion.png"
    status, out, err = run_cli(capsys, "eval", "--weights", weights, "--backend", "numpy",
                            "--weight-map", picture, "--plot", confusion,
                            *data_flags(mnist_dir_path))
    assert status == 0 and "Traceback" not in err, err
    assert f"wrote {picture} (the first convolution's 4 kernels)" in out
    assert f"wrote {confusion} (the confusion matrix)" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conv_kernels_are_drawn_as_small_images():
    from mnist_gpu.viz.figures import plot_conv_kernels

    W = np.arange(25 * 6, dtype=np.float32).reshape(25, 6)
    figure = plot_conv_kernels(W, 5)
    shown = [ax.images[0].get_array() for ax in figure.axes if ax.images]
    assert len(shown) == 6 and all(image.shape == (5, 5) for image in shown)
    np.testing.assert_array_equal(shown[2], W[:, 2].reshape(5, 5))  # rows in (dy, dx) order
