"""Optimisers (one class each, ``base.Optimizer``) and learning-rate schedules (functions of the
step), found by the word that names them: adding one is its module and one line here."""

from . import schedules
from .adam import Adam, AdamW
from .base import Optimizer
from .sgd import SGD

OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
SCHEDULES = {"constant": schedules.constant, "step": schedules.step_decay,
             "cosine": schedules.cosine, "one-cycle": schedules.one_cycle,
             "one-cycle-lr": schedules.one_cycle_lr}

__all__ = ["OPTIMIZERS", "SCHEDULES", "SGD", "Adam", "AdamW", "Optimizer"]
