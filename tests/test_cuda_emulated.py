"""The CUDA pass (``kernels/fused_pass.cu``) run on the CPU, through ``FusedCUDA``'s own host code.

No GPU here: g++ compiles the kernel against ``cuda_on_cpu/warp.h`` (a block's 32 lanes as 32
threads meeting wherever the warp synchronises) and ``emulated_cuda`` stands in for CuPy. The
kernel's results are checked bit for bit against a NumPy model of its arithmetic (lane sums, then
the butterfly, each multiply and add rounded on its own, as --fmad=false compiles it). On a GPU the
real kernel must give the same bits: the ``gpu`` test below checks it against the same model.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import emulated_cuda
from mnist_gpu import kernels
from mnist_gpu.backend import get_backend
from mnist_gpu.kernels import cuda
from mnist_gpu.kernels.cpu import FusedCPU
from mnist_gpu.model.tutorial import init_weights
from mnist_gpu.sweep import Member, run_sweep
from mnist_gpu.training import TrainConfig, to_device_data

WARP = 32


def _fused(library, properties=emulated_cuda.H200):
    return cuda.FusedCUDA(emulated_cuda.emulated_cupy(library, properties))


@pytest.fixture(scope="module")
def images(mnist):
    X = mnist.train_images[:160].reshape(160, -1) / 255
    return X, mnist.train_labels[:160]


def warp_order_pass(W, X, labels, alphas, start, stop, order=None):
    """What the kernel computes, in its order: model m (columns 10 m:10 m + 10) walks the images
    at positions start:stop; lane l sums x * w over lit pixels l, l + 32, ...; the butterfly adds
    each lane's sum to its partner's at distances 16, 8, 4, 2, 1; then the update."""
    W = W.copy()
    dtype = W.dtype.type
    lanes = np.arange(WARP)
    for m, alpha in enumerate(alphas):
        weights, alpha = W[:, 10 * m:10 * m + 10], dtype(alpha)
        for position in range(start, stop):
            i = order[position] if order is not None else position
            pixels = np.flatnonzero(X[i])
            x = X[i, pixels]
            sums = np.zeros((WARP, 10), W.dtype)
            for first in range(0, len(pixels), WARP):
                rows = pixels[first:first + WARP]
                sums[:len(rows)] += x[first:first + WARP, None] * weights[rows]
            for distance in (16, 8, 4, 2, 1):
                sums = sums + sums[lanes ^ distance]
            delta = sums[0] - (np.arange(10) == labels[i]).astype(W.dtype)
            weights[pixels] -= alpha * (x[:, None] * delta)
    return W


def _start(models, dtype):
    return np.concatenate([init_weights(seed, dtype) for seed in range(models)], axis=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_kernel_computes_its_summation_order_bit_for_bit(emulated_library, images, dtype):
    X, labels = images[0].astype(dtype), images[1]
    order = np.random.default_rng(0).permutation(len(X))
    alphas = [0.01, 0.003, 0.03]
    fused = _fused(emulated_library)
    lit = fused.prepare(X)
    W = _start(3, dtype)
    trained = fused.train(W.copy(), lit, labels, alphas, 1, 20, 150, order)
    assert np.array_equal(trained, warp_order_pass(W, X, labels, alphas, 20, 150, order))
    assert not np.array_equal(trained, W)
    # In file order, and one model alone: the grid of one block.
    alone = fused.train(W[:, :10].copy(), lit, labels, [0.01], 1, 0, len(X))
    assert np.array_equal(alone, warp_order_pass(W[:, :10], X, labels, [0.01], 0, len(X)))


@pytest.mark.parametrize("start, stop", [(0, 1), (2, 4), (1, 4), (0, 6)])
def test_long_lists_blank_images_and_short_segments(emulated_library, start, stop):
    # Every pixel lit (784 entries: past the 384 each warp holds in registers), a blank image,
    # and segments of one image or a few, where the pipeline's look-ahead runs past the end.
    rng = np.random.default_rng(3)
    X = rng.uniform(0.01, 1.0, (6, 784))
    X[3] = 0
    X[4, rng.permutation(784)[:100]] = 0
    labels = np.array([1, 7, 3, 0, 9, 4], dtype=np.uint8)
    order = np.array([5, 3, 0, 4, 1, 2])
    fused = _fused(emulated_library)
    lit = fused.prepare(X)
    W = _start(2, "float64")
    for positions in (None, order):
        trained = fused.train(W.copy(), lit, labels, [0.001, 0.0003], 1, start, stop,
                                   positions)
        expected = warp_order_pass(W, X, labels, [0.001, 0.0003], start, stop, positions)
        assert np.array_equal(trained, expected)


_SANITIZED_RUN = """
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [sys.argv[1]]
import emulated_cuda
from mnist_gpu.kernels import cuda

