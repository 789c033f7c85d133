"""Convolution and 2x2 max pooling as layers: their shapes, parameters and costs, over the array
path of ``layers.py`` (im2col through ``xp.take``, col2im, pooling by corners).

A compiled pass for a layer, where a backend has one, is found in ``ctx.passes`` by the layer's
name: an object with ``conv_forward``/``conv_backward`` (a convolution's) or
``pool_forward``/``pool_backward`` (pooling's) at the signatures of ``layers.py``'s, which is the
reference it is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from . import layers
from .layer import Layer, numbers


class Conv(Layer):
    """``convFxK``: F filters of K x K, stride 1, over (height, width, channels) images;
    ``+same`` pads the input with (K - 1) / 2 zeros (K odd) so the output keeps its size;
    ``+bias`` adds one bias per filter. Kernels are (K * K * channels, F) matrices."""

    name = "conv"
    options = ("same", "bias")
    param_names = ("W", "b")
    # Its patches take about 50 KB per image: 500 images keep an evaluation chunk near 100 MB.
    eval_chunk = 500

    def __init__(self, filters: int, k: int = 5, same: bool = False, bias: bool = False):
        if same and k % 2 == 0:
            raise ValueError(f"conv{filters}x{k}+same: 'same' padding needs an odd kernel size")
        self.filters, self.k, self.same, self.bias = filters, k, same, bias

    @classmethod
    def from_numbers(cls, text, opts, word):
        filters, k = numbers(text, 2, word)
        return cls(filters, k, "same" in opts, "bias" in opts)

    def spec(self):
        return (f"{self.name}{self.filters}x{self.k}" + ("+same" if self.same else "")
                + ("+bias" if self.bias else ""))

    def build(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"{self.spec()} takes images (height, width, channels), not "
                             f"{len(in_shape)}-d features: put it before any dense layer")
        height, width, channels = in_shape
        self.shape = layers.ConvShape(height, width, channels, self.k,
                                      (self.k - 1) // 2 if self.same else 0)
        if self.shape.out_height < 1 or self.shape.out_width < 1:
            raise ValueError(f"{self.spec()} on a {height}x{width} image leaves no image")
        self.in_shape = tuple(in_shape)
        self.out_shape = (self.shape.out_height, self.shape.out_width, self.filters)
        return self.out_shape

    @property
    def fan_in(self) -> int:
        return self.k * self.k * self.shape.channels

    def param_shapes(self):
        return [(self.fan_in, self.filters)] + ([(self.filters,)] if self.bias else [])

    def init(self, rng, dtype, he=False):
        """He initialisation before a relu, else Xavier (Glorot) uniform; the bias zero."""
        fan_in = self.fan_in
        if he:
            W = rng.normal(0.0, math.sqrt(2.0 / fan_in), (fan_in, self.filters))
        else:
            bound = math.sqrt(6.0 / (fan_in + self.filters))
            W = rng.uniform(-bound, bound, (fan_in, self.filters))
        return [W.astype(dtype)] + ([np.zeros(self.filters, dtype=dtype)] if self.bias else [])

    def forward(self, params, x, xp, ctx):
        shape = self.shape
        x = xp.reshape(x, (x.shape[0], shape.height, shape.width, shape.channels))
        indices = ctx.constant(("im2col", shape),
                               lambda: ctx.backend.to_device(shape.host_indices()))
        path = ctx.passes.get(self.name, layers)
        y, cols = path.conv_forward(x, params[0], params[1] if self.bias else None, shape,
                                    indices, xp)
        return y, (x, cols)

    def backward(self, params, saved, grad, xp, ctx, need_input=True):
        x, cols = saved
        path = ctx.passes.get(self.name, layers)
        d_kernels, d_bias, grad_in = path.conv_backward(grad, x, cols, params[0], self.shape, xp,
                                                        need_input=need_input)
        return [d_kernels] + ([d_bias] if self.bias else []), grad_in

    def products(self, batch, need_input=True):
        rows = batch * self.shape.out_height * self.shape.out_width
        patch, filters = self.fan_in, self.filters
        # forward, the kernels' gradient, the patches' gradient (which col2im adds back)
        return [(rows, patch, filters), (patch, rows, filters)] + (
            [(rows, filters, patch)] if need_input else [])

    def workspace(self):
        return self.shape.out_height * self.shape.out_width * self.fan_in

    def torch(self, nn):
        return nn.Conv2d(self.shape.channels, self.filters, self.k, padding=self.shape.pad,
                         bias=self.bias)


class MaxPool(Layer):
    """``pool2``: the maximum of each 2x2 window (an odd last row or column dropped)."""

    name = "pool"
    transparent = True

    @classmethod
    def from_numbers(cls, text, opts, word):
        if text != "2":
            raise ValueError(f"{word!r}: only 2x2 max pooling is written: pool2")
        return cls()

    def spec(self):
        return f"{self.name}2"

    def build(self, in_shape):
        if len(in_shape) != 3 or in_shape[0] < 2 or in_shape[1] < 2:
            raise ValueError(f"pool2 needs an image of at least 2x2, not {in_shape}")
        self.in_shape = tuple(in_shape)
        self.out_shape = (in_shape[0] // 2, in_shape[1] // 2, in_shape[2])
        return self.out_shape

    def forward(self, params, x, xp, ctx):
        # A compiled pass's second result (which corners hold the maximum) is its own, for its
        # own backward pass.
        y, windows = ctx.passes.get(self.name, layers).pool_forward(x, xp)
        return y, (windows, y, x.shape)

    def backward(self, params, saved, grad, xp, ctx, need_input=True):
        windows, y, x_shape = saved
        return [], ctx.passes.get(self.name, layers).pool_backward(grad, windows, y, x_shape, xp)

    def torch(self, nn):
        return nn.MaxPool2d(2)
