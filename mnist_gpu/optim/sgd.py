"""Stochastic gradient descent, with momentum and weight decay as PyTorch's ``torch.optim.SGD``
writes them (L2 weight decay added to the gradient, momentum without dampening)."""

from __future__ import annotations

from .base import Optimizer, copies


class SGD(Optimizer):
    """Plain SGD is ``W -= (lr / b) * dW``, the tutorial's update exactly (with weight decay,
    ``W -= lr * weight_decay * W`` first); with momentum,
    ``v = momentum * v + dW / b + weight_decay * W`` and ``W -= lr * v``."""

    name = "sgd"
    settings = {"momentum": 0.0, "weight_decay": 0.0}
    bounds = {"momentum": (lambda v: 0 <= v < 1, "lie in [0, 1)")}
    cycled = "momentum"
    described = ("momentum",)

    def __init__(self, params, xp, **settings):
        super().__init__(params, xp, **settings)
        self.velocity = [xp.zeros_like(p) for p in params]

    def step(self, params, grads, batch, lr, cycled=None):
        momentum = self.values["momentum"] if cycled is None else cycled
        weight_decay = self.values["weight_decay"]
        for p, g, v in zip(params, grads, self.velocity):
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

    def state(self):
        return copies(self.xp, self.velocity)

    def restore(self, state):
        self.velocity = copies(self.xp, state)

    @classmethod
    def torch(cls, optim, params, lr, settings):
        return optim.SGD(params, lr=lr, **{**cls.settings, **settings})
