"""Where mnist-gpu writes: a file written so that no reader ever sees it half-written (the one
helper for downloads, saved weights, reports and pictures), and the per-user cache directory.

Nothing is ever written inside the installed package: it may be read-only (a system or shared
environment), and a file left there outlives an uninstall (a ``site-packages/mnist_gpu/`` holding
only a cache is imported as an empty namespace package, hiding a later editable install).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def user_cache_dir() -> Path:
    """The platform's per-user cache directory for mnist-gpu (it may not exist yet).

    ``$XDG_CACHE_HOME/mnist-gpu`` or ``~/.cache/mnist-gpu`` on Linux, ``~/Library/Caches/
    mnist-gpu`` on macOS, ``%LOCALAPPDATA%\\mnist-gpu`` on Windows.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
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
    """Write ``blob`` to a unique ``.part`` file beside ``target``, flush it to disk, rename it.

    ``blob`` is bytes-like, or a list or tuple of bytes-like pieces written one after the other
    (a large file is never joined into one copy in memory).

    The ``.part`` name is unique per writer, so two processes writing one target never write into
    each other's file; the rename is atomic, so ``target`` always holds the previous complete file
    or the new one. On any failure (a full disk, Ctrl-C) the ``.part`` file is removed.
    """
    target = Path(target)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        if hasattr(os, "fchmod"):
            # mkstemp makes the file private (0600); the finished file gets the mode any new file
            # of the user's would (0644 under the usual umask 022).
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            for piece in blob if isinstance(blob, (list, tuple)) else (blob,):
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
    return target


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def output_problem(path: str | os.PathLike) -> str | None:
    """Why a file could not be written at ``path``, found before any work is done, or None."""
    path = Path(path)
    if path.is_dir():
        return "is a directory (give a file name)"
    parent = path.parent
    if not parent.exists():
        return f"the directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    return None
