"""MNIST on the host: find the four files, verify every byte, download what is missing.

Nothing here knows about devices. The loader returns uint8 arrays exactly as the files hold them;
scaling and one-hot encoding happen once, on the chosen device (see ``mnist_gpu.trainer``).

Trust rules, in order:

* a file in the data directory is used only if the SHA-256 of its *decompressed* content matches
  the published one, whatever its compression (``name.gz`` or raw ``name``);
* a download is written to a ``.part`` file, checked against the published size and SHA-256 of the
  ``.gz``, and only then renamed into place, so nothing half-written is ever trusted later;
* a mirror that answers with an HTTP error, a timeout, an HTML page, a short body or a wrong hash is
  skipped for the next; when all fail, one error says how to place the files by hand.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_atomically

DATA_DIR_VARIABLE = "MNIST_GPU_DATA"
OFFLINE_VARIABLE = "MNIST_GPU_OFFLINE"
MIRRORS_VARIABLE = "MNIST_GPU_MIRRORS"

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' and JAX's
)

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10

# The largest genuine MNIST file decompresses to 47,040,016 bytes. Decompression stops a little past
# this, so a gzip bomb or a header that claims billions of images never allocates more.
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

_IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x00000801: uint8, 1-D; 0x00000803: uint8, 3-D
_GZIP_MAGIC = b"\x1f\x8b"


class DataError(Exception):
    """A data file is missing, malformed or not the published one. The message names the file."""


@dataclass(frozen=True)
class FileSpec:
    """One published file: its name without ``.gz`` and the hashes that identify it."""

    name: str
    kind: str  # "images" or "labels"
    raw_sha256: str  # of the decompressed content: identifies the data whatever its compression
    gz_size: int  # of the published .gz, as the mirrors serve it
    gz_sha256: str


MNIST_FILES = (
    FileSpec(
        "train-images-idx3-ubyte", "images",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    FileSpec(
        "train-labels-idx1-ubyte", "labels",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    FileSpec(
        "t10k-images-idx3-ubyte", "images",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    FileSpec(
        "t10k-labels-idx1-ubyte", "labels",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
)


@dataclass(frozen=True)
class MNIST:
    """The four arrays, as stored: images (n, 784) uint8 and labels (n,) uint8 in 0..9."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


# --------------------------------------------------------------------------- reading IDX files


def _describe_start(head: bytes) -> str:
    text = head.lstrip()[:15].lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or text[:1] == b"<":
        return "starts like an HTML page"
    if not head:
        return "is empty"
    return f"starts with bytes {head[:8].hex(' ')}"


def _gunzip(blob: bytes, source: str) -> bytes:
    """Decompress a whole gzip stream; refuse a cut stream or one larger than any MNIST file."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(blob, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as err:
        raise DataError(f"{source}: corrupt gzip stream ({err})") from None
    if len(out) > MAX_DECOMPRESSED_BYTES:
        raise DataError(
            f"{source}: decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes, "
            "larger than any MNIST file"
        )
    if not inflater.eof:
        raise DataError(f"{source}: truncated gzip stream "
                        "(it ends before the compressed data does)")
    if inflater.unused_data.strip(b"\0"):
        raise DataError(f"{source}: trailing bytes after the gzip stream")
    return out


def decompressed_bytes(blob: bytes, source: str) -> bytes:
    """The IDX content of a file: gunzipped when it is gzip, as is otherwise."""
    if blob[:2] == _GZIP_MAGIC:
        return _gunzip(blob, source)
    if source.endswith(".gz"):
        raise DataError(f"{source}: not gzip: {_describe_start(blob[:64])}")
    return blob


def parse_idx(content: bytes, source: str, kind: str | None = None) -> np.ndarray:
    """Validate decompressed IDX bytes and return images (n, 784) or labels (n,), both uint8.

    Every check happens before any array is made, so a bad header never drives an allocation.
    """
    if len(content) < 8:
        raise DataError(f"{source}: too short for an IDX header ({len(content)} bytes)")
    magic = int.from_bytes(content[:4], "big")
    if magic not in _IDX_MAGIC:
        if content[:2] == _GZIP_MAGIC:
            raise DataError(f"{source}: gzip data where decompressed IDX content was expected")
        raise DataError(
            f"{source}: not an MNIST IDX file: magic number {magic} (expected 2049 for labels or "
            f"2051 for images; the file {_describe_start(content[:64])})"
        )
    found_kind = _IDX_MAGIC[magic]
    if kind is not None and found_kind != kind:
        raise DataError(f"{source}: holds {found_kind} (magic {magic}) where {kind} were expected")
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{source}: truncated: expected {header} header bytes, "
                        f"found {len(content)}")
    dims = [int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if found_kind == "images" and dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise DataError(f"{source}: images are {dims[1:]} pixels, expected 28x28")
    expected = header + int(np.prod(dims, dtype=object))
    if len(content) < expected:
        raise DataError(f"{source}: truncated: expected {expected} bytes, found {len(content)}")
    if len(content) > expected:
        raise DataError(
            f"{source}: trailing bytes: expected {expected} bytes, found {len(content)}"
        )
    array = np.frombuffer(content, dtype=np.uint8, offset=header)
    if found_kind == "images":
        return array.reshape(dims[0], N_PIXELS)
    if array.size and array.max() >= N_CLASSES:
        bad = int(np.argmax(array >= N_CLASSES))
        raise DataError(f"{source}: label {int(array[bad])} at index {bad} is outside 0-9")
    return array


def read_idx(path: str | os.PathLike, kind: str | None = None) -> np.ndarray:
    """Read one IDX file, gzipped or raw, validated (see ``parse_idx``)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    return parse_idx(decompressed_bytes(blob, str(path)), str(path), kind)


