"""Where the compiled CPU loops are cached, chosen per function rather than through Numba's global
setting, and created only when a loop is first compiled.

Numba's own ``cache=True`` writes beside the source, inside the installed package (which may be
read-only, and a cache left there outlives an uninstall), unless its global ``CACHE_DIR`` says
otherwise. Here each loop gets a cache of its own kind instead, whose locator points at
``$NUMBA_CACHE_DIR`` when the user set it, else at the per-user cache directory
(``~/.cache/mnist-gpu/numba`` on Linux), so that no setting of the user's other Numba code is
touched. Nothing is created at import: the directory is made when the first compiled loop is
saved, and when it cannot be written the loops are compiled afresh in each process instead.

A loop's cache is keyed on every source file of the CPU passes (its own, and the row operations it
inlines), so an edit to either compiles it again. A cached loop is loaded without the refresh of
Numba's whole compiler that Numba's own caches make first (see ``_Cache.load_overload``).
"""

from __future__ import annotations

import os
from pathlib import Path

from numba.core import caching, config
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys

from ..io.files import user_cache_dir, writable_dir

_HERE = Path(__file__).resolve().parent
# What the compiled loops are made of: a change to any of these makes the cache stale.
SOURCES = (_HERE / "cpu_loops.py", _HERE / "cpu_rows.py", _HERE / "cpu_conv_loops.py")


def chosen_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` (or Numba's ``CACHE_DIR``) when set, else the per-user cache."""
    chosen = os.environ.get("NUMBA_CACHE_DIR") or config.CACHE_DIR
    return Path(chosen) if chosen else user_cache_dir() / "numba"


def cache_dir() -> Path | None:
    """The directory the loops are cached in, or None when it cannot be written (then each
    process compiles them afresh). Asking creates it."""
    path = chosen_dir()
    return path if writable_dir(path) else None


class _Locator(caching.UserProvidedCacheLocator):
    """Numba's locator for a user-given directory, pointed at ``chosen_dir`` and keyed on
    ``SOURCES``; it creates nothing until a compiled loop is saved."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        # One folder per source folder, as Numba's own locators keep it: two checkouts or
        # installs sharing the cache never overwrite each other's index.
        self._cache_path = str(chosen_dir() / self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        return cls(py_func, py_file)

    def get_source_stamp(self):
        return tuple((path.name, path.stat().st_mtime_ns, path.stat().st_size)
                     for path in SOURCES)


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]


class _Cache(caching.FunctionCache):
    """A function's cache in ``chosen_dir``: when that cannot be read or written, the loop is
    compiled as if there were no cache."""

    _impl_class = _Impl

    def load_overload(self, sig, target_context):
        # Numba's own method first refreshes the whole target context: it imports and registers
        # every typing and lowering rule Numba has, a sixth of a warm `mnist-gpu train`. Loading
        # compiled code needs only the runtime (NRT); a loop not in the cache is compiled by
        # Numba's compiler, which refreshes the context itself.
        rtsys.initialize(target_context)
        try:
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except OSError:
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError:
            self.disable()


class _Dispatcher(CPUDispatcher):
    def enable_caching(self):
        self._cache = _Cache(self.py_func)


def compiled(**options):
    """``numba.njit(nogil=True, cache=True, **options)``, cached in ``chosen_dir``."""
    def decorate(func):
        dispatcher = _Dispatcher(py_func=func, locals={}, targetoptions={
            "nopython": True, "boundscheck": None, "nogil": True, **options})
        dispatcher.enable_caching()
        return dispatcher
    return decorate
