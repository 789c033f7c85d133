"""The tutorial's network, 784 inputs to 10 outputs, no bias, no activation, as pure functions.

Written once against an array namespace ``xp`` (NumPy, CuPy, array_api_strict), never naming a
library. The weights ``W`` (784, 10) are updated in place, as the tutorial does; the images ``X``
are already scaled and ``Y`` one-hot encoded, on the same device as ``W``.

Nothing here reads a value back to the host: results that must be looked at (accuracy, error) come
back as 0-d device arrays, so every host-device synchronisation stays visible in the caller.

Several models side by side (a sweep): ``W`` (784, 10 M) holds M models' weights, model m in
columns ``10 m : 10 m + 10``, each with its own learning rate (``alpha`` then a device vector of
one value per column). Every model sees the same images, so the stack trains in the same few
array calls per step as one model, each column computed exactly as the model's own run would
compute it (a model's result never depends on its neighbours').
"""

from __future__ import annotations

import numpy as np

from .backend import array_namespace
from .data import N_PIXELS

N_INPUTS = N_PIXELS
N_OUTPUTS = 10

# Evaluation works through the test set in chunks, so the memory it needs is bounded by
# EVAL_CHUNK rows whatever the size of the set.
EVAL_CHUNK = 10_000


def init_weights(seed: int, dtype="float32", shape=(N_INPUTS, N_OUTPUTS)) -> np.ndarray:
    """Uniform [0, 1) weights, as the tutorial draws them, from NumPy's Generator on the host.

    Drawn on the host and then copied, so that every backend starts from identical weights
    (CuPy's random streams differ from NumPy's).
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


def per_image_steps(W, X, Y, alpha, rows, xp=None):
    """The tutorial's loop, one image at a time, over the row indices ``rows`` (host integers).

    ``pred = x @ W``; ``delta = pred - y``; ``W -= alpha * outer(x, delta)``. ``W`` may hold
    several models side by side (see the module docstring), ``alpha`` then one per column.
    """
    xp = xp or array_namespace(W, X)
    outputs = Y.shape[1]
    stacked = W.shape[1] != outputs
    for i in rows:
        x = X[i, :]
        pred = x @ W
        delta = (xp.reshape(xp.reshape(pred, (-1, outputs)) - Y[i, :], (-1,)) if stacked
                 else pred - Y[i, :])
        W -= alpha * (x[:, None] * delta[None, :])
    return W


def minibatch_step(W, Xb, Yb, alpha, xp=None):
    """One mini-batch step: ``W -= (alpha / b) * Xb^T (Xb W - Yb)`` for the b rows of ``Xb``.

    At b = 1 this is the per-image update; the 1/b keeps the step size independent of b. ``W``
    may hold several models side by side, ``alpha`` then one per column.
    """
    b = Xb.shape[0]
    pred = Xb @ W
    if W.shape[1] != Yb.shape[1]:  # several models side by side
        xp = xp or array_namespace(W, Xb)
        delta = xp.reshape(xp.reshape(pred, (b, -1, Yb.shape[1])) - Yb[:, None, :], (b, -1))
    else:
        delta = pred - Yb
    W -= (alpha / b) * (Xb.T @ delta)
    return W


def minibatch_steps(W, X, Y, alpha: float, batch_size: int, start: int, stop: int,
                    order=None, xp=None):
    """Mini-batch steps over positions ``start:stop`` of one epoch, the last batch maybe smaller.

    ``order`` (a device integer array) permutes the rows; without it the rows go in file order.
    ``start`` must fall on a batch boundary.
    """
    xp = xp or array_namespace(W, X)
    for s in range(start, stop, batch_size):
        minibatch_step(W, *batch(X, Y, s, min(s + batch_size, stop), order, xp), alpha, xp=xp)
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
    correct = errors = None
    for s in range(0, X.shape[0], chunk):
        e = min(s + chunk, X.shape[0])  # the array API leaves slices past the end unspecified
        pred = predict(W, X[s:e, :])
        hits = xp.sum(xp.astype(xp.argmax(pred, axis=1) == labels[s:e], xp.int64))
        sq = xp.sum((pred - Y[s:e, :]) ** 2)
        correct = hits if correct is None else correct + hits
        errors = sq if errors is None else errors + sq
    return correct, errors


# Rows per chunk when evaluating models side by side: fixed, so that each model's figures do not
# depend on how many models share the stack (a chunk of 1,024 models' scores is 40 MB in float32).
MODELS_EVAL_CHUNK = 1_000


def evaluate_models(W, X, labels, Y, xp=None, chunk: int = MODELS_EVAL_CHUNK):
    """``evaluate`` for models side by side: (number correct, sum of squared errors) per model,
    as two (M,) device arrays. Each model's sums are taken over its own contiguous values, in
    chunks of a fixed number of rows, so that its figures are the same whatever its company."""
    xp = xp or array_namespace(W, X)
    models = W.shape[1] // N_OUTPUTS
    correct = errors = None
    for s in range(0, X.shape[0], chunk):
        e = min(s + chunk, X.shape[0])  # the array API leaves slices past the end unspecified
        pred = xp.reshape(predict(W, X[s:e, :]), (-1, models, N_OUTPUTS))
        hits = xp.sum(xp.astype(xp.argmax(pred, axis=2) == labels[s:e, None], xp.int64), axis=0)
        delta = pred - Y[s:e, None, :]
        per_model = xp.reshape(xp.permute_dims(delta * delta, (1, 0, 2)), (models, -1))
        sq = xp.sum(per_model, axis=1)
        correct = hits if correct is None else correct + hits
        errors = sq if errors is None else errors + sq
    return correct, errors


def models_finite(W, xp=None):
    """A (M,) device boolean per model of a stack: no NaN or infinity in its weights."""
    xp = xp or array_namespace(W)
    return xp.all(xp.isfinite(xp.reshape(W, (W.shape[0], -1, N_OUTPUTS))), axis=(0, 2))


def all_finite(W, xp=None):
    """A 0-d device boolean: no NaN or infinity in ``W``."""
    xp = xp or array_namespace(W)
    return xp.all(xp.isfinite(W))
