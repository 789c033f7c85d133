"""The IDX format of the MNIST files: gzip or raw, every byte checked before an array is made.

``parse_idx`` returns images (n, 784) or labels (n,) as uint8 exactly as the file holds them, or
raises ``DataError`` naming the file and the fault (a bad magic number, wrong dimensions, a
truncated or padded body, a label outside 0-9). A header is checked against the file's length
before anything is allocated, and decompression stops past the size of the largest MNIST file.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from ..io.files import read_regular

IMAGE_SIDE = 28
N_PIXELS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10

# The largest genuine MNIST file decompresses to 47,040,016 bytes. Decompression stops a little past
# this, so a gzip bomb or a header that claims billions of images never allocates more.
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

_IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x00000801: uint8, 1-D; 0x00000803: uint8, 3-D
GZIP_MAGIC = b"\x1f\x8b"


class DataError(Exception):
    """A data file is missing, malformed or not the published one. The message names the file."""



def describe_start(head: bytes) -> str:
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
    if blob[:2] == GZIP_MAGIC:
        return _gunzip(blob, source)
    if source.endswith(".gz"):
        raise DataError(f"{source}: not gzip: {describe_start(blob[:64])}")
    return blob


def parse_idx(content: bytes, source: str, kind: str | None = None) -> np.ndarray:
    """Validate decompressed IDX bytes and return images (n, 784) or labels (n,), both uint8.

    Every check happens before any array is made, so a bad header never drives an allocation.
    ``content`` may be any bytes-like object (a memory-mapped one: the arrays are views of it).
    """
    content = memoryview(content).cast("B")
    if len(content) < 8:
        raise DataError(f"{source}: too short for an IDX header ({len(content)} bytes)")
    magic = int.from_bytes(content[:4], "big")
    if magic not in _IDX_MAGIC:
        if content[:2] == GZIP_MAGIC:
            raise DataError(f"{source}: gzip data where decompressed IDX content was expected")
        raise DataError(
            f"{source}: not an MNIST IDX file: magic number {magic} (expected 2049 for labels or "
            f"2051 for images; the file {describe_start(bytes(content[:64]))})"
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
        blob = read_regular(path, MAX_DECOMPRESSED_BYTES)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    return parse_idx(decompressed_bytes(blob, str(path)), str(path), kind)


def check_pair(images: np.ndarray, labels: np.ndarray, images_source: str, labels_source: str):
    if len(images) != len(labels):
        raise DataError(
            f"{images_source} holds {len(images)} images but {labels_source} holds "
            f"{len(labels)} labels"
        )

