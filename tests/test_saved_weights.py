"""Weights files: what `--save` writes and where, what `--init` and `eval` load (one loader, the
same refusals in the same words, old layouts), and hostile files (fuzzed bytes, headers that
promise huge arrays) refused with our error, in bounded memory."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import data_flags, run_cli, saved_cnn

from mnist_gpu import cli
from mnist_gpu.io.weights import WeightsFileError, load_arrays, load_weights, save_weights
from mnist_gpu.model import network
from mnist_gpu.model.architecture import Architecture


@pytest.mark.parametrize("content", ["int64", "no weights", "nan"])
def test_init_and_eval_refuse_the_same_files_in_the_same_words(run, mnist_dir_path, tmp_path,
                                                              capsys, content):
    if content == "int64":
        path = tmp_path / "w.npy"
        np.save(path, np.ones((784, 10), dtype=np.int64))
    elif content == "no weights":
        path = tmp_path / "w.npz"
        np.savez(path, W=np.ones((784, 10)))
    else:
        path = tmp_path / "w.npz"
        save_weights(path, np.full((784, 10), np.nan))
    status, _, init_error = run("train", "--backend", "numpy", "--init", str(path))
    assert status == 2 and init_error.startswith(f"mnist-gpu: error: --init {path}: ")
    status, _, eval_error = run_cli(capsys, "eval", "--weights", path, *data_flags(mnist_dir_path))
    assert status == 2 and eval_error.startswith(f"mnist-gpu: error: --weights {path}: ")
    assert init_error.split(f"{path}: ", 1)[1] == eval_error.split(f"{path}: ", 1)[1]
    assert "W0" not in init_error and "layer 0" not in init_error
    expected = {"int64": "weights must be floating-point numbers, not int64",
                "no weights": "no array named 'weights' (found: W)",
                "nan": "weights contains NaN or infinite values"}[content]
    assert init_error.endswith(f": {expected}\n")


def test_init_refuses_a_deeper_network(run, tmp_path):
    path = saved_cnn(tmp_path / "cnn.npz")
    status, _, err = run("train", "--backend", "numpy", "--init", str(path))
    assert status == 2 and "holds a conv4x5+bias,pool2,relu,dense10+bias" in err
    assert "--init takes the tutorial's" in err


def test_a_deeper_network_stores_its_first_layer_once(run, tmp_path):
    path = tmp_path / "mlp.npz"
    status, _, _ = run("train", "--backend", "numpy", "--hidden", "8", "--bias", "--batch-size",
                       "100", "--limit", "200", "--save", str(path))
    assert status == 0
    arrays, _ = load_arrays(path)
    assert sorted(arrays) == ["W1", "b0", "b1", "weights"]


def test_a_file_in_the_old_layout_still_loads(mnist_dir_path, tmp_path, capsys):
    arch = Architecture(hidden=(8,), bias=True)
    params = network.init_params(arch.network(), 0, "float32")
    arrays = network.params_to_arrays(params)  # W0 as well as weights: written before
    path = tmp_path / "old.npz"
    save_weights(path, arrays["W0"], {"config": {"arch": asdict(arch)}}, **arrays)
    status, out, err = run_cli(capsys, "eval", "--weights", path, "--backend", "numpy",
                            *data_flags(mnist_dir_path))
    assert status == 0, err
    assert "dense8+bias,relu,dense10+bias; squared error" in out


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


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


VALID_NPZ = _npz_bytes(weights=np.ones((784, 10)), metadata_json=np.array('{"a": 1}'))


VALID_NPY = _npy_bytes(np.ones((784, 10), dtype=np.float32))


@st.composite
def weights_like(draw):
    blob = bytearray(draw(st.sampled_from([VALID_NPZ, VALID_NPY])))
    for _ in range(draw(st.integers(0, 4))):
        blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
    return bytes(blob[:draw(st.integers(0, len(blob)))])


@FUZZ
@given(blob=st.one_of(weights_like(), st.binary(max_size=300)))
def test_fuzzed_weights_files_give_arrays_or_our_error(tmp_path, blob):
    path = tmp_path / "w.npz"
    path.write_bytes(blob)
    try:
        weights, _ = load_weights(path, shape=(784, 10))
    except WeightsFileError as err:
        assert str(path) in str(err)
    else:
        assert weights.shape == (784, 10) and np.all(np.isfinite(weights))


def test_a_npy_header_claiming_a_huge_array_allocates_nothing(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (4_000_000_000, 10)})
    path = tmp_path / "huge.npy"
    path.write_bytes(header.getvalue() + bytes(80))
    tracemalloc.start()
    with pytest.raises(WeightsFileError, match="promises"):
        load_arrays(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_an_npz_claiming_huge_members_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("weights.npy", bytes(2**30 + 10))
    (tmp_path / "big.npz").write_bytes(buffer.getvalue())
    with pytest.raises(WeightsFileError, match="more than 1 GiB"):
        load_arrays(tmp_path / "big.npz")
