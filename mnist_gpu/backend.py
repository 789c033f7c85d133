"""The one module that knows which array library a run uses.

A backend is a closed set of verbs: its array namespace (``xp``), ``to_device`` and ``to_host``,
``synchronize``, ``activate`` (make its device current), ``describe`` (library, device, versions),
``stopwatch`` (a clock read after synchronising) and what its device's memory holds. Everything
else in mnist-gpu is written once against ``xp``; the library-specific fast paths (the compiled
kernels) are found by the backend's ``name`` in ``mnist_gpu.kernels``, not here.

Three libraries, chosen at the edge (the CLI, or the caller of ``get_backend``) and passed down:

* ``numpy``: the CPU.
* ``cupy``: an NVIDIA GPU. It counts only if CuPy imports *and* a device answers.
* ``array_api_strict``: the test suite's GPU stand-in. Its fake device refuses implicit conversion
  to NumPy, exactly as CuPy does, and its namespace refuses anything outside the array API standard.

``auto`` takes CuPy when it is usable and otherwise NumPy, saying why. Importing this module
imports neither CuPy nor array_api_strict.
"""

from __future__ import annotations

import contextlib
import importlib
import platform
import sys
import time
from types import ModuleType

import numpy as np

BACKEND_CHOICES = ("auto", "numpy", "cupy")


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
    """The namespace shared by ``arrays`` (the array API's ``__array_namespace__``).

    Mixing libraries is an error rather than a silent host copy.
    """
    spaces = {id(ns): ns for ns in map(_namespace_of, arrays)}
    if len(spaces) != 1:
        names = sorted(ns.__name__ for ns in spaces.values())
        raise TypeError(f"arrays from different array libraries: {', '.join(names)}")
    return next(iter(spaces.values()))


def _namespace_of(array):
    get = getattr(array, "__array_namespace__", None)
    if get is not None:
        return get()
    # cupy.ndarray (CuPy 14) has no __array_namespace__; its main namespace is the one we use.
    # Looked up in sys.modules, never imported: an array of a library implies the library is loaded.
    library = type(array).__module__.split(".")[0]
    if library == "cupy" and "cupy" in sys.modules:
        return sys.modules["cupy"]
    raise TypeError(f"not an array of a supported library: {type(array).__name__}")


class Backend:
    """Verbs shared by every backend; subclasses fill in the library-specific ones."""

    name: str
    xp: ModuleType
    # Whether its arrays are computed by this machine's CPU: what a benchmark sizes its work by.
    runs_on_cpu = True

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
        return f"<{type(self).__name__} {self.name}>"


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        self.xp = np

    def to_device(self, host_array):
        return np.array(host_array, copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)

    def activate(self):
        # Overflow is found by the explicit finiteness check at each checkpoint, as on a GPU,
        # which raises no floating-point warnings; NumPy's own warnings would only repeat it.
        return np.errstate(over="ignore", invalid="ignore")

    def describe(self):
        info = super().describe()
        info["device"] = "cpu"
        info["cpu"] = cpu_model()
        return info


class CupyBackend(Backend):
    name = "cupy"
    runs_on_cpu = False

    def __init__(self, cupy: ModuleType, device_id: int):
        self.xp = cupy
        self.device_id = device_id
        self._device = cupy.cuda.Device(device_id)
        self._resident_bytes = 0  # set by reset_memory_pool

    def to_device(self, host_array):
        with self._device:
            return self.xp.array(host_array, copy=True)

    def to_host(self, array):
        with self._device:
            return self.xp.asnumpy(array)

    def synchronize(self):
        self._device.synchronize()

    def activate(self):
        return self._device

    def describe(self):
        cupy = self.xp
        runtime = cupy.cuda.runtime
        props = runtime.getDeviceProperties(self.device_id)
        name = props["name"]
        info = super().describe()
        info.update(
            device=f"cuda:{self.device_id}",
            gpu=name.decode() if isinstance(name, bytes) else str(name),
            cupy=cupy.__version__,
            cuda_runtime=_cuda_version(runtime.runtimeGetVersion()),
            cuda_driver=_cuda_version(runtime.driverGetVersion()),
            gpu_memory_bytes=int(props.get("totalGlobalMem", 0)),
        )
        return info

    @contextlib.contextmanager
    def stopwatch(self):
        # CUDA events time the device's own work, free of host-side jitter.
        cupy = self.xp
        result = {}
        with self._device:
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            yield result
            stop.record()
            stop.synchronize()
            result["seconds"] = cupy.cuda.get_elapsed_time(start, stop) / 1000.0

    def out_of_memory_errors(self):
        return (MemoryError, self.xp.cuda.memory.OutOfMemoryError)

    def reset_memory_pool(self):
        self.synchronize()
        pool = self.xp.get_default_memory_pool()
        pool.free_all_blocks()
        self._resident_bytes = int(pool.total_bytes())  # only blocks in use remain

    def memory_available(self):
        # Free device memory, plus what CuPy's pool holds unused (it hands that out first).
        with self._device:
            free, _ = self.xp.cuda.runtime.memGetInfo()
            return int(free) + int(self.xp.get_default_memory_pool().free_bytes())

    def memory_pool_rise(self):
        # CuPy's pool keeps freed blocks until free_all_blocks() and reuses them, so what it
        # holds now beyond the resident set is the high-water mark of the work's allocations.
        held = int(self.xp.get_default_memory_pool().total_bytes())
        return held - self._resident_bytes


