"""Files that are not files, and files that are not what they say: what a command reads is a
regular file of a bounded size (never ``/dev/zero``, ``/dev/urandom`` or a FIFO without a writer,
as weights, data files or data-cache entries), an ``.npz`` whose headers declare more than its
bytes could hold is refused from its headers, metadata that is JSON but not what mnist-gpu
writes is one line naming the file, and a damaged ``sweep --resume`` results file has its
damaged lines named and their models trained again (another sweep's file refused).

What could read forever or exhaust memory runs in a child process under a memory limit and a
timeout, so that a regression fails here rather than taking the machine down.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from conftest import REPO, gz, idx_bytes

from mnist_gpu.io.weights import WeightsFileError, load_arrays, save_weights
from mnist_gpu.model.saved import load_model_info

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and /dev are Unix's")

# Seconds a refusal may take, the interpreter's start included (it takes well under one).
PROMPT = 20


def _limited():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _child(argv, cwd, env=None):
    """``python argv`` in ``cwd`` under a 3 GiB memory limit; (status, stdout, stderr)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    try:
        done = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=environment,
                              capture_output=True, text=True, timeout=PROMPT,
                              preexec_fn=_limited)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv}: still running after {PROMPT} s (a FIFO waited on? /dev/zero read?)")
    return done.returncode, done.stdout, done.stderr


def _cli(argv, cwd, env=None):
    return _child(["-m", "mnist_gpu.cli", *argv], cwd, env)


@pytest.fixture
def place(tmp_path):
    from PIL import Image

    save_weights(tmp_path / "w.npz", np.random.default_rng(0).random((784, 10)) - 0.5)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "d.png")
    os.mkfifo(tmp_path / "fifo.npz")
    with open(tmp_path / "sparse.npz", "wb") as handle:
        handle.truncate(50 << 30)  # 50 GB, sparse: no block of it is written
    return tmp_path


NOT_FILES = ["/dev/zero", "/dev/urandom", "fifo.npz"]


@pytest.mark.parametrize("command", [["eval", "--weights", "{}"], ["train", "--init", "{}"],
                                     ["predict", "d.png", "--weights", "{}"]])
@pytest.mark.parametrize("name", NOT_FILES)
def test_weights_that_are_not_a_file_are_refused_at_once(place, command, name):
    if name.startswith("/dev/") and not os.path.exists(name):
        pytest.skip(f"no {name} here")
    argv = [a.format(name) for a in command] + (["--offline"] if command[0] != "predict" else [])
    status, out, err = _cli(argv, place)
    assert status == 2 and out == ""
    assert err == f"mnist-gpu: error: {command[-2]} {name}: cannot be read (not a regular file)\n"


def test_a_sparse_50_gb_weights_file_is_refused_from_its_size(place):
    status, _, err = _cli(["eval", "--weights", "sparse.npz", "--offline"], place)
    assert status == 2 and err.count("\n") == 1
    assert "53,687,091,200 bytes: larger than" in err


def _bomb(path, declared_bytes):
    """An .npz of one deflated member whose header declares ``declared_bytes`` of zeros."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (declared_bytes // 8,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("weights.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            chunk = bytes(1 << 22)
            for _ in range(declared_bytes // len(chunk)):
                member.write(chunk)


def test_an_npz_declaring_far_more_than_it_holds_is_refused_from_its_header(tmp_path):
    path = tmp_path / "bomb.npz"
    _bomb(path, 64 << 20)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(WeightsFileError, match="declares 67,108,864 bytes"):
            load_arrays(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # nothing of the 64 MiB was decompressed


def test_compressed_weights_of_a_usual_size_still_load(tmp_path):
    weights = np.zeros((784, 10), np.float32)  # zeros compress well, and are small
    np.savez_compressed(tmp_path / "z.npz", weights=weights)
    arrays, _ = load_arrays(tmp_path / "z.npz")
    np.testing.assert_array_equal(arrays["weights"], weights)


def _with_metadata(path, text):
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.zeros((784, 10)), metadata_json=np.array(text))
    path.write_bytes(buffer.getvalue())
    return path


ARCH = '{"hidden": [5], "activation": "%s", "bias": false, "loss": "mse"}'
STRANGE_METADATA = {
    "a list": "[1, 2]",
    "a number": "5",
    "null": "null",
    "NaN": "NaN",
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "models 5": '{"sweep": {}, "models": 5}',
    "models of numbers": '{"sweep": {}, "models": [1, 2]}',
    "config a list": '{"config": [1]}',
    "arch a string": '{"config": {"arch": "relu"}}',
    "arch incomplete": '{"config": {"arch": {"hidden": [5]}}}',
    "unknown activation": '{"config": {"arch": %s}}' % (ARCH % "swish"),
}


@pytest.mark.parametrize("name", list(STRANGE_METADATA))
def test_metadata_that_is_json_but_not_ours_is_one_line_naming_the_file(tmp_path, name):
    path = _with_metadata(tmp_path / "odd.npz", STRANGE_METADATA[name])
    with pytest.raises(WeightsFileError) as caught:
        load_model_info(path, None)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "Error" not in message  # no exception's name or raw KeyError text


def test_strange_metadata_through_the_command_is_exit_2(tmp_path):
    _with_metadata(tmp_path / "odd.npz", STRANGE_METADATA["unknown activation"])
    status, _, err = _cli(["eval", "--weights", "odd.npz", "--offline"], tmp_path)
    assert status == 2
    assert err == ("mnist-gpu: error: --weights odd.npz: its metadata's network is not one "
                   "mnist-gpu reads (activation must be one of relu, sigmoid, tanh)\n")


# --------------------------------------------------------------------------- data files


def _tiny_data(tmp_path, tiny_mnist_arrays):
    data = tmp_path / "data"
    data.mkdir()
    for name, array in tiny_mnist_arrays.items():
        (data / f"{name}.gz").write_bytes(gz(idx_bytes(array)))
    return data


LOADER = """
import json, sys
from pathlib import Path
from mnist_gpu.data import DataError, load_mnist, published
data, cache, hashes = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
specs = [published.FileSpec(s.name, s.kind, hashes[s.name], 0, "0" * 64)
         for s in published.MNIST_FILES]
