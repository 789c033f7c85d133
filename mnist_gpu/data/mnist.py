"""MNIST on the host: find the four files, verify every byte, download what is missing.

Nothing here knows about devices. The loader returns uint8 arrays exactly as the files hold them;
scaling and one-hot encoding happen once, on the chosen device
(``mnist_gpu.training.device_data``).

Trust rules, in order:

* a file in the data directory is used only if the SHA-256 of its *decompressed* content matches
  the published one, whatever its compression (``name.gz`` or raw ``name``);
* a download is written to a ``.part`` file, checked against the published size and SHA-256 of the
  ``.gz``, and only then renamed into place, so nothing half-written is ever trusted later;
* a mirror that answers with an HTTP error, a timeout, an HTML page, a short body or a wrong hash is
  skipped for the next; when all fail, one error says how to place the files by hand;
* once verified, a file's content is kept in the user's cache directory (``cache.py``), and later
  runs map it into memory from there, checked by its size and CRC-32 (the SHA-256 on demand),
  without reading the data directory at all.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import DataCache, flag_from_environment, open_cache
from .download import DATA_DIR_VARIABLE, DEFAULT_MIRRORS, DownloadFailed, download
from ..io.files import NotReadable, read_regular
from .idx import MAX_DECOMPRESSED_BYTES, DataError, check_pair, decompressed_bytes, parse_idx
from .published import MNIST_FILES, FileSpec

OFFLINE_VARIABLE = "MNIST_GPU_OFFLINE"
MIRRORS_VARIABLE = "MNIST_GPU_MIRRORS"


@dataclass(frozen=True)
class MNIST:
    """The four arrays, as stored: images (n, 784) uint8 and labels (n,) uint8 in 0..9, read-only.

    ``sources``: the published files the arrays hold, in the same order (None for arrays made
    otherwise, a subset for instance); with ``cache``, where what is derived from them is kept."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    sources: tuple[FileSpec, ...] | None = field(default=None, compare=False, repr=False)
    cache: DataCache | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- where the data lives


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$MNIST_GPU_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    return Path(os.environ.get(DATA_DIR_VARIABLE) or "data")


def offline_from_environment() -> bool:
    return flag_from_environment(OFFLINE_VARIABLE)


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
            # A regular file no larger than any MNIST file: never a FIFO (which would block) or
            # a device such as /dev/zero (which never ends).
            blob = read_regular(path, MAX_DECOMPRESSED_BYTES)
        except FileNotFoundError:
            continue
        except NotReadable as err:
            refused.append((path, err.strerror))
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
    cache: bool | str | os.PathLike = True,
    verify_cache: bool | None = None,
) -> MNIST:
    """Load MNIST from ``data_dir`` (see ``resolve_data_dir``), downloading what is missing.

    ``offline`` (default: ``$MNIST_GPU_OFFLINE``) never touches the network. ``files`` and
    ``mirrors`` exist for tests and private mirrors; ``log`` receives one line per download and
    per cache entry refused. ``cache``: where verified content is kept for later runs (True: the
    user's cache directory, see ``cache.py``; a directory; False: nowhere). ``verify_cache``
    (default: ``$MNIST_GPU_VERIFY_CACHE``) checks each cached file's SHA-256 in full, as the first
    load did, instead of its size and CRC-32.
    """
    directory = resolve_data_dir(data_dir)
    offline = offline_from_environment() if offline is None else offline
    mirrors = mirrors_from_environment() if mirrors is None else tuple(mirrors)
    store = open_cache(cache, log, verify_cache)
    arrays = []
    for spec in files:
        name = f"{spec.name}.{spec.raw_sha256}.idx"
        cached = store.load(name, spec.raw_sha256) if store else None
        if cached is not None:
            content, path = memoryview(cached["content"]), store.path(name)
        else:
            content, path = _verified_or_downloaded(spec, directory, offline, mirrors, files,
                                                    timeout, log)
            if store:
                store.store(name, {"content": np.frombuffer(content, dtype=np.uint8)})
        arrays.append(parse_idx(content, str(path), spec.kind))
    train_images, train_labels, test_images, test_labels = arrays
    check_pair(train_images, train_labels, files[0].name, files[1].name)
    check_pair(test_images, test_labels, files[2].name, files[3].name)
    return MNIST(train_images, train_labels, test_images, test_labels, tuple(files), store)


def _verified_or_downloaded(spec: FileSpec, directory: Path, offline: bool, mirrors, files,
                            timeout: float, log):
    """(content, path) of ``spec``: its verified copy in ``directory``, else a verified
    download (a refused copy set aside first), else ``DataError`` saying how to place it."""
    found, refused = _verified_content(directory, spec)
    faults = "; ".join(f"{path}: {reason}" for path, reason in refused)
    if found is not None:
        return found
    if offline:
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
    return content, directory / f"{spec.name}.gz"
