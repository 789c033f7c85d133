"""How the library behaves in a notebook, without one: results and curves shown as tables, figures
that IPython shows as pictures, the presets as configurations, progress bars through tqdm.auto."""

from __future__ import annotations

import io
import json
import pickle
import sys

import numpy as np
import pytest

import mnist_gpu as mg
from mnist_gpu.cli import common
from mnist_gpu.cli.args import apply_preset, training_config
from mnist_gpu.cli.parser import build_parser
from mnist_gpu.model.presets import PRESETS
from mnist_gpu.sweep import ModelResult, SweepResult
from mnist_gpu.viz import figures

POINTS = [mg.Checkpoint(0, 0.0909, 2933.27), mg.Checkpoint(100, 0.1584, 16.09),
          mg.Checkpoint(60_000, 0.6815, 0.0905)]


def tutorial_result(**changes):
    config = {"alpha": 0.01, "batch_size": 1, "epochs": 1, "seed": 0, "shuffle": False,
              "checkpoints": [0, 100, 60_000], "data_seed": None, "kernel": "auto",
              "dtype": "float32", "n_train": 60_000, "init": "seeded"}
    fields = dict(config=config, backend={"backend": "numpy", "device": "cpu", "cpu": "x"},
                  kernel="fused", curve=list(POINTS), seconds=0.016, prepare_seconds=0.1,
                  images_trained=60_000, weights=np.zeros((784, 10), np.float32))
    return mg.TrainResult(**{**fields, **changes})


def test_a_training_result_shows_as_its_table_not_as_a_dataclass():
    result = tutorial_result()
    text = repr(result)
    assert "TrainResult(" not in text and "array(" not in text
    assert text.splitlines() == [
        "784-10, the tutorial: per-image (fused kernel), alpha 0.01, 1 epoch, seed 0; "
        "numpy on cpu, float32",
        "images seen  test accuracy   test MSE",
        "          0          9.09%  2933.2700",
        "        100         15.84%    16.0900",
        "     60,000         68.15%     0.0905",
        "trained 60,000 images in 0.016 s (3,750,000 images/s); final test accuracy 68.15%"]
    html = result._repr_html_()
    assert html.count("<tr>") == 4 and "<caption" in html and "68.15%" in html
    assert "3,750,000 images/s" in html


def test_a_result_keeps_its_json_and_fields():
    result = tutorial_result()
    report = result.to_json()
    assert list(report) == ["config", "backend", "kernel", "curve", "final_accuracy", "seconds",
                            "images_trained", "images_per_second", "prepare_seconds",
                            "evaluation"]
    assert report["curve"] == [{"images_seen": 0, "accuracy": 0.0909, "mse": 2933.27},
                               {"images_seen": 100, "accuracy": 0.1584, "mse": 16.09},
                               {"images_seen": 60_000, "accuracy": 0.6815, "mse": 0.0905}]
    assert json.loads(json.dumps(report)) == report
    assert result.final_accuracy == 0.6815 and result.weights.shape == (784, 10)


def test_a_curve_is_still_a_list_of_checkpoints():
    curve = tutorial_result().curve
    assert isinstance(curve, list) and isinstance(curve, mg.Curve)
    assert curve == POINTS and curve[-1].accuracy == 0.6815
    assert curve.images_seen == [0, 100, 60_000] and curve.accuracies == [0.0909, 0.1584, 0.6815]
    again = pickle.loads(pickle.dumps(curve))  # as a cluster's worker sends it back
    assert again == curve and again.loss == "MSE" and repr(again) == repr(curve)
    assert repr(curve).splitlines()[0] == "images seen  test accuracy   test MSE"
    assert "<table>" in curve._repr_html_()


