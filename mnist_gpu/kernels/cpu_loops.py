"""The compiled loops of the fused CPU passes (Numba), over the lit pixels of each image.

These are the tutorial's loops (``mnist_gpu/model/tutorial.py``) over a sparse image: a zero pixel
adds nothing to the prediction and leaves its row of weights unchanged, and about 80% of MNIST's
pixels are zero. Every pass works on a copy of the weights padded to 16 lanes, each row one SIMD
vector, through the row operations of ``cpu_rows``. The host side, which checks shapes and pads
the weights, is ``cpu.py``; nothing here checks anything.

No fastmath: each weight's update is the array path's arithmetic, ``W -= alpha * (x * delta)`` in
the weights' dtype, and only the order of the terms of the dot products differs, so results stay
within rounding of the array path.
"""

from __future__ import annotations

import numba
import numpy as np

from .cpu_rows import (
    LANES, SCORE_GROUP, add_lit_outer, delta_row, lit_deltas_group, lit_scores, minus_onehot,
    sub_lit_outer,
)
from .numba_cache import compiled

N_OUT = 10

# Images per partial gradient in a mini-batch: the unit of work split across the cores. Large
# enough that summing the partial gradients (784 x 16 each) costs ~1% of computing them; small
# enough that a batch of 1,024 gives each of two cores two chunks.
CHUNK = 256


@compiled(parallel=True)
def lit_pixels(X):  # pragma: no cover - compiled
    # Two passes over the images, each split across the cores: count every image's lit pixels,
    # then (once the counts say where each image's list starts) copy them out, their values as
    # they are (uint8 pixels stay uint8: the passes scale them as they read them) and their
    # pixel numbers as int16 (the host side checks that they fit).
    n, n_pixels = X.shape
    counts = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        count = 0
        for k in range(n_pixels):
            count += X[i, k] != 0
        counts[i] = count
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    indices = np.empty(indptr[n], dtype=np.int16)
    values = np.empty(indptr[n], dtype=X.dtype)
    for i in numba.prange(n):
        # Write every pixel at the cursor and advance it only past lit ones: no branch on the
        # pixel's value to mispredict. The test keeps trailing zeros out of the next image's
        # list.
        t, end = indptr[i], indptr[i + 1]
        for k in range(n_pixels):
            value = X[i, k]
            if t < end:
                indices[t] = k
                values[t] = value
            t += value != 0
    return indptr, indices, values


@compiled()
def per_image_pass(W16, indptr, indices, values, labels, alpha, start, stop, order,
                    use_order):  # pragma: no cover - compiled
    for position in range(start, stop):
        i = order[position] if use_order else position
        first, last = indptr[i], indptr[i + 1]
        # pred = x @ W over the lit pixels; delta = pred - onehot(label)
        delta = minus_onehot(lit_scores(W16, indices, values, first, last), labels[i])
        # W -= alpha * outer(x, delta), over the lit pixels' rows
        sub_lit_outer(W16, indices, values, first, last, delta, alpha)


@compiled(parallel=True)
def minibatch_pass(W16, indptr, indices, values, labels, alpha, batch_size, start, stop, order,
                    use_order, partial):  # pragma: no cover - compiled
    # W16: the weights padded to 16 lanes; partial: one (n_pixels, 16) gradient per chunk.
    for first_image in range(start, stop, batch_size):
        end = min(first_image + batch_size, stop)
        chunks = (end - first_image + CHUNK - 1) // CHUNK
        # The step alpha / b in the weights' dtype, as the array path rounds it.
        step = W16.dtype.type(alpha / (end - first_image))
        if chunks == 1:
            # One chunk: no threads to start, no partial gradients to add.
            _chunk_gradient(W16, indptr, indices, values, labels, first_image, end, order,
                            use_order, partial[0])
            _descend(W16, partial[0], step)
            continue
        # Every image of the batch sees the same weights: each chunk of images sums its share
        # of the gradient X^T delta into its own partial gradient, the chunks split across
        # the cores.
        for c in numba.prange(chunks):
            _chunk_gradient(W16, indptr, indices, values, labels, first_image + c * CHUNK,
                            min(first_image + (c + 1) * CHUNK, end), order, use_order, partial[c])
        # W -= (alpha / b) * X^T delta, the partial gradients added in chunk order whatever
        # the threads that computed them, the rows of weights split across the cores.
        for k in numba.prange(W16.shape[0]):
            total = partial[0, k]
            for c in range(1, chunks):
                more = partial[c, k]
                for j in range(LANES):
                    total[j] += more[j]
            for j in range(LANES):
                W16[k, j] -= step * total[j]


@compiled(inline="always")
def _chunk_gradient(W16, indptr, indices, values, labels, begin, end, order, use_order,
                    gradient):  # pragma: no cover - compiled
    """``X^T (X W - Y)`` over the images at positions ``begin:end``, into ``gradient``."""
    gradient[:] = 0
    for position in range(begin, end):
        i = order[position] if use_order else position
        first, last = indptr[i], indptr[i + 1]
        delta = minus_onehot(lit_scores(W16, indices, values, first, last), labels[i])
        add_lit_outer(gradient, indices, values, first, last, delta)


