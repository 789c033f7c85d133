"""What a training run is asked to do: the tutorial's settings (``TrainConfig``) and the deeper
networks' (``MLPConfig``), each checked before any work, and the orders and checkpoints they
imply."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..model.architecture import Architecture
from ..model.presets import ARCHITECTURE_SETTINGS, PRESETS

TUTORIAL_CHECKPOINTS = (0, 100, 1_000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000)
KERNELS = ("auto", "fused", "array")
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class TrainConfig:
    alpha: float = 0.01
    batch_size: int = 1
    epochs: int = 1
    seed: int = 0
    shuffle: bool = False
    checkpoints: tuple[int, ...] | None = None  # None: the tutorial's, or every epoch's end
    # Seeds the shuffling apart from the weights (None: ``seed`` does both). A sweep gives all its
    # models one, so that they see the same images in the same order.
    data_seed: int | None = None
    # "fused": compiled training, per image or by mini-batches (and the checkpoints' evaluation,
    # where the backend has it); "array": xp calls throughout; "auto": fused where available.
    kernel: str = "auto"

    def validate(self):
        if not (self.alpha > 0 and np.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a positive number, not {self.alpha}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {self.kernel!r}")
        if self.checkpoints is not None and any(c < 0 for c in self.checkpoints):
            raise ValueError("checkpoints must be non-negative image counts")


@dataclass
class MLPConfig:
    """A deeper network (``arch``) trained by mini-batch SGD, evaluated after every epoch."""

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


def default_checkpoints(n_train: int, epochs: int) -> tuple[int, ...]:
    """The tutorial's checkpoints for one epoch; the start and every epoch's end for more."""
    if epochs == 1:
        return tuple(c for c in TUTORIAL_CHECKPOINTS if c < n_train) + (n_train,)
    return (0,) + tuple(n_train * (e + 1) for e in range(epochs))


def shuffle_rng(seed: int, data_seed: int | None) -> np.random.Generator:
    """The generator of a run's shuffled orders: seeded by ``data_seed`` (else ``seed``), in a
    stream apart from the weights' (which ``seed`` alone draws)."""
    return np.random.default_rng([seed if data_seed is None else data_seed, 1])


# Settings that only the deeper networks' training has: any of them makes a preset one.
NETWORK_TRAINING_SETTINGS = ("momentum", "weight_decay", "schedule")


def config_from_preset(name: str, **changes) -> TrainConfig | MLPConfig:
    """The configuration ``mnist-gpu train --preset NAME`` trains, with ``changes`` to its
    settings (named as ``model/presets.py`` names them: ``alpha``, ``epochs``, ``hidden``, ...,
    and ``seed``): an ``MLPConfig`` for a deeper network, else a ``TrainConfig``; checked."""
    if name not in PRESETS:
        raise ValueError(f"no preset {name!r}: choose from {', '.join(PRESETS)}")
    settings = {**PRESETS[name].settings, **changes}
    arch = {key: settings.pop(key) for key in ARCHITECTURE_SETTINGS if key in settings}
    deep = bool(arch) or any(key in settings for key in NETWORK_TRAINING_SETTINGS)
    try:
        if deep:
            config = MLPConfig(Architecture(**arch), lr=settings.pop("alpha", MLPConfig.lr),
                               **settings)
        else:
            config = TrainConfig(**settings)
    except TypeError as err:  # a setting the configuration does not have
        raise ValueError(f"preset {name!r}: {err}") from None
    config.validate()
    return config
