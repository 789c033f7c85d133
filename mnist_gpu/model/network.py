"""A stack of layers, written once against ``xp``: initialisation, forward and backward passes,
the losses, the SGD step, evaluation, and the parameters as a file's arrays.

Beyond the tutorial: dense layers with optional biases, relu/sigmoid/tanh, convolutions with 2x2
max pooling and dropout (``layers.py``), and either the tutorial's squared error or softmax
cross-entropy. The tutorial's network is the special case with no hidden layer, no bias and
squared error: with plain SGD it takes exactly the update of ``tutorial.minibatch_step`` and
starts from the same weights.

Parameters are a list of ``(W, b)`` per layer (``b`` is None without biases); on the host they are
NumPy arrays, drawn with NumPy's Generator so that every backend starts identical.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_namespace
from ..data import IMAGE_SIDE
from ..io.weights import check_array, named_array
from . import layers
from .architecture import Architecture
from .chunks import chunk_bounds, summed_over_chunks
from .tutorial import EVAL_CHUNK, init_weights

def init_params(arch: Architecture, seed: int, dtype="float32") -> list:
    """Host parameters. The tutorial's network keeps its uniform [0, 1) draw; other layers get
    He initialisation before a relu and Xavier (Glorot) otherwise; biases start at zero."""
    if arch.is_tutorial:
        return [(init_weights(seed, dtype), None)]
    rng = np.random.default_rng(seed)
    params = []
    # Convolutions first (He: each is followed by a relu), kernels as (k * k * in, out) matrices.
    for shape, filters in zip(arch.conv_shapes() if arch.conv else [], arch.conv):
        fan_in = shape.k * shape.k * shape.channels
        W = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, filters))
        params.append((W.astype(dtype), np.zeros(filters, dtype=dtype) if arch.bias else None))
    sizes = arch.sizes
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = layer == len(sizes) - 2
        if arch.activation == "relu" and not last:
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out))
        b = np.zeros(fan_out) if arch.bias else None
        params.append((W.astype(dtype), None if b is None else b.astype(dtype)))
    return params



# --------------------------------------------------------------------------- the math


def _activate(z, name, xp):
    if name == "relu":
        return xp.maximum(z, xp.zeros_like(z))
    if name == "sigmoid":
        return 1 / (1 + xp.exp(-z))
    return xp.tanh(z)


def _activation_slope(a, name, xp):
    """The activation's derivative, from its output ``a``."""
    if name == "relu":
        return xp.astype(a > 0, a.dtype)
    if name == "sigmoid":
        return a * (1 - a)
    return 1 - a * a


class ConvPlan:
    """The convolutions' im2col positions on one backend's device, uploaded once per model."""

    def __init__(self, arch: Architecture, backend):
        self.shapes = arch.conv_shapes() if arch.conv else []
        self.forward = [backend.to_device(shape.host_indices()) for shape in self.shapes]


def forward(params, X, arch: Architecture, xp=None, plan: ConvPlan | None = None) -> list:
    """Every layer's output, the input first; the last is the network's raw output (logits). A
    convolutional network (``plan`` required) gives [input, logits]."""
    xp = xp or array_namespace(X)
    if arch.conv:
        return [X, _forward(params, X, arch, xp, plan)[0]]
    outputs = [X]
    for layer, (W, b) in enumerate(params):
        z = outputs[-1] @ W
        if b is not None:
            z = z + b
        last = layer == len(params) - 1
        outputs.append(z if last else _activate(z, arch.activation, xp))
    return outputs


def _log_softmax(z, xp):
    shifted = z - xp.max(z, axis=1, keepdims=True)  # exp never overflows
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def loss_and_delta(out, Y, loss: str, xp):
    """(summed loss over the batch, delta = d loss / d output) for the raw output ``out``.

    Squared error follows the tutorial: delta = out - Y, the loss summed delta ** 2 (so delta is
    half its gradient, the tutorial's convention). Cross-entropy: delta = softmax(out) - Y.
    """
    if loss == "mse":
        delta = out - Y
        return xp.sum(delta * delta), delta
    log_p = _log_softmax(out, xp)
    return -xp.sum(Y * log_p), xp.exp(log_p) - Y


