"""Where mnist-gpu writes: a file written so that no reader ever sees it half-written (the one
helper for downloads, saved weights, reports and pictures), and the per-user cache directory;
and how it reads a file it is given: a regular file of a bounded size, never a device or a FIFO
(``/dev/zero`` never ends, a FIFO without a writer never answers).

Nothing is ever written inside the installed package: it may be read-only (a system or shared
environment), and a file left there outlives an uninstall (a ``site-packages/mnist_gpu/`` holding
only a cache is imported as an empty namespace package, hiding a later editable install).
"""

from __future__ import annotations

import errno
import glob
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

# A ``.part`` file left by a write that never finished (its process killed outright, a power
# cut) is removed by a later ``remove_stale_parts``: when its writer, named in it, is no longer a
# process of this machine and it has not grown for a minute (a writer on another machine that
# shares the folder touches it as it writes), or, whoever wrote it, once it has not grown for an
# hour (a write takes seconds).
DEAD_WRITER_SECONDS = 60
ABANDONED_SECONDS = 3600


def user_cache_dir() -> Path:
    """The platform's per-user cache directory for mnist-gpu (it may not exist yet).

    ``$XDG_CACHE_HOME/mnist-gpu`` or ``~/.cache/mnist-gpu`` on Linux, ``~/Library/Caches/
    mnist-gpu`` on macOS, ``%LOCALAPPDATA%\\mnist-gpu`` on Windows. A relative
    ``$XDG_CACHE_HOME`` is ignored, as the XDG specification says (it would move with the
    current directory).
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME", "")
        if not os.path.isabs(base):
            base = Path.home() / ".cache"
    return Path(base) / "mnist-gpu"


def writable_dir(path: Path) -> bool:
    """Create ``path`` if needed and report whether a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def write_atomically(target: str | os.PathLike, blob) -> Path:
    """Write ``blob`` to ``target`` so that no reader ever sees half of it; returns ``target``.

    ``blob`` is bytes-like, or a list or tuple of bytes-like pieces written one after the other
    (a large file is never joined into one copy in memory).

    A regular file (or a new name) is written to a unique ``.part`` file beside it, flushed to
    disk and renamed over it: ``target`` always holds the previous complete file or the new one,
    two writers never write into each other's file, and on any failure (a full disk, Ctrl-C) the
    ``.part`` file is removed. Through a symbolic link, the file it names is replaced that way,
    in that file's directory, and the link stays. A path that is neither (a device such as
    ``/dev/null`` or ``/dev/full``, a FIFO, a socket) is opened and written as it is, never
    renamed over: renaming over ``/dev/full`` as root would turn the device into a file. Errors
    (``ENOSPC`` from a full device or disk) are raised as ``OSError``.
    """
    target = Path(target)
    kind = _existing_kind(target)
    if kind == "directory":
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(target))
    if kind == "other":
        _write_in_place(target, blob)
        return target
    _replace_atomically(Path(os.path.realpath(target)), blob)
    return target


