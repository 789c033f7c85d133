"""Optimisers (one class each, ``base.Optimizer``) and learning-rate schedules (functions of the
step), found by the word that names them: adding one is its module and one line here."""

from . import schedules
from .base import Optimizer
from .sgd import SGD

OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD}
SCHEDULES = {"constant": schedules.constant, "step": schedules.step_decay,
             "cosine": schedules.cosine}

__all__ = ["OPTIMIZERS", "SCHEDULES", "SGD", "Optimizer"]
