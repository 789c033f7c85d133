"""PyTorch tensors, on the CPU or on an accelerator (CUDA, ROCm, MPS, XPU), through the array API.

The math sees array-api-compat's namespace for PyTorch, whose arrays are plain ``torch.Tensor``s.
As for CuPy, a device counts only if PyTorch imports *and* the device answers a real allocation.
MPS has no float64. Within ``activate``, float32 matrix products run at full precision (no TF32,
no bfloat16 passes), as NumPy computes them; PyTorch's settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from .base import (
    Backend, BackendUnavailable, cpu_model, has_standard_namespaces, import_optional, one_line,
)

# What ``--device`` names, besides an index (of the accelerator).
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, torch: ModuleType, device):
        self.torch = torch
        self.device = device  # a torch.device
        self.runs_on_cpu = device.type == "cpu"
        self.dtypes = ("float32",) if device.type == "mps" else ("float32", "float64")
        self._resident_bytes = 0  # set by reset_memory_pool

    @functools.cached_property
    def xp(self):
        return importlib.import_module("array_api_compat.torch")

    @property
    def label(self):
        return f"torch:{self.device}"

    def to_device(self, host_array):
        # torch.tensor always copies: the tensor is never a view of the caller's array.
        return self.torch.tensor(np.asarray(host_array), device=self.device)

    def to_host(self, array):
        host = array.detach().cpu()  # on the CPU, the tensor itself: copied below
        return np.array(host.numpy(), copy=True)

    def synchronize(self):
        if not self.runs_on_cpu:
            self.torch.accelerator.synchronize(self.device)

    @contextlib.contextmanager
    def activate(self):
        with _full_precision_matmul(self.torch):
            if self.device.type == "cuda":
                with self.torch.cuda.device(self.device):
                    yield
            else:
                yield

    def describe(self):
        torch = self.torch
        info = super().describe()
        info.update(device=str(self.device), torch=torch.__version__,
                    threads=torch.get_num_threads())
        if self.runs_on_cpu:
            info["cpu"] = cpu_model()
        elif self.device.type == "cuda":
            props = torch.cuda.get_device_properties(self.device)
            info.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory))
            hip = getattr(torch.version, "hip", None)
            info.update({"rocm": hip} if hip else {"cuda_runtime": torch.version.cuda})
        else:
            info["gpu"] = self.device.type
        return info

    @contextlib.contextmanager
    def stopwatch(self):
        if self.device.type != "cuda":
            with super().stopwatch() as result:
                yield result
            return
        # CUDA events time the device's own work, free of host-side jitter.
        cuda = self.torch.cuda
        result = {}
        with cuda.device(self.device):
            start, stop = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            start.record()
            yield result
            stop.record()
            stop.synchronize()
            result["seconds"] = start.elapsed_time(stop) / 1000.0

    def out_of_memory_errors(self):
        error = getattr(self.torch, "OutOfMemoryError", None) or self.torch.cuda.OutOfMemoryError
        return (MemoryError, error)

    def memory_available(self):
        if self.runs_on_cpu:
            return super().memory_available()
        if self.device.type != "cuda":
            return None
        cuda = self.torch.cuda
        # Free device memory, plus what PyTorch's caching allocator holds unused.
        free, _ = cuda.mem_get_info(self.device)
        unused = cuda.memory_reserved(self.device) - cuda.memory_allocated(self.device)
        return int(free) + int(unused)

    def reset_memory_pool(self):
        if self.device.type == "cuda":
            cuda = self.torch.cuda
            self.synchronize()
            cuda.empty_cache()
            cuda.reset_peak_memory_stats(self.device)
            self._resident_bytes = int(cuda.memory_allocated(self.device))

    def memory_pool_rise(self):
        if self.device.type != "cuda":
            return None
        return int(self.torch.cuda.max_memory_allocated(self.device)) - self._resident_bytes


@contextlib.contextmanager
def _full_precision_matmul(torch):
    """float32 matrix products in float32 (not TF32 on CUDA, nor bfloat16 through oneDNN on the
    CPU), PyTorch's own settings put back afterwards."""
    backends = torch.backends
    if hasattr(backends, "fp32_precision"):  # the per-backend switches (PyTorch 2.9 on)
        switches = [getattr(getattr(backends, lib, None), "matmul", None)
                    for lib in ("cuda", "mkldnn")]
        switches = [s for s in switches if s is not None and hasattr(s, "fp32_precision")]
        saved = [s.fp32_precision for s in switches]
        for switch in switches:
            switch.fp32_precision = "ieee"
        try:
            yield
        finally:
            for switch, value in zip(switches, saved):
                switch.fp32_precision = value
    else:
        saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(saved)


# --------------------------------------------------------------------------- finding a device


def open_torch(device=None, log=None) -> TorchBackend:
    """``--backend torch``: PyTorch on ``device`` (None: its accelerator, else the CPU, saying so
    to ``log``), or ``BackendUnavailable`` saying why not."""
    torch, target, reason = probe_torch(device)
    if torch is None:
        advice = ("install it with pip install 'mnist-gpu[torch]'" if "not installed" in reason
                  else "choose another --device, or --device cpu")
        raise BackendUnavailable(f"--backend torch: {reason}; {advice}")
    backend = TorchBackend(torch, target)
    if device is None and backend.runs_on_cpu and log:
        log("backend torch: on the CPU, because PyTorch sees no accelerator (CUDA, ROCm, MPS "
            "or XPU)")
    return backend


