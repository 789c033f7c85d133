"""The 16-lane row operations of every fused CPU pass, and the fused mini-batch pass itself.

The row operations (``kernels/cpu_rows.py``) keep the array path's rounding, one multiply and
one add per term in pixel order, so they must equal a NumPy loop doing the same in the same dtype
to the bit. The pass splits each batch into fixed chunks of images, whatever the number of
threads, so its weights must not depend on that number. Its agreement with the array path over
whole training runs is in ``test_parity.py``.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from mnist_gpu.model import tutorial
from mnist_gpu import kernels
from mnist_gpu.backend import BackendUnavailable

DTYPES = ["float64", "float32"]


@pytest.fixture
def fused(numpy_backend):
    try:
        return kernels.training_pass(numpy_backend, 2)
    except BackendUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture
def rows(fused):
    """The row operations, compiled into small wrappers (after the fixture checked Numba)."""
    from mnist_gpu.kernels.cpu_rows import add_lit_outer, lit_scores, minus_onehot, sub_lit_outer

    @numba.njit
    def scores(W, indices, values, first, last):
        return np.array(lit_scores(W, indices, values, first, last))

    @numba.njit
    def delta(W, indices, values, first, last, label):
        return np.array(minus_onehot(lit_scores(W, indices, values, first, last), label))

    @numba.njit
    def outer(G, indices, values, first, last, W, label):
        add_lit_outer(G, indices, values, first, last,
                      minus_onehot(lit_scores(W, indices, values, first, last), label))

    @numba.njit
    def update(W, indices, values, first, last, label, alpha):
        sub_lit_outer(W, indices, values, first, last,
                      minus_onehot(lit_scores(W, indices, values, first, last), label), alpha)

    return scores, delta, outer, update


def lit_list(rng, dtype, n=60):
    """A listing of ``n`` distinct pixels out of 784, with values in (0, 1]."""
    indices = np.sort(rng.choice(784, size=n, replace=False)).astype(np.int32)
    values = (rng.integers(1, 256, size=n) / 255).astype(dtype)
    return indices, values


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_operations_round_as_a_numpy_loop(rows, dtype):
    scores, delta, outer, update = rows
    rng = np.random.default_rng(7)
    W = rng.standard_normal((784, 16)).astype(dtype)
    indices, values = lit_list(rng, dtype)
    expected = np.zeros(16, dtype=dtype)
    for k, x in zip(indices, values):  # one rounding per multiply and per add, in pixel order
        expected = expected + x * W[k]
    got = scores(W, indices, values, 0, len(indices))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)
    # A range inside the list, and an empty one.
    np.testing.assert_array_equal(scores(W, indices, values, 10, 11), values[10] * W[indices[10]])
    np.testing.assert_array_equal(scores(W, indices, values, 5, 5), np.zeros(16, dtype=dtype))

    for label in (0, 3, 9):
        want = expected.copy()
        want[label] -= 1
        np.testing.assert_array_equal(delta(W, indices, values, 0, len(indices), label), want)

    G = rng.standard_normal((784, 16)).astype(dtype)
    want = G.copy()
    d = expected.copy()
    d[4] -= 1
    for k, x in zip(indices, values):
        want[k] = want[k] + x * d
    outer(G, indices, values, 0, len(indices), W, 4)
    np.testing.assert_array_equal(G, want)  # rows of unlit pixels untouched

    alpha = np.dtype(dtype).type(0.01)
    want = W.copy()
    for k, x in zip(indices, values):  # the tutorial's update, rounded as the array path does
        want[k] = want[k] - alpha * (x * d)
    update(W, indices, values, 0, len(indices), 4, alpha)
    np.testing.assert_array_equal(W, want)


def small_set(mnist, dtype, n=2000):
    X = tutorial.scale_images(mnist.train_images[:n], dtype, xp=np)
    Y = np.eye(10, dtype=dtype)[mnist.train_labels[:n]]
    return X, Y, mnist.train_labels[:n]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_the_array_steps_on_any_range(fused, mnist, dtype):
    """Steps over ``start:stop`` of a shuffled order, as ``tutorial.minibatch_steps`` takes them,
    with a short last batch."""
    X, Y, labels = small_set(mnist, dtype)
    lit = fused.prepare(X)
    order = np.random.default_rng(3).permutation(len(X))
    start = tutorial.init_weights(1, dtype)
    ours, reference = start.copy(), start.copy()
    fused.run_minibatch(ours, lit, labels, 0.05, 300, 600, 1950, order=order)
    tutorial.minibatch_steps(reference, X, Y, 0.05, 300, 600, 1950, order=order, xp=np)
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, reference, **tolerance)
    assert ours.dtype == np.dtype(dtype) and not np.array_equal(ours, start)


def test_weights_do_not_depend_on_the_number_of_threads(fused, mnist):
    X, _, labels = small_set(mnist, "float32")
    lit = fused.prepare(X)
    start = tutorial.init_weights(2, "float32")
    threads = numba.get_num_threads()
    results = []
    try:
        for count in sorted({1, threads}):
            numba.set_num_threads(count)
            for batch_size in (100, 1000, 2000):  # one chunk, four, eight
                W = start.copy()
                fused.run_minibatch(W, lit, labels, 0.05, batch_size, 0, len(X))
                results.append((count, batch_size, W))
    finally:
        numba.set_num_threads(threads)
    for count, batch_size, W in results:
        first = next(w for c, b, w in results if b == batch_size)
        np.testing.assert_array_equal(W, first, err_msg=f"{count} threads, batch {batch_size}")


def test_refuses_what_it_would_misread(fused, mnist):
    X, _, labels = small_set(mnist, "float32", n=50)
    lit = fused.prepare(X)
    W = tutorial.init_weights(0, "float32")
    with pytest.raises(ValueError, match="dtype"):
        fused.run_minibatch(tutorial.init_weights(0, "float64"), lit, labels, 0.01, 10, 0, 50)
    with pytest.raises(ValueError, match=r"\(784, 10\)"):
        fused.run_minibatch(np.zeros((700, 10), np.float32), lit, labels, 0.01, 10, 0, 50)
    with pytest.raises(ValueError, match="batch size"):
        fused.run_minibatch(W, lit, labels, 0.01, 0, 0, 50)
    before = W.copy()
    fused.run_minibatch(W, lit, labels, 0.01, 10, 20, 20)  # nothing to do
    np.testing.assert_array_equal(W, before)
