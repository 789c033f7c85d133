"""The cache of the compiled CPU loops: where it lives, what it is keyed on, and what happens when
it is damaged.

Numba's own ``cache=True`` writes beside the source, inside the installed package (which may be
read-only, and a cache left there outlives an uninstall), unless its global ``CACHE_DIR`` says
otherwise. Here each loop gets a cache of its own instead, in ``$NUMBA_CACHE_DIR`` when the user
set it, else in the per-user cache directory (``~/.cache/mnist-gpu/numba`` on Linux), so that no
setting of the user's other Numba code is touched. Nothing is created at import: the directory is
made when the first compiled loop is saved, and when it cannot be written the loops are compiled
afresh in each process instead.

**Keyed on everything the compiled code is made of.** A loop's entries hold the SHA-256 of the
contents of its module and of every mnist-gpu module that module's globals reach, and theirs in
turn (``sources``): for the CPU passes, the loops, the row operations they inline, the LLVM IR
those are built from, the code that computes the pixel-scale table baked into the IR
(``model/tutorial.py``'s ``scale_images``), and what those call. Found by that rule, so a module
added tomorrow is covered without a list to keep; it errs on the side of compiling again (an edit
to ``backend/`` does too). Numba's and llvmlite's versions are part of the key; so are the
signature and the CPU (Numba's ``magic_tuple``). The key is the content, never a file's time.

**A damaged entry** (a truncated ``.nbc``, an empty ``.nbi``, as a crash or a full disk leaves
them) is named in one line on stderr, removed, compiled again and saved in its place.

Files: per loop, an index (``<module>.<loop>-<line>.py<version>.nbi``: the key of each compiled
signature and the name of its data file) and one data file per signature (``.<n>.nbc``: the
compiled object code, as Numba serialises it), in one folder per source folder, as Numba's own
caches lay them out (two checkouts sharing the cache never overwrite each other's index), named
for the format too.

A cached loop is loaded without the refresh of Numba's whole compiler that Numba's own caches
make first: that refresh imports and registers every typing and lowering rule Numba has, a sixth
of a warm ``mnist-gpu train``; loading compiled code needs only Numba's runtime (NRT), and a loop
not in the cache is compiled by Numba's compiler, which refreshes the context itself.

Numba has no public way to give a function a cache of one's own: ``numba_private_api`` is the one
place that names Numba's private attributes, and says why.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import pickle
import sys
import types
from pathlib import Path

import llvmlite
import numba
from numba.core import config, serialize
from numba.core.caching import NullCache
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys

from ..io.files import user_cache_dir, writable_dir, write_atomically

PACKAGE = __name__.split(".")[0]
# The layout of the index files below: changed, it moves the cache to a folder of its own.
FORMAT = "mnist-gpu loop cache 2"
# What else a compiled loop depends on: the compilers that made it.
TOOLS = (f"numba {numba.__version__}", f"llvmlite {llvmlite.__version__}")


def chosen_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` (or Numba's ``CACHE_DIR``) when set, else the per-user cache."""
    chosen = os.environ.get("NUMBA_CACHE_DIR") or config.CACHE_DIR
    return Path(chosen) if chosen else user_cache_dir() / "numba"


def cache_dir() -> Path | None:
    """The directory the loops are cached in, or None when it cannot be written (then each
    process compiles them afresh). Asking creates it."""
    path = chosen_dir()
    return path if writable_dir(path) else None


# --------------------------------------------------------------------------- what a loop is made of


