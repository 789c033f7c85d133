"""The ``mnist-gpu train`` command on real MNIST: the tutorial's table, its flags and exit codes."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.io.weights import load_weights, save_weights

README = Path(__file__).resolve().parents[1] / "README.md"


def tutorial_loop(images, labels, W, alpha):
    """The tutorial's update as a user first writes it in plain NumPy, float64."""
    W = W.copy()
    for x, label in zip(images / 255.0, labels):
        pred = x @ W
        delta = pred - np.eye(10)[label]
        W -= alpha * np.outer(x, delta)
    return W


@pytest.mark.parametrize("kernel", ["array", "fused"])
def test_float64_weights_match_the_plain_numpy_loop(run, mnist, tmp_path, kernel):
    w0 = np.random.default_rng(1).random((784, 10))
    np.save(tmp_path / "w0.npy", w0)
    status, out, _ = run("train", "--backend", "numpy", "--dtype", "float64", "--kernel", kernel,
                         "--init", str(tmp_path / "w0.npy"), "--limit", "1000",
                         "--save", str(tmp_path / "w.npz"))
    assert status == 0, out
    weights, meta = load_weights(tmp_path / "w.npz")
    expected = tutorial_loop(mnist.train_images[:1000], mnist.train_labels[:1000], w0, 0.01)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-9)
    assert meta["config"]["n_train"] == 1000 and meta["kernel"] == kernel


def test_default_run_reproduces_the_tutorial_table(run):
    status, out, _ = run("train", "--backend", "numpy")
    assert status == 0
    rows = re.findall(r"^\s*([\d,]+)\s+([\d.]+)%", out, flags=re.M)
    seen = [int(r[0].replace(",", "")) for r in rows]
    assert seen == [0, 100, 1000, 10000, 20000, 30000, 40000, 50000, 60000]
    final = float(rows[-1][1])
    assert 65.0 <= final <= 73.0, out
    assert "images/s" in out and f"final test accuracy: {final:.2f}%" in out


def test_json_output_is_one_object(run):
    status, out, _ = run("train", "--backend", "numpy", "--limit", "2000", "--json",
                         "--checkpoints", "0,1k")
    assert status == 0
    result = json.loads(out)
    assert [c["images_seen"] for c in result["curve"]] == [0, 1000, 2000]
    assert result["backend"]["backend"] == "numpy" and result["images_trained"] == 2000
    assert result["final_accuracy"] == result["curve"][-1]["accuracy"]
    for key in ("config", "seconds", "images_per_second", "kernel"):
        assert key in result


def test_minibatch_reaches_78_percent(run):
    status, out, _ = run("train", "--backend", "numpy", "--batch-size", "100", "--alpha", "0.02",
                         "--epochs", "20", "--json")
    assert status == 0
    result = json.loads(out)
    assert result["final_accuracy"] >= 0.78
    assert len(result["curve"]) == 21  # the start and every epoch's end


def test_min_accuracy_gate(run):
    status, _, err = run("train", "--backend", "numpy", "--limit", "100", "--min-accuracy", "0.9")
    assert status == 1 and "below --min-accuracy 90.00%" in err


def test_divergence_names_the_step_and_keeps_good_weights(run, tmp_path):
    good = tmp_path / "w.npz"
    save_weights(good, np.ones((784, 10)), {"note": "previous"})
    status, _, err = run("train", "--backend", "numpy", "--alpha", "5", "--save", str(good))
    assert status == 1
    assert re.search(r"NaN or infinite at step \d+", err) and "smaller --alpha" in err
    weights, meta = load_weights(good)
    assert meta == {"note": "previous"} and np.all(weights == 1)  # nothing saved over them


@pytest.mark.parametrize("checkpoints", [None, "1000"])
def test_an_exploding_model_is_diverged_with_its_test_mse(run, tmp_path, checkpoints):
    # Alpha 0.03: at 1,000 images the weights are near 4e11, still finite, and the test MSE is
    # 1e21 times its start. Without a checkpoint at 0 the start is still measured (not shown).
    save = tmp_path / "w.npz"
    status, out, err = run("train", "--backend", "numpy", "--alpha", "0.03", "--limit", "1000",
                           "--save", str(save),
                           *(["--checkpoints", checkpoints] if checkpoints else []))
    assert status == 1 and not save.exists() and "saved" not in out
    line = err.strip().splitlines()[-1]
    assert re.fullmatch(r"mnist-gpu: error: the test MSE reached \S+ at 1,000 images seen, over "
                        r"1,000 times its 2,933 at 0 images: the weights blew up \(alpha = 0.03\); "
                        r"try a smaller --alpha", line), line
    rows = re.findall(r"^\s*([\d,]+)\s+[\d.]+%", out, flags=re.M)
    assert rows == ([] if checkpoints else ["0", "100"])


