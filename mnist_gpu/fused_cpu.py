"""The per-image pass and inference as compiled loops on the CPU (Numba), over the lit pixels.

Done as array calls, each of the 60,000 dependent rank-1 updates costs several library dispatches
for very little arithmetic. Compiled, the loop costs what its arithmetic costs, and about 80% of
MNIST's pixels are zero: a zero pixel adds nothing to the prediction and leaves its row of weights
unchanged. ``prepare`` lists each image's lit pixels once (CSR: row pointers, pixel indices,
values); every pass then visits only those.

Inference (``classify``, ``evaluate``) uses the same lists: the dense product ``X @ W`` is bound by
reading every pixel of ``X``, where a loop over the lit ones reads a fifth of the data and takes
the argmax on the way, split across the cores (images are independent at inference).

No fastmath: each weight's update is the array path's arithmetic, ``W -= alpha * (x * delta)`` in
the weights' dtype, and only the order of the terms of the dot products differs, so results stay
within rounding of the array path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

N_OUT = 10


@dataclass(frozen=True)
class LitPixels:
    """The lit pixels of every image: image i's are ``indices[indptr[i]:indptr[i + 1]]``."""

    indptr: np.ndarray  # int64 (n + 1,)
    indices: np.ndarray  # int32 pixel numbers
    values: np.ndarray  # the pixels' values, in the weights' dtype
    n_pixels: int  # pixels per image: the rows the weights must have


@numba.njit(cache=True, nogil=True, parallel=True)
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


@numba.njit(cache=True, nogil=True, inline="always")
def _scores(W, indices, values, first, last):  # pragma: no cover - compiled
    """``x @ W`` over the lit pixels ``first:last``, in pixel order, as ten scalars.

    Ten scalars rather than an array: held in registers, they let the compiler schedule the ten
    independent sums freely, where a ten-element array would be reloaded after every store into
    W (it cannot prove the two do not overlap). 20% faster here.
    """
    zero = W.dtype.type(0)
    d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = d8 = d9 = zero
    for t in range(first, last):
        x = values[t]
        w = W[indices[t]]
        d0 += x * w[0]
        d1 += x * w[1]
        d2 += x * w[2]
        d3 += x * w[3]
        d4 += x * w[4]
        d5 += x * w[5]
        d6 += x * w[6]
        d7 += x * w[7]
        d8 += x * w[8]
        d9 += x * w[9]
    return d0, d1, d2, d3, d4, d5, d6, d7, d8, d9


@numba.njit(cache=True, nogil=True)
def _per_image_pass(W, indptr, indices, values, labels, alpha, start, stop, order,
                    use_order):  # pragma: no cover - compiled
    # delta stays in ten scalars too (see _scores), updated in place below.
    onehot = np.eye(N_OUT, dtype=W.dtype)  # delta's subtraction in the weights' own dtype
    for position in range(start, stop):
        i = order[position] if use_order else position
        first, last = indptr[i], indptr[i + 1]
        # pred = x @ W, over the lit pixels
        d0, d1, d2, d3, d4, d5, d6, d7, d8, d9 = _scores(W, indices, values, first, last)
        # delta = pred - onehot(label)
        y = onehot[labels[i]]
        d0 -= y[0]
        d1 -= y[1]
        d2 -= y[2]
        d3 -= y[3]
        d4 -= y[4]
        d5 -= y[5]
        d6 -= y[6]
        d7 -= y[7]
        d8 -= y[8]
        d9 -= y[9]
        # W -= alpha * outer(x, delta), over the lit pixels' rows
        for t in range(first, last):
            x = values[t]
            w = W[indices[t]]
            w[0] -= alpha * (x * d0)
            w[1] -= alpha * (x * d1)
            w[2] -= alpha * (x * d2)
            w[3] -= alpha * (x * d3)
            w[4] -= alpha * (x * d4)
            w[5] -= alpha * (x * d5)
            w[6] -= alpha * (x * d6)
            w[7] -= alpha * (x * d7)
            w[8] -= alpha * (x * d8)
            w[9] -= alpha * (x * d9)


@numba.njit(cache=True, nogil=True, parallel=True)
def _inference_pass(W, indptr, indices, values, labels, use_labels, classes,
                    sq_errors):  # pragma: no cover - compiled
    # pred = x @ W over each image's lit pixels, then its argmax, in one pass: the dense product
    # reads every pixel (31 MB of float32 for the test set), this reads the lit fifth of them,
    # and the argmax costs no second pass over the scores. Images are independent, so they are
    # split across the cores; each image's sums run in pixel order whatever the split, so the
    # results do not depend on the number of threads.
    zero = W.dtype.type(0)
    for i in numba.prange(indptr.shape[0] - 1):
        pred = _scores(W, indices, values, indptr[i], indptr[i + 1])
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
                delta = pred[j] - (W.dtype.type(1) if j == labels[i] else zero)
                sq += delta * delta
            sq_errors[i] = sq


_NO_ORDER = np.zeros(1, dtype=np.int64)


class FusedCPU:
    """The fused per-image pass, and inference over the same lit pixels, for NumPy arrays."""

    name = "numba"

    def prepare(self, X) -> LitPixels:
        lit = LitPixels(*_lit_pixels(X), n_pixels=X.shape[1])
        # Compile (or load from Numba's cache) now, not inside the first timed segment.
        W = np.zeros((X.shape[1], N_OUT), dtype=X.dtype)
        self.run(W, lit, np.zeros(1, dtype=np.uint8), 0.0, 0, 0)
        self.classify(W, LitPixels(lit.indptr[:1], lit.indices, lit.values, lit.n_pixels))
        return lit

    def run(self, W, lit: LitPixels, labels, alpha, start, stop, order=None):
        """Train ``W`` in place on the images at positions ``start:stop`` (of ``order`` if any)."""
        _check_weights(W, lit)
        alpha = W.dtype.type(alpha)  # as in the array path: a Python float does not promote
        if order is None:
            order, use_order = _NO_ORDER, False
        else:
            order, use_order = order.astype(np.int64, copy=False), True
        _per_image_pass(W, lit.indptr, lit.indices, lit.values, labels, alpha, start, stop,
                        order, use_order)
        return W

    def classify(self, W, lit: LitPixels) -> np.ndarray:
        """The predicted digit of every image, as ``argmax(X @ W, axis=1)`` gives it."""
        _check_weights(W, lit, finite=True)
        classes = np.empty(len(lit.indptr) - 1, dtype=np.int64)
        _inference_pass(W, lit.indptr, lit.indices, lit.values, _NO_LABELS, False, classes,
                        np.empty(0, dtype=W.dtype))
        return classes

    def evaluate(self, W, lit: LitPixels, labels):
        """(number correct, sum of squared errors), as ``linear.evaluate`` returns them."""
        _check_weights(W, lit, finite=True)
        n = len(lit.indptr) - 1
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images")
        classes = np.empty(n, dtype=np.int64)
        sq_errors = np.empty(n, dtype=W.dtype)
        _inference_pass(W, lit.indptr, lit.indices, lit.values, labels, True, classes, sq_errors)
        return np.sum(classes == labels), np.sum(sq_errors)


_NO_LABELS = np.zeros(0, dtype=np.uint8)


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
