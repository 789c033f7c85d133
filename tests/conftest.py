"""Shared fixtures: the backend matrix, the real MNIST data, small generated IDX files.

The backend matrix is one list of plain names, the backend registry's
(``mnist_gpu.backend.BACKENDS``: no optional library is imported to build it): ``numpy``, ``cupy``,
``torch`` (PyTorch on its accelerator where the machine has one, else on the CPU: a second real
arithmetic on every machine) and ``array_api_strict`` (the CPU stand-in for a GPU: a fake device
that refuses hidden host copies); those the registry says compute on a GPU (``cupy``, ``torch``)
are marked ``gpu``. Only the combinations that can run are generated: a test comparing a backend
with NumPy leaves NumPy out, a test of the compiled passes takes the backends that have them. A
backend that cannot run here (no CuPy, no PyTorch, no GPU) is a visible skip with its reason;
``--require-gpu`` turns that into a failure for the ``gpu`` ones, PyTorch on the CPU included, so
that a GPU run cannot pass by skipping.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path

# Parity needs full-precision float32 matrix products on the GPU: TF32 off, before CuPy loads.
os.environ["CUPY_TF32"] = "0"
os.environ["NVIDIA_TF32_OVERRIDE"] = "0"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mnist_gpu.backend import BACKENDS as REGISTRY  # noqa: E402
from mnist_gpu.backend import BackendUnavailable, get_backend  # noqa: E402

# Each test gets a data cache of its own (``_own_data_cache``), through XDG_CACHE_HOME. The
# compiled loops get one cache for the session, empty at its start (for this process and its
# children, through NUMBA_CACHE_DIR, which the loops read when they are first compiled): a
# session never runs loops compiled from code it does not hold. Removed when the session ends.
_LOOP_CACHE = tempfile.mkdtemp(prefix="mnist-gpu-test-loops-")
os.environ["NUMBA_CACHE_DIR"] = _LOOP_CACHE


def pytest_unconfigure(config):
    shutil.rmtree(_LOOP_CACHE, ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
BACKENDS = tuple(REGISTRY)
# The backends that run on a GPU where the machine has one.
ON_GPU = tuple(name for name, entry in REGISTRY.items() if entry.gpu)
# The compiled passes of each backend (mnist_gpu.kernels' registry, which a test checks this
# against): per image and by mini-batches on NumPy, per image on CuPy.
FUSED = {"numpy": ("per-image", "mini-batch"), "cupy": ("per-image",)}


def pytest_addoption(parser):
    parser.addoption("--require-gpu", action="store_true",
                     help="fail, rather than skip, the tests that need a GPU (CuPy's, or "
                          "PyTorch's accelerator)")
    parser.addoption("--require-browser", action="store_true",
                     help="fail, rather than skip, the browser tests when Chromium, its driver or "
                          "Selenium is missing (as under CI=true)")


def backend_params(but=(), fused: str | None = None) -> list:
    """The backend matrix as test parameters: every backend less ``but``; with ``fused``
    (``"per-image"`` or ``"mini-batch"``) only those that have that compiled pass."""
    return [pytest.param(name, id=name, marks=[pytest.mark.gpu] if name in ON_GPU else [])
            for name in BACKENDS
            if name not in but and (fused is None or fused in FUSED.get(name, ()))]


def kernel_params(configs) -> list:
    """(backend, kernel, batch size) parameters: each ``(kernel, batch_size)`` of ``configs`` on
    every backend that can run it (``fused`` only where the backend has that compiled pass)."""
    out = []
    for kernel, batch_size in configs:
        fused = None if kernel != "fused" else "per-image" if batch_size == 1 else "mini-batch"
        out += [pytest.param(p.values[0], kernel, batch_size, marks=p.marks,
                             id=f"{p.values[0]}-{kernel}-{batch_size}")
                for p in backend_params(fused=fused)]
    return out


# A test that compares a backend with NumPy: every backend but NumPy itself.
compared_with_numpy = pytest.mark.parametrize("backend", backend_params(but=("numpy",)),
                                              indirect=True)
# The backends that compute with NumPy itself (array_api_strict wraps NumPy's arrays and calls):
# against NumPy they give the same bits, so they cannot test a tolerance.
NUMPY_ARITHMETIC = ("numpy", "array_api_strict")
# Parity: a backend with an arithmetic of its own (PyTorch's, on the CPU or a GPU; CuPy's)
# against NumPy; each skips, saying why, where it cannot run.
with_a_second_arithmetic = pytest.mark.parametrize(
    "backend", backend_params(but=NUMPY_ARITHMETIC), indirect=True)
# Tests of the compiled passes, on the backends that have them.
with_fused = pytest.mark.parametrize("backend", backend_params(fused="per-image"), indirect=True)
with_fused_minibatch = pytest.mark.parametrize("backend", backend_params(fused="mini-batch"),
                                               indirect=True)


def backend_or_skip(request, name):
    """The backend ``name``, else a visible skip saying why (a failure under --require-gpu)."""
    require = name in ON_GPU and request.config.getoption("--require-gpu")
    said = []
    try:
        backend = get_backend(name, log=said.append)
    except BackendUnavailable as err:
        if require:
            pytest.fail(f"--require-gpu: {err}")
        pytest.skip(f"{name} backend unavailable: {err}")
    if require and backend.runs_on_cpu:
        pytest.fail(f"--require-gpu: {'; '.join(said) or f'{name} runs on the CPU'}")
    if name == "torch" and backend.runs_on_cpu:
        # One thread for PyTorch on the CPU, for the rest of the session: on a machine of few
        # cores that Numba's and OpenBLAS's threads also hold, PyTorch's OpenMP barriers wait
        # for preempted threads, and per-image steps (microseconds of work) ran 10 to 100 times
        # slower with two (docs/testing.md).
        backend.torch.set_num_threads(1)
    return backend


@pytest.fixture(params=backend_params())
def backend(request):
    """Each backend as its own test id."""
    return backend_or_skip(request, request.param)


@pytest.fixture(autouse=True)
def _dtypes_the_device_has(request):
    """A test of a backend in a dtype its device lacks (float64 on Apple's MPS) is a visible
    skip: that device refuses it, in one line, before any work."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if "backend" in request.fixturenames and params.get("dtype"):
        backend = request.getfixturevalue("backend")
        if str(params["dtype"]) not in backend.dtypes:
            pytest.skip(f"the {backend.label} device has no {params['dtype']}")


@pytest.fixture
def numpy_backend():
    return get_backend("numpy")


@pytest.fixture
def gpu_backend(request):
    return backend_or_skip(request, "cupy")


def pytest_collection_modifyitems(config, items):
    # Tests that use gpu_backend or torch_backend directly are GPU tests too (`pytest -m gpu`).
    for item in items:
        if {"gpu_backend", "torch_backend"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gpu)


# --------------------------------------------------------------------------- data


# The fixtures that read the real MNIST: their tests share one data cache, filled once a session.
_REAL_DATA = {"mnist", "mnist_dir_path", "run"}


@pytest.fixture(scope="session")
def shared_cache_home(tmp_path_factory) -> Path:
    """The cache home (XDG_CACHE_HOME) of the tests on the real MNIST."""
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def _own_data_cache(request, monkeypatch, tmp_path_factory):
    """A data cache per test (in-process and in its subprocesses): a tiny set one test cached
    must not stand in for the files another test writes. The tests on the real MNIST share one,
    for the same files give the same entries."""
    if _REAL_DATA & set(request.fixturenames):
        home = request.getfixturevalue("shared_cache_home")
    else:
        home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))


