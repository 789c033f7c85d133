"""The IDX reader and the data-directory rules, on small files that the tests generate, fuzzed
files and headers that promise more than they hold (refused with our error, in bounded memory)."""

from __future__ import annotations

import gzip
import hashlib
import tracemalloc

import numpy as np
import pytest
from conftest import gz, idx_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_gpu.data import (
    MNIST_FILES, DataError, FileSpec, load_mnist, parse_idx, read_idx, resolve_data_dir,
)

IMAGES = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
LABELS = np.array([3, 0, 9], dtype=np.uint8)


def write(tmp_path, name, blob):
    path = tmp_path / name
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_reads_valid_images_and_labels(tmp_path, compress):
    suffix, wrap = (".gz", gz) if compress else ("", bytes)
    images = read_idx(write(tmp_path, "i" + suffix, wrap(idx_bytes(IMAGES))), "images")
    labels = read_idx(write(tmp_path, "l" + suffix, wrap(idx_bytes(LABELS))), "labels")
    assert images.dtype == np.uint8 and images.shape == (3, 784)
    np.testing.assert_array_equal(images, IMAGES.reshape(3, 784))
    np.testing.assert_array_equal(labels, LABELS)


def _header(magic, *dims):
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


MALFORMED = {
    "html page as gz": ("x.gz", b"<!DOCTYPE html><html><body>Not Found</body></html>",
                        "not gzip: starts like an HTML page"),
    "html page raw": ("x", b"<html><head></head></html>", "starts like an HTML page"),
    "empty": ("x", b"", "too short for an IDX header"),
    "short header": ("x", b"\x00\x00\x08", "too short for an IDX header"),
    "bad magic": ("x", _header(1234, 3) + bytes(3), "magic number 1234"),
    "truncated images": ("x", idx_bytes(IMAGES)[:-5],
                         f"truncated: expected {16 + 3 * 784} bytes, found {16 + 3 * 784 - 5}"),
    "trailing bytes": ("x", idx_bytes(LABELS) + b"\x00\x01",
                       "trailing bytes: expected 11 bytes, found 13"),
    "not 28x28": ("x", _header(2051, 2, 27, 29) + bytes(2 * 27 * 29),
                  "images are [27, 29] pixels, expected 28x28"),
    "label out of range": ("x", _header(2049, 3) + bytes([1, 10, 2]),
                           "label 10 at index 1 is outside 0-9"),
    "cut gzip stream": ("x.gz", gz(idx_bytes(IMAGES))[:-40], "truncated gzip stream"),
    # After the 10-byte gzip header, 0b111: a final deflate block of the reserved type 3.
    "corrupt gzip": ("x.gz", gz(idx_bytes(IMAGES))[:10] + b"\x07" + bytes(50),
                     "corrupt gzip stream"),
    "huge header claim": ("x", _header(2051, 4_000_000_000, 28, 28) + bytes(100),
                          "truncated: expected 3136000000016 bytes, found 116"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_files_fail_with_one_clear_error(tmp_path, case):
    name, blob, message = MALFORMED[case]
    path = write(tmp_path, name, blob)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)  # names the file


def test_kind_mismatch_is_named(tmp_path):
    path = write(tmp_path, "l", idx_bytes(LABELS))
    with pytest.raises(DataError, match="holds labels .* where images were expected"):
        read_idx(path, "images")


def test_counts_that_disagree_are_refused(tmp_path, tiny_mnist_arrays):
    arrays = dict(tiny_mnist_arrays)
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:-1]
    specs = _write_set(tmp_path, arrays)
    with pytest.raises(DataError, match="holds 12 images but .* holds 11 labels"):
        load_mnist(tmp_path, offline=True, files=specs)


def _write_set(directory, arrays, compress=True):
    """Write a set of IDX files and return FileSpecs that identify them."""
    specs = []
    for name, array in arrays.items():
        raw = idx_bytes(array)
        packed = gz(raw)
        (directory / (name + (".gz" if compress else ""))).write_bytes(packed if compress else raw)
        specs.append(FileSpec(name, "images" if array.ndim == 3 else "labels",
                              hashlib.sha256(raw).hexdigest(), len(packed),
                              hashlib.sha256(packed).hexdigest()))
    return specs


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_verified_files_load_whatever_their_compression(tmp_path, tiny_mnist_arrays, compress):
    specs = _write_set(tmp_path, tiny_mnist_arrays, compress=compress)
    data = load_mnist(tmp_path, offline=True, files=specs)
    assert data.train_images.shape == (12, 784) and data.test_labels.shape == (5,)
    np.testing.assert_array_equal(data.train_labels, tiny_mnist_arrays["train-labels-idx1-ubyte"])