def test_a_deeper_network_names_its_loss():
    preset = mg.config_from_preset("softmax")
    config = {**preset.to_json(), "architecture": preset.net.describe(),
              "rate": preset.rate_words(), "dtype": "float32", "n_train": 60_000}
    result = mg.MLPResult(config, {"backend": "numpy", "device": "cpu"}, list(POINTS), 2.0,
                          600_000, [])
    lines = repr(result).splitlines()
    assert lines[0] == ("dense10+bias; softmax cross-entropy: mini-batches of 100, lr 0.5, "
                        "momentum 0.9, 10 epochs, seed 0, shuffled; numpy on cpu, float32")
    assert lines[1] == "images seen  test accuracy  test cross-entropy"


def test_a_sweep_shows_its_learning_rates_and_its_models():
    settings = {"alphas": [0.01, 0.1], "seeds": [0, 1], "batch_size": 1, "epochs": 1,
                "dtype": "float32"}
    models = [ModelResult(0.01, 0, list(POINTS)), ModelResult(0.01, 1, POINTS[:2]),
              ModelResult(0.1, 0, POINTS[:1], "at step 122 (image 122 of the epoch)", 1000),
              ModelResult(0.1, 1, POINTS[:1], "at step 122 (image 122 of the epoch)", 1000)]
    result = SweepResult(settings, {"backend": "numpy", "device": "cpu"}, "fused", models,
                         np.zeros((4, 784, 10)), 0.5, 60_000)
    text = repr(result)
    assert "SweepResult(" not in text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[1:4] == ["alpha models diverged mean final min max",
                          "0.01 2 0 41.99% 15.84% 68.15%", "0.1 2 2 - - -"]
    assert "0.01 1 15.84% 15.84% (100) ok" in lines
    assert "0.1 0 - 9.09% (0) diverged at step 122 (image 122 of the epoch)" in lines
    assert "(480,000 model-images/s)" in text
    assert result._repr_html_().count("<table>") == 2
    assert isinstance(models[0].curve, mg.Curve)
    assert result.to_json()["models"][0]["curve"][0] == {"images_seen": 0, "accuracy": 0.0909,
                                                         "mse": 2933.27}


def test_a_figure_is_shown_as_a_picture_without_pyplot():
    formatters = pytest.importorskip("IPython.core.formatters")
    figure = figures.plot_weight_maps(np.random.default_rng(0).random((784, 10)))
    shown, _ = formatters.DisplayFormatter().format(figure)
    assert shown["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert pickle.loads(pickle.dumps(figure))._repr_png_()[:4] == b"\x89PNG"


def test_the_digit_grid_titles_labels_and_mistakes():
    images = np.random.default_rng(0).integers(0, 256, (12, 784), dtype=np.uint8)
    figure = figures.plot_digits(images, np.arange(12) % 10, np.zeros(12, int), count=12,
                                 columns=5)
    titles = [ax.get_title() for ax in figure.axes]
    assert len(figure.axes) == 15 and titles[:3] == ["0 -> 0", "1 -> 0", "2 -> 0"]
    colours = [ax.title.get_color() for ax in figure.axes[:2]]
    assert colours[0] == "black" and colours[1] != "black"  # a mistake is marked


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_preset_is_the_configuration_the_command_trains(name):
    argv = ["train", "--preset", name]
    args = apply_preset(build_parser().parse_args(argv), argv)
    assert mg.config_from_preset(name) == training_config(args, args.alpha, args.seed)


def test_a_preset_takes_changes_and_refuses_unknown_settings():
    assert mg.config_from_preset("cnn-fast", epochs=1).epochs == 1
    assert mg.config_from_preset("tutorial", seed=3) == mg.TrainConfig(seed=3)
    with pytest.raises(ValueError, match="no preset 'nope'"):
        mg.config_from_preset("nope")
    with pytest.raises(ValueError, match="preset 'mlp'"):
        mg.config_from_preset("mlp", colour="red")


def test_progress_bars_come_from_tqdm_auto_in_a_notebook(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert common.progress_bar(10, quiet=False) is None  # a log or a pipe: no bar
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", type(sys)("ipykernel.zmqshell"))
    bar = common.progress_bar(10, quiet=False)
    try:
        assert isinstance(bar, tqdm)
    finally:
        bar.close()
    assert common.progress_bar(10, quiet=True) is None
