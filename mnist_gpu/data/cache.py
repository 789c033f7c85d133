"""Verified data kept in the user's cache directory and memory-mapped on later runs.

The first load of a published file decompresses it and checks the SHA-256 of its content
(``mnist.py``). That content is then kept in ``<user cache>/mnist`` (``~/.cache/mnist-gpu/mnist``
on Linux, beside the compiled loops' ``numba``), named after the file and its published SHA-256,
and later runs map it into memory instead of decompressing and hashing it again; what is derived
from the images alone (the fused passes' lit-pixel lists) is kept beside it the same way. The
data directory (``./data``) is the user's: nothing is written there.

An entry is one file: a header page (the arrays' names, dtypes, shapes and offsets, the file's size
and a CRC-32 of that description and of every byte after the header), then the arrays, each
64-byte aligned. It is written atomically (``io.files.write_atomically``), so two processes
filling the cache at once each rename a complete file into place and one valid entry remains;
the ``.part`` file of a write whose process was killed outright is removed by the next write of
that entry (``io.files.remove_stale_parts``: never one a live process may still be writing).

On a later run an entry is trusted when its header names it, its size is the recorded one and the
CRC-32 of its bytes matches (read, not mapped, at several GB/s): a damaged, truncated or foreign
entry is named in one line through ``log`` and rebuilt from the verified source. The full check
(``load_mnist(verify_cache=True)``, ``MNIST_GPU_VERIFY_CACHE=1``) also recomputes the SHA-256 of
every cached file against the published one and lists the derived arrays again to compare them.
A directory that cannot be written is still read; what could not be stored is said once, in one
line, and the run goes on from the verified source.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import zlib
from pathlib import Path

import numpy as np

from ..io.files import open_regular, remove_stale_parts, user_cache_dir, write_atomically

VERIFY_VARIABLE = "MNIST_GPU_VERIFY_CACHE"
MAGIC = b"mnist-gpu data cache\n"
FORMAT = 1
HEADER_BYTES = 4096  # one page: the arrays that follow start page-aligned in the mapping
ALIGN = 64
_CHUNK = 1 << 20  # bytes read at a time to check an entry (the check maps nothing)
_DTYPES = {"|u1", "<i2", "<i4", "<i8", "<f4", "<f8"}


def default_cache_dir() -> Path:
    """``user_cache_dir()/mnist`` (``~/.cache/mnist-gpu/mnist`` on Linux)."""
    return user_cache_dir() / "mnist"


# The words a yes/no variable takes (any case); anything else is refused, never guessed at:
# ``MNIST_GPU_OFFLINE=off`` once meant on, for it was not one of the few words for no.
TRUE_WORDS = ("1", "true", "yes", "y", "on", "enable", "enabled")
FALSE_WORDS = ("", "0", "false", "no", "n", "off", "none", "disable", "disabled")


class SettingError(ValueError):
    """An environment variable set to a value it does not take (a bad input: exit status 2)."""


def flag_from_environment(variable: str) -> bool:
    """Whether the yes/no environment variable ``variable`` says yes: one of ``TRUE_WORDS``; unset
    or one of ``FALSE_WORDS`` is no; anything else is a ``SettingError`` naming it."""
    value = os.environ.get(variable, "")
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SettingError(f"{variable}={value!r}: say yes ({', '.join(TRUE_WORDS)}) or no "
                       f"({', '.join(w for w in FALSE_WORDS if w)}, or unset it)")


def verify_from_environment() -> bool:
    return flag_from_environment(VERIFY_VARIABLE)


class DataCache:
    """A directory of entries, each a few named arrays in one file (see the module's notes).

    ``full_check``: trust no entry on its CRC-32 alone (see ``load`` and ``derived``). ``log``
    receives one line per entry refused, and one if the directory cannot be written."""

    def __init__(self, directory: str | os.PathLike, log=None, full_check: bool = False):
        self.directory = Path(directory)
        self.log = log
        self.full_check = full_check
        self.writable = True  # until a write fails: then said once, and not tried again
        self.usable = True  # until the directory itself is found unusable (said once too)

    def path(self, name: str) -> Path:
        return self.directory / name

    def load(self, name: str, sha256: str | None = None) -> dict | None:
        """The arrays of entry ``name``, memory-mapped read-only; None when there is none, or when
        it is refused (then said in one line, for the caller to rebuild it). With the full
        check, the first array's bytes must also have the SHA-256 ``sha256``."""
        path = self.path(name)
        if not self.usable:
            return None
        try:
            with open_regular(path) as handle:  # never a FIFO, which would block
                found = _read(handle, name, sha256 if self.full_check else None)
        except (FileNotFoundError, NotADirectoryError):  # absent, or no directory to hold it
            return None
        except OSError as err:
            if self._directory_unusable():
                return None
            found = f"cannot be read ({err.strerror or err})"
        if isinstance(found, str):
            self._say(f"cache entry {path}: {found}; replacing it from the verified source")
            return None
        return found

    def _directory_unusable(self) -> bool:
        """Whether the directory itself cannot be used (a loop of links, a file in its place):
        then said once, for the directory, not once per entry, and the run goes on without it."""
        try:
            usable, problem = stat.S_ISDIR(os.stat(self.directory).st_mode), "not a directory"
        except FileNotFoundError:
            usable = True  # made by the first store
        except OSError as err:
            usable, problem = False, err.strerror or str(err)
        if not usable:
            self.usable = self.writable = False
            self._say(f"the data cache {self.directory} cannot be used ({problem}): running "
                      "without it")
        return not usable

    def store(self, name: str, arrays: dict) -> None:
        """Write ``arrays`` as entry ``name`` (atomically); a failure is said once and the run
        goes on without the cache."""
        if not self.writable:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path(name)
            for part in remove_stale_parts(self.directory, name):
                self._say(f"removed {part}, a partial write of this entry that never finished")
            if _existing_other(path):  # a FIFO or a device in an entry's place: not written into
                os.unlink(path)
            write_atomically(path, _entry(name, arrays))
        except OSError as err:
            self.writable = False
            self._say(f"the data cache {self.directory} cannot be written "
                      f"({err.strerror or err}): running without it")

    def derived(self, name: str, build) -> dict:
        """The arrays of entry ``name``, made by ``build()`` from verified data: the stored ones
        when sound, else built and stored. With the full check they are built anyway and the
        stored ones kept only if equal."""
        stored = self.load(name)
        if stored is not None and not self.full_check:
            return stored
        built = build()
        if stored is not None:
            if stored.keys() == built.keys() and all(
                    stored[k].dtype == built[k].dtype and np.array_equal(stored[k], built[k])
                    for k in built):
                return stored
            self._say(f"cache entry {self.path(name)}: differs from what the verified data "
                      "gives; replacing it")
        self.store(name, built)
        return built

    def _say(self, line: str) -> None:
        if self.log:
            self.log(line)


def open_cache(cache, log=None, full_check: bool | None = None) -> DataCache | None:
    """``cache``: True for the default directory, a directory, or False (None) for no cache."""
    if cache is False or cache is None:
        return None
    full_check = verify_from_environment() if full_check is None else full_check
    directory = default_cache_dir() if cache is True else Path(cache)
    return DataCache(directory, log, full_check)


def _existing_other(path: Path) -> bool:
    """Whether ``path`` is there and, links followed, not a regular file (a FIFO, a device)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return os.path.islink(path)  # a dangling link or a loop


# --------------------------------------------------------------------------- the entry's format


def _canonical(description: dict) -> bytes:
    return json.dumps(description, sort_keys=True, separators=(",", ":")).encode()


def _entry(name: str, arrays: dict) -> list:
    """The pieces of entry ``name``'s file: its header page, then each array 64-byte aligned."""
    specs, pieces, offset = [], [], HEADER_BYTES
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype.str not in _DTYPES:
            raise ValueError(f"cannot cache {array.dtype} arrays")
        pad = -offset % ALIGN
        if pad:
            pieces.append(bytes(pad))
            offset += pad
        specs.append([key, array.dtype.str, list(array.shape), offset])
        pieces.append(memoryview(array.reshape(-1)).cast("B"))
        offset += array.nbytes
    description = {"format": FORMAT, "name": name, "size": offset, "arrays": specs}
    crc = zlib.crc32(_canonical(description))
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    header = MAGIC + json.dumps({**description, "crc32": crc}).encode() + b"\n"
    if len(header) > HEADER_BYTES:
        raise ValueError(f"too many arrays for one cache entry ({len(arrays)})")
    return [header + bytes(HEADER_BYTES - len(header)), *pieces]


def _read(handle, name: str, sha256: str | None):
    """The arrays of an open entry file, mapped read-only, or what is wrong with it."""
    size = os.fstat(handle.fileno()).st_size
    head = handle.read(HEADER_BYTES)
    if not head.startswith(MAGIC):
        return "not a mnist-gpu cache entry"
    description = _description(head)
    if isinstance(description, str):
        return description
    if description["name"] != name:
        return f"holds {description['name']!r}, not this entry"
    if size != description["size"]:
        what = "truncated" if size < description["size"] else "too long"
        return f"{what}: {size:,} bytes where its header says {description['size']:,}"
    crc = zlib.crc32(_canonical({k: v for k, v in description.items() if k != "crc32"}))
    first = description["arrays"][0] if description["arrays"] else None
    digest = hashlib.sha256() if sha256 and first else None
    buffer, position = bytearray(_CHUNK), HEADER_BYTES
    while position < size:
        got = handle.readinto(buffer)
        if not got:
            return "shorter than its size when read"
        chunk = memoryview(buffer)[:got]
        crc = zlib.crc32(chunk, crc)
        if digest is not None:
            begin = first[3]
            end = begin + _nbytes(first)
            lo, hi = max(begin, position), min(end, position + got)
            if lo < hi:
                digest.update(chunk[lo - position:hi - position])
        position += got
    if crc != description["crc32"]:
        return "damaged: the CRC-32 of its bytes does not match its header"
    if digest is not None and digest.hexdigest() != sha256:
        return (f"wrong SHA-256 of its content ({digest.hexdigest()[:16]}..., expected "
                f"{sha256[:16]}...)")
    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return {key: np.frombuffer(mapped, dtype=np.dtype(dtype), count=int(np.prod(shape)),
                               offset=offset).reshape(shape)
            for key, dtype, shape, offset in description["arrays"]}


def _nbytes(spec) -> int:
    _, dtype, shape, _ = spec
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def _description(head: bytes):
    """The header's description, checked to be one this module writes, or what is wrong."""
    try:
        description = json.loads(head[len(MAGIC):].split(b"\n", 1)[0])
    except ValueError:
        return "its header is damaged"
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        found = description.get("format") if isinstance(description, dict) else None
        return f"written in cache format {found!r}, not {FORMAT}"
    try:
        name, size, crc = description["name"], description["size"], description["crc32"]
        arrays = description["arrays"]
        ok = isinstance(name, str) and isinstance(size, int) and isinstance(crc, int)
        end = HEADER_BYTES
        for key, dtype, shape, offset in arrays:
            ok = ok and isinstance(key, str) and dtype in _DTYPES and isinstance(offset, int)
            ok = ok and all(isinstance(d, int) and d >= 0 for d in shape)
            ok = ok and offset >= end and offset % ALIGN == 0
            end = offset + _nbytes([key, dtype, shape, offset]) if ok else end
        ok = ok and end == size
    except (KeyError, TypeError, ValueError):
        ok = False
    return description if ok else "its header is damaged"
