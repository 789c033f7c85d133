"""What every optimizer is: a named set of hyperparameters with defaults, state allocated beside
the parameters on their device, and an in-place step from gradients summed over a batch."""

from __future__ import annotations

from typing import ClassVar


class Optimizer:
    """The optimizers' common shape.

    ``settings`` are the hyperparameters a subclass takes, with their defaults (the command line
    and the presets name them from here); ``step(params, grads, batch, lr, momentum)`` updates
    ``params`` in place from ``grads`` summed over ``batch`` images, ``momentum`` being what a
    schedule may cycle (None: the optimizer's own setting). ``state`` and ``restore`` copy its
    state out and back, for the replay of a diverged epoch."""

    name: ClassVar[str]
    settings: ClassVar[dict[str, float | tuple]]

    def __init__(self, params: list, xp, **settings):
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise TypeError(f"{self.name} takes no setting {', '.join(sorted(unknown))}")
        self.xp = xp
        self.options = {**self.settings, **settings}

    def step(self, params: list, grads: list, batch: int, lr: float,
             momentum: float | None = None) -> None:
        raise NotImplementedError

    def state(self):
        raise NotImplementedError

    def restore(self, state) -> None:
        raise NotImplementedError
