"""Scoring the tutorial's weights on the test set: accuracy and MSE, one model or a stack, by the
dense product or by a compiled inference pass over the test images' lit pixels."""

from __future__ import annotations

import numpy as np

from ..model import stack, tutorial
from ..model.tutorial import N_OUTPUTS
from .device_data import DeviceData
from .results import Checkpoint


def scorer(data: DeviceData, inference=None, models: int = 1):
    """``score(W)``: (number correct, sum of squared errors) on the test set, as device values,
    per model for a stack.

    With ``inference`` (a compiled inference pass) the test images' lit pixels are listed once
    per data set and a stack is scored model by model through it; otherwise by the dense product
    of ``tutorial.evaluate`` (``stack.evaluate_models`` for a stack).
    """
    xp = data.backend.xp
    if inference is None:
        # The dense product reads the scaled test images (made now, once per data set).
        test = (data.test_x, data.test_labels, data.test_y)
        if models > 1:
            return lambda W: stack.evaluate_models(W, *test, xp=xp)
        return lambda W: tutorial.evaluate(W, *test, xp=xp)
    test_lit = data.lit_pixels(inference, "test")
    inference.ready_inference(test_lit, data.test_labels, data.dtype)
    if models == 1:
        return lambda W: inference.evaluate(W, test_lit, data.test_labels)

    def score_each(W):
        # Model by model, each exactly as its own run scores it, whatever the threads of the
        # process (a BLAS product's rounding can depend on them, the compiled pass's does not).
        scores = [inference.evaluate(np.ascontiguousarray(W[:, stack.columns(m)]), test_lit,
                                     data.test_labels) for m in range(models)]
        return tuple(np.array([s[k] for s in scores]) for k in (0, 1))
    return score_each


def checkpoint(data: DeviceData, scores, seen: int) -> Checkpoint:
    """One model's point after ``seen`` images from its (correct, squared errors) scores."""
    correct, sq_errors = scores
    n = data.n_test
    return Checkpoint(seen, int(correct) / n, float(sq_errors) / (n * N_OUTPUTS))


def checkpoints(data: DeviceData, scores, seen: int, models: int) -> list[Checkpoint]:
    """One checkpoint per model, from one transfer of each score to the host."""
    if models == 1:
        return [checkpoint(data, scores, seen)]
    correct, sq_errors = (data.backend.to_host(v) for v in scores)
    return [checkpoint(data, (c, e), seen) for c, e in zip(correct, sq_errors)]
