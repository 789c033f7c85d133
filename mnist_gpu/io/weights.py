"""Weights on disk: ``.npz`` files with the weights under ``weights`` and JSON metadata, written
atomically and read back without pickle; plain ``.npy`` arrays accepted as initial weights.
"""

from __future__ import annotations

import errno
import io
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .files import read_regular, write_atomically

METADATA_KEY = "metadata_json"
# No weights file of this project comes near this; anything claiming more is refused before
# a byte of it is decompressed or allocated.
MAX_ARRAY_BYTES = 1 << 30
# A file larger than its arrays can be (their headers, names and metadata beside them).
MAX_FILE_BYTES = MAX_ARRAY_BYTES + (16 << 20)
# Numbers learned or drawn at random barely compress; a member whose data is larger than this and
# over MAX_RATIO times its compressed size is refused from its header, before it is decompressed.
MAX_RATIO_FREE_BYTES = 16 << 20
MAX_RATIO = 100


class WeightsFileError(ValueError):
    """A weights file is unreadable or holds the wrong thing; the message names the file."""


def save_weights(path, weights: np.ndarray, metadata: dict | None = None, **arrays) -> Path:
    """Write ``weights`` (and any extra named ``arrays``) with ``metadata`` to ``path``, atomically.

    The file is written beside its target under a temporary name and renamed over it only once it
    is complete and flushed, so ``path`` always holds either the previous file or the new one.
    """
    path = weights_path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory (give a file name)", str(path))
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.asarray(weights),
             **{METADATA_KEY: np.array(json.dumps(metadata or {}, default=_jsonable))},
             **{k: np.asarray(v) for k, v in arrays.items()})
    write_atomically(path, buffer.getvalue())
    return path


def weights_path(path) -> Path:
    """Where ``save_weights(path, ...)`` writes: ``path``, with ``.npz`` added if it has another
    suffix or none (NumPy's own rule for ``savez``); a device or a FIFO (``/dev/stdout``, a
    pipe) is written as named."""
    path = Path(path)
    if path.suffix == ".npz" or (path.exists() and not path.is_file() and not path.is_dir()):
        return path
    return path.with_name(path.name + ".npz")


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """All arrays of an ``.npz`` (or an ``.npy``'s one array, as ``weights``) and its metadata.

    A name given to ``save_weights`` works here too: ``w`` finds ``w.npz`` when ``w`` is absent.
    Only a regular file is read (never ``/dev/zero`` or a FIFO), of at most ``MAX_FILE_BYTES``;
    each array's header (shape and dtype) is checked before its data is read or decompressed.
    """
    path = Path(path)
    if not path.exists() and weights_path(path).is_file():
        path = weights_path(path)
    try:
        blob = read_regular(path, MAX_FILE_BYTES)
    except OSError as err:
        raise WeightsFileError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        if blob[:6] == b"\x93NUMPY":
            return {"weights": _read_npy(io.BytesIO(blob), len(blob))}, {}
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            arrays = _read_members(archive)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError,
            NotImplementedError, zlib.error) as err:
        raise WeightsFileError(f"{path}: not a NumPy .npy or .npz file ({err})") from None
    metadata = {}
    if METADATA_KEY in arrays:
        try:
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
        except (ValueError, RecursionError) as err:
            reason = "nested too deeply" if isinstance(err, RecursionError) else err
            raise WeightsFileError(f"{path}: metadata is not valid JSON ({reason})") from None
    return arrays, metadata


def _read_members(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """Every member's array: all headers read and checked first (what they declare must fit
    ``MAX_ARRAY_BYTES``, and be no more compressible than numbers are), then the data."""
    members = archive.infolist()
    if sum(m.file_size for m in members) > MAX_ARRAY_BYTES:
        raise ValueError("its members claim more than 1 GiB")
    declared = 0
    for member in members:
        if not member.filename.endswith(".npy"):
            raise ValueError(f"unexpected member {member.filename!r}")
        with archive.open(member) as stream:
            _, _, _, nbytes = _npy_header(stream)
        declared += nbytes
        if declared > MAX_ARRAY_BYTES:
            raise ValueError("its arrays' headers declare more than 1 GiB")
        if nbytes > MAX_RATIO_FREE_BYTES and nbytes > MAX_RATIO * member.compress_size:
            raise ValueError(f"its member {member.filename!r} declares {nbytes:,} bytes in "
                             f"{member.compress_size:,} compressed: over {MAX_RATIO} times "
                             "smaller, which no weights are")
    return {member.filename[:-4]: _read_npy(archive.open(member), member.file_size)
            for member in members}


def _npy_header(stream) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, Fortran order, dtype, bytes of data) from the header of a .npy ``stream``, read
    up to the data and no further."""
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran, dtype = read_header(stream)
    except Exception as err:  # NumPy parses the header as a Python literal: SyntaxError & co.
        raise ValueError(f"unreadable .npy header ({type(err).__name__})") from None
    if dtype.hasobject:
        raise ValueError("holds Python objects, which are never loaded")
    return shape, fortran, dtype, int(np.prod(shape, dtype=object)) * dtype.itemsize


def _read_npy(stream, size: int) -> np.ndarray:
    """One .npy of ``size`` bytes from ``stream``, its header checked against its length before
    anything is allocated, its data read straight into the array."""
    with stream:
        shape, fortran, dtype, expected = _npy_header(stream)
        found = size - stream.tell()
        if expected != found:
            raise ValueError(f"its header promises {expected} bytes of data, the file holds "
                             f"{found}")
        array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        view = memoryview(array.reshape(-1, order="A")).cast("B") if array.size else b""
        got = 0
        while got < expected:
            n = stream.readinto(view[got:])
            if not n:
                raise ValueError(f"its data ends after {got} of {expected} bytes")
            got += n
    return array


def load_weights(path, shape=None) -> tuple[np.ndarray, dict]:
    """The weights of a file (key ``weights``; a ``.npy``'s one array) and its metadata.

    With ``shape``, anything else is refused; the weights must be finite floating-point numbers
    (the checks, and their messages, of every weights file: ``check_array``).
    """
    arrays, metadata = load_arrays(path)
    weights = named_array(arrays, "weights", path)
    check_array(weights, path, "weights", shape)
    return weights, metadata


def named_array(arrays: dict, name: str, path, what: str = "") -> np.ndarray:
    """``arrays[name]``, or the error that names what the file holds instead."""
    if name not in arrays:
        raise WeightsFileError(f"{path}: no array named {name!r}{what} (found: "
                               f"{', '.join(sorted(arrays)) or 'none'})")
    return arrays[name]


def check_array(array: np.ndarray, path, name: str, shape=None) -> None:
    """A weights file's array: floating-point, of ``shape`` if given, finite; else one line."""
    if array.dtype.kind != "f":
        raise WeightsFileError(f"{path}: {name} must be floating-point numbers, not "
                               f"{array.dtype}")
    if shape is not None and array.shape != tuple(shape):
        raise WeightsFileError(f"{path}: {name} has shape {array.shape}, expected "
                               f"{tuple(shape)}")
    if not np.all(np.isfinite(array)):
        raise WeightsFileError(f"{path}: {name} contains NaN or infinite values")


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in metadata")