class StrictBackend(Backend):
    """array_api_strict on a fake device: the CPU stand-in for a GPU in the test suite."""

    name = "array_api_strict"

    def __init__(self, strict: ModuleType):
        self.xp = strict
        self._device = strict.Device("device1")
        self._host = strict.Device("CPU_DEVICE")

    def to_device(self, host_array):
        return self.xp.asarray(np.array(host_array, copy=True), device=self._device)

    def to_host(self, array):
        return np.array(array.to_device(self._host), copy=True)

    def activate(self):
        # It computes with NumPy underneath: overflow is found by the finiteness checks, as on
        # the other backends, not repeated as NumPy's warnings.
        return np.errstate(over="ignore", invalid="ignore")

    def describe(self):
        info = super().describe()
        info.update(device=str(self._device), array_api_strict=self.xp.__version__)
        return info


# --------------------------------------------------------------------------- choosing a backend


def _import_optional(name: str) -> ModuleType:
    # sys.modules first: a test can stand a fake (or None, meaning "not installed") in its place.
    if name in sys.modules and sys.modules[name] is None:
        raise ImportError(f"No module named {name!r}")
    return importlib.import_module(name)


def probe_cupy(device_id: int = 0) -> tuple[ModuleType | None, str]:
    """(cupy, "") when a CUDA device answers through CuPy, else (None, the reason why not)."""
    try:
        cupy = _import_optional("cupy")
    except ImportError as err:
        return None, f"CuPy is not installed ({err})"
    except Exception as err:  # a broken install: missing CUDA libraries, ABI mismatch
        return None, f"CuPy failed to import ({type(err).__name__}: {err})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # cudaErrorNoDevice, cudaErrorInsufficientDriver, no libcuda
        return None, f"CuPy is installed but no CUDA device answers ({_one_line(err)})"
    if count == 0:
        return None, "CuPy is installed but no CUDA device answers (0 devices)"
    if not 0 <= device_id < count:
        return None, f"CUDA device {device_id} does not exist ({count} device(s) found)"
    try:
        if not cupy.is_available():
            return None, "CuPy is installed but reports no usable CUDA device"
        with cupy.cuda.Device(device_id):
            cupy.zeros(1).sum().get()  # one real allocation and kernel: the device answers
    except Exception as err:
        return None, f"CUDA device {device_id} does not answer ({_one_line(err)})"
    return cupy, ""


def _to_stderr(message: str) -> None:
    print(f"mnist-gpu: {message}", file=sys.stderr)


def get_backend(name: str = "auto", device: int = 0, log=_to_stderr) -> Backend:
    """The backend called ``name``: ``auto``, ``numpy``, ``cupy`` or ``array_api_strict``.

    ``auto`` prefers CuPy and falls back to NumPy, passing one line saying why to ``log`` (by
    default printed on stderr; ``log=None`` for silence). An explicit ``cupy`` that cannot run
    raises ``BackendUnavailable``.
    """
    if name == "numpy":
        return NumpyBackend()
    if name == "array_api_strict":
        try:
            return StrictBackend(_import_optional("array_api_strict"))
        except ImportError as err:
            raise BackendUnavailable(f"array_api_strict is not installed ({err})") from None
    if name in ("cupy", "auto"):
        cupy, reason = probe_cupy(device)
        if cupy is not None:
            return CupyBackend(cupy, device)
        if name == "cupy":
            raise BackendUnavailable(
                f"--backend cupy: {reason}. Install mnist-gpu[cuda12] or mnist-gpu[cuda13] on a "
                "machine with an NVIDIA GPU, or use --backend numpy"
            )
        if log:
            log(f"backend auto: using NumPy on the CPU because {reason}")
        return NumpyBackend()
    raise BackendUnavailable(
        f"unknown backend {name!r} (choose from {', '.join(BACKEND_CHOICES)})"
    )


# --------------------------------------------------------------------------- small helpers


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


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
