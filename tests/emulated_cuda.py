"""The project's CUDA kernels run on the CPU, for the tests of machines without a GPU.

``kernels/*.cu`` is compiled by g++ against ``cuda_on_cpu/warp.h`` (32 threads per block, barriers
where a warp synchronises; see there), and ``emulated_cupy()`` stands in for the slice of CuPy that
``kernels/cuda.py`` uses (NumPy arrays on the host, ``RawModule``, the device's properties), so that
``FusedCUDA``'s own host code (listing, plan, checks, launch) runs unchanged around the emulated
kernel. What this proves: the kernel's indexing, synchronisation and arithmetic, in both dtypes,
bit for bit against a model of its summation order. What it cannot: speed, and the behaviour of the
real memory system (the GPU check does that on a GPU).
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# An H200's figures (CUDA's device properties), for the launch plans.
H200 = {"multiProcessorCount": 132, "sharedMemPerMultiprocessor": 233472,
        "sharedMemPerBlockOptin": 232448, "reservedSharedMemPerBlock": 1024}


def compiler() -> str | None:
    return shutil.which("g++")


def build(source: str, workdir: Path, sanitize: bool = False) -> ctypes.CDLL:
    """Compile a kernel source for the CPU; one ``emulate_NAME`` launcher per kernel. With
    ``sanitize``, under AddressSanitizer (load it with ``LD_PRELOAD=asan_runtime()``): a read or
    write outside any array the kernel is given stops the process with a report."""
    kernels = re.findall(r'extern "C" __global__ void (\w+)\(', source)
    unit = workdir / "emulated.cpp"
    unit.write_text('#include "warp.h"\n' + source + "\n"
                    + "".join(f"EMULATE({name})\n" for name in kernels))
    library = workdir / ("emulated-asan.so" if sanitize else "emulated.so")
    checks = ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"] if sanitize else []
    done = subprocess.run(
        [compiler(), "-std=c++20", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-pthread",
         *checks, f"-I{HERE / 'cuda_on_cpu'}", str(unit), "-o", str(library)],
        capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return ctypes.CDLL(str(library))


def asan_runtime() -> str | None:
    """The AddressSanitizer runtime g++ links against, if it has one."""
    if compiler() is None:
        return None
    path = subprocess.run([compiler(), "-print-file-name=libasan.so"], capture_output=True,
                          text=True).stdout.strip()
    return path if Path(path).is_absolute() and Path(path).exists() else None


def _argument(value):
    if isinstance(value, np.ndarray):
        return ctypes.c_void_p(value.ctypes.data)
    return {np.dtype(np.int64): ctypes.c_longlong, np.dtype(np.int32): ctypes.c_int,
            np.dtype(np.float32): ctypes.c_float,
            np.dtype(np.float64): ctypes.c_double}[np.asarray(value).dtype](value)


class _Function:
    def __init__(self, library, name):
        self._launch = getattr(library, f"emulate_{name}")
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.preferred_shared_memory_carveout = -1

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem > self.max_dynamic_shared_size_bytes:
            raise RuntimeError("launch asks for more shared memory than the function allows")
        values = [_argument(a) for a in args]
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        if self._launch(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]),
                        ctypes.c_size_t(shared_mem), pointers) != 0:
            raise RuntimeError("the emulated launch was refused")


class _Device(contextlib.AbstractContextManager):
    id = 0

    def __exit__(self, *exc):
        return None


def emulated_cupy(library: ctypes.CDLL, properties=H200):
    """A stand-in for the CuPy backend as ``FusedCUDA`` uses it: its ``cupy`` (the library, as the
    pass uses it), ``activate()`` and ``device_id``."""

    class RawModule:
        def __init__(self, code, options=()):
            self.options = options

        def get_function(self, name):
            return _Function(library, name)

    runtime = types.SimpleNamespace(getDeviceProperties=lambda device: dict(properties))
    names = ("zeros", "cumsum", "sum", "nonzero", "asarray", "bincount", "int64", "uint8")
    cupy = types.SimpleNamespace(RawModule=RawModule, cuda=types.SimpleNamespace(runtime=runtime),
                                 asnumpy=np.asarray, **{name: getattr(np, name) for name in names})
    return types.SimpleNamespace(cupy=cupy, activate=_Device, device_id=_Device.id)