def test_a_file_with_other_content_is_not_trusted(tmp_path, tiny_mnist_arrays):
    specs = _write_set(tmp_path, tiny_mnist_arrays)
    labels = tiny_mnist_arrays["t10k-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10  # a valid IDX file, but not the published one
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(labels)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: wrong SHA-256 of its "
                                        r"content .*not the published file"):
        load_mnist(tmp_path, offline=True, files=specs)


def test_offline_error_explains_how_to_place_the_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, offline=True)
    message = str(info.value)
    for spec in MNIST_FILES:
        assert spec.name in message and spec.gz_sha256 in message and spec.raw_sha256 in message
    assert str(tmp_path) in message and "MNIST_GPU_DATA" in message


def test_data_dir_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("MNIST_GPU_DATA", raising=False)
    assert str(resolve_data_dir()) == "data"
    monkeypatch.setenv("MNIST_GPU_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    assert str(resolve_data_dir("elsewhere")) == "elsewhere"


def test_offline_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_GPU_OFFLINE", "1")
    with pytest.raises(DataError, match="downloads are off"):
        load_mnist(tmp_path, mirrors=["http://127.0.0.1:9/"])


def test_real_mnist_is_verified_and_shaped(mnist):
    assert mnist.train_images.shape == (60000, 784) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 784)
    assert mnist.train_labels.shape == (60000,) and mnist.test_labels.shape == (10000,)
    assert mnist.train_labels.max() == 9 and mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_parse_idx_never_reshapes_a_lie():
    # A header claiming more images than the bytes hold is caught before any reshape.
    blob = _header(2051, 5, 28, 28) + bytes(784 * 4)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(blob, "memory")


def _real_copy(mnist_dir_path, tmp_path):
    """The four real files in a folder of the test's own, as .gz."""
    for spec in MNIST_FILES:
        source = mnist_dir_path / f"{spec.name}.gz"
        (tmp_path / source.name).write_bytes(source.read_bytes())
    return tmp_path


def _truncated_gz(path):
    path.write_bytes(path.read_bytes()[:500_000])


def _html_labels(path):
    path.write_bytes(b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>")


def _truncated_raw_labels(path):
    raw = gzip.decompress(path.read_bytes())
    path.unlink()
    path.with_suffix("").write_bytes(raw[:-100])


def _padded_gz(path):
    path.write_bytes(path.read_bytes() + b"junk after the stream")


@pytest.mark.parametrize("name, spoil, fault", [
    ("train-images-idx3-ubyte.gz", _truncated_gz,
     "train-images-idx3-ubyte.gz: truncated gzip stream (it ends before the compressed data "
     "does) (500,000 bytes; the published .gz has 9,912,422)"),
    ("train-labels-idx1-ubyte.gz", _html_labels,
     "train-labels-idx1-ubyte.gz: not gzip: starts like an HTML page"),
    ("t10k-labels-idx1-ubyte.gz", _truncated_raw_labels,
     "t10k-labels-idx1-ubyte: truncated: expected 10008 bytes, found 9908"),
    ("t10k-images-idx3-ubyte.gz", _padded_gz,
     "t10k-images-idx3-ubyte.gz: trailing bytes after the gzip stream"),
], ids=["truncated gz", "html page", "truncated raw", "padded gz"])
def test_a_corrupt_file_is_named_with_its_fault_not_called_missing(
        mnist_dir_path, empty_data_cache, tmp_path, capsys, name, spoil, fault):
    from mnist_gpu import cli

    directory = _real_copy(mnist_dir_path, tmp_path)
    spoil(directory / name)
    assert cli.main(["train", "--backend", "numpy", "--data-dir", str(directory),
                     "--offline", "--limit", "10"]) == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert fault in first, first
    assert str(directory) in first and "downloads are off" in first
    assert "no verified copy" not in err and "not in" not in first


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


VALID_IMAGES = idx_bytes(np.arange(2 * 784, dtype=np.uint32).reshape(2, 28, 28).astype(np.uint8))


VALID_LABELS = idx_bytes(np.array([1, 2, 3], dtype=np.uint8))


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


def test_a_data_directory_that_is_a_file(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match="Not a directory"):
        load_mnist(blocker, offline=False, mirrors=["http://127.0.0.1:9/"])
    assert blocker.read_text() == "not a directory"
