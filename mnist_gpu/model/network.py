"""A network is a list of layers and a loss: built for the 28x28 images, its parameters drawn,
its passes run layer after layer, written once against ``xp``.

The layers are ``layer.Layer``s (the built-in types and the words that name them in a layer
list, e.g. ``conv32x5+bias,pool2,relu,dense10+bias``, are ``architecture.py``'s).

The loss is the tutorial's squared error or softmax cross-entropy. The tutorial's network is the
special case ``dense10`` with squared error: it starts from the tutorial's weights, and with plain
SGD takes exactly the update of ``tutorial.minibatch_step``.

Parameters are a list per layer of its arrays (empty for a layer without); on the host they are
NumPy arrays, drawn with NumPy's Generator so that every backend starts identical.
"""

from __future__ import annotations

import numpy as np

from ..data import IMAGE_SIDE
from ..io.weights import check_array, named_array
from .chunks import chunk_bounds, summed_over_chunks
from .dense import Dense
from .layer import Context, Layer
from .tutorial import EVAL_CHUNK, N_OUTPUTS, init_weights

LOSSES = {"mse": "squared error", "ce": "softmax cross-entropy"}
INPUT_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)


class Network:
    """A list of layers, built for the images, and the loss of its raw output (the logits)."""

    def __init__(self, layers, loss: str = "mse"):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
        self.layers, self.loss = list(layers), loss
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        shape = INPUT_SHAPE
        for layer in self.layers:
            shape = layer.build(shape)
        if tuple(shape) != (N_OUTPUTS,):
            raise ValueError(f"the last layer gives {shape}, not the {N_OUTPUTS} outputs: end "
                             f"with dense{N_OUTPUTS}")

    @classmethod
    def tutorial(cls) -> Network:
        return cls([Dense(N_OUTPUTS)], "mse")

    def spec(self) -> str:
        return ",".join(layer.spec() for layer in self.layers)

    def describe(self) -> str:
        return f"{self.spec()}; {LOSSES[self.loss]}"

    def to_json(self) -> dict:
        """What a saved file records of it (``architecture.network_from_json`` reads it)."""
        return {"layers": self.spec(), "loss": self.loss}

    def __eq__(self, other):
        return isinstance(other, Network) and other.to_json() == self.to_json()

    def __repr__(self):
        return f"Network({self.spec()!r}, loss={self.loss!r})"

    @property
    def is_tutorial(self) -> bool:
        return self == Network.tutorial()

    @property
    def eval_chunk(self) -> int:
        """Images per chunk of an evaluation, so that its memory stays bounded."""
        return min([layer.eval_chunk for layer in self.layers if layer.eval_chunk]
                   or [EVAL_CHUNK])

    def parametrised(self) -> list[tuple[int, Layer]]:
        """(position, layer) of each layer with parameters: those a saved file numbers."""
        return [(i, layer) for i, layer in enumerate(self.layers) if layer.param_shapes()]

    def relu_follows(self, i: int) -> bool:
        """Whether the first layer after ``i`` that is not ``transparent`` is a relu."""
        for layer in self.layers[i + 1:]:
            if not layer.transparent:
                return layer.he_before
        return False

    def training_products(self, batch: int, images: int):
        """The (m, k, n) shapes of the matrix products of one training pass over ``images`` in
        batches of ``batch``, with how often each runs (the first layer's input needs no
        gradient)."""
        steps = -(-images // batch)
        return [(shape, steps) for i, layer in enumerate(self.layers)
                for shape in layer.products(batch, need_input=i > 0)]

    def training_flops(self, batch: int, images: int) -> float:
        return sum(2.0 * m * k * n * count
                   for (m, k, n), count in self.training_products(batch, images))

    def workspace_bytes(self, batch: int, itemsize: int) -> int:
        """The largest scratch arrays of a training step (im2col's patches): every layer's
        forward patches, kept for the backward pass, and the largest patch gradients of the
        backward pass (those of every such layer but the first)."""
        sizes = [layer.workspace() for layer in self.layers if layer.workspace()]
        return (sum(sizes) + max(sizes[1:], default=0)) * batch * itemsize

    def torch(self, nn):
        """The same network as PyTorch's modules (images as (N, 1, 28, 28))."""
        modules = []
        for layer in self.layers:
            if layer.flat_input and len(layer.in_shape) != 1:
                modules.append(nn.Flatten())
            modules.append(layer.torch(nn))
        return nn.Sequential(*modules)


def init_params(net: Network, seed: int, dtype="float32") -> list:
    """Host parameters, drawn layer after layer from one generator seeded by ``seed``. The
    tutorial's network keeps its uniform [0, 1) draw."""
    if net.is_tutorial:
        return [[init_weights(seed, dtype)]]
    rng = np.random.default_rng(seed)
    return [layer.init(rng, dtype, he=net.relu_follows(i)) for i, layer in enumerate(net.layers)]


def to_device(backend, host_params) -> list:
    return [[backend.to_device(p) for p in layer] for layer in host_params]


def to_host(backend, params) -> list:
    return [[backend.to_host(p) for p in layer] for layer in params]


def flat(params) -> list:
    """Every parameter array, layer after layer (what an optimiser steps)."""
    return [p for layer in params for p in layer]


# --------------------------------------------------------------------------- the passes


class _Alone:
    """A layer run on its own, as a block of one: its parameters and gradients in a list of
    one."""

    def __init__(self, layer: Layer):
        self.layer = layer

    def forward(self, params, x, xp, ctx):
        return self.layer.forward(params[0], x, xp, ctx)

    def backward(self, params, saved, grad, xp, ctx, need_input=True):
        grads, grad_in = self.layer.backward(params[0], saved, grad, xp, ctx, need_input)
        return [grads], grad_in


def runs(net: Network, ctx: Context) -> list:
    """The layers as the passes run them: (start, stop, block), a block of ``ctx.blocks`` for
    each run of layers it takes, every other layer a block of its own (made once per
    context)."""
    key = ("runs", id(net))
    if ctx.made.get(key, (None,))[0] is not net:
        names, found, i = [layer.name for layer in net.layers], [], 0
        while i < len(names):
            run = next((r for r in ctx.blocks if tuple(names[i:i + len(r)]) == r), None)
            if run is None:
                found.append((i, i + 1, _Alone(net.layers[i])))
                i += 1
            else:
                found.append((i, i + len(run), ctx.blocks[run](net.layers[i:i + len(run)])))
                i += len(run)
        ctx.made[key] = (net, found)
    return ctx.made[key][1]


def forward(net: Network, params, X, ctx: Context):
    """(the raw output (logits), what each run's backward pass needs)."""
    xp, saved, x = ctx.backend.xp, [], X
    for start, stop, block in runs(net, ctx):
        x, kept = block.forward(params[start:stop], x, xp, ctx)
        saved.append(kept)
    return x, saved


def logits(net: Network, params, X, ctx: Context):
    """The raw output alone, keeping nothing for a backward pass."""
    xp, x = ctx.backend.xp, X
    for start, stop, block in runs(net, ctx):
        x = block.forward(params[start:stop], x, xp, ctx)[0]
    return x


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


def gradients(net: Network, params, X, Y, ctx: Context):
    """(summed loss, each layer's parameter gradients summed over the batch) by
    backpropagation; ``ctx.training`` says it is training (random masks are drawn)."""
    xp = ctx.backend.xp
    out, saved = forward(net, params, X, ctx)
    loss, grad = loss_and_delta(out, Y, net.loss, xp)
    grads = [None] * len(net.layers)
    for (start, stop, block), kept in zip(reversed(runs(net, ctx)), reversed(saved)):
        grads[start:stop], grad = block.backward(params[start:stop], kept, grad, xp, ctx,
                                                 need_input=start > 0)
    return loss, grads


def classify(net: Network, params, X, ctx: Context, chunk: int | None = None):
    """The predicted digit of every row of ``X``, in chunks of bounded memory."""
    xp = ctx.backend.xp
    parts = [xp.argmax(logits(net, params, X[s:e, :], ctx), axis=1)
             for s, e in chunk_bounds(X.shape[0], chunk or net.eval_chunk)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def score(net: Network, params, X, labels, Y, ctx: Context, start: int, stop: int):
    """(number correct, summed loss) of rows ``start:stop``, as 0-d device arrays."""
    xp = ctx.backend.xp
    out = logits(net, params, X[start:stop, :], ctx)
    hits = xp.sum(xp.astype(xp.argmax(out, axis=1) == labels[start:stop], xp.int64))
    return hits, loss_and_delta(out, Y[start:stop, :], net.loss, xp)[0]


def evaluate(net: Network, params, X, labels, Y, ctx: Context, chunk: int | None = None):
    """(number correct, summed loss) as 0-d device arrays, in chunks of bounded memory."""
    return summed_over_chunks(X.shape[0], chunk or net.eval_chunk,
                              lambda s, e: score(net, params, X, labels, Y, ctx, s, e))


# --------------------------------------------------------------------------- saved files


def params_to_arrays(params) -> dict:
    """``W0, b0, W1, ...`` for an ``.npz``, numbered over the layers with parameters (a saved
    file stores W0 as ``weights``, where every reader looks first, and so tutorial files stay
    readable)."""
    arrays, k = {}, 0
    for layer in params:
        if layer:
            for name, p in zip(("W", "b", *(f"p{j}_" for j in range(2, len(layer)))), layer):
                arrays[f"{name}{k}"] = p
            k += 1
    return arrays


def params_from_arrays(arrays: dict, net: Network, source="weights file") -> list:
    """The parameters of ``net`` from a saved file's arrays, every shape checked (the first is
    ``weights``; files written before it was stored once hold it as ``W0`` too); a fault is a
    ``WeightsFileError`` naming ``source``."""
    params = [[] for _ in net.layers]
    for k, (i, layer) in enumerate(net.parametrised()):
        for j, shape in enumerate(layer.param_shapes()):
            name = ("W", "b")[j] if j < 2 else f"p{j}_"
            key = f"{name}{k}"
            if key == "W0":
                key = "W0" if "W0" in arrays else "weights"
                array = named_array(arrays, key, source)
            else:
                what = (f" (layer {k} of {net.describe()})" if name == "W" else
                        f" (the {'bias' if name == 'b' else 'parameter'} of layer {k})")
                array = named_array(arrays, key, source, what)
            check_array(array, source, "weights" if key in ("weights", "W0") else key, shape)
            params[i].append(array)
    return params
