"""What an optimiser is: one class per method, its settings (the hyperparameters it takes, with
their defaults: the command line's flags and the presets' data come from them), and its step.

An optimiser is made for a network's parameters on the device (a flat list of arrays), keeps its
state beside them (allocated with ``xp.zeros_like``) and updates them in place, one step per
batch. Gradients arrive SUMMED over the batch (the loss is summed), so the mean gradient is
``g / batch``. A schedule (``schedules.py``) gives each step its learning rate, and may give a
value for the optimiser's ``cycled`` setting too.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar


class Optimizer(ABC):
    name: ClassVar[str]  # the word on the command line and in presets
    settings: ClassVar[dict]  # each setting's default
    # The setting a schedule may vary step by step (its second value), or None.
    cycled: ClassVar[str | None] = None
    # What each setting must satisfy: (test, words for the message).
    bounds: ClassVar[dict] = {}

    def __init__(self, params: list, xp, **settings):
        self.check(settings)
        self.xp = xp
        self.values = {**self.settings, **settings}

    @classmethod
    def check(cls, settings: dict) -> None:
        """A ValueError naming the first unknown or out-of-range setting."""
        for key, value in settings.items():
            if key not in cls.settings:
                raise ValueError(f"{cls.name} takes no {key.replace('_', ' ')} (it takes "
                                 f"{', '.join(cls.settings) or 'no settings'})")
            values = value if isinstance(value, tuple) else (value,)
            test, words = cls.bounds.get(key, (lambda v: v >= 0, "be non-negative"))
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and test(v)
                       for v in values):
                raise ValueError(f"{key.replace('_', ' ')} must {words}, not {value}")

    @classmethod
    def words(cls, settings: dict) -> str:
        """Its settings as a run's description gives them (the names in ``described``)."""
        full = {**cls.settings, **settings}
        return ", ".join(f"{k.replace('_', ' ')} {full[k]}" for k in cls.described)

    described: ClassVar[tuple[str, ...]] = ()  # the settings ``words`` gives

    @abstractmethod
    def step(self, params: list, grads: list, batch: int, lr: float,
             cycled: float | None = None) -> None:
        """Update ``params`` in place from ``grads`` (summed over ``batch`` images), with learning
        rate ``lr`` and, where a schedule gives one, ``cycled`` for the setting it varies."""

    @abstractmethod
    def state(self):
        """A copy of the state (for replaying a diverged epoch)."""

    @abstractmethod
    def restore(self, state) -> None:
        """Take a copy of ``state`` (from ``state()``) as its own."""

    @classmethod
    def torch(cls, optim, params, lr: float, settings: dict):
        """The same optimiser as PyTorch's (``torch.optim``), for the benchmark's peer."""
        raise NotImplementedError(f"{cls.name} has no PyTorch counterpart written")


def copies(xp, arrays: list) -> list:
    return [xp.astype(a, a.dtype, copy=True) for a in arrays]
