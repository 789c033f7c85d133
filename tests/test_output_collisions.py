"""An output that names one of the command's inputs, or another of its outputs, is refused
before any work, whatever path names the same file (``./``, a symbolic link, a hard link, a
name without its ``.npz``): one line, exit status 2, every file as it was."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.io.files import same_file
from mnist_gpu.io.weights import save_weights


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A folder holding tutorial weights ``w.npz``, a picture ``d7.png`` and an empty data
    folder; the current directory."""
    from PIL import Image

    save_weights(tmp_path / "w.npz", np.random.default_rng(0).random((784, 10)) - 0.5)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "d7.png")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _refused(capsys, place, argv, words):
    before = _snapshot(place)
    status = cli.main([*argv, "--data-dir", "data", "--offline"] if argv[0] != "predict"
                      else argv)
    out, err = capsys.readouterr()
    assert status == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith("mnist-gpu: error: --")
    assert words in err, err
    assert _snapshot(place) == before  # nothing written, nothing lost


@pytest.mark.parametrize("argv", [
    ["eval", "--weights", "w.npz", "--plot", "w.npz"],
    ["eval", "--weights", "w.npz", "--weight-map", "./w.npz"],
    ["eval", "--weights", "w", "--json", "w.npz"],  # the loader finds w.npz for w
    ["predict", "d7.png", "--weights", "w.npz", "--show", "d7.png"],
    ["predict", ".", "--weights", "w.npz", "--show", "./d7.png"],  # a folder's picture
    ["predict", "d7.png", "--weights", "w.npz", "--json", "w.npz"],
    ["train", "--init", "w.npz", "--json", "w.npz"],
    ["train", "--init", "w.npz", "--save", "w"],  # written as w.npz
    ["sweep", "--cluster", "local:1", "--json", "s.json", "--plot", "s.json.results.jsonl"],
])
def test_an_output_that_is_an_input_is_refused(capsys, place, argv):
    _refused(capsys, place, argv, "which writing it would destroy")


@pytest.mark.parametrize("argv", [
    ["train", "--save", "o.npz", "--json", "o.npz"],
    ["train", "--save", "o", "--json", "./o.npz"],
    ["sweep", "--json", "s.json", "--plot", "s.json"],
    ["sweep", "--save", "s.npz", "--plot", "s.npz"],
    ["curve", "--plot", "c.out", "--json", "c.out"],
    ["eval", "--weights", "w.npz", "--plot", "a.png", "--weight-map", "a.png"],
    ["bench", "--json", "b.out", "--plot", "./b.out"],
])
def test_two_outputs_on_one_file_are_refused(capsys, place, argv):
    _refused(capsys, place, argv, "give each output a path of its own")


def test_a_symbolic_or_hard_link_to_an_input_is_the_input(capsys, place):
    os.symlink("w.npz", place / "soft.npz")
    os.link(place / "w.npz", place / "hard.npz")
    _refused(capsys, place, ["eval", "--weights", "w.npz", "--plot", "soft.npz"],
             "--weights w.npz")
    _refused(capsys, place, ["eval", "--weights", "hard.npz", "--json", "w.npz"],
             "--weights hard.npz")


def test_an_output_over_a_data_file_is_refused(capsys, place):
    (place / "data" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"the user's data")
    _refused(capsys, place, ["train", "--json", "data/t10k-labels-idx1-ubyte.gz"],
             "the data file")


def test_a_device_may_take_two_outputs(place):
    if not os.path.exists("/dev/null"):
        pytest.skip("no /dev/null here")
    assert not same_file("/dev/null", "/dev/null")
    assert same_file(place / "w.npz", place / "." / "w.npz")
    assert same_file(place / "new.json", place / "sub" / ".." / "new.json")
    assert not same_file(place / "w.npz", place / "d7.png")
