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

Each is found by its name in one registry, ``BACKENDS``, as the compiled kernels are: a backend is
its module and one ``Registration`` there (how it opens when named, how ``auto`` tries it, the
words ``--backend`` shows), and ``AUTO_ORDER`` is the order ``auto`` tries them in. The command
line's choices and the test suite's matrix are read from the registry.

A GPU library counts only if it imports *and* its device answers a real allocation. ``auto``
takes CuPy when it is usable, else PyTorch on an accelerator when usable, else NumPy (with its
compiled passes), saying what it chose and why; PyTorch on the CPU only when named (the compiled
NumPy passes are faster there). Importing this package imports no GPU library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from .base import (
    Backend, BackendUnavailable, array_namespace, cpu_model, host_memory_available,
)
from .cupy_gpu import CupyBackend, cupy_for_auto, open_cupy, probe_cupy
from .host import NumpyBackend, StrictBackend, numpy_for_auto, open_numpy, open_strict
from .threads import (
    apply_to_numba, choose_threads, limited_threads, shards_in_force, thread_record,
)
from .torch_tensors import TorchBackend, open_torch, probe_torch, split_device, torch_for_auto

__all__ = [
    "AUTO_ORDER", "BACKENDS", "BACKEND_CHOICES", "Backend", "BackendUnavailable", "CupyBackend",
    "NumpyBackend", "Registration", "StrictBackend", "TorchBackend", "apply_to_numba",
    "array_namespace", "choose_threads", "cpu_model", "get_backend", "host_memory_available",
    "limited_threads", "parse_device", "probe_cupy", "probe_torch", "shards_in_force",
    "thread_record",
]


@dataclass(frozen=True)
class Registration:
    """How one backend is found by its name."""

    # ``open(device, log)``: the backend on ``device`` (None: the library's default), or
    # ``BackendUnavailable`` with a one-line reason; ``log(line)`` is told what a user should know.
    open: Callable[..., Backend]
    # ``for_auto(device, dtype)``: (the backend, what it is: "PyTorch on cuda:0") or (None, why
    # not), never an exception; None where ``auto`` never takes it.
    for_auto: Callable[..., tuple[Backend | None, str]] | None
    # What ``--backend`` says it is; None: not offered on the command line (a test stand-in).
    summary: str | None
    # What ``auto``'s help says of it ("CuPy when a GPU answers").
    in_auto: str | None = None
    # Whether it computes on a GPU where the machine has one (the tests mark it ``gpu``).
    gpu: bool = False


BACKENDS = {
    "numpy": Registration(open_numpy, numpy_for_auto, "the CPU", in_auto="NumPy"),
    "cupy": Registration(open_cupy, cupy_for_auto, "an NVIDIA GPU",
                         in_auto="CuPy when a GPU answers", gpu=True),
    "torch": Registration(open_torch, torch_for_auto,
                          "PyTorch's tensors, on its accelerator or the CPU",
                          in_auto="PyTorch on an accelerator", gpu=True),
    # The test suite's GPU stand-in: a fake device that refuses implicit conversion to NumPy.
    "array_api_strict": Registration(open_strict, None, None),
}
# What ``auto`` tries, first to last: the first that runs here is taken.
AUTO_ORDER = ("cupy", "torch", "numpy")
# What ``--backend`` offers.
BACKEND_CHOICES = ("auto", *(name for name, entry in BACKENDS.items() if entry.summary))


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
    """The backend called ``name`` (``auto``, or a name of ``BACKENDS``: ``numpy``, ``cupy``,
    ``torch``, ``array_api_strict``), on ``device`` (``parse_device``'s forms; None: the
    library's default), able to compute in ``dtype`` when one is given.

    ``auto`` takes the first of ``AUTO_ORDER`` that runs here (CuPy, else PyTorch on an
    accelerator, else NumPy), passing one line saying why to ``log`` (by default printed on
    stderr; ``log=None`` for silence). A backend named explicitly that cannot run raises
    ``BackendUnavailable``.
    """
    if name == "auto":
        return _auto(device, dtype, log)
    if name not in BACKENDS:
        raise BackendUnavailable(
            f"unknown backend {name!r} (choose from {', '.join(BACKEND_CHOICES)})")
    backend = BACKENDS[name].open(device, log)
    if dtype is not None:
        backend.check_dtype(dtype)
    return backend


def _auto(device, dtype, log) -> Backend:
    """The first of ``AUTO_ORDER`` that runs here; past the first, one line to ``log`` saying
    what it took and why not the others."""
    reasons = []
    for name in AUTO_ORDER:
        backend, words = BACKENDS[name].for_auto(device, dtype)
        if backend is not None:
            if reasons and log:
                log(f"backend auto: using {words} because {_and(reasons)}")
            return backend
        reasons.append(words)
    raise BackendUnavailable(f"backend auto: no backend runs here: {_and(reasons)}")


def _and(reasons) -> str:
    """"a", "a, and b", "a, b, and c": the reasons are clauses of their own, with commas."""
    return reasons[0] if len(reasons) == 1 else f"{', '.join(reasons[:-1])}, and {reasons[-1]}"
