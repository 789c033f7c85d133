"""Beyond the tutorial: a stack of dense layers with optional biases, relu/sigmoid/tanh, and either
the tutorial's squared error or softmax cross-entropy, trained by mini-batch SGD with momentum.

Forward and backward are written once against the array namespace ``xp``, like ``linear``. The
tutorial's network is the special case with no hidden layer, no bias and squared error: with plain
SGD it takes exactly the update of ``linear.minibatch_step`` and starts from the same weights.

Parameters are a list of ``(W, b)`` per layer (``b`` is None without biases); on the host they are
NumPy arrays, drawn with NumPy's Generator so that every backend starts identical.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import linear
from .backend import array_namespace
from .data import IMAGE_SIDE
from .trainer import (
    Checkpoint, DeviceData, TrainingDiverged, _ResultSummary, device_memory_guard,
)

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("mse", "ce")
SCHEDULES = ("constant", "step", "cosine")


PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Architecture:
    """One model description: convolution layers (each ``conv[i]`` output channels, k x k with
    ``conv_size`` k, then relu and 2x2 max pooling), then dense layers (``hidden``, then the ten
    outputs) with ``activation`` between them, biases or not, dropout of rate ``dropout`` after
    the convolutions and after each hidden dense layer while training, and the loss."""

    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    bias: bool = False
    loss: str = "mse"
    conv: tuple[int, ...] = ()
    conv_size: int = 5
    padding: str = "valid"
    dropout: float = 0.0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}")
        if any(h < 1 for h in self.hidden) or any(c < 1 for c in self.conv):
            raise ValueError("layer sizes must be at least 1")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}")
        if self.conv_size < 1 or (self.padding == "same" and self.conv_size % 2 == 0):
            raise ValueError("the kernel size must be at least 1, and odd for 'same' padding")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), not {self.dropout}")
        if self.conv:
            self.conv_shapes()  # raises if the image shrinks to nothing

    def conv_shapes(self):
        """Each convolution's ``ConvShape``, the image pooled 2x2 after each."""
        from .layers import ConvShape

        height = width = IMAGE_SIDE
        channels, shapes = 1, []
        pad = (self.conv_size - 1) // 2 if self.padding == "same" else 0
        for filters in self.conv:
            shape = ConvShape(height, width, channels, self.conv_size, pad)
            height, width, channels = shape.out_height // 2, shape.out_width // 2, filters
            if height < 1 or width < 1:
                raise ValueError(f"{len(self.conv)} convolutions of {self.conv_size}x"
                                 f"{self.conv_size} with pooling leave no image")
            shapes.append(shape)
        return shapes

    @classmethod
    def from_json(cls, described: dict) -> Architecture:
        """From ``asdict(arch)`` as saved in a weights file's metadata (older files: no conv)."""
        return cls(tuple(described["hidden"]), described["activation"], bool(described["bias"]),
                   described["loss"], tuple(described.get("conv", ())),
                   int(described.get("conv_size", 5)), described.get("padding", "valid"),
                   float(described.get("dropout", 0.0)))

    def layer_shapes(self) -> list[tuple[tuple[int, int], int]]:
        """Each layer's (weights shape, bias length): the convolutions' kernel matrices, then
        the dense layers."""
        shapes = [((s.k * s.k * s.channels, f), f)
                  for s, f in zip(self.conv_shapes() if self.conv else [], self.conv)]
        sizes = self.sizes
        return shapes + [((a, b), b) for a, b in zip(sizes[:-1], sizes[1:])]

    @property
    def features(self) -> int:
        """What the dense layers take: the pixels, or the last pooled feature map, flattened."""
        if not self.conv:
            return linear.N_INPUTS
        last = self.conv_shapes()[-1]
        return (last.out_height // 2) * (last.out_width // 2) * self.conv[-1]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The dense layers' sizes, input first."""
        return (self.features, *self.hidden, linear.N_OUTPUTS)

    @property
    def is_tutorial(self) -> bool:
        return (not self.hidden and not self.bias and self.loss == "mse" and not self.conv
                and not self.dropout)

    def describe(self) -> str:
        layers = "-".join(map(str, self.sizes))
        if self.conv:
            convs = "-".join(f"conv{f}" for f in self.conv)
            layers = (f"28x28-{convs} ({self.conv_size}x{self.conv_size} {self.padding}, relu, "
                      f"2x2 max-pool)-{layers}")
        parts = [layers]
        if self.hidden:
            parts.append(self.activation)
        parts.append("bias" if self.bias else "no bias")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        parts.append("softmax cross-entropy" if self.loss == "ce" else "squared error")
        return ", ".join(parts)


# --------------------------------------------------------------------------- initialisation


def init_params(arch: Architecture, seed: int, dtype="float32") -> list:
    """Host parameters. The tutorial's network keeps its uniform [0, 1) draw; other layers get
    He initialisation before a relu and Xavier (Glorot) otherwise; biases start at zero."""
    if arch.is_tutorial:
        return [(linear.init_weights(seed, dtype), None)]
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
    from . import layers

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
    from . import layers

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


def conv_workspace_bytes(arch: Architecture, batch: int, itemsize: int) -> int:
    """The largest im2col patches of a training step: each convolution's forward patches (kept
    for the backward pass) and the largest patch gradients of the backward pass (those of every
    convolution but the first, whose input needs no gradient), for ``batch`` images."""
    if not arch.conv:
        return 0
    sizes = [s.out_height * s.out_width * s.k * s.k * s.channels for s in arch.conv_shapes()]
    return (sum(sizes) + max(sizes[1:], default=0)) * batch * itemsize


def dropout_masks(arch: Architecture, rng, batch: int, dtype, backend) -> list | None:
    """The dropout masks of one training step (after the convolutions, after each hidden dense
    layer), drawn on the host and uploaded; None without dropout."""
    from .layers import dropout_mask

    if not arch.dropout:
        return None
    widths = ([arch.features] if arch.conv else []) + list(arch.hidden)
    return [backend.to_device(dropout_mask(rng, (batch, w), arch.dropout, dtype))
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
    xp = xp or array_namespace(X)
    n = X.shape[0]
    chunk = chunk or (CONV_EVAL_CHUNK if arch.conv else linear.EVAL_CHUNK)
    parts = [xp.argmax(forward(params, X[s:min(s + chunk, n), :], arch, xp, plan)[-1], axis=1)
             for s in range(0, n, chunk)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def evaluate(params, X, labels, Y, arch: Architecture, xp=None, chunk: int | None = None,
             plan: ConvPlan | None = None):
    """(number correct, summed loss) as 0-d device arrays, in chunks of bounded memory."""
    xp = xp or array_namespace(X)
    chunk = chunk or (CONV_EVAL_CHUNK if arch.conv else linear.EVAL_CHUNK)
    correct = total = None
    for s in range(0, X.shape[0], chunk):
        e = min(s + chunk, X.shape[0])  # the array API leaves slices past the end unspecified
        out = forward(params, X[s:e, :], arch, xp, plan)[-1]
        hits = xp.sum(xp.astype(xp.argmax(out, axis=1) == labels[s:e], xp.int64))
        loss, _ = loss_and_delta(out, Y[s:e, :], arch.loss, xp)
        correct = hits if correct is None else correct + hits
        total = loss if total is None else total + loss
    return correct, total


# --------------------------------------------------------------------------- training


@dataclass
class MLPConfig:
    arch: Architecture = field(default_factory=Architecture)
    lr: float = 0.1
    batch_size: int = 128
    epochs: int = 10
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # "step": x0.1 at 50% and 75% of the steps; "cosine": to zero
    seed: int = 0
    shuffle: bool = True
    data_seed: int | None = None  # seeds the shuffling apart from the weights (None: seed)

    def validate(self):
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, not {self.lr}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch size and epochs must be at least 1")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), not {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight decay must be non-negative, not {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based), computed on the host."""
        if self.schedule == "step":
            return self.lr * (0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4)))
        if self.schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * step / total_steps))
        return self.lr


