"""What a training run is asked to do: the tutorial's settings (``TrainConfig``) and the deeper
networks' (``MLPConfig``), each checked before any work, and the orders and checkpoints they
imply."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from ..model.architecture import parse_network
from ..model.network import Network
from ..model.presets import PRESETS
from ..optim import OPTIMIZERS, SCHEDULES

TUTORIAL_CHECKPOINTS = (0, 100, 1_000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000)
KERNELS = ("auto", "fused", "array")


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
    """A network (``net``, a list of layers and a loss) trained by mini-batches with the
    optimiser named ``optimizer`` (its settings, as data, in ``settings``; the defaults for the
    rest) and the learning-rate schedule named ``schedule``, evaluated after every epoch."""

    net: Network = field(default_factory=Network.tutorial)
    lr: float = 0.1
    batch_size: int = 128
    epochs: int = 10
    optimizer: str = "sgd"
    settings: dict = field(default_factory=dict)
    schedule: str = "constant"  # "step": x0.1 at 50% and 75% of the steps; "cosine": to zero
    seed: int = 0
    shuffle: bool = True
    data_seed: int | None = None  # seeds the shuffling apart from the weights (None: seed)

    def validate(self):
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive number, not {self.lr}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch size and epochs must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        OPTIMIZERS[self.optimizer].check(self.settings)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")

    def lr_at(self, step: int, total_steps: int) -> float:
        """The learning rate of step ``step`` (0-based), computed on the host."""
        return SCHEDULES[self.schedule](step, total_steps, self.lr)[0]

    def rate_words(self) -> str:
        """The learning rate and the optimiser's settings, as a run's description gives them."""
        words = OPTIMIZERS[self.optimizer].words(self.settings)
        return f"lr {self.lr}" + (f", {words}" if words else "")

    def to_json(self) -> dict:
        """Its settings as plain data (the network as its layer list and loss)."""
        return {"net": self.net.to_json(), "lr": self.lr, "batch_size": self.batch_size,
                "epochs": self.epochs, "optimizer": self.optimizer,
                "settings": dict(self.settings), "schedule": self.schedule, "seed": self.seed,
                "shuffle": self.shuffle, "data_seed": self.data_seed}


def default_checkpoints(n_train: int, epochs: int) -> tuple[int, ...]:
    """The tutorial's checkpoints for one epoch; the start and every epoch's end for more."""
    if epochs == 1:
        return tuple(c for c in TUTORIAL_CHECKPOINTS if c < n_train) + (n_train,)
    return (0,) + tuple(n_train * (e + 1) for e in range(epochs))


def shuffle_rng(seed: int, data_seed: int | None) -> np.random.Generator:
    """The generator of a run's shuffled orders: seeded by ``data_seed`` (else ``seed``), in a
    stream apart from the weights' (which ``seed`` alone draws)."""
    return np.random.default_rng([seed if data_seed is None else data_seed, 1])


def config_from_preset(name: str, **changes) -> TrainConfig | MLPConfig:
    """The configuration ``mnist-gpu train --preset NAME`` trains, with ``changes`` to its
    settings (named as ``model/presets.py`` names them: ``alpha``, ``epochs``, ``layers``, ...,
    and ``seed``): an ``MLPConfig`` for a deeper network, else a ``TrainConfig``; checked."""
    if name not in PRESETS:
        raise ValueError(f"no preset {name!r}: choose from {', '.join(PRESETS)}")
    settings = {**PRESETS[name].settings, **changes}
    tutorial = {f.name for f in fields(TrainConfig)}
    try:
        if set(settings) - tutorial:
            optimizer = settings.pop("optimizer", MLPConfig.optimizer)
            known = OPTIMIZERS[optimizer].settings if optimizer in OPTIMIZERS else {}
            chosen = {key: settings.pop(key) for key in list(settings) if key in known}
            net = parse_network(settings.pop("layers", "dense10"), settings.pop("loss", "mse"))
            config = MLPConfig(net, lr=settings.pop("alpha", MLPConfig.lr), optimizer=optimizer,
                               settings=chosen, **settings)
        else:
            config = TrainConfig(**settings)
    except TypeError as err:  # a setting the configuration does not have
        raise ValueError(f"preset {name!r}: {err}") from None
    config.validate()
    return config