library = emulated_cuda.build(cuda.KERNEL_SOURCE.read_text(), Path(sys.argv[2]),
                              sanitize=True)
rng = np.random.default_rng(0)
X = rng.uniform(0.01, 1.0, (6, 784)) * (rng.uniform(size=(6, 784)) < 0.3)
X[1] = rng.uniform(0.01, 1.0, 784)  # 784 entries: past the registers
X[2] = 0
labels = np.arange(6, dtype=np.uint8)
order = np.array([5, 3, 0, 4, 1, 2])
small = {"multiProcessorCount": 1, "sharedMemPerMultiprocessor": 4 * (100 * 80 + 1024),
         "sharedMemPerBlockOptin": 48 * 1024, "reservedSharedMemPerBlock": 1024}
for properties, rare in ((emulated_cuda.H200, cuda.RARE_ROWS), (small, 1.0)):
    cuda.RARE_ROWS = rare
    fused = cuda.FusedCUDA(emulated_cuda.emulated_cupy(library, properties))
    lit = fused.prepare(X)
    W = rng.uniform(size=(784, 40))
    for start, stop in ((0, 6), (0, 1), (4, 6), (5, 6)):
        # Arrays of exactly the size the segment needs: the order ends at the segment's end.
        fused.train(W, lit, labels, [0.001] * 4, 1, start, stop, order[:stop].copy())
        fused.train(W, lit, labels, [0.001] * 4, 1, start, stop, None)