def _existing_kind(path: Path) -> str | None:
    """What ``path`` names, links followed: None (nothing yet), "file", "directory" or "other"
    (a device, a FIFO, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return "file"
    return "directory" if stat.S_ISDIR(mode) else "other"


def _pieces(blob):
    return blob if isinstance(blob, (list, tuple)) else (blob,)


def _write_in_place(path: Path, blob) -> None:
    # No O_CREAT: the path exists and is not ours to create; no O_TRUNC: a device ignores it and
    # a FIFO has nothing to truncate.
    fd = os.open(path, os.O_WRONLY)
    try:
        for piece in _pieces(blob):
            view = memoryview(piece).cast("B")
            while view:
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _replace_atomically(target: Path, blob) -> None:
    # The writer's process id is in the name, for ``remove_stale_parts``.
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}-",
                                suffix=".part")
    try:
        if hasattr(os, "fchmod"):
            # mkstemp makes the file private (0600); the finished file gets the mode any new file
            # of the user's would (0644 under the usual umask 022).
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            for piece in _pieces(blob):
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, target)
    except BaseException:
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
        raise


def remove_stale_parts(directory: str | os.PathLike, name: str, now: float | None = None
                       ) -> list[Path]:
    """Remove the ``.part`` files that unfinished writes of ``name`` left in ``directory`` (see
    ``DEAD_WRITER_SECONDS``), never one a live process may still be writing; returns those
    removed."""
    now = time.time() if now is None else now
    removed = []
    for part in Path(directory).glob(f".{glob.escape(name)}.*.part"):
        try:
            idle = now - part.lstat().st_mtime
        except OSError:
            continue  # gone already: renamed into place by its writer, or removed
        writer = _writer(part.name[len(name) + 2:])
        dead = writer is not None and not _alive(writer)
        if idle >= ABANDONED_SECONDS or (dead and idle >= DEAD_WRITER_SECONDS):
            try:
                part.unlink()
            except OSError:
                continue
            removed.append(part)
    return removed


def _writer(rest: str) -> int | None:
    """The process id in the rest of a ``.part`` file's name (``PID-random.part``), or None
    (a name from before the id was written in it)."""
    pid, dash, _ = rest.partition("-")
    return int(pid) if dash and pid.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process of this machine (unknown, hence alive, where the system
    cannot say)."""
    if sys.platform == "win32":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def output_problem(path: str | os.PathLike) -> str | None:
    """Why a file could not be written at ``path``, found before any work is done, or None.

    As ``write_atomically`` writes: a device or FIFO must be writable itself; a regular file (or
    a new name), through its symbolic link if it is one, needs a writable directory.
    """
    path = Path(path)
    try:
        kind = _existing_kind(path)
    except OSError as err:  # a loop of links, a name too long, a folder not ours to look in
        return err.strerror or str(err)
    if kind == "directory":
        return "is a directory (give a file name)"
    if kind == "other":
        return None if os.access(path, os.W_OK) else "is not writable"
    parent = Path(os.path.realpath(path)).parent if path.is_symlink() else path.parent
    if not parent.exists():
        return f"the directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    return None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether writing ``a`` would write the regular file ``b`` (or the file it is to be): the
    same device and inode where both exist (links of either kind, ``./``, ``..``), else the same
    path once links are resolved. Devices and FIFOs are never the same file in this sense:
    ``/dev/null`` may take two outputs."""
    try:
        first, second = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        try:
            return os.path.realpath(a) == os.path.realpath(b)
        except (OSError, ValueError):
            return False
    if not (stat.S_ISREG(first.st_mode) and stat.S_ISREG(second.st_mode)):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


class NotReadable(OSError):
    """A path that is no regular file, or one larger than the reader takes (``strerror`` says
    which, for the caller's one line)."""


def open_regular(path: str | os.PathLike, max_bytes: int | None = None):
    """``path`` opened for reading in binary, once it is known to be a regular file of at most
    ``max_bytes`` bytes; else ``NotReadable``. It is opened without blocking, so that a FIFO
    with no writer is refused at once rather than waited on forever."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotReadable(errno.EINVAL, "not a regular file", str(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise NotReadable(errno.EFBIG, f"{info.st_size:,} bytes: larger than the "
                                           f"{max_bytes:,} such a file can be", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see ``open_regular``)."""
    with open_regular(path, max_bytes) as handle:
        if max_bytes is None:
            return handle.read()
        # As much as it holds and one byte more (a buffer of max_bytes would be allocated whole).
        blob = handle.read(os.fstat(handle.fileno()).st_size + 1)
    if len(blob) > max_bytes:  # it grew after it was measured
        raise NotReadable(errno.EFBIG, f"larger than the {max_bytes:,} bytes such a file can "
                                       "be", str(path))
    return blob
