"""Learning-rate schedules: each a function of the step, ``(step, total_steps, lr) -> (learning
rate, value of the optimiser's cycled setting or None)``, ``step`` counted from 0 over the whole
run (``total_steps`` = batches per epoch, a short last batch included, times the epochs)."""

from __future__ import annotations

import math


def constant(step: int, total_steps: int, lr: float):
    return lr, None


def step_decay(step: int, total_steps: int, lr: float):
    """x0.1 at 50% and again at 75% of the steps."""
    return lr * (0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4))), None


def cosine(step: int, total_steps: int, lr: float):
    """Half a cosine, from ``lr`` to zero."""
    return 0.5 * lr * (1 + math.cos(math.pi * step / total_steps)), None