def _forward(params, X, arch: Architecture, xp, plan: ConvPlan, masks=None):
    """The general forward pass (convolutions, dropout): (logits, what backward needs)."""
    n = X.shape[0]
    convs = len(arch.conv)
    cache = {"conv": [], "dense_in": [], "active": []}
    a = xp.reshape(X, (n, IMAGE_SIDE, IMAGE_SIDE, 1)) if convs else X
    for i, shape in enumerate(plan.shapes if convs else []):
        W, b = params[i]
        z, cols = layers.conv_forward(a, W, b, shape, plan.forward[i], xp)
        # relu(max(window)) = max(relu(window)), relu being increasing: pooling first leaves
        # relu (and its slope in the backward pass) a quarter of the values.
        pooled_z, windows = layers.pool_forward(z, xp)
        pooled = _activate(pooled_z, "relu", xp)
        cache["conv"].append((a, cols, z.shape, windows, pooled_z, pooled))
        a = pooled
    h = xp.reshape(a, (n, -1)) if convs else a
    dense = params[convs:]
    for j, (W, b) in enumerate(dense):
        if masks is not None and (j > 0 or convs):
            h = h * masks[j if convs else j - 1]
        cache["dense_in"].append(h)
        z = h @ W
        if b is not None:
            z = z + b
        if j == len(dense) - 1:
            return z, cache
        h = _activate(z, arch.activation, xp)
        cache["active"].append(h)
    raise AssertionError("no output layer")


def _backward(params, cache, delta, arch: Architecture, xp, plan: ConvPlan, masks=None):
    """Per-layer (dW, db) of the general forward pass, from the output's delta."""
    convs = len(arch.conv)
    dense = params[convs:]
    grads = [None] * len(params)
    for j in range(len(dense) - 1, -1, -1):
        W, b = dense[j]
        grads[convs + j] = (cache["dense_in"][j].T @ delta,
                            None if b is None else xp.sum(delta, axis=0))
        if j == 0 and not convs:
            break
        delta = delta @ W.T
        if masks is not None:
            delta = delta * masks[j if convs else j - 1]
        if j > 0:
            delta = delta * _activation_slope(cache["active"][j - 1], arch.activation, xp)
    if not convs:
        return grads
    *_, last_pooled = cache["conv"][-1]
    grad = xp.reshape(delta, last_pooled.shape)
    for i in range(convs - 1, -1, -1):
        conv_input, cols, z_shape, windows, pooled_z, pooled = cache["conv"][i]
        grad = grad * _activation_slope(pooled, "relu", xp)
        grad = layers.pool_backward(grad, windows, pooled_z, z_shape, xp)
        W, b = params[i]
        dW, db, grad = layers.conv_backward(grad, conv_input, cols, W, plan.shapes[i], xp,
                                            need_input=i > 0)
        grads[i] = (dW, None if b is None else db)
    return grads


def dropout_masks(arch: Architecture, rng, batch: int, dtype, backend) -> list | None:
    """The dropout masks of one training step (after the convolutions, after each hidden dense
    layer), drawn on the host and uploaded; None without dropout."""
    if not arch.dropout:
        return None
    widths = ([arch.features] if arch.conv else []) + list(arch.hidden)
    return [backend.to_device(layers.dropout_mask(rng, (batch, w), arch.dropout, dtype))
            for w in widths]


def gradients(params, X, Y, arch: Architecture, xp=None, plan: ConvPlan | None = None,
              masks=None):
    """(summed loss, per-layer (dW, db) summed over the batch) by backpropagation. Convolutions
    need ``plan``; ``masks`` (from ``dropout_masks``) apply dropout."""
    xp = xp or array_namespace(X)
    if arch.conv or masks is not None:
        out, cache = _forward(params, X, arch, xp, plan, masks)
        loss, delta = loss_and_delta(out, Y, arch.loss, xp)
        return loss, _backward(params, cache, delta, arch, xp, plan, masks)
    outputs = forward(params, X, arch, xp)
    loss, delta = loss_and_delta(outputs[-1], Y, arch.loss, xp)
    grads = [None] * len(params)
    for layer in range(len(params) - 1, -1, -1):
        W, b = params[layer]
        grads[layer] = (outputs[layer].T @ delta, None if b is None else xp.sum(delta, axis=0))
        if layer:
            delta = (delta @ W.T) * _activation_slope(outputs[layer], arch.activation, xp)
    return loss, grads