@pytest.fixture
def empty_data_cache(monkeypatch, tmp_path_factory) -> Path:
    """An empty data cache, for a test on the real files that must read them (to spoil them)."""
    home = tmp_path_factory.mktemp("cache-home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "mnist-gpu" / "mnist"


def mnist_dir() -> Path | None:
    """Where the loader looks: $MNIST_GPU_DATA, else ./data (where `mnist-gpu train` downloads
    the files); None when the four files are not all there."""
    from mnist_gpu.data import MNIST_FILES, resolve_data_dir

    directory = resolve_data_dir()
    if all(_present(directory, spec.name) for spec in MNIST_FILES):
        return directory
    return None


def _present(directory: Path, name: str) -> bool:
    return (directory / f"{name}.gz").is_file() or (directory / name).is_file()


def _data_or_skip(request) -> Path:
    directory = mnist_dir()
    if directory is not None:
        return directory.resolve()  # still right after a test changes directory
    from mnist_gpu.data import resolve_data_dir

    reason = (f"real MNIST not found in {resolve_data_dir().resolve()} (set MNIST_GPU_DATA to "
              "a folder holding the four files, or run `mnist-gpu train` once to download "
              "them into ./data)")
    if request.config.getoption("--require-gpu"):
        # A GPU run that skipped the tests on real data would prove little: fail instead.
        pytest.fail(f"--require-gpu: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def mnist(request, shared_cache_home):
    from mnist_gpu.data import load_mnist

    return load_mnist(_data_or_skip(request), offline=True,
                      cache=shared_cache_home / "mnist-gpu" / "mnist")


@pytest.fixture(scope="session")
def mnist_dir_path(request):
    return _data_or_skip(request)


@pytest.fixture(scope="session")
def emulated_library(tmp_path_factory):
    """``kernels/fused_pass.cu`` compiled by g++ for the CPU (``emulated_cuda.py``), once."""
    import emulated_cuda
    from mnist_gpu.kernels import cuda

    if emulated_cuda.compiler() is None:
        pytest.skip("g++ not found: the CUDA kernel cannot be emulated")
    return emulated_cuda.build(cuda.KERNEL_SOURCE.read_text(),
                               tmp_path_factory.mktemp("emulated_cuda"))


@pytest.fixture
def run(mnist_dir_path, capsys):
    """Run the CLI in-process on the real data; returns (exit status, stdout, stderr)."""
    from mnist_gpu import cli

    def run(*args):
        status = cli.main([*args, "--data-dir", str(mnist_dir_path), "--offline", "--quiet"])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def idx_bytes(array: np.ndarray) -> bytes:
    """Valid IDX bytes for a uint8 array: labels (n,) or images (n, 28, 28)."""
    magic = {1: 2049, 3: 2051}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def gz(blob: bytes) -> bytes:
    return gzip.compress(blob, mtime=0)


@pytest.fixture
def tiny_mnist_arrays():
    """A small, valid MNIST-like set: 12 train and 5 test images with labels."""
    rng = np.random.default_rng(7)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 12, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5, dtype=np.uint8),
    }


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``mnist-gpu ARGV`` run in this process."""
    from mnist_gpu import cli

    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def data_flags(mnist_dir_path):
    """The flags that point a command at the test's MNIST folder, offline."""
    return ["--data-dir", str(mnist_dir_path), "--offline"]


def saved_cnn(path, channels=4):
    """A small CNN's weights file in the layout written before layer lists (``config.arch``)."""
    from dataclasses import asdict

    from mnist_gpu.io.weights import save_weights
    from mnist_gpu.model import network
    from mnist_gpu.model.architecture import Architecture

    arch = Architecture(conv=(channels,), conv_size=5, bias=True, loss="ce")
    arrays = network.params_to_arrays(network.init_params(arch.network(), 0, "float32"))
    save_weights(path, arrays.pop("W0"), {"config": {"arch": asdict(arch)}}, **arrays)
    return path


def live_processes() -> list[tuple[int, int, int, str]]:
    """Every live process (Linux's /proc; zombies left out): (pid, parent's pid, session, its
    command line)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z":
            found.append((int(stat.parent.name), int(fields[1]), int(fields[3]), command))
    return found