BAD_ARGUMENTS = [
    ["--alpha", "0"], ["--alpha", "-1"], ["--alpha", "fast"], ["--batch-size", "0"],
    ["--epochs", "0"], ["--backend", "tpu"], ["--dtype", "float16"], ["--limit", "0"],
    ["--checkpoints", "1,x"], ["--min-accuracy", "2"], ["--seed", "-1"],
]


@pytest.mark.parametrize("args", BAD_ARGUMENTS, ids=[" ".join(a) for a in BAD_ARGUMENTS])
def test_bad_arguments_give_one_line_and_status_2(args, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


@pytest.mark.parametrize("content", ["wrong shape", "not numpy", "nan"])
def test_bad_init_files_give_status_2(run, tmp_path, content):
    path = tmp_path / "w0.npy"
    if content == "wrong shape":
        np.save(path, np.zeros((10, 784)))
    elif content == "nan":
        np.save(path, np.full((784, 10), np.nan))
    else:
        path.write_text("hello")
    status, _, err = run("train", "--backend", "numpy", "--init", str(path))
    assert status == 2 and err.count("\n") == 1 and "--init" in err


def test_missing_data_offline_is_status_1(tmp_path, capsys):
    assert cli.main(["train", "--backend", "numpy", "--data-dir", str(tmp_path), "--offline"]) == 1
    assert "train-images-idx3-ubyte: not in" in capsys.readouterr().err


def test_console_script_runs_in_a_subprocess(mnist_dir_path):
    out = subprocess.run(
        [sys.executable, "-m", "mnist_gpu.cli", "train", "--backend", "numpy", "--limit", "500",
         "--checkpoints", "0", "--data-dir", str(mnist_dir_path), "--offline"],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "final test accuracy" in out.stdout


def test_readme_python_example_runs(mnist_dir_path, monkeypatch):
    """The README's Python API example, run as written (with the data pointed at the test copy)."""
    text = README.read_text()
    example = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    monkeypatch.setenv("MNIST_GPU_DATA", str(mnist_dir_path))
    monkeypatch.setenv("MNIST_GPU_OFFLINE", "1")
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert 0.6 < namespace["result"].final_accuracy < 0.75


def test_help_describes_the_tool_for_its_users(capsys):
    from mnist_gpu.cli.parser import build_parser

    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top and "argument parsing" not in top  # not the module's docstring
    assert "examples:" in top and "mnist-gpu train" in top
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert sub.description, f"{name} --help has no description"


def test_a_deeper_networks_json_names_its_loss_and_has_the_tutorials_keys(run):
    status, out, _ = run("train", "--backend", "numpy", "--hidden", "8", "--bias", "--loss",
                         "ce", "--batch-size", "100", "--limit", "500", "--json")
    assert status == 0
    deep = json.loads(out)
    assert all(set(point) == {"images_seen", "accuracy", "cross_entropy"}
               for point in deep["curve"])
    status, out, _ = run("train", "--backend", "numpy", "--limit", "100", "--json")
    tutorial = json.loads(out)
    assert set(tutorial["curve"][0]) == {"images_seen", "accuracy", "mse"}
    assert set(tutorial) <= set(deep)  # evaluation, prepare_seconds and the rest
    assert deep["evaluation"] == "array" and deep["prepare_seconds"] == 0.0
    status, out, _ = run("sweep", "--backend", "numpy", "--hidden", "8", "--bias", "--loss",
                         "ce", "--batch-size", "100", "--limit", "500", "--json")
    swept = json.loads(out)["models"][0]
    assert set(swept["curve"][0]) == set(swept["best"]) == {"images_seen", "accuracy",
                                                            "cross_entropy"}


def test_measured_figures_name_their_machine(capsys):
    from mnist_gpu.model.presets import MEASURED_ON, PRESETS

    with pytest.raises(SystemExit):
        cli.main(["train", "--preset", "list"])
    listed = capsys.readouterr().out
    assert listed.startswith("measured on a 2-core AMD EPYC with AVX-512") and MEASURED_ON in listed
    assert "98.21%" in PRESETS["mlp"].measured and "AVX2 machine 98.18%" in PRESETS["mlp"].measured
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert f"a CNN: {PRESETS['cnn'].accuracy} on a 2-core AVX-512 CPU" in help_text
    assert PRESETS["cnn"].accuracy == "99.38%" and "99.2%" not in help_text


@pytest.mark.parametrize("loss", [["--bias", "--loss", "ce"], []], ids=["ce", "mse"])
def test_a_diverging_deeper_network_saves_nothing_and_names_the_step(run, tmp_path, loss):
    good = tmp_path / "w.npz"
    save_weights(good, np.ones((784, 10)), {"note": "previous"})
    before = good.read_bytes()
    status, out, err = run("train", "--backend", "numpy", "--alpha", "1e6", "--hidden", "50",
                           *loss, "--batch-size", "100", "--save", str(good))
    assert status == 1
    assert err.count("\n") == 1
    assert re.search(r"training diverged in epoch 1 at step \d+ of 600 \(images \d+ to \d+ of "
                     r"the epoch\)", err), err
    assert "try a smaller --lr" in err
    assert good.read_bytes() == before and "saved weights" not in out


def test_a_healthy_deeper_network_is_not_called_diverged(run):
    status, _, err = run("train", "--backend", "numpy", "--hidden", "32", "--bias", "--loss", "ce",
                         "--lr", "0.5", "--momentum", "0.9", "--batch-size", "100", "--limit",
                         "5000", "--epochs", "2")
    assert status == 0, err


def test_a_diverging_mini_batch_run_names_its_step_not_an_image_count(run):
    # No checkpoint at 100 images, where the test MSE would already have blown up (a divergence
    # named by its checkpoint): by 1,000 the weights overflow, and the replay finds the step.
    status, _, err = run("train", "--backend", "numpy", "--batch-size", "100", "--alpha", "1e4",
                         "--kernel", "array", "--checkpoints", "0,1000")
    assert status == 1
    step = re.search(r"at step (\d+) \(images (\d+) to (\d+) of the epoch; (\d+) images seen\)",
                     err)
    assert step, err
    number, first, last, seen = map(int, step.groups())
    assert first == (number - 1) * 100 + 1 and last == number * 100 == seen


def test_a_limit_past_the_data_says_what_was_done(run):
    status, out, err = run("train", "--backend", "numpy", "--limit", "100000", "--checkpoints",
                           "0,70000", "--json")
    assert status == 0
    assert "--limit 100,000: the training set has 60,000 images; training on all of them" in err
    assert "--checkpoints 70,000: beyond the 60,000 images" in err
    assert [c["images_seen"] for c in json.loads(out)["curve"]] == [0, 60000]


def test_activation_without_hidden_layers_is_refused(run):
    status, _, err = run("train", "--backend", "numpy", "--activation", "sigmoid")
    assert status == 2 and "--hidden" in err and err.count("\n") == 1


BAD_FLAGS = [
    ["train", "--alpha", "x"], ["train", "--alpha", "-0.1"], ["train", "--alpha", "inf"],
    ["train", "--batch-size", "1.5"], ["train", "--epochs", "-2"], ["train", "--seed", "a"],
    ["train", "--device", "-1"], ["train", "--limit", "0"], ["train", "--checkpoints", "-5"],
    ["train", "--kernel", "cuda"], ["train", "--min-accuracy", "150%"],
    ["train", "--hidden", "0"], ["train", "--hidden", "10,x"], ["train", "--activation", "gelu"],
    ["train", "--loss", "hinge"], ["train", "--momentum", "1"], ["train", "--weight-decay", "-1"],
    ["train", "--schedule", "linear"], ["train", "--backend", "jax"],
    ["train", "--dtype", "int8"], ["train", "--nonsense"],
    ["bench", "--repeats", "0"], ["bench", "--batch-sizes", "0,8"], ["bench", "--dtype", "x"],
    ["bench", "--backend", "numpy,jax"], ["bench", "--device", "x"],
    ["curve", "--seeds", "0"], ["curve", "--alpha", "0"], ["curve", "--compare-batch-size", "1"],
    ["curve", "--checkpoints", "a"], ["curve", "--dtype", "half"],
    ["eval"], ["eval", "--weights"], ["eval", "--weights", "w.npz", "--backend", "gpu"],
    ["predict"], ["predict", "x.png"], ["nonsense"], [],
]


@pytest.mark.parametrize("argv", BAD_FLAGS, ids=[" ".join(a) or "(none)" for a in BAD_FLAGS])
def test_every_bad_flag_is_one_line_and_status_2(argv, capsys):
    try:
        status = cli.main(argv)
    except SystemExit as exit:
        status = exit.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
