"""What a careful new user hit, each reproduced: a diverging deeper network saving over good
weights, output paths checked only after the work, a table lost on Ctrl-C, `--save` surprises,
silent changes of what was asked, and misleading messages."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from mnist_gpu import cli
from mnist_gpu.io.weights import save_weights


# --------------------------------------------------------------------------- 1. divergence


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


# --------------------------------------------------------------------------- 3. output paths


@pytest.mark.parametrize("argv, flag", [
    (["train", "--save", "{missing}/w.npz"], "--save"),
    (["predict", "x.png", "--weights", "none.npz", "--show", "{missing}/seen.png"], "--show"),
    (["curve", "--plot", "{missing}/c.png"], "--plot"),
    (["eval", "--weights", "none.npz", "--plot", "{missing}/m.png"], "--plot"),
    (["eval", "--weights", "none.npz", "--weight-map", "{missing}/w.png"], "--weight-map"),
    (["bench", "--json", "{missing}/b.json"], "--json"),
    (["bench", "--plot", "{missing}/b.png"], "--plot"),
    (["bench", "--json", "{dir}"], "--json"),
    (["curve", "--plot", "{dir}"], "--plot"),
])
def test_every_output_path_is_checked_before_any_work(argv, flag, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nodir", dir=tmp_path) for a in argv]
    # No data at all: a command that started working would fail on that instead.
    options = [] if argv[0] == "predict" else ["--data-dir", str(tmp_path / "no-data"),
                                                "--offline"]
    assert cli.main([*argv, *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag} " in err
    assert "does not exist" in err or "is a directory" in err


def test_outputs_are_written_atomically_with_the_users_umask(run, tmp_path):
    png = tmp_path / "c.png"
    old = os.umask(0o022)
    try:
        status, _, _ = run("curve", "--backend", "numpy", "--seeds", "1", "--checkpoints",
                           "0,100", "--plot", str(png))
        assert status == 0
        status, _, _ = run("train", "--backend", "numpy", "--limit", "100",
                           "--save", str(tmp_path / "w.npz"))
    finally:
        os.umask(old)
    assert png.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


# --------------------------------------------------------------------------- 4. streaming rows


def _interrupt_after_rows(args, rows, env):
    """Start the CLI, wait until ``rows`` lines have appeared on stdout, send Ctrl-C."""
    process = subprocess.Popen([sys.executable, "-m", "mnist_gpu.cli", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    while len(lines) < rows:
        line = process.stdout.readline()
        assert line, f"the run ended early: {process.stderr.read()}"
        lines.append(line)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return process.returncode, "".join(lines) + out, err


DEEP_AND_LONG = ["train", "--backend", "numpy", "--hidden", "128", "--bias", "--loss", "ce",
                 "--epochs", "50", "--batch-size", "64", "--lr", "0.05", "--offline"]


def test_ctrl_c_keeps_the_rows_already_printed(mnist_dir_path):
    env = {**os.environ, "MNIST_GPU_DATA": str(mnist_dir_path.resolve())}
    status, out, err = _interrupt_after_rows([*DEEP_AND_LONG, "--quiet"], 4, env)
    assert status == 130 and "interrupted" in err and "Traceback" not in err
    rows = [line for line in out.splitlines() if re.match(r"\s+[\d,]+\s+[\d.]+%", line)]
    assert len(rows) >= 2 and rows[0].split()[0] == "0"  # the start and at least one epoch


def test_ctrl_c_with_json_writes_what_finished(mnist_dir_path, monkeypatch, capsys):
    """Ctrl-C arrives (as Python turns SIGINT into KeyboardInterrupt) just after the second
    checkpoint: the JSON holds the two points that finished."""
    from mnist_gpu.cli.tables import TrainingTable

    row = TrainingTable.row

    def interrupted_after_two(table, point):
        row(table, point)
        if len(table.points) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingTable, "row", interrupted_after_two)
    status = cli.main([*DEEP_AND_LONG, "--limit", "2000", "--json", "--quiet", "--data-dir",
                       str(mnist_dir_path)])
    out, err = capsys.readouterr()
    assert status == 130 and err.strip() == "mnist-gpu: interrupted"
    report = json.loads(out)
    assert report["interrupted"] is True
    assert [p["images_seen"] for p in report["curve"]] == [0, 2000]
    assert report["config"]["architecture"].startswith("dense128")


# --------------------------------------------------------------------------- 6. --save


def test_save_says_where_the_file_went_and_eval_takes_the_same_name(run, tmp_path, monkeypatch,
                                                                    mnist_dir_path, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run("train", "--backend", "numpy", "--limit", "100", "--save", "noext")
    assert status == 0 and "saved weights to noext.npz" in out  # the tutorial's network says so
    assert (tmp_path / "noext.npz").exists() and not (tmp_path / "noext").exists()
    assert cli.main(["eval", "--backend", "numpy", "--weights", "noext", "--data-dir",
                     str(mnist_dir_path), "--offline"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_save_refuses_a_directory(run, tmp_path):
    (tmp_path / "models").mkdir()
    status, _, err = run("train", "--backend", "numpy", "--save", str(tmp_path / "models"))
    assert status == 2 and "is a directory" in err and err.count("\n") == 1
    assert not (tmp_path / "models.npz").exists()


# --------------------------------------------------------------------------- 7. what was asked


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


# --------------------------------------------------------------------------- 8. messages


def test_get_backend_auto_says_why_on_stderr_by_default():
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['cupy'] = None\n"
         "import mnist_gpu as mg; print(mg.get_backend('auto').name)"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "numpy"
    assert "using NumPy on the CPU because CuPy is not installed" in done.stderr