try:
    m = load_mnist(data, offline=True, files=specs, log=print,
                   cache=False if cache == "-" else cache)
except DataError as err:
    print("DataError:", err)
else:
    print("loaded", len(m.train_labels))
"""


def _load(tmp_path, data, cache, arrays):
    """The loader on ``data`` (the tiny set's hashes) in a child process, ``cache`` "-" for
    none."""
    import hashlib

    hashes = {name: hashlib.sha256(idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    return _child(["-c", LOADER, data, cache, json.dumps(hashes)], tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_data_file_that_is_not_a_file_is_refused_at_once(tmp_path, tiny_mnist_arrays, kind):
    data = _tiny_data(tmp_path, tiny_mnist_arrays)
    # The .gz is kept aside, so the files the data directory offers are not files.
    name = "t10k-labels-idx1-ubyte"
    (data / f"{name}.gz").rename(tmp_path / "kept.gz")
    if kind == "fifo":
        os.mkfifo(data / f"{name}.gz")
    else:
        (data / name).symlink_to(kind)
    status, out, err = _load(tmp_path, data, "-", tiny_mnist_arrays)
    assert status == 0, err
    assert out.startswith("DataError:") and "not a regular file" in out


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_cache_entry_that_is_not_a_file_is_replaced(tmp_path, tiny_mnist_arrays, kind):
    data = _tiny_data(tmp_path, tiny_mnist_arrays)
    cache = tmp_path / "cache"
    status, out, err = _load(tmp_path, data, cache, tiny_mnist_arrays)
    assert status == 0 and out == "loaded 12\n", err
    entry = next(cache.glob("train-labels-*"))
    entry.unlink()
    if kind == "fifo":
        os.mkfifo(entry)
    else:
        entry.symlink_to(kind)
    status, out, err = _load(tmp_path, data, cache, tiny_mnist_arrays)
    assert status == 0, err
    said, loaded = out.splitlines()[:-1], out.splitlines()[-1]
    assert loaded == "loaded 12"
    assert said == [f"cache entry {entry}: cannot be read (not a regular file); replacing it from "
                    "the verified source"]
    assert entry.is_file() and not entry.is_symlink()  # a regular entry again


# --------------------------------------------------------------------------- sweep --resume


def _line(fingerprint, index, weights=None):
    weights = np.zeros((784, 10), np.float32) if weights is None else weights
    return {"sweep": fingerprint, "chunk": 0, "index": index,
            "model": {"alpha": 0.01, "seed": index, "final_accuracy": 0.5, "best": None,
                      "diverged": None, "diverged_at": None,
                      "curve": [{"images_seen": 0, "accuracy": 0.1, "mse": 1.0}]},
            "weights": base64.b64encode(weights.tobytes()).decode(), "dtype": "float32",
            "kernel": "fused", "seconds": 1.0, "backend": {}, "settings": {},
            "images_per_model": 100}


def test_damaged_results_lines_are_named_and_their_models_trained_again(tmp_path):
    from mnist_gpu.sweep.results_file import read_results

    truncated = _line("f", 1)
    truncated["weights"] = truncated["weights"][:1001]
    no_index = _line("f", 2)
    del no_index["index"]
    lines = [json.dumps(_line("f", 0)), json.dumps(truncated), json.dumps(no_index),
             json.dumps(_line("f", 40)), json.dumps(_line("f", 3))[:200]]
    path = tmp_path / "s.json.results.jsonl"
    path.write_text("\n".join(lines) + "\n")
    said = []
    done = read_results(path, "f", 8, log=said.append)
    assert sorted(done) == [0]  # an index outside the grid is not a trained model
    assert len(said) == 1
    for words in ("line 2 (unusable model", "line 3 (no index)",
                  "line 4 (index 40, outside the grid's 0 to 7)", "line 5 (not a whole JSON"):
        assert words in said[0], said[0]


def test_results_of_another_grid_are_refused(tmp_path):
    from mnist_gpu.sweep.results_file import ForeignResults, read_results

    path = tmp_path / "s.json.results.jsonl"
    path.write_text(json.dumps(_line("another", 0)) + "\n")
    with pytest.raises(ForeignResults, match="of another sweep"):
        read_results(path, "this", 8)