def check_pair(images: np.ndarray, labels: np.ndarray, images_source: str, labels_source: str):
    if len(images) != len(labels):
        raise DataError(
            f"{images_source} holds {len(images)} images but {labels_source} holds "
            f"{len(labels)} labels"
        )


# --------------------------------------------------------------------------- where the data lives


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$MNIST_GPU_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_VARIABLE) or "data")


def offline_from_environment() -> bool:
    return os.environ.get(OFFLINE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def mirrors_from_environment() -> tuple[str, ...]:
    """``$MNIST_GPU_MIRRORS`` (whitespace- or comma-separated base URLs), else the defaults."""
    value = os.environ.get(MIRRORS_VARIABLE, "")
    mirrors = tuple(m for m in value.replace(",", " ").split() if m)
    return mirrors or DEFAULT_MIRRORS


def _verified_content(directory: Path, spec: FileSpec):
    """(content, path) of a stored copy of ``spec`` whose hash is right, or None; and the copies
    present but refused, as (path, what is wrong with it)."""
    refused = []
    for path in (directory / f"{spec.name}.gz", directory / spec.name):
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            refused.append((path, "is a directory"))
            continue
        except OSError as err:
            raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
        try:
            content = decompressed_bytes(blob, str(path))
        except DataError as err:
            refused.append((path, _reason(err, path) + _size_note(blob, path, spec)))
            continue
        digest = hashlib.sha256(content).hexdigest()
        if digest == spec.raw_sha256:
            return (content, path), refused
        refused.append((path, _content_fault(content, path, spec, digest)))
    return None, refused


def _reason(err: DataError, path: Path) -> str:
    """A DataError's message without the leading file name (the caller names the file)."""
    return str(err).removeprefix(f"{path}: ")


def _size_note(blob: bytes, path: Path, spec: FileSpec) -> str:
    if path.suffix == ".gz" and len(blob) != spec.gz_size:
        return f" ({len(blob):,} bytes; the published .gz has {spec.gz_size:,})"
    return ""


def _content_fault(content: bytes, path: Path, spec: FileSpec, digest: str) -> str:
    """Why content whose hash is wrong is wrong: a malformed IDX file, else a different one."""
    try:
        parse_idx(content, str(path), spec.kind)
    except DataError as err:
        return _reason(err, path)
    return (f"wrong SHA-256 of its content ({digest[:16]}..., expected {spec.raw_sha256[:16]}...): "
            "not the published file")


def _set_aside(path: Path) -> Path:
    """Rename a refused copy to ``NAME.rejected`` (``.rejected-2``, ... if taken): kept for the
    user to look at, and out of the loader's way."""
    for n in range(1, 1000):
        target = path.with_name(path.name + (".rejected" if n == 1 else f".rejected-{n}"))
        if not target.exists():
            os.replace(path, target)
            return target
    raise DataError(f"{path}: too many rejected copies beside it; remove them")


# --------------------------------------------------------------------------- downloading


class DownloadFailed(Exception):
    """One mirror could not provide one file; the message says why."""


def _fetch(url: str, spec: FileSpec, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            # Read one byte past the published size so an over-long body is caught without
            # reading an endless one.
            body = response.read(spec.gz_size + 1)
    except urllib.error.HTTPError as err:
        raise DownloadFailed(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadFailed(f"no answer ({reason})") from None
    if body[:2] != _GZIP_MAGIC:
        raise DownloadFailed(f"not gzip: {_describe_start(body[:64])}")
    if len(body) != spec.gz_size:
        what = "truncated" if len(body) < spec.gz_size else "too long"
        raise DownloadFailed(f"{what}: expected {spec.gz_size} bytes, found {len(body)}")
    digest = hashlib.sha256(body).hexdigest()
    if digest != spec.gz_sha256:
        raise DownloadFailed(f"wrong SHA-256 {digest}, expected {spec.gz_sha256}")
    return body


def download(
    spec: FileSpec, directory: Path, mirrors: Sequence[str], timeout: float = 30.0
) -> tuple[bytes, list[str]]:
    """Fetch ``spec`` from the first mirror that serves the published file; store it verified.

    Returns the decompressed content and the list of mirror failures met on the way.
    """
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name + ".gz"
        try:
            blob = _fetch(url, spec, timeout)
        except DownloadFailed as err:
            failures.append(f"{url}: {err}")
            continue
        content = decompressed_bytes(blob, url)
        if hashlib.sha256(content).hexdigest() != spec.raw_sha256:
            failures.append(f"{url}: the .gz matches but its content does not")
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_atomically(directory / f"{spec.name}.gz", blob)
        except OSError as err:
            raise DataError(
                f"{directory}: cannot store {spec.name}.gz ({err.strerror or err}); "
                f"point --data-dir or {DATA_DIR_VARIABLE} at a writable directory"
            ) from None
        return content, failures
    raise DownloadFailed("; ".join(failures) or "no mirror configured")


def _placement_help(specs: Iterable[FileSpec], directory: Path) -> str:
    rows = "\n".join(
        f"  {s.name}.gz  ({s.gz_size} bytes, sha256 {s.gz_sha256};"
        f" decompressed sha256 {s.raw_sha256})"
        for s in specs
    )
    return (
        f"Place the four MNIST files (gzipped or raw) in {directory}, or point --data-dir or "
        f"{DATA_DIR_VARIABLE} at a directory that holds them:\n{rows}"
    )


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    offline: bool | None = None,
    mirrors: Sequence[str] | None = None,
    files: Sequence[FileSpec] = MNIST_FILES,
    timeout: float = 30.0,
    log=None,
) -> MNIST:
    """Load MNIST from ``data_dir`` (see ``resolve_data_dir``), downloading what is missing.

    ``offline`` (default: ``$MNIST_GPU_OFFLINE``) never touches the network. ``files`` and
    ``mirrors`` exist for tests and private mirrors; ``log`` receives one line per download.
    """
    directory = resolve_data_dir(data_dir)
    offline = offline_from_environment() if offline is None else offline
    mirrors = mirrors_from_environment() if mirrors is None else tuple(mirrors)
    arrays = []
    for spec in files:
        found, refused = _verified_content(directory, spec)
        faults = "; ".join(f"{path}: {reason}" for path, reason in refused)
        if found is not None:
            content, path = found
        elif offline:
            if refused:
                raise DataError(
                    f"{faults}. Replace it with the published file (downloads are off: --offline "
                    f"or {OFFLINE_VARIABLE}), or delete it and run online to download it.\n"
                    + _placement_help(files, directory))
            raise DataError(
                f"{spec.name}: not in {directory} (neither {spec.name}.gz nor {spec.name}) and "
                f"downloads are off (--offline or {OFFLINE_VARIABLE}).\n"
                + _placement_help(files, directory)
            )
        else:
            for bad, reason in refused:  # kept aside, renamed, for the user to look at
                kept = _set_aside(bad)
                if log:
                    log(f"{bad}: {reason}; set aside as {kept.name}, to be replaced by a fresh "
                        "download")
            if log:
                log(f"downloading {spec.name}.gz into {directory}")
            try:
                content, _ = download(spec, directory, mirrors, timeout)
            except DownloadFailed as err:
                raise DataError(
                    f"{spec.name}: no mirror provided the published file ({err}).\n"
                    + _placement_help(files, directory)
                ) from None
            path = directory / f"{spec.name}.gz"
        arrays.append(parse_idx(content, str(path), spec.kind))
    train_images, train_labels, test_images, test_labels = arrays
    check_pair(train_images, train_labels, files[0].name, files[1].name)
    check_pair(test_images, test_labels, files[2].name, files[3].name)
    return MNIST(train_images, train_labels, test_images, test_labels)
