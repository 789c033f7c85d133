"""Models side by side: the tutorial's network for M models that see the same images.

``W`` (784, 10 M) holds M models' weights, model m in columns ``10 m : 10 m + 10``, each with its
own learning rate (``alpha`` a device vector of one value per column). Every model sees the same
images, so the stack trains in the same few array calls per step as one model (``tutorial.py``),
each column computed exactly as the model's own run computes it: a model's result never depends
on its neighbours'. This is how a sweep fills a device that one tutorial model cannot.
"""

from __future__ import annotations

from ..backend import array_namespace
from .chunks import summed_over_chunks
from .tutorial import N_OUTPUTS, predict

# Rows per chunk when evaluating models side by side: fixed, so that each model's figures do not
# depend on how many models share the stack (a chunk of 1,024 models' scores is 40 MB in float32).
MODELS_EVAL_CHUNK = 1_000


def columns(model: int) -> slice:
    """The columns of model ``model`` in a stack's weights."""
    return slice(N_OUTPUTS * model, N_OUTPUTS * (model + 1))


def per_image_steps(W, X, Y, alpha, rows, xp=None):
    """``tutorial.per_image_steps`` for every model of the stack at once, ``alpha`` one rate per
    column: each image's prediction is one product, and each model's delta its ten columns minus
    the one-hot target."""
    xp = xp or array_namespace(W, X)
    for i in rows:
        x = X[i, :]
        pred = x @ W
        delta = xp.reshape(xp.reshape(pred, (-1, N_OUTPUTS)) - Y[i, :], (-1,))
        W -= alpha * (x[:, None] * delta[None, :])
    return W


def minibatch_step(W, Xb, Yb, alpha, xp=None):
    """``tutorial.minibatch_step`` for every model of the stack, ``alpha`` one rate per column."""
    xp = xp or array_namespace(W, Xb)
    b = Xb.shape[0]
    pred = predict(W, Xb)
    delta = xp.reshape(xp.reshape(pred, (b, -1, N_OUTPUTS)) - Yb[:, None, :], (b, -1))
    W -= (alpha / b) * (Xb.T @ delta)
    return W


def evaluate_models(W, X, labels, Y, xp=None, chunk: int = MODELS_EVAL_CHUNK):
    """``tutorial.evaluate`` per model: (number correct, sum of squared errors) as two (M,)
    device arrays. Each model's sums are taken over its own contiguous values, in chunks of a
    fixed number of rows, so that its figures are the same whatever its company."""
    xp = xp or array_namespace(W, X)
    models = W.shape[1] // N_OUTPUTS

    def score(s, e):
        pred = xp.reshape(predict(W, X[s:e, :]), (-1, models, N_OUTPUTS))
        hits = xp.sum(xp.astype(xp.argmax(pred, axis=2) == labels[s:e, None], xp.int64), axis=0)
        delta = pred - Y[s:e, None, :]
        per_model = xp.reshape(xp.permute_dims(delta * delta, (1, 0, 2)), (models, -1))
        return hits, xp.sum(per_model, axis=1)
    return summed_over_chunks(X.shape[0], chunk, score)


def models_finite(W, xp=None):
    """A (M,) device boolean per model of a stack: no NaN or infinity in its weights."""
    xp = xp or array_namespace(W)
    return xp.all(xp.isfinite(xp.reshape(W, (W.shape[0], -1, N_OUTPUTS))), axis=(0, 2))