def sources(module_name: str) -> dict[str, Path]:
    """The source files of module ``module_name`` and of every mnist-gpu module its globals
    reach (the functions, intrinsics and modules it names), and theirs in turn: what a loop
    defined there is made of, by module name. Read from the modules as imported (at the first
    load or save, when they are whole), which costs no parsing."""
    found, waiting = {}, [sys.modules[module_name]]
    while waiting:
        module = waiting.pop()
        found[module.__name__] = Path(module.__file__)
        for value in list(vars(module).values()):
            name = (value.__name__ if isinstance(value, types.ModuleType)
                    else getattr(value, "__module__", None))
            if (isinstance(name, str) and name.split(".")[0] == PACKAGE and name not in found
                    and getattr(sys.modules.get(name), "__file__", None)):
                found[name] = None  # queued
                waiting.append(sys.modules[name])
    return dict(sorted(found.items()))


_STAMPS: dict[str, str] = {}


def source_stamp(module_name: str) -> str:
    """The SHA-256 of the compilers' versions and of the contents of ``sources(module_name)``,
    each under its module's name."""
    if module_name not in _STAMPS:
        digest = hashlib.sha256("\n".join(TOOLS).encode())
        for name, source in sources(module_name).items():
            digest.update(f"\0{name}\0".encode())
            digest.update(source.read_bytes())
        _STAMPS[module_name] = digest.hexdigest()
    return _STAMPS[module_name]


# --------------------------------------------------------------------------- Numba's private names


class NumbaChanged(RuntimeError):
    """The installed Numba lacks a private attribute the loop cache relies on."""


def numba_private_api():
    """``(attach, reduce, rebuild)``: the three things the loop cache needs from Numba that Numba
    does not make public, and the one place in mnist-gpu that names Numba's private attributes.

    * ``attach(dispatcher, cache)``: a compiled function's cache is its dispatcher's ``_cache``.
      ``numba.njit(cache=True)`` (``Dispatcher.enable_caching``) can only place the cache beside
      the source or under the global ``NUMBA_CACHE_DIR``, and Numba takes no argument or hook
      for a cache of one's own.
    * ``reduce(result)`` and ``rebuild(context, payload)``: a compile result to picklable parts
      and back, ``CompileResult._reduce`` and ``CompileResult._rebuild``, as Numba's own
      ``FunctionCache`` does it. Its public wrapper (``CompileResultCacheImpl``) cannot be made
      without choosing a cache location from Numba's own list, some of which write beside the
      source.

    Raises ``NumbaChanged``, naming what is missing, on a Numba without them
    (``tests/test_loop_cache.py`` checks this on the Numba installed).
    """
    from numba.core.compiler import CompileResult

    missing = [f"CompileResult.{name}" for name in ("_reduce", "_rebuild")
               if not callable(getattr(CompileResult, name, None))]
    probe = CPUDispatcher(py_func=lambda: None, locals={}, targetoptions={"nopython": True})
    if not isinstance(getattr(probe, "_cache", None), NullCache):
        missing.append("Dispatcher._cache (a NullCache until caching is enabled)")
    if missing:
        raise NumbaChanged(f"Numba {numba.__version__} has no {', '.join(missing)}: the "
                           "compiled loops' cache (mnist_gpu/kernels/numba_cache.py) needs them")

    def attach(dispatcher, cache):
        dispatcher._cache = cache

    def reduce(result):
        return result._reduce()

    def rebuild(context, payload):
        return CompileResult._rebuild(context, *payload)

    return attach, reduce, rebuild


# --------------------------------------------------------------------------- a loop's cache


