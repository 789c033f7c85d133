"""The optimizers and learning-rate schedules, by the name the command line and presets use:
adding one is its module plus one line here."""

from __future__ import annotations

from .adam import Adam, AdamW
from .base import Optimizer
from .schedules import one_cycle

__all__ = ["OPTIMIZERS", "SCHEDULES", "Adam", "AdamW", "Optimizer", "one_cycle"]

OPTIMIZERS = {"adam": Adam, "adamw": AdamW}
SCHEDULES = {"one-cycle": one_cycle}