print("no access outside the arrays")
"""


def test_the_kernel_stays_inside_its_arrays(tmp_path):
    # The kernel indexes its arrays unchecked (the host checks positions and order once); here it
    # runs under AddressSanitizer, so that a read or write past any array it is given (the
    # look-ahead past the segment's end, a list longer than the registers, rows off chip) stops
    # the run with a report.
    runtime = emulated_cuda.asan_runtime()
    if runtime is None:
        pytest.skip("g++ or its AddressSanitizer runtime not found")
    env = {**os.environ, "LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"}
    done = subprocess.run([sys.executable, "-c", _SANITIZED_RUN, str(emulated_cuda.HERE),
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=emulated_cuda.HERE.parent, timeout=300)
    assert done.returncode == 0 and "AddressSanitizer" not in done.stderr, done.stderr[-3000:]
    assert done.stdout.strip() == "no access outside the arrays"


def test_rows_left_in_global_memory_change_no_bit(emulated_library, images, monkeypatch):
    # A device with room for 100 rows per block when four blocks share a multiprocessor, and any
    # share of the lit pixels allowed off chip: most rows are read and written in global memory.
    X, labels = images[0].astype("float32"), images[1]
    small = {"multiProcessorCount": 1, "sharedMemPerMultiprocessor": 4 * (100 * 40 + 1024),
             "sharedMemPerBlockOptin": 48 * 1024, "reservedSharedMemPerBlock": 1024}
    monkeypatch.setattr(cuda, "RARE_ROWS", 1.0)
    fused = _fused(emulated_library, small)
    lit = fused.prepare(X)
    plan = fused.plan(4, "float32", lit)
    assert plan.shared_rows == 100 < np.count_nonzero(lit.rank_counts)
    alphas = [0.01, 0.02, 0.005, 0.01]
    W = _start(4, "float32")
    trained = fused.train(W.copy(), lit, labels, alphas, 1, 0, len(X))
    assert np.array_equal(trained, warp_order_pass(W, X, labels, alphas, 0, len(X)))


def test_the_kernel_follows_the_cpu_pass(emulated_library, images):
    X, labels = images
    fused, cpu = _fused(emulated_library), FusedCPU()
    W = _start(2, "float64")
    on_gpu = fused.train(W.copy(), fused.prepare(X), labels, [0.01, 0.003], 1, 0, len(X))
    on_cpu = cpu.run_models(W.copy(), cpu.prepare(X), labels, [0.01, 0.003], 1, 0, len(X))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=1e-12)


def test_the_lists_name_pixels_by_rank(emulated_library, images):
    X, _ = images
    lit = _fused(emulated_library).prepare(X)
    counts = np.count_nonzero(X, axis=0)
    pixel_of_rank = np.asarray(lit.pixel_of_rank)
    # Most often lit first, ties by pixel number; a permutation of the 784 pixels.
    assert np.array_equal(np.sort(pixel_of_rank), np.arange(784))
    assert np.array_equal(lit.rank_counts, counts[pixel_of_rank])
    assert np.all(np.diff(lit.rank_counts) <= 0)
    ties = np.diff(lit.rank_counts) == 0
    assert np.all(np.diff(pixel_of_rank)[ties] > 0)
    # Each image's list names its lit pixels in pixel order.
    i = 7
    ranks = lit.indices[lit.indptr[i]:lit.indptr[i + 1]]
    assert np.array_equal(pixel_of_rank[ranks], np.flatnonzero(X[i]))


def _numpy_with_the_kernel(library, monkeypatch):
    """NumPy's backend as CuPy's looks to the training loops: the CUDA pass (emulated) for its
    per-image training and, as CuPy has, no fused inference."""
    fused = _fused(library)
    monkeypatch.setitem(kernels.TRAINING, "numpy", lambda backend: fused)
    monkeypatch.delitem(kernels.INFERENCE, "numpy")  # CuPy scores the test set by cuBLAS
    return get_backend("numpy")


def test_a_sweep_trains_through_the_kernel(emulated_library, mnist, monkeypatch):
    # The sweep's loop (segments between checkpoints, a shuffled order, diverging models taken
    # out of the stack) around the emulated kernel, as on CuPy.
    small = type(mnist)(mnist.train_images[:150], mnist.train_labels[:150],
                        mnist.test_images[:100], mnist.test_labels[:100])
    config = TrainConfig(checkpoints=(0, 50, 150), kernel="fused", shuffle=True)
    # Alpha 5 blows the test MSE up by 1e219 in 50 images, weights still finite; alpha 1e7
    # overflows the weights within 50.
    members = [Member(0.01, 0), Member(5.0, 1), Member(0.003, 1), Member(1e7, 2)]
    on_cpu = run_sweep(to_device_data(get_backend("numpy"), small, "float64"), members, config)

    backend = _numpy_with_the_kernel(emulated_library, monkeypatch)
    data = to_device_data(backend, small, "float64")
    wild = run_sweep(data, members, config)
    sane = run_sweep(data, [members[0], members[2]], config)
    assert [m.diverged for m in wild.models] == [m.diverged for m in on_cpu.models]
    assert wild.models[1].diverged.startswith("at 50 images seen (test MSE ")
    assert wild.models[3].diverged.startswith("at step ")
    for index, alone in ((0, 0), (2, 1)):
        assert np.array_equal(wild.weights[index], sane.weights[alone])
        assert wild.models[index].curve == sane.models[alone].curve
    np.testing.assert_allclose(wild.weights[[0, 2]], on_cpu.weights[[0, 2]], rtol=0, atol=1e-12)
    # The diverged models frozen: at the checkpoint that found the MSE (weights of 1e109), and
    # at the last finite step (1e304).
    np.testing.assert_allclose(wild.weights[[1, 3]], on_cpu.weights[[1, 3]], rtol=1e-12)
    assert 1e100 < np.abs(wild.weights[1]).max() < 1e120 < np.abs(wild.weights[3]).max()


def test_the_benchmark_records_each_launch(emulated_library, mnist, monkeypatch):
    from mnist_gpu.bench.rows import bench_sweeps

    backend = _numpy_with_the_kernel(emulated_library, monkeypatch)
    small = type(mnist)(mnist.train_images[:60], mnist.train_labels[:60],
                        mnist.test_images[:10], mnist.test_labels[:10])
    rows = bench_sweeps(backend, to_device_data(backend, small, "float32"), (1, 3), 1, 60)
    launched = [r for r in rows if r.launch is not None]
    assert [(r.batch_size, r.models) for r in launched] == [(1, 1), (1, 3)]
    lit_rows = np.count_nonzero(np.count_nonzero(small.train_images[:60], axis=0))
    # Every lit row on chip, as many blocks per multiprocessor as an H200's 228 KiB hold.
    expected = {"shared_rows": lit_rows, "shared_bytes": lit_rows * 40,
                "blocks_per_sm": min(32, 233472 // (lit_rows * 40 + 1024)), "waves": 1}
    assert all(r.launch == expected for r in launched)
    assert all(r.to_json()["launch"] == r.launch for r in launched)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_on_a_gpu_the_kernel_computes_the_same_bits(gpu_backend, images, dtype):
    X, labels = images[0].astype(dtype), images[1]
    order = np.random.default_rng(1).permutation(len(X))
    alphas = [0.01, 0.003, 0.03]
    fused = kernels.training_pass(gpu_backend)
    lit = fused.prepare(gpu_backend.to_device(X))
    W = _start(3, dtype)
    trained = fused.train(gpu_backend.to_device(W), lit, gpu_backend.to_device(labels),
                               alphas, 1, 5, 155, gpu_backend.to_device(order))
    expected = warp_order_pass(W, X, labels, alphas, 5, 155, order)
    assert np.array_equal(gpu_backend.to_host(trained), expected)


# --------------------------------------------------------------------------- launch plans


@pytest.fixture(scope="module")
def mnist_rank_counts(mnist):
    counts = np.count_nonzero(mnist.train_images.reshape(len(mnist.train_images), -1), axis=0)
    return np.sort(counts)[::-1]


@pytest.mark.parametrize("models, itemsize, rows, per_sm, waves", [
    (1, 4, 717, 7, 1),       # every lit row on chip (MNIST lights 717 pixels)
    (924, 4, 717, 7, 1),     # 7 x 132 multiprocessors
    (1024, 4, 704, 8, 1),    # the 13 rarest rows off chip: 8 per multiprocessor, one wave
    (2048, 4, 704, 8, 2),
    (1024, 8, 716, 4, 2),    # float64: 352 rows would fit 8 per multiprocessor, too few
])
def test_launch_plans_on_an_h200(mnist_rank_counts, models, itemsize, rows, per_sm, waves):
    plan = cuda.launch_plan(models, itemsize, mnist_rank_counts, emulated_cuda.H200)
    assert (plan.shared_rows, plan.blocks_per_sm, plan.waves) == (rows, per_sm, waves)
    assert plan.shared_bytes == rows * 10 * itemsize
    assert plan.blocks_per_sm * (plan.shared_bytes + 1024) <= emulated_cuda.H200[
        "sharedMemPerMultiprocessor"]


def test_a_plan_for_blank_images():
    plan = cuda.launch_plan(3, 4, np.zeros(784, np.int64), emulated_cuda.H200)
    assert (plan.shared_rows, plan.shared_bytes, plan.waves) == (0, 0, 1)
