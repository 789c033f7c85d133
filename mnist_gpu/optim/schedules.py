"""Learning-rate schedules: a schedule is a function ``(step, total_steps, lr) -> (learning rate,
momentum or None)`` of the 0-based ``step`` of ``total_steps``, ``lr`` being the rate the user
set (the peak, for one-cycle); a momentum of None leaves the optimizer's own."""

from __future__ import annotations

import math

# torch.optim.lr_scheduler.OneCycleLR's defaults.
WARM_UP = 0.3          # pct_start: the share of the steps spent rising to the peak
DIV = 25.0             # div_factor: the first rate is the peak / 25
FINAL_DIV = 1e4        # final_div_factor: the last rate is the first / 1e4
MOMENTUM_RANGE = (0.85, 0.95)  # base_momentum, max_momentum


def _cosine(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle(step: int, total_steps: int, lr: float) -> tuple[float, float]:
    """PyTorch's ``OneCycleLR`` (two phases, cosine, cycling the momentum), for a peak ``lr``:
    from ``lr / 25`` up to ``lr`` over the first 30% of the steps while the momentum (Adam's
    first beta, SGD's momentum) falls from 0.95 to 0.85, then down to ``lr / 25 / 1e4`` while it
    rises back to 0.95; each by half a cosine."""
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
            return _cosine(lr0, lr1, pct), _cosine(m0, m1, pct)
        start_step = end_step
    raise AssertionError("no phase")
