"""The per-image pass, mini-batches and inference as compiled loops on the CPU (Numba), over the
lit pixels.

Done as array calls, each of the 60,000 dependent rank-1 updates costs several library dispatches
for very little arithmetic. Compiled, the loop costs what its arithmetic costs, and about 80% of
MNIST's pixels are zero: a zero pixel adds nothing to the prediction and leaves its row of weights
unchanged. ``prepare`` lists each image's lit pixels once (CSR: row pointers, pixel indices,
values); every pass then visits only those.

Inference (``classify``, ``evaluate``) uses the same lists: the dense product ``X @ W`` is bound by
reading every pixel of ``X``, where a loop over the lit ones reads a fifth of the data and takes
the argmax on the way, split across the cores (images are independent at inference).

Mini-batches (``run_minibatch``) work through each batch's images in chunks of ``CHUNK``, split
across the cores, each chunk summing its images' share of the gradient ``X^T delta`` over their lit
pixels; the chunks' sums are then added in order and the weights updated once, as the array path
does. The chunks do not depend on the number of threads, so neither do the weights.

Every pass works on a copy of the weights padded to 16 lanes, each row one SIMD vector, through
the row operations of ``simd_rows`` (2.2-2.9x faster than the same loops as ten scalars, with the
same rounding: the per-image weights are the same to the bit).

The compiled loops are cached on disk (``cache_dir``), so that only the first run on a machine
pays for compiling them: in ``$NUMBA_CACHE_DIR`` when the user set it, else in the per-user cache
directory (``~/.cache/mnist-gpu/numba`` on Linux), never in the installed package. When neither
can be written, the loops are compiled afresh in each process instead.

No fastmath: each weight's update is the array path's arithmetic, ``W -= alpha * (x * delta)`` in
the weights' dtype, and only the order of the terms of the dot products differs, so results stay
within rounding of the array path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numba
import numba.core.config
import numpy as np

from .files import user_cache_dir, writable_dir
from .simd_rows import (
    LANES, SCORE_GROUP, add_lit_outer, delta_row, lit_deltas_group, lit_scores, minus_onehot,
    sub_lit_outer,
)

N_OUT = 10

# Images per partial gradient in a mini-batch: the unit of work split across the cores. Large
# enough that summing the partial gradients (784 x 16 each) costs ~1% of computing them; small
# enough that a batch of 1,024 gives each of two cores two chunks.
CHUNK = 256


def _cache_dir() -> Path | None:
    """Where the compiled loops are cached: ``$NUMBA_CACHE_DIR``, else the per-user cache; None
    when that cannot be written (then nothing is cached)."""
    chosen = os.environ.get("NUMBA_CACHE_DIR") or numba.core.config.CACHE_DIR
    path = Path(chosen) if chosen else user_cache_dir() / "numba"
    return path if writable_dir(path) else None


cache_dir = _cache_dir()


def _compiled(**options):
    """``numba.njit(nogil=True, **options)``, cached in ``cache_dir``.

    Numba's own default is the ``__pycache__`` beside the source, that is inside the installed
    package. Numba picks a function's cache directory once, when the decorator runs, from
    ``numba.config.CACHE_DIR``: it is set to ours for that moment only, so the user's other
    Numba code keeps the user's own setting.
    """
    def decorate(func):
        if cache_dir is None:
            return numba.njit(nogil=True, **options)(func)
        with _numba_cache_dir(cache_dir):
            return numba.njit(cache=True, nogil=True, **options)(func)
    return decorate


@contextlib.contextmanager
def _numba_cache_dir(path: Path):
    before = numba.core.config.CACHE_DIR
    numba.core.config.CACHE_DIR = str(path)
    try:
        yield
    finally:
        numba.core.config.CACHE_DIR = before


@dataclass(frozen=True)
class LitPixels:
    """The lit pixels of every image: image i's are ``indices[indptr[i]:indptr[i + 1]]``."""

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32 pixel numbers
    values: np.ndarray  # the pixels' values, in the weights' dtype
    n_pixels: int  # pixels per image: the rows the weights must have