def torch_for_auto(device=None, dtype=None):
    """(TorchBackend, what it is) or (None, why not): ``auto`` takes PyTorch on an accelerator
    only (the compiled NumPy passes are faster on the CPU), able to compute in ``dtype``."""
    torch, target, reason = probe_torch(device, accelerator_only=True)
    if torch is None:
        return None, reason
    backend = TorchBackend(torch, target)
    if dtype is not None and str(dtype) not in backend.dtypes:
        return None, f"PyTorch's {target} device has no {dtype}"
    return backend, f"PyTorch on {target}"


def probe_torch(device=None, accelerator_only: bool = False):
    """(torch, its device, "") when PyTorch imports and the device answers a real allocation,
    else (None, None, the reason why not).

    ``device``: a name (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu``, ``xpu:N``), an index
    of PyTorch's accelerator, or None: the accelerator, else (unless ``accelerator_only``) the
    CPU. With ``accelerator_only``, a CPU-only build is recognised without importing it.
    """
    if accelerator_only:
        cpu_only = _cpu_only_build()
        if cpu_only:
            return None, None, cpu_only
    if not has_standard_namespaces():
        return None, None, ("PyTorch's tensors need array-api-compat, which is not installed "
                            "(pip install array-api-compat)")
    try:
        torch = import_optional("torch")
    except ImportError as err:
        return None, None, f"PyTorch is not installed ({err})"
    except Exception as err:  # a broken install: missing libraries, ABI mismatch
        return None, None, f"PyTorch failed to import ({one_line(err)})"
    try:
        target = _device(torch, device, accelerator_only)
    except _NoDevice as err:
        return None, None, str(err)
    except Exception as err:  # a driver that fails to initialise
        return None, None, f"PyTorch finds no usable device ({one_line(err)})"
    try:
        torch.zeros(1, device=target).sum().cpu()  # a real allocation and kernel: it answers
    except Exception as err:
        return None, None, f"PyTorch's {target} device does not answer ({one_line(err)})"
    return torch, target, ""


def _cpu_only_build() -> str:
    """"PyTorch is a CPU-only build (...)" when the installed PyTorch, not yet imported, was built
    for no accelerator (its version file names no CUDA, ROCm or XPU, and it is not macOS's,
    which has MPS), else "". Read without importing it: importing PyTorch takes about a second,
    which ``auto`` would otherwise spend on every command of a CPU machine."""
    if "torch" in sys.modules or sys.platform == "darwin":
        return ""
    try:
        spec = importlib.util.find_spec("torch")
        folders = list(spec.submodule_search_locations or ()) if spec else []
        text = (Path(folders[0]) / "version.py").read_text() if folders else ""
    except (ImportError, ValueError, OSError):
        return ""
    built = dict(re.findall(r"^(__version__|cuda|hip|rocm|xpu)\b[^=\n]*=\s*(.+?)\s*$", text,
                            re.M))
    if {"cuda", "hip"} <= set(built) and all(built[k] == "None" for k in built
                                             if k != "__version__"):
        return f"PyTorch is a CPU-only build ({built.get('__version__', '?').strip(chr(39))})"
    return ""


class _NoDevice(Exception):
    pass


def _device(torch, device, accelerator_only: bool):
    """The ``torch.device`` that ``device`` names, or ``_NoDevice`` saying why there is none."""
    accelerator = (torch.accelerator.current_accelerator() if torch.accelerator.is_available()
                   else None)
    if device is None:
        if accelerator is not None:
            return torch.device(accelerator.type, 0)
        if accelerator_only:
            raise _NoDevice("PyTorch sees no accelerator (CUDA, ROCm, MPS or XPU)")
        return torch.device("cpu")
    if isinstance(device, int):
        if accelerator is None:
            raise _NoDevice(f"device {device}: PyTorch sees no accelerator (CUDA, ROCm, MPS or "
                            "XPU)")
        kind, index = accelerator.type, device
    else:
        kind, index = split_device(device)
    if kind == "cpu":
        if accelerator_only:
            raise _NoDevice("the CPU is not an accelerator")
        return torch.device("cpu")
    if accelerator is None or accelerator.type != kind:
        sees = f"its accelerator is {accelerator.type}" if accelerator else "it sees no accelerator"
        raise _NoDevice(f"PyTorch has no {kind} device ({sees})")
    count = torch.accelerator.device_count()
    if not 0 <= index < count:
        raise _NoDevice(f"{kind} device {index} does not exist ({count} device(s) found)")
    return torch.device(kind, index)


def split_device(text: str) -> tuple[str, int]:
    """("cuda", 1) from "cuda:1"; ValueError for what ``--device`` does not take."""
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()) or (index and kind == "cpu"):
        raise ValueError(f"not a device: {text!r} (choose cpu, cuda, cuda:N, mps, xpu, xpu:N or "
                         "an index N)")
    return kind, int(index or 0)
