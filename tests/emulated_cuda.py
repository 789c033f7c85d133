"""The project's CUDA kernels run on the CPU, for the tests of machines without a GPU.

``kernels/*.cu`` is compiled by g++ against ``cuda_on_cpu/warp.h`` (32 threads per block, barriers
where a warp synchronises; see there), and ``emulated_cupy()`` stands in for the slice of CuPy that
``kernels/cuda.py`` uses (NumPy arrays on the host, ``RawModule``, the device's properties), so that
``FusedCUDA``'s own host code (listing, plan, checks, launch) runs unchanged around the emulated
kernel. What this proves: the kernel's indexing, synchronisation and arithmetic, in both dtypes,
bit for bit against a model of its summation order. What it cannot: speed, and the behaviour of the
real memory system (the GPU check does that on a GPU).

``stand_in_cupy()`` goes one step further: a whole ``cupy`` module as mnist-gpu uses it (NumPy's
functions on host arrays, plus the device, events, memory pool and ``RawModule``), for the real
``CupyBackend`` and everything above it (the CLI included) to run on, with the emulated kernel or
with a ``RawModule`` that fails as CuPy's do (``FailingModule``).
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import subprocess
import time
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

    def __init__(self, device_id=0):
        self.id = device_id

    def __exit__(self, *exc):
        return None

    def synchronize(self):
        return None


class CompileException(Exception):
    """CuPy's ``cupy.cuda.compiler.CompileException``: its message is NVRTC's log."""


class CUDADriverError(RuntimeError):
    """CuPy's ``cupy.cuda.driver.CUDADriverError``."""


def _raw_module(library):
    class RawModule:
        def __init__(self, code, options=()):
            self.options = options

        def get_function(self, name):
            return _Function(library, name)

    return RawModule


class FailingModule:
    """A ``RawModule`` class that fails as CuPy's does: at the compile (``"compile"``: NVRTC's
    log), when the launch's shared memory is set (``"shared memory"``: the driver refuses it) or
    at the launch (``"launch"``), there only from launch number ``launches`` on (counting from
    1: the trial launch of ``FusedCUDA.prepare`` is the first)."""

    def __init__(self, failure, launches=1):
        self.failure, self.launches, self.calls = failure, launches, 0

    def __call__(self, code, options=()):
        return self

    def get_function(self, name):
        if self.failure == "compile":
            raise CompileException(
                "/tmp/tmpd0e5/4b1a.cu(117): error: identifier \"lane\" is undefined\n\n"
                "1 error detected in the compilation of \"/tmp/tmpd0e5/4b1a.cu\".\n")
        return _FailingFunction(self)


class _FailingFunction:
    preferred_shared_memory_carveout = -1

    def __init__(self, module):
        self.module = module

    @property
    def max_dynamic_shared_size_bytes(self):
        return 48 * 1024

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value):
        if self.module.failure == "shared memory":
            raise CUDADriverError("CUDA_ERROR_INVALID_VALUE: invalid argument")

    def __call__(self, grid, block, args, shared_mem=0):
        self.module.calls += 1
        if self.module.failure == "launch" and self.module.calls >= self.module.launches:
            raise CUDADriverError("CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure")


def _cuda_namespace(properties):
    runtime = types.SimpleNamespace(getDeviceProperties=lambda device: dict(properties))
    return types.SimpleNamespace(runtime=runtime,
                                 compiler=types.SimpleNamespace(CompileException=CompileException),
                                 driver=types.SimpleNamespace(CUDADriverError=CUDADriverError))


def emulated_cupy(library: ctypes.CDLL, properties=H200):
    """A stand-in for the CuPy backend as ``FusedCUDA`` uses it: its ``xp`` (``cupy`` as the pass
    uses it), ``activate()``, ``synchronize()`` and ``device_id``."""
    names = ("zeros", "cumsum", "sum", "nonzero", "asarray", "bincount", "int64", "uint8")
    cupy = types.SimpleNamespace(RawModule=_raw_module(library), cuda=_cuda_namespace(properties),
                                 asnumpy=np.asarray, **{name: getattr(np, name) for name in names})
    return types.SimpleNamespace(cupy=cupy, activate=_Device, synchronize=lambda: None,
                                 device_id=_Device.id)


class _Event:
    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        return None


class _MemoryPool:
    def free_all_blocks(self):
        return None

    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0


class OutOfMemoryError(MemoryError):
    """CuPy's ``cupy.cuda.memory.OutOfMemoryError``."""


def stand_in_cupy(library: ctypes.CDLL | None = None, properties=H200, raw_module=None):
    """A ``cupy`` module as mnist-gpu uses it, on the host: NumPy's functions, one device (an
    H200's properties, 140 GB free), CUDA events, a memory pool, and ``RawModule``: the emulated
    kernels of ``library``, or ``raw_module`` (a ``FailingModule``). For the real
    ``CupyBackend``."""
    cupy = types.ModuleType("cupy")
    cupy.__dict__.update({name: getattr(np, name) for name in dir(np) if not name.startswith("_")})
    cuda = _cuda_namespace(properties)
    cuda.runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: {**properties, "name": b"NVIDIA H200 (stand-in)"},
        runtimeGetVersion=lambda: 12080, driverGetVersion=lambda: 12080,
        memGetInfo=lambda: (140 * 10**9, 141 * 10**9))
    cuda.Device, cuda.Event = _Device, _Event
    cuda.get_elapsed_time = lambda start, stop: (stop.at - start.at) * 1000.0
    cuda.memory = types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError)
    pool = _MemoryPool()
    cupy.__dict__.update(
        __version__="14.0.0", cuda=cuda, asnumpy=np.asarray, is_available=lambda: True,
        get_default_memory_pool=lambda: pool,
        RawModule=raw_module if raw_module is not None else _raw_module(library))
    return cupy