class DamagedEntry(Exception):
    """A cache file that cannot be read back: ``path`` and what is wrong with it."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


class LoopCache:
    """The cache of one compiled function, in ``chosen_dir``, as its dispatcher uses it
    (``load_overload``, ``save_overload``, ``flush``, ``cache_path``)."""

    def __init__(self, py_func, reduce, rebuild):
        self.reduce, self.rebuild = reduce, rebuild
        self.module = py_func.__module__
        source = Path(inspect.getfile(py_func)).resolve()
        # One folder per source folder and format of these files (the caches Numba's own
        # classes wrote, in another format, are left unread in folders of their own).
        where = f"{FORMAT}:{source.parent}".encode()
        folder = f"{source.parent.name}_{hashlib.sha1(where).hexdigest()}"
        self.cache_path = str(chosen_dir() / folder)
        self.base = (f"{source.stem}.{py_func.__qualname__}-{py_func.__code__.co_firstlineno}"
                     f".py{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}")
        self.enabled = True

    def stamp(self) -> str:
        return source_stamp(self.module)

    @property
    def index_path(self) -> Path:
        return Path(self.cache_path) / f"{self.base}.nbi"

    def data_path(self, name: str) -> Path:
        return Path(self.cache_path) / name

    def load_overload(self, sig, target_context):
        """The compiled function for ``sig`` from the cache, or None (not there, stale, or
        damaged: then said in one line and removed, and the caller compiles it again)."""
        if not self.enabled:
            return None
        rtsys.initialize(target_context)
        try:
            name = self._overloads().get((sig, target_context.codegen().magic_tuple()))
            if name is None:
                return None
            path = self.data_path(name)
            try:
                blob = path.read_bytes()
            except FileNotFoundError:
                return None
            try:
                return self.rebuild(target_context, pickle.loads(blob))
            except Exception as err:  # a damaged file raises whatever unpickling meets
                raise DamagedEntry(path, _problem(err, blob)) from None
        except DamagedEntry as damaged:
            print(f"mnist-gpu: compiled-loop cache entry {damaged}; compiling it again",
                  file=sys.stderr)
            damaged.path.unlink(missing_ok=True)
            return None
        except OSError:
            return None

    def save_overload(self, sig, result):
        """Save ``result``, compiled for ``sig``; a cache that cannot be written is given up
        for the rest of the process (the loops are compiled without it)."""
        if not self.enabled or result.lifted or result.library.has_dynamic_globals:
            return
        try:
            Path(self.cache_path).mkdir(parents=True, exist_ok=True)
            try:
                overloads = self._overloads()
            except DamagedEntry:
                overloads = {}
            key = (sig, result.codegen.magic_tuple())
            taken = set(overloads.values())
            name = overloads.get(key) or next(
                f"{self.base}.{n}.nbc" for n in range(1, len(taken) + 2)
                if f"{self.base}.{n}.nbc" not in taken)
            write_atomically(self.data_path(name), serialize.dumps(self.reduce(result)))
            overloads[key] = name
            write_atomically(self.index_path,
                             serialize.dumps((TOOLS, self.stamp(), overloads)))
        except OSError:
            self.enabled = False

    def _overloads(self) -> dict:
        """The index: compiled signature -> data file, empty when it is missing or stale."""
        try:
            blob = self.index_path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            tools, stamp, overloads = pickle.loads(blob)
            if not isinstance(overloads, dict):
                raise TypeError(f"an index of {type(overloads).__name__}, not a dict")
        except Exception as err:  # a damaged file raises whatever unpickling meets
            raise DamagedEntry(self.index_path, _problem(err, blob)) from None
        fresh = tools == TOOLS and stamp == self.stamp()
        return overloads if fresh else {}

    def flush(self):
        self.index_path.unlink(missing_ok=True)

    def enable(self):
        self.enabled = True

    def disable(self):
        self.enabled = False


def _problem(err: Exception, blob: bytes) -> str:
    if not blob:
        return "empty"
    said = " ".join(str(err).split())
    return f"damaged ({type(err).__name__}{': ' + said if said else ''})"


def compiled(**options):
    """``numba.njit(nogil=True, **options)``, cached in ``chosen_dir`` (uncached, compiled in
    each process, on a Numba whose private names changed)."""
    try:
        attach, reduce, rebuild = numba_private_api()
    except NumbaChanged:
        attach = None

    def decorate(func):
        dispatcher = CPUDispatcher(py_func=func, locals={}, targetoptions={
            "nopython": True, "boundscheck": None, "nogil": True, **options})
        if attach is not None:
            attach(dispatcher, LoopCache(func, reduce, rebuild))
        return dispatcher
    return decorate
