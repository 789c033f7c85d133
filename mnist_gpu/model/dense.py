"""Fully connected layers and the activations between them, written once against ``xp``.

``Dense(n)``, a learner's ``Affine``: ``z = x @ W (+ b)``, ``W`` of shape (inputs, n), taking a
whole image's features flattened; ``ReLU``, ``Sigmoid``, ``Tanh`` elementwise, their slopes
computed from their outputs.
"""

from __future__ import annotations

import math

import numpy as np

from .layer import Layer, numbers


class Dense(Layer):
    """``denseN`` (``denseN+bias`` with a bias): N outputs from every input."""

    name = "dense"
    options = ("bias",)
    flat_input = True
    param_names = ("W", "b")

    def __init__(self, outputs: int, bias: bool = False):
        self.outputs, self.bias = outputs, bias

    @classmethod
    def from_numbers(cls, text, opts, word):
        return cls(numbers(text, 1, word)[0], "bias" in opts)

    def spec(self):
        return f"{self.name}{self.outputs}" + ("+bias" if self.bias else "")

    def build(self, in_shape):
        self.in_shape, self.out_shape = tuple(in_shape), (self.outputs,)
        self.inputs = math.prod(in_shape)
        return self.out_shape

    def param_shapes(self):
        return [(self.inputs, self.outputs)] + ([(self.outputs,)] if self.bias else [])

    def init(self, rng, dtype, he=False):
        """He initialisation before a relu, else Xavier (Glorot) uniform; the bias zero."""
        fan_in, fan_out = self.inputs, self.outputs
        if he:
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, fan_out))
        else:
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-bound, bound, (fan_in, fan_out))
        return [W.astype(dtype)] + ([np.zeros(fan_out).astype(dtype)] if self.bias else [])

    def forward(self, params, x, xp, ctx):
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], self.inputs))
        z = x @ params[0]
        if self.bias:
            z = z + params[1]
        return z, x

    def backward(self, params, x, grad, xp, ctx, need_input=True):
        grads = [x.T @ grad] + ([xp.sum(grad, axis=0)] if self.bias else [])
        if not need_input:
            return grads, None
        grad_in = grad @ params[0].T
        if len(self.in_shape) != 1:
            grad_in = xp.reshape(grad_in, (grad.shape[0], *self.in_shape))
        return grads, grad_in

    def products(self, batch, need_input=True):
        # forward, the weights' gradient, the input's gradient
        return [(batch, self.inputs, self.outputs), (self.inputs, batch, self.outputs)] + (
            [(batch, self.outputs, self.inputs)] if need_input else [])

    def torch(self, nn):
        return nn.Linear(self.inputs, self.outputs, bias=self.bias)


class ReLU(Layer):
    name = "relu"
    he_before = True

    def forward(self, params, x, xp, ctx):
        y = xp.maximum(x, xp.zeros_like(x))
        return y, y

    def backward(self, params, y, grad, xp, ctx, need_input=True):
        return [], grad * xp.astype(y > 0, y.dtype)

    def torch(self, nn):
        return nn.ReLU()


class Sigmoid(Layer):
    name = "sigmoid"

    def forward(self, params, x, xp, ctx):
        y = 1 / (1 + xp.exp(-x))
        return y, y

    def backward(self, params, y, grad, xp, ctx, need_input=True):
        return [], grad * (y * (1 - y))

    def torch(self, nn):
        return nn.Sigmoid()


class Tanh(Layer):
    name = "tanh"

    def forward(self, params, x, xp, ctx):
        y = xp.tanh(x)
        return y, y

    def backward(self, params, y, grad, xp, ctx, need_input=True):
        return [], grad * (1 - y * y)

    def torch(self, nn):
        return nn.Tanh()
