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


# torch.optim.lr_scheduler.OneCycleLR's defaults.
WARM_UP = 0.3          # pct_start: the share of the steps spent rising to the peak
DIV = 25.0             # div_factor: the first rate is the peak / 25
FINAL_DIV = 1e4        # final_div_factor: the last rate is the first / 1e4
MOMENTUM_RANGE = (0.85, 0.95)  # base_momentum, max_momentum


def half_cosine(start: float, end: float, pct: float) -> float:
    """From ``start`` (``pct`` 0) to ``end`` (``pct`` 1), as OneCycleLR's cosine anneal."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle(step: int, total_steps: int, lr: float) -> tuple[float, float]:
    """PyTorch's ``OneCycleLR`` (two phases, cosine, cycling the momentum), for a peak ``lr``:
    from ``lr / 25`` up to ``lr`` over the first 30% of the steps while the cycled setting
    (Adam's first beta, SGD's momentum) falls from 0.95 to 0.85, then down to ``lr / 25 / 1e4``
    while it rises back to 0.95; each by half a cosine."""
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside a one-cycle schedule of {total_steps} steps")
    low, high = MOMENTUM_RANGE
    first = lr / DIV
    # Each phase: (its last step, rate and momentum at its start, at its end); as PyTorch's,
    # the first ends at a step that may be fractional.
    phases = ((WARM_UP * total_steps - 1, (first, high), (lr, low)),
              (total_steps - 1, (lr, low), (first / FINAL_DIV, high)))
    start_step = 0.0
    for i, (end_step, (lr0, m0), (lr1, m1)) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            pct = (step - start_step) / (end_step - start_step)
            return half_cosine(lr0, lr1, pct), half_cosine(m0, m1, pct)
        start_step = end_step
    raise AssertionError("no phase")


def one_cycle_lr(step: int, total_steps: int, lr: float) -> tuple[float, None]:
    """``one_cycle``'s learning rate alone, the optimiser's settings left as they are:
    ``OneCycleLR(..., cycle_momentum=False)``."""
    return one_cycle(step, total_steps, lr)[0], None


def one_cycle_torch(lr_scheduler, optimizer, lr: float, total_steps: int, cycled: bool):
    """PyTorch's counterpart of ``one_cycle`` (``cycled``) or ``one_cycle_lr``, from its
    ``torch.optim.lr_scheduler``: what the bench's PyTorch peer steps beside ours."""
    return lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                   cycle_momentum=cycled)
