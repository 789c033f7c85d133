"""The small print of the flags and settings: yes/no variables that take the usual words and
refuse others, a learning rate the dtype would round to 0, messages that name only flags the
command has, "1 image", one line for a cache folder that cannot be used, a relative
XDG_CACHE_HOME ignored, and no abbreviated flags (a preset's overlay would not see them)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.data import SettingError, load_mnist
from mnist_gpu.data.cache import flag_from_environment
from mnist_gpu.io.files import user_cache_dir
from mnist_gpu.io.weights import save_weights


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("word", ["off", "n", "none", "disable", "No", "FALSE", "0", " ", ""])
def test_the_usual_words_for_no_mean_no(monkeypatch, word):
    monkeypatch.setenv("MNIST_GPU_OFFLINE", word)
    assert flag_from_environment("MNIST_GPU_OFFLINE") is False


@pytest.mark.parametrize("word", ["1", "on", "yes", "Y", "true", "enable"])
def test_the_usual_words_for_yes_mean_yes(monkeypatch, word):
    monkeypatch.setenv("MNIST_GPU_OFFLINE", word)
    assert flag_from_environment("MNIST_GPU_OFFLINE") is True


def test_another_word_is_refused_in_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MNIST_GPU_OFFLINE", "maybe")
    with pytest.raises(SettingError):
        flag_from_environment("MNIST_GPU_OFFLINE")
    status, out, err = _run(capsys, "train", "--backend", "numpy", "--data-dir", tmp_path)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mnist-gpu: error: MNIST_GPU_OFFLINE='maybe'")


@pytest.mark.parametrize("argv", [
    ["train", "--alpha", "1e-320"],
    ["train", "--alpha", "1e-46"],
    ["sweep", "--alpha", "0.01,1e-320"],
    ["curve", "--alpha", "1e-320"],
    ["curve", "--compare-batch-size", "10", "--compare-alpha", "1e-320"],
])
def test_a_rate_that_float32_rounds_to_zero_is_refused(capsys, tmp_path, argv):
    status, out, err = _run(capsys, *argv, "--backend", "numpy", "--data-dir", tmp_path,
                            "--offline")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "float32 rounds it to 0" in err


def test_init_from_a_sweep_file_names_no_flag_train_lacks(capsys, tmp_path):
    sweep = tmp_path / "sweep.npz"
    save_weights(sweep, np.zeros((3, 784, 10), np.float32),
                 {"sweep": {}, "models": [{"alpha": 0.01, "seed": s} for s in range(3)]})
    status, _, err = _run(capsys, "train", "--init", sweep, "--offline", "--data-dir", tmp_path)
    assert status == 2 and err.count("\n") == 1
    assert "3 models of a sweep" in err and "--model" not in err


def test_one_image_is_one_image(run):
    status, _, err = run("train", "--backend", "numpy", "--alpha", "1e6", "--limit", "5",
                         "--checkpoints", "1")
    assert status == 1
    assert "at 1 image seen" in err and "1 images" not in err


def test_a_cache_folder_that_is_a_loop_of_links_is_said_once(tmp_path, tiny_mnist_arrays):
    from conftest import gz, idx_bytes

    data = tmp_path / "data"
    data.mkdir()
    for name, array in tiny_mnist_arrays.items():
        (data / f"{name}.gz").write_bytes(gz(idx_bytes(array)))
    loop = tmp_path / "cache"
    loop.symlink_to("cache")
    from mnist_gpu.data import published

    specs = [published.FileSpec(s.name, s.kind, _sha(tiny_mnist_arrays[s.name]), 0, "0" * 64)
             for s in published.MNIST_FILES]
    said = []
    loaded = load_mnist(data, offline=True, files=specs, cache=loop, log=said.append)
    assert len(loaded.train_labels) == 12
    assert len(said) == 1, said
    assert "cannot be used" in said[0] and "running without it" in said[0]


def _sha(array):
    import hashlib

    from conftest import idx_bytes

    return hashlib.sha256(idx_bytes(array)).hexdigest()


def test_a_relative_xdg_cache_home_is_ignored(monkeypatch):
    if os.name == "nt" or os.uname().sysname == "Darwin":
        pytest.skip("XDG_CACHE_HOME is read on Linux and the other Unixes only")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert user_cache_dir().is_absolute()
    assert "relative" not in str(user_cache_dir())


@pytest.mark.parametrize("argv", [
    ["train", "--preset", "minibatch", "--epoch", "1"],
    ["sweep", "--see", "0-1"],
    ["eval", "--weights", "w.npz", "--weight-m", "m.png"],
])
def test_an_abbreviated_flag_is_refused(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
