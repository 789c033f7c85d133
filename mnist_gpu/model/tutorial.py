"""The tutorial's network, 784 inputs to 10 outputs, no bias, no activation: one model.

The whole of it is four lines, trained one image at a time::

    pred = x @ W                       # the prediction: ten scores
    delta = pred - onehot(label)       # how far each score is from the target
    error = delta ** 2                 # reported (at the checkpoints), not used
    W -= alpha * outer(x, delta)       # the update

``per_image_steps`` below is exactly that loop. Everything is written once against an array
namespace ``xp`` (NumPy, CuPy, PyTorch, array_api_strict), never naming a library: the weights
``W`` (784, 10) are updated in place, as the tutorial does, and the images ``X`` (scaled to
[0, 1]) and targets ``Y`` (one-hot) live on the same device as ``W``. Nothing here reads a value
back to the host: accuracy and error come back as 0-d device arrays, so every synchronisation
stays visible in the caller.

Models side by side (a sweep) are ``stack.py``; the compiled versions of these loops are in
``mnist_gpu/kernels``, and give the same weights.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_namespace
from ..data import N_CLASSES, N_PIXELS
from .chunks import summed_over_chunks

N_INPUTS = N_PIXELS
N_OUTPUTS = N_CLASSES

# Evaluation works through the test set in chunks, so the memory it needs is bounded by
# EVAL_CHUNK rows whatever the size of the set.
EVAL_CHUNK = 10_000


def init_weights(seed: int, dtype="float32", shape=(N_INPUTS, N_OUTPUTS)) -> np.ndarray:
    """Uniform [0, 1) weights, as the tutorial draws them, from NumPy's Generator on the host.

    Drawn on the host and then copied, so that every backend starts from identical weights
    (CuPy's and PyTorch's random streams differ from NumPy's).
    """
    return np.random.default_rng(seed).random(shape, dtype=np.dtype(dtype))


def scale_images(images_u8, dtype, xp=None):
    """uint8 pixels to ``dtype`` in [0, 1], divided by 255 as the tutorial does."""
    xp = xp or array_namespace(images_u8)
    return xp.astype(images_u8, dtype) / 255


def one_hot(labels, classes, dtype, xp=None):
    """Rows of ``dtype`` with a 1 at each label; ``classes``: ``arange(10)`` on the same device."""
    xp = xp or array_namespace(labels, classes)
    return xp.astype(labels[:, None] == classes[None, :], dtype)


def predict(W, X):
    return X @ W


def classify(W, X, xp=None):
    """The predicted digit of every row of ``X``."""
    xp = xp or array_namespace(W, X)
    return xp.argmax(predict(W, X), axis=1)


def per_image_steps(W, X, Y, alpha, rows):
    """The tutorial's loop, one image at a time, over the row indices ``rows`` (host integers)."""
    for i in rows:
        x = X[i, :]
        pred = x @ W
        delta = pred - Y[i, :]
        W -= alpha * (x[:, None] * delta[None, :])
    return W


def minibatch_step(W, Xb, Yb, alpha):
    """One mini-batch step: ``W -= (alpha / b) * Xb^T (Xb W - Yb)`` for the b rows of ``Xb``.

    At b = 1 this is the per-image update; the 1/b keeps the step size independent of b.
    """
    delta = predict(W, Xb) - Yb
    W -= (alpha / Xb.shape[0]) * (Xb.T @ delta)
    return W


def minibatch_steps(W, X, Y, alpha, batch_size: int, start: int, stop: int, order=None,
                    xp=None, step=minibatch_step):
    """Mini-batch steps over positions ``start:stop`` of one epoch, the last batch maybe smaller.

    ``order`` (a device integer array) permutes the rows; without it the rows go in file order.
    ``start`` must fall on a batch boundary. ``step`` is the update of one batch (``stack``'s for
    models side by side).
    """
    xp = xp or array_namespace(W, X)
    for s in range(start, stop, batch_size):
        step(W, *batch(X, Y, s, min(s + batch_size, stop), order, xp), alpha)
    return W


def batch(X, Y, start: int, stop: int, order=None, xp=None):
    """The images and targets at positions ``start:stop``: slices in file order, else gathered
    through ``order`` (a device integer array)."""
    if order is None:
        return X[start:stop, :], Y[start:stop, :]
    xp = xp or array_namespace(X, Y)
    rows = order[start:stop]
    return xp.take(X, rows, axis=0), xp.take(Y, rows, axis=0)


def evaluate(W, X, labels, Y, xp=None, chunk: int = EVAL_CHUNK):
    """(number correct, sum of squared errors) over the rows of ``X``, as 0-d device arrays.

    The squared error is the tutorial's ``error = delta ** 2``, summed over images and outputs.
    """
    xp = xp or array_namespace(W, X)

    def score(s, e):
        pred = predict(W, X[s:e, :])
        hits = xp.sum(xp.astype(xp.argmax(pred, axis=1) == labels[s:e], xp.int64))
        return hits, xp.sum((pred - Y[s:e, :]) ** 2)
    return summed_over_chunks(X.shape[0], chunk, score)


def all_finite(W, xp=None):
    """A 0-d device boolean: no NaN or infinity in ``W``."""
    xp = xp or array_namespace(W)
    return xp.all(xp.isfinite(W))
