"""Dropout as a layer: while training, each feature is dropped with probability ``rate`` and the
rest scaled by 1 / (1 - rate) (inverted dropout), so that evaluation is the identity.

The masks are drawn on the host from the run's own generator (``ctx.rng``), as every random
number of mnist-gpu is, so that every backend trains identically; one (batch, features) draw per
layer and step, in the order of the list.
"""

from __future__ import annotations

import math

import numpy as np

from .layer import Layer


def dropout_mask(rng: np.random.Generator, shape, rate: float, dtype) -> np.ndarray:
    """A host mask for inverted dropout: 0 with probability ``rate``, else 1 / (1 - rate)."""
    keep = rng.random(shape) >= rate
    return (keep / (1.0 - rate)).astype(dtype)


class Dropout(Layer):
    """``dropoutP``: drop each feature with probability P (0 <= P < 1) while training."""

    name = "dropout"
    transparent = True

    def __init__(self, rate: float):
        if not 0 <= rate < 1:
            raise ValueError(f"dropout must lie in [0, 1), not {rate}")
        self.rate = rate

    @classmethod
    def from_numbers(cls, text, opts, word):
        try:
            return cls(float(text))
        except ValueError as err:
            raise ValueError(f"{word!r}: {err}" if text else
                             f"{word!r}: give the rate, e.g. dropout0.25") from None

    def spec(self):
        return f"{self.name}{self.rate:g}"

    def forward(self, params, x, xp, ctx):
        if not ctx.training or not self.rate:
            return x, None
        n = x.shape[0]
        mask = dropout_mask(ctx.rng, (n, math.prod(self.in_shape)), self.rate, ctx.dtype)
        mask = ctx.backend.to_device(mask.reshape((n, *self.in_shape)))
        return x * mask, mask

    def backward(self, params, mask, grad, xp, ctx, need_input=True):
        return [], grad if mask is None else grad * mask

    def torch(self, nn):
        return nn.Dropout(self.rate)
