"""Downloading a published file: the mirrors tried in order, every answer checked.

A download is checked against the published size and SHA-256 of the ``.gz`` and of its
content, and only then written (atomically) into the data directory; a mirror that answers with
an HTTP error, a timeout, an HTML page, a short body or a wrong hash is skipped for the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..io.files import write_atomically
from .idx import GZIP_MAGIC, DataError, decompressed_bytes, describe_start
from .published import FileSpec

DATA_DIR_VARIABLE = "MNIST_GPU_DATA"

DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow Datasets' and JAX's
)


class DownloadFailed(Exception):
    """One mirror could not provide one file; the message says why."""


def _fetch(url: str, spec: FileSpec, timeout: float) -> bytes:
    # Imported here, by the one run in many that downloads (it takes a tenth of the import time
    # of the whole command line).
    import urllib.error
    import urllib.request

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
    if body[:2] != GZIP_MAGIC:
        raise DownloadFailed(f"not gzip: {describe_start(body[:64])}")
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