@compiled(inline="always")
def _descend(W16, gradient, step):  # pragma: no cover - compiled
    """``W -= step * gradient``, lane by lane."""
    for k in range(W16.shape[0]):
        for j in range(LANES):
            W16[k, j] -= step * gradient[k, j]


@compiled(parallel=True)
def inference_pass(W16, indptr, indices, values, labels, use_labels, classes,
                    sq_errors):  # pragma: no cover - compiled
    # pred = x @ W over each image's lit pixels, then its argmax, in one pass: the dense product
    # reads every pixel (31 MB of float32 for the test set), this reads the lit fifth of them,
    # and the argmax costs no second pass over the scores. Images are independent, so they are
    # split across the cores; each image's sums run in pixel order whatever the split, so the
    # results do not depend on the number of threads.
    for i in numba.prange(indptr.shape[0] - 1):
        pred = lit_scores(W16, indices, values, indptr[i], indptr[i + 1])
        # argmax as NumPy defines it: the first maximum, or the first NaN if there is one.
        best, top = 0, pred[0]
        for j in range(1, N_OUT):
            if top == top and (pred[j] > top or pred[j] != pred[j]):
                best, top = j, pred[j]
        classes[i] = best
        if use_labels:
            # The tutorial's error, sum((pred - onehot(label)) ** 2), in the weights' dtype. (The
            # delta is the training passes' row operation: a scalar constructor such as
            # ``W16.dtype.type(1)`` would make Numba import its NumPy lowering, 27 ms, each time
            # it loads this loop.)
            delta = minus_onehot(pred, labels[i])
            sq = delta[0] * delta[0]
            for j in range(1, N_OUT):
                sq += delta[j] * delta[j]
            sq_errors[i] = sq


# --------------------------------------------------------------------------- models side by side
# A sweep's M models, each with its own learning rate, see the same images in the same order. Their
# 10 M columns of weights are packed 16 to a vector, (V, pixels, 16) with V = ceil(10 M / 16):
# every lane does exactly what the one-model pass does for its column, so each model's weights
# are those of its own run, bit for bit. The vectors are independent, so they are split across the
# cores in groups, each core walking the images once for all the vectors of its group.


@compiled(parallel=True)
def per_image_stack_pass(W16s, indptr, indices, values, labels, alphas16, columns, groups,
                          start, stop, order, use_order):  # pragma: no cover - compiled
    # Each group of vectors (one per core) walks the images once, every image's lists read once
    # and then kept in cache for all the group's vectors.
    vectors = W16s.shape[0]
    for g in numba.prange(groups):
        v0, v1 = g * vectors // groups, (g + 1) * vectors // groups
        deltas = np.empty((SCORE_GROUP, LANES), dtype=W16s.dtype)
        for position in range(start, stop):
            i = order[position] if use_order else position
            first, last = indptr[i], indptr[i + 1]
            # The deltas of SCORE_GROUP vectors per walk (their sums do not wait on each other),
            # then each vector's update.
            for v in range(v0, v1, SCORE_GROUP):
                count = min(SCORE_GROUP, v1 - v)
                lit_deltas_group(W16s, v, count, indices, values, first, last, labels[i],
                                 columns, deltas)
                for q in range(count):
                    sub_lit_outer(W16s[v + q], indices, values, first, last, delta_row(deltas, q),
                                  _lanes(alphas16[v + q]))


@compiled(parallel=True)
def minibatch_stack_pass(W16s, indptr, indices, values, labels, alphas, columns, groups,
                          batch_size, start, stop, order, use_order,
                          gradients):  # pragma: no cover - compiled
    # alphas: (V, 16) float64, each lane's learning rate; gradients: one (pixels, 16) per vector.
    vectors = W16s.shape[0]
    for g in numba.prange(groups):
        v0, v1 = g * vectors // groups, (g + 1) * vectors // groups
        step = np.empty(LANES, dtype=W16s.dtype)
        deltas = np.empty((SCORE_GROUP, LANES), dtype=W16s.dtype)
        for first_image in range(start, stop, batch_size):
            end = min(first_image + batch_size, stop)
            for v in range(v0, v1):
                gradients[v, :, :] = 0
            for position in range(first_image, end):
                i = order[position] if use_order else position
                first, last = indptr[i], indptr[i + 1]
                for v in range(v0, v1, SCORE_GROUP):
                    count = min(SCORE_GROUP, v1 - v)
                    lit_deltas_group(W16s, v, count, indices, values, first, last, labels[i],
                                     columns, deltas)
                    for q in range(count):
                        add_lit_outer(gradients[v + q], indices, values, first, last,
                                      delta_row(deltas, q))
            for v in range(v0, v1):
                # Each lane's step alpha / b in the weights' dtype, as the array path rounds it.
                for j in range(LANES):
                    step[j] = W16s.dtype.type(alphas[v, j] / (end - first_image))
                W16, G = W16s[v], gradients[v]
                for k in range(W16.shape[0]):
                    for j in range(LANES):
                        W16[k, j] -= step[j] * G[k, j]


@compiled(inline="always")
def _lanes(a):  # pragma: no cover - compiled
    """The 16 values of ``a`` as a tuple (what the row operations take as one vector)."""
    return (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
            a[13], a[14], a[15])


