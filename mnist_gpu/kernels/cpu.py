"""The fused passes on the CPU: the host side of the compiled loops (``cpu_loops``), for NumPy
arrays.

Done as array calls, each of the 60,000 dependent rank-1 updates costs several library dispatches
for very little arithmetic. Compiled, the loop costs what its arithmetic costs, and about 80% of
MNIST's pixels are zero: a zero pixel adds nothing to the prediction and leaves its row of weights
unchanged. ``prepare`` lists each image's lit pixels once; every pass then visits only those.
Listed from the uint8 images, an entry is 3 bytes (an int16 pixel number, the uint8 pixel), and
the passes scale each pixel as they read it (``cpu_rows``): no float copy of the images is made.

* ``train``: the per-image pass (the tutorial's loop), mini-batches, or models side by side.
  Mini-batches work through each batch's images in chunks of ``cpu_loops.CHUNK``, split across
  the cores, each chunk summing its images' share of the gradient ``X^T delta``; the chunks' sums
  are then added in order and the weights updated once, as the array path does. The chunks do not
  depend on the number of threads, so neither do the weights. Models side by side have their
  columns packed 16 to a vector, the vectors split over the cores: each model's weights are
  those of its own run (the per-image pass's bit for bit).
* ``classify``, ``evaluate``: inference over the same lists. The dense product ``X @ W`` is bound
  by reading every pixel of ``X``; a loop over the lit ones reads a fifth of the data and takes
  the argmax on the way, split across the cores (images are independent at inference).

Every pass works on a copy of the weights padded to 16 lanes, each row one SIMD vector, 64-byte
aligned; this module checks every shape the loops rely on, since they check nothing.
"""

from __future__ import annotations

import numba
import numpy as np

from .cpu_loops import (
    CHUNK, N_OUT, inference_pass, lit_pixels, minibatch_pass, minibatch_stack_pass,
    per_image_pass, per_image_stack_pass,
)
from .cpu_rows import LANES
from .lit import LitPixels

_NO_ORDER = np.zeros(1, dtype=np.int64)
# The lists name pixels by int16 indices.
MAX_PIXELS = 2**15


