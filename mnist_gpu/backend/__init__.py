"""The one layer that knows which array library a run uses.

A backend is a closed set of verbs: its array namespace (``xp``), ``to_device`` and ``to_host``,
``synchronize``, ``activate`` (make its device current), ``describe`` (library, device, versions),
``stopwatch`` (a clock read after synchronising) and what its device's memory holds
(``base.py``). Everything else in mnist-gpu is written once against ``xp``, resolved through
array-api-compat for every library; the library-specific fast paths (the compiled kernels) are
found by the backend's ``name`` in ``mnist_gpu.kernels``, not here.

Four libraries, chosen at the edge (the CLI, or the caller of ``get_backend``) and passed down:

* ``numpy``: the CPU (``host.py``);
* ``cupy``: an NVIDIA GPU (``cupy_gpu.py``);
* ``torch``: PyTorch's tensors on the CPU or on an accelerator: CUDA, ROCm, MPS, XPU
  (``torch_tensors.py``);
* ``array_api_strict``: the test suite's GPU stand-in. Its fake device refuses implicit conversion
  to NumPy, exactly as CuPy does, and its namespace refuses anything outside the array API
  standard (``host.py``).

A GPU library counts only if it imports *and* its device answers a real allocation. ``auto``
takes CuPy when it is usable, else PyTorch on an accelerator when usable, else NumPy (with its
compiled passes), saying what it chose and why; PyTorch on the CPU only when named (the compiled
NumPy passes are faster there). Importing this package imports no GPU library.
"""

from __future__ import annotations

import sys

from .base import (
    Backend, BackendUnavailable, array_namespace, cpu_model, host_memory_available, import_optional,
)
from .cupy_gpu import CupyBackend, probe_cupy
from .host import NumpyBackend, StrictBackend
from .torch_tensors import TorchBackend, probe_torch, split_device

__all__ = [
    "BACKEND_CHOICES", "Backend", "BackendUnavailable", "CupyBackend", "NumpyBackend",
    "StrictBackend", "TorchBackend", "array_namespace", "cpu_model", "get_backend",
    "host_memory_available",
    "parse_device", "probe_cupy", "probe_torch",
]

BACKEND_CHOICES = ("auto", "numpy", "cupy", "torch")


def parse_device(text: str) -> int | str:
    """``--device``: an index (``0``), or a device's name (``cpu``, ``cuda``, ``cuda:1``, ``mps``,
    ``xpu``); ValueError with a one-line reason otherwise."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    kind, index = split_device(text)
    return kind if kind in ("cpu", "mps") else f"{kind}:{index}"


def _to_stderr(message: str) -> None:
    print(f"mnist-gpu: {message}", file=sys.stderr)


def get_backend(name: str = "auto", device: int | str | None = None, log=_to_stderr,
                dtype: str | None = None) -> Backend:
    """The backend called ``name``: ``auto``, ``numpy``, ``cupy``, ``torch`` or
    ``array_api_strict``, on ``device`` (``parse_device``'s forms; None: the library's default),
    able to compute in ``dtype`` when one is given.

    ``auto`` takes CuPy, else PyTorch on an accelerator, else NumPy, passing one line saying
    why to ``log`` (by default printed on stderr; ``log=None`` for silence). A backend named
    explicitly that cannot run raises ``BackendUnavailable``.
    """
    if name == "numpy":
        return NumpyBackend()
    if name == "array_api_strict":
        try:
            return StrictBackend(import_optional("array_api_strict"))
        except ImportError as err:
            raise BackendUnavailable(f"array_api_strict is not installed ({err})") from None
    if name == "cupy":
        backend, reason = _cupy(device)
        if backend is None:
            raise BackendUnavailable(
                f"--backend cupy: {reason}. Install mnist-gpu[cuda12] or mnist-gpu[cuda13] on a "
                "machine with an NVIDIA GPU, or use --backend numpy")
        return backend
    if name == "torch":
        return _explicit_torch(device, dtype, log)
    if name == "auto":
        return _auto(device, dtype, log)
    raise BackendUnavailable(
        f"unknown backend {name!r} (choose from {', '.join(BACKEND_CHOICES)})"
    )


def _cupy(device):
    """(CupyBackend, "") or (None, why not): CuPy takes a CUDA device's index."""
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind != "cuda":
            return None, f"CuPy runs on CUDA devices only, not on {device!r}"
        device = int(index or 0)
    device = 0 if device is None else device
    cupy, reason = probe_cupy(device)
    return (CupyBackend(cupy, device), "") if cupy is not None else (None, reason)


def _explicit_torch(device, dtype, log) -> Backend:
    torch, target, reason = probe_torch(device)
    if torch is None:
        advice = ("install it with pip install 'mnist-gpu[torch]'" if "not installed" in reason
                  else "choose another --device, or --device cpu")
        raise BackendUnavailable(f"--backend torch: {reason}; {advice}")
    backend = TorchBackend(torch, target)
    if dtype is not None:
        backend.check_dtype(dtype)
    if device is None and backend.runs_on_cpu and log:
        log("backend torch: on the CPU, because PyTorch sees no accelerator (CUDA, ROCm, MPS "
            "or XPU)")
    return backend


def _auto(device, dtype, log) -> Backend:
    """CuPy, else PyTorch on an accelerator, else NumPy; one line saying why to ``log``."""
    backend, cupy_reason = _cupy(device)
    if backend is not None:
        return backend
    torch, target, torch_reason = probe_torch(device, accelerator_only=True)
    if torch is not None:
        backend = TorchBackend(torch, target)
        try:
            if dtype is not None:
                backend.check_dtype(dtype)
        except BackendUnavailable:
            torch_reason = f"PyTorch's {target} device has no {dtype}"
        else:
            if log:
                log(f"backend auto: using PyTorch on {target} because {cupy_reason}")
            return backend
    if log:
        log(f"backend auto: using NumPy on the CPU because {cupy_reason}, and {torch_reason}")
    return NumpyBackend()
