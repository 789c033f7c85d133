"""Adam and AdamW, written once against ``xp``, exactly as ``torch.optim.Adam`` and
``torch.optim.AdamW`` define them (without amsgrad or maximize), defaults included.

For each parameter ``p`` with mean gradient ``g`` (the summed gradient over the batch), at step
``t`` (1 for the first):

* Adam adds L2 decay to the gradient, ``g += weight_decay * p``; AdamW instead shrinks the
  parameter first, ``p *= 1 - lr * weight_decay`` (decoupled decay, default 0.01);
* ``m = beta1 * m + (1 - beta1) * g`` and ``v = beta2 * v + (1 - beta2) * g * g``;
* ``p -= lr / (1 - beta1 ** t) * m / (sqrt(v) / sqrt(1 - beta2 ** t) + eps)``: both moments
  corrected for their start at zero, ``eps`` outside the square root.

``beta1`` is the ``momentum`` a schedule passes when it cycles it (as PyTorch's ``OneCycleLR``
overrides Adam's first beta), else the first of ``betas``.
"""

from __future__ import annotations

import math

from .base import Optimizer


class Adam(Optimizer):
    name = "adam"
    settings = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False  # Adam: L2 decay added to the gradient

    def __init__(self, params: list, xp, **settings):
        super().__init__(params, xp, **settings)
        self.params = [p for p in params if p is not None]
        self.first = [xp.zeros_like(p) for p in self.params]
        self.second = [xp.zeros_like(p) for p in self.params]
        self.steps = 0

    def step(self, params: list, grads: list, batch: int, lr: float,
             momentum: float | None = None) -> None:
        beta1 = self.options["betas"][0] if momentum is None else momentum
        beta2 = self.options["betas"][1]
        eps, decay = self.options["eps"], self.options["weight_decay"]
        self.steps += 1
        step_size = lr / (1 - beta1 ** self.steps)
        root_correction = math.sqrt(1 - beta2 ** self.steps)
        pairs = [(p, g) for p, g in zip(params, grads) if p is not None]
        for (p, g), m, v in zip(pairs, self.first, self.second):
            g = g / batch
            if decay and self.decoupled:
                p *= 1 - lr * decay
            elif decay:
                g = g + decay * p
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * (g * g)
            p -= step_size * (m / (self.xp.sqrt(v) / root_correction + eps))

    def state(self):
        return (self.steps, [self.xp.asarray(m, copy=True) for m in self.first],
                [self.xp.asarray(v, copy=True) for v in self.second])

    def restore(self, state) -> None:
        steps, first, second = state
        self.steps = steps
        for mine, saved in zip(self.first + self.second, first + second):
            mine[...] = saved


class AdamW(Adam):
    name = "adamw"
    settings = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = True  # AdamW: the parameter shrunk by lr * weight_decay before the step
