"""What every backend shares: the verbs, their CPU defaults, and the namespace of an array.

Namespaces are resolved through array-api-compat, as scikit-learn and SciPy do it: CuPy and
PyTorch arrays get the array API standard's names (``astype``, ``concat``, ``permute_dims``, ...),
array_api_strict its own. NumPy's arrays get NumPy itself, whose namespace is the standard's from
NumPy 2.1, the lowest pyproject.toml admits: array-api-compat's wrapper of it adds nothing the math
calls, and costs a NumPy run a fifth of its start (it copies NumPy's namespace, which imports
numpy.testing and numpy.f2py), so array-api-compat is imported only when another library's
arrays need it. It is a dependency of the package; run from a checkout where it is missing (a GPU
machine with no network), CuPy uses its own namespace, which has every standard name the math
calls from CuPy 14, and PyTorch, whose namespace is not the standard's, is unavailable.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import platform
import sys
import time
from types import ModuleType

import numpy as np


@functools.cache
def _compat() -> ModuleType | None:
    """array-api-compat, imported on first use, or None where it is not installed."""
    try:
        return importlib.import_module("array_api_compat")
    except ImportError:  # see the module's docstring
        return None


def host_memory_available() -> int | None:
    """Bytes of host memory a run may still plan for (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run here; the message says why."""


def array_namespace(*arrays):
    """The namespace shared by ``arrays`` (the array API standard's, through array-api-compat).

    Mixing libraries is an error rather than a silent host copy.
    """
    spaces = {id(ns): ns for ns in map(_namespace_of, arrays)}
    if len(spaces) != 1:
        names = sorted(ns.__name__ for ns in spaces.values())
        raise TypeError(f"arrays from different array libraries: {', '.join(names)}")
    return next(iter(spaces.values()))


def has_standard_namespaces() -> bool:
    """Whether array-api-compat is installed (what PyTorch's tensors need)."""
    return _compat() is not None


def standard_namespace(library: str, own: ModuleType) -> ModuleType:
    """``library``'s namespace with the array API standard's names: NumPy itself, else
    array-api-compat's wrapper (``array_api_compat.cupy``, ``.torch``), else the library's ``own``
    (without array-api-compat, or where its wrapper cannot import the library: a stand-in the
    tests build)."""
    if own is np or _compat() is None:
        return own
    try:
        return importlib.import_module(f"array_api_compat.{library}")
    except ImportError:
        return own


def _namespace_of(array):
    if isinstance(array, (np.ndarray, np.generic)):
        return np
    library = type(array).__module__.split(".")[0]
    get = getattr(array, "__array_namespace__", None)
    if get is not None:  # array_api_strict's arrays name their own
        return get()
    compat = _compat()
    if compat is not None:
        try:
            return compat.array_namespace(array)
        except TypeError:
            pass
    elif library == "cupy" and "cupy" in sys.modules:
        return sys.modules["cupy"]
    raise TypeError(f"not an array of a supported library: {type(array).__name__}")


class Backend:
    """Verbs shared by every backend; subclasses fill in the library-specific ones."""

    name: str
    xp: ModuleType
    # Whether its arrays are computed by this machine's CPU: what a benchmark sizes its work by.
    runs_on_cpu = True
    # The floating-point dtypes its device computes in.
    dtypes = ("float32", "float64")

    @property
    def label(self) -> str:
        """The name and, where the library has several, the device: what a report prints."""
        return self.name

    def check_dtype(self, dtype: str) -> None:
        """Raise ``BackendUnavailable`` if this backend's device cannot compute in ``dtype``."""
        if str(dtype) not in self.dtypes:
            raise BackendUnavailable(f"--dtype {dtype}: the {self.label} device has no {dtype} "
                                     f"(use --dtype {self.dtypes[0]})")

    def to_device(self, host_array: np.ndarray):
        """A copy of ``host_array`` on this backend's device, never a view of the caller's."""
        raise NotImplementedError

    def to_host(self, array) -> np.ndarray:
        """A NumPy copy of ``array`` (a device-to-host transfer, which synchronises)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until all queued device work is done (a no-op on the CPU)."""

    def activate(self):
        """Context in which this backend's device is the current one."""
        return contextlib.nullcontext()

    def shards(self) -> int:
        """Into how many parts, each on a host thread of its own, a network's training step
        splits a batch: 1 on a device that queues work from one thread."""
        return 1

    def sharded(self):
        """Context in which shards run (``shards() > 1``): each library call on its thread."""
        return contextlib.nullcontext()

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "numpy": np.__version__,
            "python": platform.python_version(),
        }

    @contextlib.contextmanager
    def stopwatch(self):
        """Time a region of device work: synchronise, read the clock, run, synchronise, read.

        Yields a dict whose ``seconds`` is filled in when the block ends.
        """
        result = {}
        self.synchronize()
        start = time.perf_counter()
        yield result
        self.synchronize()
        result["seconds"] = time.perf_counter() - start

    def out_of_memory_errors(self) -> tuple[type[BaseException], ...]:
        """The exception types this library raises when device memory runs out."""
        return (MemoryError,)

    def memory_available(self) -> int | None:
        """Bytes the device can still give (what a run may plan for), or None if unknown. On
        the CPU: the host's available memory (Linux's MemAvailable)."""
        return host_memory_available()

    def reset_memory_pool(self) -> None:
        """Release cached device memory; what is still held is the resident set (the data,
        the weights), from which ``memory_pool_rise`` counts."""

    def memory_pool_rise(self) -> int | None:
        """Bytes the device memory pool rose to above the resident set since the last
        ``reset_memory_pool`` (the high-water mark of the work's own allocations), where the
        library has a pool; None on the CPU."""
        return None

    def __repr__(self):
        return f"<{type(self).__name__} {self.label}>"


# --------------------------------------------------------------------------- small helpers


def import_optional(name: str) -> ModuleType:
    """Import ``name``; sys.modules first, so that a test can stand a fake (or None, meaning "not
    installed") in its place."""
    if name in sys.modules and sys.modules[name] is None:
        raise ImportError(f"No module named {name!r}")
    return importlib.import_module(name)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def cpu_model() -> str:
    """The CPU's model name, as the machine reports it."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
