"""Ctrl-C (SIGINT) at every stage of a run: while the flags are parsed, during training (the
previous weights kept), between checkpoints (the rows already printed kept, the JSON of what
finished written) and inside a large sweep: exit status 130 and one line, never a traceback.
Each signal is sent after the run has said (on its output) that it reached the stage."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
from conftest import REPO

from mnist_gpu import cli
from mnist_gpu.io.weights import load_weights, save_weights


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_ctrl_c_while_the_flags_are_parsed_is_an_interruption(monkeypatch, capsys):
    import importlib

    def interrupted(text):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("mnist_gpu.sweep.grid"), "parse_seeds",
                        interrupted)
    status, _, err = _run(capsys, "sweep", "--seed", "0-99999999")
    assert status == 130 and err == "mnist-gpu: interrupted\n"


def test_ctrl_c_during_a_large_sweep(mnist_dir_path):
    env = {**os.environ, "MNIST_GPU_DATA": str(mnist_dir_path), "MNIST_GPU_OFFLINE": "1"}
    sweep = [sys.executable, "-m", "mnist_gpu.cli", "sweep", "--limit", "100", "--backend",
             "numpy", "--quiet"]
    # The loop of models side by side, compiled (or loaded) by a small sweep first: the signal
    # then lands in the training, not in a compilation that a loaded machine makes minutes long.
    warm = subprocess.run([*sweep, "--seed", "0-1"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr
    process = subprocess.Popen([*sweep, "--seed", "0-9999", "--chunk-models", "5"], cwd=REPO,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The run says, before the first chunk, that the grid is trained in 2,000 chunks.
    while "chunks of up to 5" not in (line := process.stderr.readline()):
        assert line, f"the run ended early: {process.stderr.read()}"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "mnist-gpu: interrupted" and "Traceback" not in err


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


def test_ctrl_c_during_training(mnist_dir_path, tmp_path):
    saved = tmp_path / "w.npz"
    save_weights(saved, np.full((784, 10), 0.5), {"note": "previous"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu.cli", "train", "--backend", "numpy", "--kernel",
         "array", "--epochs", "200", "--save", str(saved), "--data-dir", str(mnist_dir_path),
         "--offline", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    # Each row is printed and flushed as its checkpoint is evaluated: the first is the start,
    # after which 200 epochs remain to be interrupted.
    while not re.match(r"\s+0\s", line := proc.stdout.readline()):
        assert line, f"the run ended early: {proc.stderr.read()}"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "mnist-gpu: interrupted" and "Traceback" not in err
    weights, meta = load_weights(saved)
    assert meta == {"note": "previous"} and np.all(weights == 0.5)