@dataclass
class MLPResult(_ResultSummary):
    config: dict
    backend: dict
    curve: list[Checkpoint]  # after each epoch; ``mse`` holds the mean test loss per image
    seconds: float
    images_trained: int
    params: list = field(repr=False)  # host (W, b) per layer
    kernel: str = "array"  # mini-batches always run as array calls


# Training has diverged when the loss per image (of a batch, or of the test set) passes this many
# times the test loss at the start (or 1, if that was smaller), even while the weights are still
# finite: a healthy run stays far below, and a learning rate far too large blows it up by orders
# of magnitude, then often leaves dead units and the accuracy at chance.
DIVERGED_LOSS_FACTOR = 1e3


def train_mlp(data: DeviceData, config: MLPConfig, init_params_host=None,
              progress=None, on_checkpoint=None) -> MLPResult:
    """Mini-batch SGD over ``config.epochs``, shuffled per epoch from the seed, evaluated after
    each epoch (the only host-device synchronisation). ``on_checkpoint(point)`` is called with
    each evaluation as soon as it is made.

    Diverged training (weights no longer finite, or the test loss past ``DIVERGED_LOSS_FACTOR``
    times its start) raises ``TrainingDiverged`` naming the epoch and the step.
    """
    config.validate()
    backend, xp = data.backend, data.backend.xp
    arch = config.arch
    host = init_params_host or init_params(arch, config.seed, data.dtype)
    n, b = data.n_train, config.batch_size
    steps_per_epoch = -(-n // b)
    total_steps = steps_per_epoch * config.epochs
    shuffle_rng = np.random.default_rng(
        [config.seed if config.data_seed is None else config.data_seed, 1])
    dropout_rng = np.random.default_rng([config.seed, 2])  # a stream of its own
    curve, seconds, step = [], 0.0, 0

    what = "while training"
    if arch.conv:
        what += (f" (the convolutions' patches take about "
                 f"{conv_workspace_bytes(arch, b, np.dtype(data.dtype).itemsize) / 2**20:,.0f} "
                 "MiB per batch)")
    with backend.activate(), device_memory_guard(backend, what, b, data.resident_bytes):
        params = [(backend.to_device(W), None if bias is None else backend.to_device(bias))
                  for W, bias in host]
        velocity = [(xp.zeros_like(W), None if bias is None else xp.zeros_like(bias))
                    for W, bias in params]
        plan = ConvPlan(arch, backend) if arch.conv else None
        curve.append(_measure(data, params, arch, 0, plan))
        if on_checkpoint:
            on_checkpoint(curve[-1])
        loss_bound = DIVERGED_LOSS_FACTOR * max(curve[0].mse, 1.0)
        for epoch in range(config.epochs):
            order = (backend.to_device(shuffle_rng.permutation(n)) if config.shuffle else None)
            # What a failed epoch replays, one step at a time, to name the step that diverged.
            at_start = (_copies(xp, params), _copies(xp, velocity), step,
                        dropout_rng.bit_generator.state)
            worst = None
            with backend.stopwatch() as clock:
                for s in range(0, n, b):
                    e = min(s + b, n)
                    Xb, Yb = linear.batch(data.train_x, data.train_y, s, e, order, xp)
                    masks = dropout_masks(arch, dropout_rng, e - s, data.dtype, backend)
                    loss, grads = gradients(params, Xb, Yb, arch, xp, plan, masks)
                    # The worst batch loss per image, kept on the device: a blow-up that the
                    # network survives (its units dead, its loss back down) still counts.
                    worst = loss / (e - s) if worst is None else xp.maximum(worst, loss / (e - s))
                    sgd_step(params, grads, velocity, config.lr_at(step, total_steps), e - s,
                             config.momentum, config.weight_decay)
                    step += 1
            seconds += clock["seconds"]
            # The end of an epoch: the checkpoint where values come back to the host.
            point = (_measure(data, params, arch, (epoch + 1) * n, plan)
                     if _all_finite(params, xp) else None)
            if (point is None or not point.mse <= loss_bound  # a NaN loss fails these too
                    or not float(worst) <= loss_bound):
                raise TrainingDiverged(_divergence_message(
                    data, config, epoch, order, at_start, loss_bound, total_steps, point, plan))
            curve.append(point)
            if on_checkpoint:
                on_checkpoint(point)
            if progress:
                progress((epoch + 1) * n)
        host_params = [(backend.to_host(W), None if bias is None else backend.to_host(bias))
                       for W, bias in params]

    cfg = asdict(config)
    cfg["arch"] = asdict(arch)
    cfg.update(dtype=data.dtype, n_train=n, architecture=arch.describe())
    return MLPResult(cfg, backend.describe(), curve, seconds, n * config.epochs, host_params)


def _copies(xp, layers):
    return [tuple(None if p is None else xp.astype(p, p.dtype, copy=True) for p in layer)
            for layer in layers]


def _all_finite(params, xp) -> bool:
    return all(bool(linear.all_finite(p, xp=xp)) for layer in params for p in layer
               if p is not None)


def _divergence_message(data, config, epoch, order, at_start, loss_bound, total_steps,
                        point, plan=None) -> str:
    """Replay the failed epoch one step at a time from its start to name the step where the
    weights stopped being finite or the batch's loss per image passed ``loss_bound``.

    Only reached after a failure, so its per-step synchronisation costs a good run nothing.
    """
    xp, arch = data.backend.xp, config.arch
    params, velocity, step = _copies(xp, at_start[0]), _copies(xp, at_start[1]), at_start[2]
    dropout_rng = np.random.default_rng()
    dropout_rng.bit_generator.state = at_start[3]  # the same masks as the failed epoch's
    n, b = data.n_train, config.batch_size
    where = f"in epoch {epoch + 1}"
    for number, s in enumerate(range(0, n, b), start=1):
        e = min(s + b, n)
        Xb, Yb = linear.batch(data.train_x, data.train_y, s, e, order, xp)
        masks = dropout_masks(arch, dropout_rng, e - s, data.dtype, data.backend)
        loss, grads = gradients(params, Xb, Yb, arch, xp, plan, masks)
        per_image = float(loss) / (e - s)
        if not per_image <= loss_bound:
            what = (f"the loss per image on its batch reached {per_image:.4g}, over "
                    f"{DIVERGED_LOSS_FACTOR:g} times its start")
            break
        sgd_step(params, grads, velocity, config.lr_at(step, total_steps), e - s,
                 config.momentum, config.weight_decay)
        step += 1
        if not _all_finite(params, xp):
            what = "the weights became NaN or infinite"
            break
    else:  # no single batch showed it: name the epoch, and what its evaluation found
        what = ("the weights became NaN or infinite" if point is None else
                f"the test loss per image reached {point.mse:.4g}, over "
                f"{DIVERGED_LOSS_FACTOR:g} times its start")
        return f"training diverged {where}: {what} (lr = {config.lr}); try a smaller --lr"
    return (f"training diverged {where} at step {number:,} of {-(-n // b):,} (images {s + 1:,} "
            f"to {e:,} of the epoch): {what} (lr = {config.lr}); try a smaller --lr")


def _measure(data, params, arch, seen, plan=None) -> Checkpoint:
    correct, loss = evaluate(params, data.test_x, data.test_labels, data.test_y, arch,
                             xp=data.backend.xp, plan=plan)
    return Checkpoint(seen, int(correct) / data.n_test, float(loss) / data.n_test)


def params_to_arrays(params) -> dict:
    """``W0, b0, W1, ...`` for an ``.npz`` (``weights`` is W0, so tutorial files stay readable)."""
    arrays = {}
    for layer, (W, b) in enumerate(params):
        arrays[f"W{layer}"] = W
        if b is not None:
            arrays[f"b{layer}"] = b
    return arrays


def params_from_arrays(arrays: dict, arch: Architecture, source="weights file") -> list:
    """The per-layer parameters of ``arch`` from a saved file's arrays, every shape checked."""
    params = []
    for layer, (shape, outputs) in enumerate(arch.layer_shapes()):
        key = f"W{layer}" if f"W{layer}" in arrays else ("weights" if layer == 0 else None)
        if key is None or key not in arrays:
            raise ValueError(f"{source}: no array W{layer} for layer {layer} of {arch.describe()}")
        W = arrays[key]
        if W.shape != shape:
            raise ValueError(f"{source}: {key} has shape {W.shape}, expected {shape}")
        b = None
        if arch.bias:
            if f"b{layer}" not in arrays or arrays[f"b{layer}"].shape != (outputs,):
                raise ValueError(f"{source}: missing or misshapen bias b{layer}")
            b = arrays[f"b{layer}"]
        for array in (W, b):
            if array is not None and (array.dtype.kind != "f" or not np.all(np.isfinite(array))):
                raise ValueError(f"{source}: layer {layer} must hold finite floating-point values")
        params.append((W, b))
    return params


def load_model(path, model: int | None = None) -> tuple[Architecture, list]:
    """The architecture (from the file's metadata; none means the tutorial's) and parameters of a
    file written by ``mnist-gpu train --save``, or of a plain (784, 10) ``.npy``/``.npz``; of a
    file written by ``mnist-gpu sweep --save``, those of its model number ``model``."""
    from .weights_io import WeightsFileError, load_arrays

    arrays, metadata = load_arrays(path)
    sweep_models = metadata.get("models") if "sweep" in metadata else None
    if sweep_models is not None:
        count = len(sweep_models)
        if model is None:
            raise WeightsFileError(f"{path}: holds the {count} models of a sweep: choose one "
                                   f"with --model K (0 to {count - 1})")
        if not 0 <= model < count:
            raise WeightsFileError(f"{path}: --model {model} is not one of its {count} models "
                                   f"(0 to {count - 1})")
        if any(a.ndim == 0 or a.shape[0] != count for a in arrays.values()):
            raise WeightsFileError(f"{path}: its arrays do not hold {count} models")
        arrays = {key: a[model] for key, a in arrays.items()}
    elif model not in (None, 0):
        raise WeightsFileError(f"{path}: --model {model}, but it holds one model (0)")
    described = (metadata.get("config") or {}).get("arch")
    try:
        arch = Architecture.from_json(described) if described else Architecture()
        return arch, params_from_arrays(arrays, arch, str(path))
    except (KeyError, TypeError, ValueError) as err:
        raise WeightsFileError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
