"""Writing a file so that no reader ever sees it half-written: the one helper for downloads and
saved weights alike."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(target: str | os.PathLike, blob: bytes) -> Path:
    """Write ``blob`` to a unique ``.part`` file beside ``target``, flush it to disk, rename it.

    The ``.part`` name is unique per writer, so two processes writing one target never write into
    each other's file; the rename is atomic, so ``target`` always holds the previous complete file
    or the new one. On any failure (a full disk, Ctrl-C) the ``.part`` file is removed.
    """
    target = Path(target)
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
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
