"""CuPy on an NVIDIA GPU: it counts only if CuPy imports *and* a device answers an allocation."""

from __future__ import annotations

import contextlib
import functools
from types import ModuleType

from .base import Backend, BackendUnavailable, import_optional, one_line, standard_namespace


class CupyBackend(Backend):
    name = "cupy"
    runs_on_cpu = False

    def __init__(self, cupy: ModuleType, device_id: int):
        # The library itself, for its devices, events and pool (and the CUDA pass's compiler).
        self.cupy = cupy
        self.device_id = device_id
        self._device = cupy.cuda.Device(device_id)
        self._resident_bytes = 0  # set by reset_memory_pool

    @functools.cached_property
    def xp(self):
        # CuPy with the standard's names, whatever its version (array-api-compat's wrapper,
        # whose arrays are plain CuPy arrays).
        return standard_namespace("cupy", self.cupy)

    def to_device(self, host_array):
        with self._device:
            return self.cupy.array(host_array, copy=True)

    def to_host(self, array):
        with self._device:
            return self.cupy.asnumpy(array)

    def synchronize(self):
        self._device.synchronize()

    def activate(self):
        return self._device

    def describe(self):
        cupy = self.cupy
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
        cupy = self.cupy
        result = {}
        with self._device:
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            yield result
            stop.record()
            stop.synchronize()
            result["seconds"] = cupy.cuda.get_elapsed_time(start, stop) / 1000.0

    def out_of_memory_errors(self):
        return (MemoryError, self.cupy.cuda.memory.OutOfMemoryError)

    def reset_memory_pool(self):
        self.synchronize()
        pool = self.cupy.get_default_memory_pool()
        pool.free_all_blocks()
        self._resident_bytes = int(pool.total_bytes())  # only blocks in use remain

    def memory_available(self):
        # Free device memory, plus what CuPy's pool holds unused (it hands that out first).
        with self._device:
            free, _ = self.cupy.cuda.runtime.memGetInfo()
            return int(free) + int(self.cupy.get_default_memory_pool().free_bytes())

    def memory_pool_rise(self):
        # CuPy's pool keeps freed blocks until free_all_blocks() and reuses them, so what it
        # holds now beyond the resident set is the high-water mark of the work's allocations.
        held = int(self.cupy.get_default_memory_pool().total_bytes())
        return held - self._resident_bytes


def open_cupy(device=None, log=None) -> CupyBackend:
    """``--backend cupy``: CuPy on ``device``, or ``BackendUnavailable`` saying why not."""
    backend, reason = cupy_for_auto(device)
    if backend is None:
        raise BackendUnavailable(
            f"--backend cupy: {reason}. Install mnist-gpu[cuda12] or mnist-gpu[cuda13] on a "
            "machine with an NVIDIA GPU, or use --backend numpy")
    return backend


def cupy_for_auto(device=None, dtype=None):
    """(CupyBackend, what it is) or (None, why not): CuPy takes a CUDA device's index."""
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind != "cuda":
            return None, f"CuPy runs on CUDA devices only, not on {device!r}"
        device = int(index or 0)
    device = 0 if device is None else device
    cupy, reason = probe_cupy(device)
    if cupy is None:
        return None, reason
    return CupyBackend(cupy, device), f"CuPy on cuda:{device}"


def probe_cupy(device_id: int = 0) -> tuple[ModuleType | None, str]:
    """(cupy, "") when a CUDA device answers through CuPy, else (None, the reason why not)."""
    try:
        cupy = import_optional("cupy")
    except ImportError as err:
        return None, f"CuPy is not installed ({err})"
    except Exception as err:  # a broken install: missing CUDA libraries, ABI mismatch
        return None, f"CuPy failed to import ({type(err).__name__}: {err})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # cudaErrorNoDevice, cudaErrorInsufficientDriver, no libcuda
        return None, f"CuPy is installed but no CUDA device answers ({one_line(err)})"
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
        return None, f"CUDA device {device_id} does not answer ({one_line(err)})"
    return cupy, ""


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"