@_compiled(parallel=True)
def _lit_pixels(X):  # pragma: no cover - compiled
    # Two passes over the images, each split across the cores: count every image's lit pixels,
    # then (once the counts say where each image's list starts) copy them out.
    n, n_pixels = X.shape
    counts = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        count = 0
        for k in range(n_pixels):
            count += X[i, k] != 0
        counts[i] = count
    indptr = np.zeros(n + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(counts)
    indices = np.empty(indptr[n], dtype=np.int32)
    values = np.empty(indptr[n], dtype=X.dtype)
    for i in numba.prange(n):
        # Write every pixel at the cursor and advance it only past lit ones: no branch on the
        # pixel's value to mispredict (25% faster here). The test keeps trailing zeros out of
        # the next image's list.
        t, end = indptr[i], indptr[i + 1]
        for k in range(n_pixels):
            value = X[i, k]
            if t < end:
                indices[t] = k
                values[t] = value
            t += value != 0
    return indptr, indices, values


@_compiled()
def _per_image_pass(W16, indptr, indices, values, labels, alpha, start, stop, order,
                    use_order):  # pragma: no cover - compiled
    for position in range(start, stop):
        i = order[position] if use_order else position
        first, last = indptr[i], indptr[i + 1]
        # pred = x @ W over the lit pixels; delta = pred - onehot(label)
        delta = minus_onehot(lit_scores(W16, indices, values, first, last), labels[i])
        # W -= alpha * outer(x, delta), over the lit pixels' rows
        sub_lit_outer(W16, indices, values, first, last, delta, alpha)


@_compiled(parallel=True)
def _minibatch_pass(W16, indptr, indices, values, labels, alpha, batch_size, start, stop, order,
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


@_compiled(inline="always")
def _chunk_gradient(W16, indptr, indices, values, labels, begin, end, order, use_order,
                    gradient):  # pragma: no cover - compiled
    """``X^T (X W - Y)`` over the images at positions ``begin:end``, into ``gradient``."""
    gradient[:] = 0
    for position in range(begin, end):
        i = order[position] if use_order else position
        first, last = indptr[i], indptr[i + 1]
        delta = minus_onehot(lit_scores(W16, indices, values, first, last), labels[i])
        add_lit_outer(gradient, indices, values, first, last, delta)


@_compiled(inline="always")
def _descend(W16, gradient, step):  # pragma: no cover - compiled
    """``W -= step * gradient``, lane by lane."""
    for k in range(W16.shape[0]):
        for j in range(LANES):
            W16[k, j] -= step * gradient[k, j]


@_compiled(parallel=True)
def _inference_pass(W16, indptr, indices, values, labels, use_labels, classes,
                    sq_errors):  # pragma: no cover - compiled
    # pred = x @ W over each image's lit pixels, then its argmax, in one pass: the dense product
    # reads every pixel (31 MB of float32 for the test set), this reads the lit fifth of them,
    # and the argmax costs no second pass over the scores. Images are independent, so they are
    # split across the cores; each image's sums run in pixel order whatever the split, so the
    # results do not depend on the number of threads.
    zero = W16.dtype.type(0)
    for i in numba.prange(indptr.shape[0] - 1):
        pred = lit_scores(W16, indices, values, indptr[i], indptr[i + 1])
        # argmax as NumPy defines it: the first maximum, or the first NaN if there is one.
        best, top = 0, pred[0]
        for j in range(1, N_OUT):
            if top == top and (pred[j] > top or pred[j] != pred[j]):
                best, top = j, pred[j]
        classes[i] = best
        if use_labels:
            # The tutorial's error, sum((pred - onehot(label)) ** 2), in the weights' dtype.
            sq = zero
            for j in range(N_OUT):
                delta = pred[j] - (W16.dtype.type(1) if j == labels[i] else zero)
                sq += delta * delta
            sq_errors[i] = sq


# --------------------------------------------------------------------------- models side by side
# A sweep's M models, each with its own learning rate, see the same images in the same order. Their
# 10 M columns of weights are packed 16 to a vector, (V, pixels, 16) with V = ceil(10 M / 16):
# every lane does exactly what the one-model pass does for its column, so each model's weights
# are those of its own run, bit for bit. The vectors are independent, so they are split across the
# cores in groups, each core walking the images once for all the vectors of its group.


@_compiled(parallel=True)
def _per_image_stack_pass(W16s, indptr, indices, values, labels, alphas16, columns, groups,
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


@_compiled(parallel=True)
def _minibatch_stack_pass(W16s, indptr, indices, values, labels, alphas, columns, groups,
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


@_compiled(inline="always")
def _lanes(a):  # pragma: no cover - compiled
    """The 16 values of ``a`` as a tuple (what the row operations take as one vector)."""
    return (a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12],
            a[13], a[14], a[15])


_NO_ORDER = np.zeros(1, dtype=np.int64)


class FusedCPU:
    """The fused per-image and mini-batch passes, and inference over the same lit pixels, for
    NumPy arrays."""

    name = "numba"

    def prepare(self, X) -> LitPixels:
        lit = LitPixels(*_lit_pixels(X), n_pixels=X.shape[1])
        # Compile (or load from Numba's cache) now, not inside the first timed segment.
        W16 = _padded(np.zeros((lit.n_pixels, N_OUT), dtype=X.dtype))
        no_labels = np.zeros(1, dtype=np.uint8)
        _per_image_pass(W16, lit.indptr, lit.indices, lit.values, no_labels, W16.dtype.type(0),
                        0, 0, _NO_ORDER, False)
        _minibatch_pass(W16, lit.indptr, lit.indices, lit.values, no_labels, 0.0, 1, 0, 0,
                        _NO_ORDER, False, _aligned_zeros((1, lit.n_pixels, LANES), X.dtype))
        for use_labels in (False, True):
            _inference_pass(W16, lit.indptr[:1], lit.indices, lit.values, no_labels, use_labels,
                            np.empty(0, dtype=np.int64), np.empty(0, dtype=X.dtype))
        return lit

    def run(self, W, lit: LitPixels, labels, alpha, start, stop, order=None):
        """Train ``W`` in place on the images at positions ``start:stop`` (of ``order`` if any)."""
        _check_weights(W, lit)
        alpha = W.dtype.type(alpha)  # as in the array path: a Python float does not promote
        order, use_order = _order(order)
        W16 = _padded(W)
        _per_image_pass(W16, lit.indptr, lit.indices, lit.values, labels, alpha, start, stop,
                        order, use_order)
        W[...] = W16[:, :N_OUT]
        return W

    def run_minibatch(self, W, lit: LitPixels, labels, alpha, batch_size, start, stop,
                      order=None):
        """Mini-batch steps over positions ``start:stop`` (of ``order`` if any), in place, as
        ``linear.minibatch_steps`` takes them: ``W -= (alpha / b) * X_b^T (X_b W - Y_b)``."""
        _check_weights(W, lit)
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        if stop <= start:
            return W
        order, use_order = _order(order)
        W16 = _padded(W)
        chunks = -(-min(batch_size, stop - start) // CHUNK)
        partial = _aligned_zeros((chunks, lit.n_pixels, LANES), W.dtype)
        _minibatch_pass(W16, lit.indptr, lit.indices, lit.values, labels, float(alpha),
                        batch_size, start, stop, order, use_order, partial)
        W[...] = W16[:, :N_OUT]
        return W

    def run_models(self, W, lit: LitPixels, labels, alphas, batch_size, start, stop,
                   order=None):
        """Train models side by side, ``W`` (pixels, 10 M) in place, model m with learning rate
        ``alphas[m]``, per image (``batch_size`` 1) or by mini-batches, over positions
        ``start:stop`` (of ``order`` if any). Each model's weights are those its own run gives:
        the per-image pass's bit for bit, the mini-batch pass's to the order of its sums."""
        alphas = np.asarray(alphas, dtype=np.float64)
        columns = alphas.size * N_OUT
        if (W.shape != (lit.n_pixels, columns) or W.dtype != lit.values.dtype
                or not W.flags.c_contiguous):
            raise ValueError(f"the fused pass needs C-contiguous ({lit.n_pixels}, {columns}) "
                             "weights in the data's dtype")
        if stop <= start:
            return W
        order, use_order = _order(order)
        vectors = -(-columns // LANES)
        padded = np.zeros((lit.n_pixels, vectors * LANES), dtype=W.dtype)
        padded[:, :columns] = W
        W16s = _aligned_zeros((vectors, lit.n_pixels, LANES), W.dtype)
        W16s[...] = padded.reshape(lit.n_pixels, vectors, LANES).transpose(1, 0, 2)
        lane_alphas = np.zeros(vectors * LANES)
        lane_alphas[:columns] = np.repeat(alphas, N_OUT)
        lane_alphas = lane_alphas.reshape(vectors, LANES)
        # One group of vectors per core (the vectors are independent: the split changes no
        # result, only the speed).
        groups = min(vectors, numba.get_num_threads())
        if batch_size == 1:
            _per_image_stack_pass(W16s, lit.indptr, lit.indices, lit.values, labels,
                                  lane_alphas.astype(W.dtype), columns, groups, start, stop,
                                  order, use_order)
        else:
            gradients = _aligned_zeros((vectors, lit.n_pixels, LANES), W.dtype)
            _minibatch_stack_pass(W16s, lit.indptr, lit.indices, lit.values, labels, lane_alphas,
                                  columns, groups, batch_size, start, stop, order, use_order,
                                  gradients)
        W[...] = W16s.transpose(1, 0, 2).reshape(lit.n_pixels, vectors * LANES)[:, :columns]
        return W

    def classify(self, W, lit: LitPixels) -> np.ndarray:
        """The predicted digit of every image, as ``argmax(X @ W, axis=1)`` gives it."""
        _check_weights(W, lit, finite=True)
        classes = np.empty(len(lit.indptr) - 1, dtype=np.int64)
        _inference_pass(_padded(W), lit.indptr, lit.indices, lit.values, _NO_LABELS, False,
                        classes, np.empty(0, dtype=W.dtype))
        return classes

    def evaluate(self, W, lit: LitPixels, labels):
        """(number correct, sum of squared errors), as ``linear.evaluate`` returns them."""
        _check_weights(W, lit, finite=True)
        n = len(lit.indptr) - 1
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images")
        classes = np.empty(n, dtype=np.int64)
        sq_errors = np.empty(n, dtype=W.dtype)
        _inference_pass(_padded(W), lit.indptr, lit.indices, lit.values, labels, True, classes,
                        sq_errors)
        return np.sum(classes == labels), np.sum(sq_errors)


def _order(order):
    """(the order as int64, True), or a placeholder and False for file order."""
    if order is None:
        return _NO_ORDER, False
    return order.astype(np.int64, copy=False), True


def _padded(W):
    """A copy of the (n, 10) weights in 16 lanes, 64-byte aligned so that each row is one cache
    line (and one AVX-512 register in float32). The 6 extra lanes are zeros and stay zero in
    every pass: their scores, deltas and gradients are all zero."""
    W16 = _aligned_zeros((W.shape[0], LANES), W.dtype)
    W16[:, :N_OUT] = W
    return W16


_NO_LABELS = np.zeros(0, dtype=np.uint8)


def _aligned_zeros(shape, dtype, alignment=64):
    """Zeros whose first element sits on an ``alignment``-byte boundary."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = np.zeros(count * dtype.itemsize + alignment, dtype=np.uint8)
    offset = -raw.ctypes.data % alignment
    return raw[offset:offset + count * dtype.itemsize].view(dtype).reshape(shape)


def _check_weights(W, lit: LitPixels, finite=False):
    # The compiled loops index W with the listed pixel numbers unchecked: the shape is checked here.
    if (W.shape != (lit.n_pixels, N_OUT) or W.dtype != lit.values.dtype
            or not W.flags.c_contiguous):
        raise ValueError(f"the fused pass needs C-contiguous ({lit.n_pixels}, {N_OUT}) weights "
                         "in the data's dtype")
    # The dense product turns a non-finite weight into NaN for every image (0 * inf is NaN);
    # skipping the unlit pixels would not, so inference refuses such weights instead of
    # quietly disagreeing with it.
    if finite and not np.all(np.isfinite(W)):
        raise ValueError("the weights contain NaN or infinite values")
