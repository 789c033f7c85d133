"""Choosing a backend: installed is not usable, auto says why, explicit CuPy fails clearly."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.backend import BackendUnavailable, array_namespace, get_backend


def test_importing_the_package_imports_no_optional_library():
    code = (
        "import sys, mnist_gpu, mnist_gpu.cli, mnist_gpu.training;"
        "loaded = [m for m in ('cupy', 'numba', 'array_api_strict', 'matplotlib', 'torch')"
        " if m in sys.modules];"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _fake_cupy_without_device(error: Exception):
    """A module that imports like CuPy but whose runtime finds no device."""
    def no_device():
        raise error

    runtime = types.SimpleNamespace(getDeviceCount=no_device)
    return types.SimpleNamespace(
        __name__="cupy", __version__="99.0", cuda=types.SimpleNamespace(runtime=runtime),
        is_available=lambda: False,
    )


class CUDARuntimeError(RuntimeError):
    pass


CUPY_STATES = {
    "absent": (None, "CuPy is not installed"),
    "no device": (_fake_cupy_without_device(CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable "
                                                             "device is detected")),
                  "no CUDA device answers (CUDARuntimeError: cudaErrorNoDevice"),
    "driver error": (_fake_cupy_without_device(CUDARuntimeError(
        "cudaErrorInsufficientDriver: CUDA driver version is insufficient")),
        "cudaErrorInsufficientDriver"),
}


@pytest.fixture(params=list(CUPY_STATES), ids=list(CUPY_STATES))
def unusable_cupy(request, monkeypatch):
    module, reason = CUPY_STATES[request.param]
    monkeypatch.setitem(sys.modules, "cupy", module)
    return reason


def test_auto_falls_back_to_numpy_and_says_why(unusable_cupy):
    lines = []
    backend = get_backend("auto", log=lines.append)
    assert backend.name == "numpy"
    assert len(lines) == 1 and "using NumPy" in lines[0] and unusable_cupy in lines[0]


def test_explicit_cupy_without_a_usable_gpu_is_a_clear_error(unusable_cupy):
    with pytest.raises(BackendUnavailable, match="--backend cupy") as info:
        get_backend("cupy")
    assert unusable_cupy in str(info.value)


def test_cli_explicit_cupy_exits_2_with_one_line(unusable_cupy, capsys):
    assert cli.main(["train", "--backend", "cupy", "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend cupy" in err and "Traceback" not in err


def test_a_missing_device_number_is_named(monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    fake = types.SimpleNamespace(__name__="cupy", cuda=types.SimpleNamespace(runtime=runtime),
                                 is_available=lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailable, match="CUDA device 3 does not exist"):
        get_backend("cupy", device=3)


def test_unknown_backend():
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        get_backend("tpu")


def test_array_namespace_refuses_mixed_libraries():
    strict = get_backend("array_api_strict")
    with pytest.raises(TypeError, match="different array libraries"):
        array_namespace(np.zeros(2), strict.to_device(np.zeros(2)))


def test_backends_copy_on_the_way_in_and_out(backend):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    on_device = backend.to_device(host)
    host[0, 0] = 99  # the device copy must not see this
    back = backend.to_host(on_device)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back[0, 0] == 0
    assert backend.describe()["backend"] == backend.name


def test_strict_device_refuses_hidden_host_copies():
    """The stand-in catches what CuPy would: an implicit conversion to NumPy."""
    strict = get_backend("array_api_strict")
    with pytest.raises((RuntimeError, TypeError, ValueError)):
        np.asarray(strict.to_device(np.zeros(3)))
