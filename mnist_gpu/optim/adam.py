"""Adam and AdamW, written once against ``xp``, exactly as ``torch.optim.Adam`` and
``torch.optim.AdamW`` define them (without amsgrad or maximize), defaults included.

For each parameter ``p`` with mean gradient ``g`` (the summed gradient over the batch), at step
``t`` (1 for the first):

* Adam adds L2 decay to the gradient, ``g += weight_decay * p``; AdamW instead shrinks the
  parameter first, ``p *= 1 - lr * weight_decay`` (decoupled decay, default 0.01);
* ``m = beta1 * m + (1 - beta1) * g`` and ``v = beta2 * v + (1 - beta2) * g * g``;
* ``p -= lr / (1 - beta1 ** t) * m / (sqrt(v) / sqrt(1 - beta2 ** t) + eps)``: both moments
  corrected for their start at zero, ``eps`` outside the square root.

``beta1`` is the value a schedule passes as ``cycled`` when it cycles it (as PyTorch's
``OneCycleLR`` overrides Adam's first beta), else the first of ``betas``.
"""

from __future__ import annotations

import math

from .base import Optimizer, copies


class Adam(Optimizer):
    name = "adam"
    settings = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    bounds = {"betas": (lambda v: 0 <= v < 1, "each lie in [0, 1)"),
              "eps": (lambda v: v > 0, "be positive")}
    cycled = "betas"  # its first value, beta1, as OneCycleLR cycles it
    described = ("betas",)
    decoupled = False  # Adam: L2 decay added to the gradient

    def __init__(self, params: list, xp, **settings):
        super().__init__(params, xp, **settings)
        self.first = [xp.zeros_like(p) for p in params]
        self.second = [xp.zeros_like(p) for p in params]
        self.steps = 0

    @classmethod
    def check(cls, settings: dict) -> None:
        super().check(settings)
        betas = settings.get("betas", cls.settings["betas"])
        if not isinstance(betas, tuple) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers (beta1,beta2), not {betas}")

    def step(self, params, grads, batch, lr, cycled=None):
        beta1 = self.values["betas"][0] if cycled is None else cycled
        beta2 = self.values["betas"][1]
        eps, decay = self.values["eps"], self.values["weight_decay"]
        self.steps += 1
        step_size = lr / (1 - beta1 ** self.steps)
        root_correction = math.sqrt(1 - beta2 ** self.steps)
        for p, g, m, v in zip(params, grads, self.first, self.second):
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
        return self.steps, copies(self.xp, self.first), copies(self.xp, self.second)

    def restore(self, state) -> None:
        steps, first, second = state
        self.steps, self.first, self.second = steps, copies(self.xp, first), copies(self.xp,
                                                                                      second)

    @classmethod
    def torch(cls, optim, params, lr, settings):
        return getattr(optim, "AdamW" if cls.decoupled else "Adam")(
            params, lr=lr, **{**cls.settings, **settings})


class AdamW(Adam):
    name = "adamw"
    settings = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = True  # AdamW: the parameter shrunk by lr * weight_decay before the step
