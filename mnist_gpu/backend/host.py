"""The backends whose arrays live in the host's memory: NumPy, and array_api_strict on a fake
device (the test suite's CPU stand-in for a GPU)."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .base import Backend, BackendUnavailable, cpu_model, import_optional, standard_namespace
from .threads import shards_in_force, single_threaded_blas, thread_record


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        # NumPy's arrays with the standard's names (array-api-compat's wrapper of NumPy, whose
        # arrays are plain NumPy arrays).
        self.xp = standard_namespace("numpy", np)

    def to_device(self, host_array):
        return np.array(host_array, copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)

    def activate(self):
        # Overflow is found by the explicit finiteness check at each checkpoint, as on a GPU,
        # which raises no floating-point warnings; NumPy's own warnings would only repeat it.
        return np.errstate(over="ignore", invalid="ignore")

    def shards(self):
        # NumPy's products and the compiled loops release the GIL: a batch's parts run on the
        # cores side by side (backend/threads.py has the count's rule).
        return shards_in_force()

    def sharded(self):
        return single_threaded_blas()

    def describe(self):
        info = super().describe()
        info["device"] = "cpu"
        info["cpu"] = cpu_model()
        info["threads"] = thread_record()
        return info


def open_numpy(device=None, log=None) -> NumpyBackend:
    """``--backend numpy``: the CPU, whatever ``device`` says (it has one)."""
    return NumpyBackend()


def numpy_for_auto(device=None, dtype=None):
    """What ``auto`` falls back to: NumPy runs everywhere."""
    return NumpyBackend(), "NumPy on the CPU"


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


def open_strict(device=None, log=None) -> StrictBackend:
    """array_api_strict on its fake device, or ``BackendUnavailable`` where it is not
    installed."""
    try:
        return StrictBackend(import_optional("array_api_strict"))
    except ImportError as err:
        raise BackendUnavailable(f"array_api_strict is not installed ({err})") from None
