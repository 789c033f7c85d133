"""The LLVM IR of the 16-lane row operations (``kernels/cpu_rows.py``): its type guards, and its
independence of llvmlite's typed pointers.

Each intrinsic emits whole-row vector loads and stores, so an argument of the wrong dtype, layout
or dimensions must stop the compilation with a Numba typing error naming it, not compile into
wrong addresses. And the IR is written for opaque pointers, so the passes compiled with llvmlite's
typed pointers turned off must give the default build's weights bit for bit.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO

numba = pytest.importorskip("numba")
from numba.core.errors import TypingError  # noqa: E402

from mnist_gpu.kernels import cpu_rows  # noqa: E402

F32, F64 = np.float32, np.float64


def _listing(dtype=F32, index_dtype=np.int32):
    indices = np.array([3, 17, 400], dtype=index_dtype)
    return indices, np.array([0.5, 1.0, 0.25], dtype=dtype)


def _rows(dtype=F32, shape=(784, 16)):
    return np.zeros(shape, dtype=dtype)


@numba.njit
def _scores(W, indices, values):
    return cpu_rows.lit_scores(W, indices, values, 0, indices.shape[0])


@numba.njit
def _delta(W, indices, values):
    return cpu_rows.minus_onehot(cpu_rows.lit_scores(W, indices, values, 0, 3), 1)


@numba.njit
def _update(W, indices, values, delta, alpha):
    cpu_rows.sub_lit_outer(W, indices, values, 0, 3, delta, alpha)


@numba.njit
def _outer(G, indices, values, delta):
    cpu_rows.add_lit_outer(G, indices, values, 0, 3, delta)


def _delta_of(dtype):
    """A delta of ``dtype`` (returned to Python, a tuple's items are Python floats)."""
    return tuple(dtype(x) for x in _delta(_rows(dtype), *_listing(dtype)))


@numba.njit
def _group(W16s, indices, values, out, label):
    cpu_rows.lit_deltas_group(W16s, 0, 1, indices, values, 0, 3, label, 10, out)


@numba.njit
def _delta_row(out, q):
    return cpu_rows.delta_row(out, q)


@numba.njit
def _minus_onehot(scores, label):
    return cpu_rows.minus_onehot(scores, label)


def _readonly(array):
    array.flags.writeable = False
    return array


WRONG = {
    "int weights": (lambda: _scores(np.zeros((784, 16), np.int64), *_listing()), "W must be"),
    "Fortran-order weights": (lambda: _scores(np.asfortranarray(_rows()), *_listing()),
                              "C-contiguous 2-d"),
    "1-d weights": (lambda: _scores(np.zeros(784 * 16, F32), *_listing()), "W must be"),
    "values of another dtype": (lambda: _scores(_rows(F32), *_listing(F64)),
                                "values must be a C-contiguous 1-d array of float32"),
    "float indices": (lambda: _scores(_rows(), *_listing(index_dtype=F64)),
                      "indices must be"),
    "uint16 indices": (lambda: _scores(_rows(), *_listing(index_dtype=np.uint16)),
                      "indices must be"),
    "strided values": (lambda: _scores(_rows(), _listing()[0], np.zeros(6, F32)[::2]),
                       "values must be"),
    "alpha of another dtype": (lambda: _update(_rows(F32), *_listing(), _delta_of(F32), 0.01),
                               "alpha must be a float32"),
    "delta of another dtype": (lambda: _update(_rows(F32), *_listing(), _delta_of(F64),
                                               F32(0.01)), "delta must be a 16-tuple of float32"),
    "read-only weights": (lambda: _update(_readonly(_rows()), *_listing(), _delta_of(F32),
                                          F32(0.01)), "W must be a writable"),
    "read-only gradient": (lambda: _outer(_readonly(_rows()), *_listing(), _delta_of(F32)),
                           "G must be a writable"),
    "gradient of another dtype": (lambda: _outer(_rows(F64), *_listing(F64), _delta_of(F32)),
                                  "delta must be a 16-tuple of float64"),
    "2-d stack": (lambda: _group(_rows(), *_listing(), _rows(shape=(4, 16)), 1), "W16s must be"),
    "deltas of another dtype": (lambda: _group(_rows(shape=(1, 784, 16)), *_listing(),
                                               _rows(F64, (4, 16)), 1), "out must be"),
    "float label": (lambda: _group(_rows(shape=(1, 784, 16)), *_listing(), _rows(shape=(4, 16)),
                                   1.0), "label must be an integer"),
    "1-d delta rows": (lambda: _delta_row(np.zeros(16, F32), 0), "out must be"),
    "float row number": (lambda: _delta_row(_rows(shape=(4, 16)), 0.0), "q must be an integer"),
    "ten scores": (lambda: _minus_onehot((F32(0),) * 10, 1), "scores must be a 16-tuple"),
    "int scores": (lambda: _minus_onehot((0,) * 16, 1), "scores must be a 16-tuple"),
}


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_a_wrong_type_or_layout_is_a_typing_error(case):
    call, message = WRONG[case]
    with pytest.raises(TypingError, match=message):
        call()


def test_right_types_compile_and_compute():
    # The guards' counterpart: the same wrappers with the types the passes use.
    indices, values = _listing()
    W = np.arange(784 * 16, dtype=F32).reshape(784, 16) / 1e4
    scores = np.array(_scores(W, indices, values))
    np.testing.assert_array_equal(scores, values @ W[indices])
    delta = tuple(F32(x) for x in _delta(W, indices, values))
    G = _rows()
    _outer(G, indices, values, delta)
    np.testing.assert_array_equal(G[indices], values[:, None] * np.array(delta, F32))
    assert np.all(np.delete(G, indices, axis=0) == 0)
    before = W.copy()
    _update(W, indices, values, delta, F32(0.01))
    _update(W, indices, values, delta, (F32(0.01),) * 16)
    assert np.all(W[indices] != before[indices]) and np.all(np.delete(W == before, indices, 0))


# --------------------------------------------------------------------------- opaque pointers

_PASSES = """
import sys

import numpy as np

from mnist_gpu.data import load_mnist
from mnist_gpu.kernels.cpu import FusedCPU
from mnist_gpu.model.tutorial import init_weights


def every_pass(count):
    mnist = load_mnist(None, offline=True)
    X = (mnist.train_images[:count].reshape(count, -1) / 255).astype("float32")
    labels = mnist.train_labels[:count]
    fused = FusedCPU()
    lit = fused.prepare(X)
    order = np.random.default_rng(0).permutation(count)
    W = init_weights(0, "float32")
    stack = np.concatenate([init_weights(seed, "float32") for seed in range(3)], axis=1)
    alphas = [0.01, 0.03, 0.003]
    per_image = fused.train(W.copy(), lit, labels, [0.01], 1, 0, count, order)
    classes = fused.classify(per_image, lit)
    correct, sq_errors = fused.evaluate(per_image, lit, labels)
    return {"per_image": per_image,
            "minibatch": fused.train(W.copy(), lit, labels, [0.05], 100, 0, count, order),
            "stack": fused.train(stack.copy(), lit, labels, alphas, 1, 0, count, order),
            "stack_minibatch": fused.train(stack.copy(), lit, labels, alphas, 100, 0, count,
                                           order),
            "classes": classes, "scores": np.array([correct, sq_errors], dtype=np.float64)}


if __name__ == "__main__":
    import llvmlite

    # The switch as llvmlite 0.45 to 0.50 spell it (LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS=0);
    # a later llvmlite without typed pointers has no switch, and its pointers are all opaque.
    assert not getattr(llvmlite, "ir_layer_typed_pointers_enabled", False), "typed pointers on"
    np.savez(sys.argv[2], **every_pass(int(sys.argv[1])))
"""


def test_the_passes_give_the_same_bits_with_opaque_pointers(mnist_dir_path, tmp_path):
    count = 600
    script = tmp_path / "passes.py"
    script.write_text(textwrap.dedent(_PASSES))
    env = {**os.environ, "LLVMLITE_ENABLE_IR_LAYER_TYPED_POINTERS": "0",
           # Compiled afresh: a cached build would be the typed one.
           "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "MNIST_GPU_DATA": str(mnist_dir_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(script), str(count), str(tmp_path / "opaque.npz")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    spec = importlib.util.spec_from_file_location("passes", script)
    passes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(passes)
    default = passes.every_pass(count)  # here, with llvmlite's default pointers
    with np.load(tmp_path / "opaque.npz") as opaque:
        assert sorted(opaque.files) == sorted(default)
        for name, expected in default.items():
            assert opaque[name].dtype == expected.dtype
            assert opaque[name].tobytes() == expected.tobytes(), name
