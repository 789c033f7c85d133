"""Faults people meet, each injected: fuzzed files, concurrent downloads, Ctrl-C, a crash during a
save, a device out of memory, an unwritable data directory, and every flag given nonsense."""

from __future__ import annotations

import errno
import gzip
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import types
import zipfile

import numpy as np
import pytest
from conftest import REPO, idx_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_gpu import cli
from mnist_gpu.data import DataError, load_mnist, parse_idx, read_idx
from mnist_gpu.io.weights import WeightsFileError, load_arrays, load_weights, save_weights

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
VALID_IMAGES = idx_bytes(np.arange(2 * 784, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8))
VALID_LABELS = idx_bytes(np.array([1, 2, 3], dtype=np.uint8))


def _header(magic, *dims):
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


@st.composite
def idx_like(draw):
    """Random headers and lengths, flipped bytes, cut or whole gzip streams."""
    kind = draw(st.sampled_from(["random", "header", "mutated", "gzip"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    if kind == "header":
        magic = draw(st.sampled_from([2049, 2051, 2050, 0x1F8B0808, 0]))
        dims = draw(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4))
        head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
        return head + draw(st.binary(max_size=100))
    blob = bytearray(draw(st.sampled_from([VALID_IMAGES, VALID_LABELS])))
    for _ in range(draw(st.integers(1, 4))):
        blob[draw(st.integers(0, len(blob) - 1))] ^= draw(st.integers(1, 255))
    if kind == "gzip":
        packed = gzip.compress(bytes(blob), mtime=0)
        return packed[:draw(st.integers(0, len(packed)))]
    return bytes(blob[:draw(st.integers(0, len(blob)))])


@FUZZ
@given(blob=idx_like())
def test_fuzzed_idx_files_give_an_array_or_our_error(tmp_path, blob):
    path = tmp_path / ("x.gz" if blob[:2] == b"\x1f\x8b" else "x")
    path.write_bytes(blob)
    try:
        array = read_idx(path)
    except DataError as err:
        assert str(path) in str(err)
    else:
        assert array.dtype == np.uint8 and array.ndim in (1, 2)


def test_a_header_claiming_four_billion_images_allocates_nothing():
    blob = _header(2051, 4_000_000_000, 28, 28) + bytes(784)
    tracemalloc.start()
    with pytest.raises(DataError, match="truncated"):
        parse_idx(blob, "claim")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20


def test_a_gzip_bomb_stops_early(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(200 * 2**20), compresslevel=9))
    with pytest.raises(DataError, match="larger than any MNIST file"):
        read_idx(path)


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


# --------------------------------------------------------------------------- concurrent downloads


def test_two_processes_downloading_into_one_directory(tmp_path, tiny_mnist_arrays):
    import hashlib

    from test_download import Server, serve_all

    from mnist_gpu.data import FileSpec

    server = Server()
    try:
        specs, blobs = [], {}
        for name, array in tiny_mnist_arrays.items():
            raw = idx_bytes(array)
            packed = gzip.compress(raw, mtime=0)
            blobs[name] = packed
            specs.append(FileSpec(name, "images" if array.ndim == 3 else "labels",
                                  hashlib.sha256(raw).hexdigest(), len(packed),
                                  hashlib.sha256(packed).hexdigest()))
        serve_all(server, "m", blobs)
        code = textwrap.dedent(f"""
            import sys
            from mnist_gpu.data import FileSpec, load_mnist
            specs = [FileSpec(*s) for s in {[tuple(vars(s).values()) for s in specs]!r}]
            for _ in range(20):
                data = load_mnist({str(tmp_path)!r}, offline=False,
                                  mirrors=[{server.mirror("m")!r}], files=specs)
                assert data.train_images.shape == (12, 784)
            print("ok")
        """)
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        server.close()
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and out.strip() == "ok", err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    for spec in specs:
        assert (tmp_path / f"{spec.name}.gz").read_bytes() == blobs[spec.name]


# --------------------------------------------------------------------------- interrupted runs


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


def test_a_failure_just_before_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    save_weights(path, np.ones((784, 10)), {"version": 1})

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "injected failure")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="injected"):
        save_weights(path, np.zeros((784, 10)), {"version": 2})
    monkeypatch.undo()
    weights, meta = load_weights(path)
    assert meta == {"version": 1} and np.all(weights == 1)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_a_process_killed_during_a_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, np.ones((784, 10)), {"version": 1})
    code = textwrap.dedent(f"""
        import os, numpy as np
        from mnist_gpu.io.weights import save_weights
        os.replace = lambda src, dst: os._exit(9)  # killed between the write and the rename
        save_weights({str(path)!r}, np.zeros((784, 10)), {{"version": 2}})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert proc.returncode == 9
    weights, meta = load_weights(path)
    assert meta == {"version": 1} and np.all(weights == 1)


# --------------------------------------------------------------------------- device memory


def test_out_of_memory_names_the_batch_size(mnist_dir_path, monkeypatch, capsys):
    from mnist_gpu.model import tutorial

    def out_of_memory(*args, **kwargs):
        raise MemoryError("Out of memory allocating 3,136,000 bytes")

    monkeypatch.setattr(tutorial, "minibatch_step", out_of_memory)
    status = cli.main(["train", "--backend", "numpy", "--batch-size", "1000", "--kernel", "array",
                       "--data-dir", str(mnist_dir_path), "--offline", "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ran out of memory" in err and "batches of 1,000 images" in err
    assert "3,136,000 bytes" in err and "MiB of data" in err and "smaller --batch-size" in err


def test_cupy_out_of_memory_takes_the_same_path():
    """CuPy's own error type, raised through the guard the training loops use."""
    from mnist_gpu.backend import CupyBackend
    from mnist_gpu.training.device_data import DeviceOutOfMemory, device_memory_guard

    class OutOfMemoryError(Exception):  # like cupy.cuda.memory.OutOfMemoryError: no MemoryError
        pass

    device = types.SimpleNamespace(synchronize=lambda: None)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        Device=lambda i: device, memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError)))
    backend = CupyBackend(fake, 0)
    assert OutOfMemoryError in backend.out_of_memory_errors()
    with pytest.raises(DeviceOutOfMemory, match="batches of 8,192 images .*smaller --batch-size"):
        with device_memory_guard(backend, "while training", 8192, 200 * 2**20):
            raise OutOfMemoryError("Out of memory allocating 25,690,112 bytes")