def sgd_step(params, grads, velocity, lr: float, batch: int, momentum: float,
             weight_decay: float):
    """One SGD step in place. Plain SGD is ``W -= (lr / b) * dW``, the tutorial's update exactly;
    with momentum, ``v = momentum * v + dW / b + weight_decay * W`` and ``W -= lr * v``."""
    for (W, b), (dW, db), (vW, vb) in zip(params, grads, velocity):
        for p, g, v in ((W, dW, vW), (b, db, vb)):
            if p is None:
                continue
            if momentum == 0:
                if weight_decay:
                    p -= (lr * weight_decay) * p
                p -= (lr / batch) * g
            else:
                v *= momentum
                v += g / batch
                if weight_decay:
                    v += weight_decay * p
                p -= lr * v


# Images per chunk when a convolutional network is evaluated: its patches take about 50 KB per
# image and layer, so 500 images keep a chunk near 100 MB.
CONV_EVAL_CHUNK = 500


def classify(params, X, arch: Architecture, xp=None, chunk: int | None = None,
             plan: ConvPlan | None = None):
    """The predicted digit of every row of ``X``, in chunks of bounded memory."""
    xp = xp or array_namespace(X)
    chunk = chunk or (CONV_EVAL_CHUNK if arch.conv else EVAL_CHUNK)
    parts = [xp.argmax(forward(params, X[s:e, :], arch, xp, plan)[-1], axis=1)
             for s, e in chunk_bounds(X.shape[0], chunk)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def evaluate(params, X, labels, Y, arch: Architecture, xp=None, chunk: int | None = None,
             plan: ConvPlan | None = None):
    """(number correct, summed loss) as 0-d device arrays, in chunks of bounded memory."""
    xp = xp or array_namespace(X)
    chunk = chunk or (CONV_EVAL_CHUNK if arch.conv else EVAL_CHUNK)

    def score(s, e):
        out = forward(params, X[s:e, :], arch, xp, plan)[-1]
        hits = xp.sum(xp.astype(xp.argmax(out, axis=1) == labels[s:e], xp.int64))
        return hits, loss_and_delta(out, Y[s:e, :], arch.loss, xp)[0]
    return summed_over_chunks(X.shape[0], chunk, score)


def params_to_arrays(params) -> dict:
    """``W0, b0, W1, ...`` for an ``.npz`` (a saved file stores W0 as ``weights``, where every
    reader looks first, and so tutorial files stay readable)."""
    arrays = {}
    for layer, (W, b) in enumerate(params):
        arrays[f"W{layer}"] = W
        if b is not None:
            arrays[f"b{layer}"] = b
    return arrays


def params_from_arrays(arrays: dict, arch: Architecture, source="weights file") -> list:
    """The per-layer parameters of ``arch`` from a saved file's arrays, every shape checked (the
    first layer is ``weights``; files written before it was stored once hold it as ``W0`` too);
    a fault is a ``WeightsFileError`` naming ``source``."""
    params = []
    for layer, (shape, outputs) in enumerate(arch.layer_shapes()):
        if layer == 0:
            key = "W0" if "W0" in arrays else "weights"
            W = named_array(arrays, key, source)
        else:
            key = f"W{layer}"
            W = named_array(arrays, key, source, f" (layer {layer} of {arch.describe()})")
        name = "weights" if key in ("weights", "W0") else key
        check_array(W, source, name, shape)
        b = None
        if arch.bias:
            b = named_array(arrays, f"b{layer}", source, f" (the bias of layer {layer})")
            check_array(b, source, f"b{layer}", (outputs,))
        params.append((W, b))
    return params