class FusedCPU:
    """The fused per-image and mini-batch passes, and inference over the same lit pixels, for
    NumPy arrays."""

    name = "numba"
    # Measured on the machines it runs on (see docs/performance.md): ``--kernel auto`` takes it.
    verified = True
    minibatch = True

    # It lists the lit pixels of the uint8 images themselves, scaling them as it reads them: no
    # scaled float copy of the images is made for it.
    lists_pixels = True
    # What ``prepare`` lists, for a cache of its lists: to be changed with what it lists.
    listing = "lit1-int16-uint8"

    def prepare(self, X) -> LitPixels:
        """The lit pixels of images ``X`` (n, pixels), read-only: uint8 pixels (each scaled by
        the passes as it is read, as ``scale_images`` scales it) or values in the weights'
        dtype."""
        if X.shape[1] > MAX_PIXELS:
            raise ValueError(f"images of {X.shape[1]} pixels: the lists index at most "
                             f"{MAX_PIXELS}")
        lit = LitPixels(*lit_pixels(X), n_pixels=X.shape[1])
        for array in (lit.indptr, lit.indices, lit.values):
            # As a cached list, memory-mapped, is: the loops are compiled for one kind.
            array.setflags(write=False)
        return lit

    def ready(self, lit: LitPixels, labels, dtype, batch_size=1, models=1):
        """Compile (or load from Numba's cache) the loop that ``train`` will run on ``lit``,
        ``labels`` and ``dtype`` weights, now rather than inside the first timed segment; only
        that one, for each costs time to load."""
        if len(labels):
            # Two models take the loop of any number side by side, at a fraction of the memory.
            models = min(models, 2)
            self.train(np.zeros((lit.n_pixels, N_OUT * models), dtype), _no_image(lit),
                       labels[:1], [0.01] * models, batch_size, 0, 1)

    def ready_inference(self, lit: LitPixels, labels, dtype):
        """As ``ready``, for ``evaluate``."""
        if len(labels):
            self.evaluate(np.zeros((lit.n_pixels, N_OUT), dtype), _no_image(lit),
                          labels[:1])

    def train(self, W, lit: LitPixels, labels, alphas, batch_size, start, stop, order=None):
        """Train ``W`` (pixels, 10 M) in place over positions ``start:stop`` (of ``order`` if
        any), model m with learning rate ``alphas[m]``, per image (``batch_size`` 1) or by
        mini-batches."""
        if len(alphas) > 1:
            return self.run_models(W, lit, labels, alphas, batch_size, start, stop, order)
        if batch_size > 1:
            return self.run_minibatch(W, lit, labels, alphas[0], batch_size, start, stop, order)
        return self.run(W, lit, labels, alphas[0], start, stop, order)

    def launch_plan(self, models, dtype, lit):
        """How a launch lays out on the device: nothing to plan on the CPU."""
        return None

    def run(self, W, lit: LitPixels, labels, alpha, start, stop, order=None):
        """Train ``W`` in place on the images at positions ``start:stop`` (of ``order`` if any)."""
        _check_weights(W, lit)
        alpha = W.dtype.type(alpha)  # as in the array path: a Python float does not promote
        order, use_order = _order(order)
        W16 = _padded(W)
        per_image_pass(W16, lit.indptr, lit.indices, lit.values, labels, alpha, start, stop,
                        order, use_order)
        W[...] = W16[:, :N_OUT]
        return W

    def run_minibatch(self, W, lit: LitPixels, labels, alpha, batch_size, start, stop,
                      order=None):
        """Mini-batch steps over positions ``start:stop`` (of ``order`` if any), in place, as
        ``tutorial.minibatch_steps`` takes them: ``W -= (alpha / b) * X_b^T (X_b W - Y_b)``."""
        _check_weights(W, lit)
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        if stop <= start:
            return W
        order, use_order = _order(order)
        W16 = _padded(W)
        chunks = -(-min(batch_size, stop - start) // CHUNK)
        partial = _aligned_zeros((chunks, lit.n_pixels, LANES), W.dtype)
        minibatch_pass(W16, lit.indptr, lit.indices, lit.values, labels, float(alpha),
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
        if W.shape != (lit.n_pixels, columns) or not _weights_fit(W, lit):
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
            per_image_stack_pass(W16s, lit.indptr, lit.indices, lit.values, labels,
                                  lane_alphas.astype(W.dtype), columns, groups, start, stop,
                                  order, use_order)
        else:
            gradients = _aligned_zeros((vectors, lit.n_pixels, LANES), W.dtype)
            minibatch_stack_pass(W16s, lit.indptr, lit.indices, lit.values, labels, lane_alphas,
                                  columns, groups, batch_size, start, stop, order, use_order,
                                  gradients)
        W[...] = W16s.transpose(1, 0, 2).reshape(lit.n_pixels, vectors * LANES)[:, :columns]
        return W

    def classify(self, W, lit: LitPixels) -> np.ndarray:
        """The predicted digit of every image, as ``argmax(X @ W, axis=1)`` gives it."""
        _check_weights(W, lit, finite=True)
        classes = np.empty(len(lit.indptr) - 1, dtype=np.int64)
        inference_pass(_padded(W), lit.indptr, lit.indices, lit.values, _NO_LABELS, False,
                        classes, np.empty(0, dtype=W.dtype))
        return classes

    def evaluate(self, W, lit: LitPixels, labels):
        """(number correct, sum of squared errors), as ``tutorial.evaluate`` returns them."""
        _check_weights(W, lit, finite=True)
        n = len(lit.indptr) - 1
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images")
        classes = np.empty(n, dtype=np.int64)
        sq_errors = np.empty(n, dtype=W.dtype)
        inference_pass(_padded(W), lit.indptr, lit.indices, lit.values, labels, True, classes,
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


def _no_image(lit: LitPixels) -> LitPixels:
    """One image with no lit pixel, in arrays of the kinds of ``lit``'s."""
    indptr = np.zeros(2, dtype=lit.indptr.dtype)
    indptr.setflags(write=lit.indptr.flags.writeable)
    return LitPixels(indptr, lit.indices[:0], lit.values[:0], lit.n_pixels)


def _weights_fit(W, lit: LitPixels) -> bool:
    """C-contiguous weights in the lists' dtype, or in float32 or float64 for uint8 pixels."""
    wanted = ((np.float32, np.float64) if lit.values.dtype == np.uint8
              else (lit.values.dtype,))
    return W.dtype in wanted and W.flags.c_contiguous


def _check_weights(W, lit: LitPixels, finite=False):
    # The compiled loops index W with the listed pixel numbers unchecked: the shape is checked here.
    if W.shape != (lit.n_pixels, N_OUT) or not _weights_fit(W, lit):
        raise ValueError(f"the fused pass needs C-contiguous ({lit.n_pixels}, {N_OUT}) weights "
                         "in the data's dtype")
    # The dense product turns a non-finite weight into NaN for every image (0 * inf is NaN);
    # skipping the unlit pixels would not, so inference refuses such weights instead of
    # quietly disagreeing with it.
    if finite and not np.all(np.isfinite(W)):
        raise ValueError("the weights contain NaN or infinite values")