def test_evaluation_works_in_bounded_chunks(numpy_backend):
    from mnist_gpu.model import tutorial

    X = numpy_backend.to_device(np.random.default_rng(0).random((25, 784)))
    labels = numpy_backend.to_device(np.arange(25) % 10)
    Y = numpy_backend.to_device(np.eye(10)[np.arange(25) % 10])
    W = numpy_backend.to_device(np.random.default_rng(1).random((784, 10)))
    whole = tutorial.evaluate(W, X, labels, Y, chunk=1000)
    chunked = tutorial.evaluate(W, X, labels, Y, chunk=4)
    assert int(whole[0]) == int(chunked[0])
    assert float(whole[1]) == pytest.approx(float(chunked[1]), rel=1e-12)


# --------------------------------------------------------------------------- data directory


def test_a_data_directory_that_is_a_file(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match="Not a directory"):
        load_mnist(blocker, offline=False, mirrors=["http://127.0.0.1:9/"])
    assert blocker.read_text() == "not a directory"


def test_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch, tiny_mnist_arrays):
    import hashlib

    from test_download import Server

    from mnist_gpu.io import files as data_module
    from mnist_gpu.data import FileSpec

    raw = idx_bytes(tiny_mnist_arrays["t10k-labels-idx1-ubyte"])
    packed = gzip.compress(raw, mtime=0)
    spec = FileSpec("t10k-labels-idx1-ubyte", "labels", hashlib.sha256(raw).hexdigest(),
                    len(packed), hashlib.sha256(packed).hexdigest())
    server = Server()
    server.routes[f"/m/{spec.name}.gz"] = (200, packed)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data_module.os, "fsync", full)
    try:
        with pytest.raises(DataError, match="No space left on device"):
            load_mnist(tmp_path, offline=False, mirrors=[server.mirror("m")], files=[spec])
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- every flag


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
