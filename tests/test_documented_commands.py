"""The README's commands as documented: the files they write are ignored by git where the docs
run them, the commands table says what each command draws, and ``bench`` prints each figure
once, calling a ratio that noise made impossible noise."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
from conftest import REPO
from test_docs import PAGES, command_lines

from mnist_gpu import cli
from mnist_gpu.bench import report

STORED_REPORT = REPO / "bench" / "results" / "cpu-2core-cnn-2026-11-29.json"
OUTPUT_FLAGS = ("--plot", "--json", "--save", "--weight-map", "--show")


def documented_outputs() -> set[str]:
    """The files the documented commands (README, docs/, ``mnist-gpu --help``'s examples) write
    in the current directory (a bare file name)."""
    from mnist_gpu.cli.parser import EXAMPLES

    lines = [line.strip() for line in EXAMPLES.splitlines()
             if line.strip().startswith("mnist-gpu ")]
    for page in PAGES:
        lines += command_lines(page.read_text())
    names = set()
    for line in lines:
        try:
            words = shlex.split(line.split("  ")[0])  # the examples' comments follow 2 spaces
        except ValueError:
            continue
        for flag, value in zip(words, words[1:]):
            if flag in OUTPUT_FLAGS and re.fullmatch(r"[\w.-]+\.(png|json|npz)", value):
                names.add(value)
    names.discard("PATH.json")
    return names


def test_what_the_documented_commands_write_is_ignored_by_git():
    if not shutil.which("git") or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = documented_outputs()
    assert {"w.npz", "sweep.json", "sweep.png", "confusion.png", "curve.png",
            "bench.png"} <= names
    # Files the documented commands refuse to write (a picture for --json) are not outputs.
    names -= {"a.png", "b.png"}
    checked = subprocess.run(["git", "check-ignore", "--no-index", *sorted(names)], cwd=REPO,
                             capture_output=True, text=True)
    ignored = set(checked.stdout.split())
    assert names <= ignored, f"not ignored: {sorted(names - ignored)}"


def test_the_commands_table_says_what_eval_plot_draws():
    rows = [line for line in (REPO / "README.md").read_text().splitlines()
            if line.startswith("| `mnist-gpu eval")]
    assert rows
    for row in rows:
        if "weight map" in row:
            assert "--weight-map" in row, row  # --plot draws the confusion matrix only


def test_bench_prints_each_figure_once(mnist_dir_path, monkeypatch, capsys):
    stored = json.loads(STORED_REPORT.read_text())

    def measured(*args, log=None, **kwargs):
        for row in stored["rows"]:  # what the measuring says as it goes
            if log:
                log(f"{row['backend']} {row['dtype']} {row['name']}: "
                    f"{row['images_per_second']:,.0f} images/s")
        return stored

    monkeypatch.setattr(report, "run_benchmark", measured)
    status = cli.main(["bench", "--backend", "numpy", "--data-dir", str(mnist_dir_path),
                       "--offline", "--no-startup"])
    out, err = capsys.readouterr()
    assert status == 0, err
    first = stored["rows"][0]
    assert f"{first['images_per_second']:,.0f}" in out  # in the table
    assert "images/s" not in err, err  # and not again, line by line, on stderr


def _sweep_report(sweep_seconds):
    def row(kind, name, seconds, images, **extra):
        return {"backend": "numpy", "dtype": "float32", "kind": kind, "name": name,
                "images": images, "median_s": seconds, **extra}

    rows = [row("mini-batch", "mini-batch 1024 fused", 1.0, 1000),
            row("sweep", "sweep of 8 models, mini-batch 1024 fused", sweep_seconds, 8000,
                models=8, batch_size=1024)]
    return {"settings": {"dtypes": ["float32"]}, "rows": rows}


def test_a_sweep_ratio_noise_made_impossible_is_called_noise():
    # 8 models through 1,000 images in 0.15 s, where one model alone took 1 s: less than one
    # model's own work.
    [line] = report.ratios(_sweep_report(0.15))
    assert "costs 0.15x the time of one model" in line
    assert "noise" in line and "rerun" in line


def test_a_possible_sweep_ratio_is_stated_plainly():
    [line] = report.ratios(_sweep_report(3.0))
    assert line == ("numpy float32: sweep of 8 models, mini-batch 1024 fused costs 3.00x the "
                    "time of one model (mini-batch 1024 fused)")
