"""The tutorial's weights as the training loop (``runner.run``) trains them: M models side by side
on the device (``model/stack.py``; M = 1: the tutorial's own run), trained over a segment by a
compiled pass or by array calls, scored at the checkpoints, and a diverged model frozen and taken
out of the stack while the others go on."""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..model import stack, tutorial
from ..model.tutorial import N_OUTPUTS
from . import divergence, runner, scoring
from .config import TrainConfig
from .device_data import DeviceData
from .kernel_choice import KernelChoice
from .results import Divergence
from .trainee import Segment, Trainee


class Rates:
    """The models' learning rates in the forms the compute paths take: a number for one model (as
    the tutorial's code has it), per column on the device for several (the array path), per
    model on the host (the fused passes). A diverged model's rate becomes zero."""

    def __init__(self, backend: Backend, alphas, dtype):
        self.backend, self.alphas, self.dtype = backend, list(alphas), dtype
        self._columns = None

    def stop(self, model: int):
        self.alphas[model] = 0.0
        self._columns = None

    def columns(self):
        """One model: its rate; several: a device vector of one rate per column."""
        if len(self.alphas) == 1:
            return self.alphas[0]
        if self._columns is None:
            self._columns = self.backend.to_device(
                np.repeat(np.asarray(self.alphas), N_OUTPUTS).astype(self.dtype))
        return self._columns


def train_segment(W, data: DeviceData, batch_size: int, segment: Segment, rates: Rates,
                  fused=None, prepared=None):
    """Train ``W`` (one model or a stack) over ``segment``, by ``fused`` or by array calls."""
    start, stop = segment.start, segment.stop
    stacked = len(rates.alphas) > 1
    if fused is not None:
        fused.train(W, prepared, data.train_labels, rates.alphas, batch_size, start, stop,
                    segment.order)
    elif batch_size > 1:
        tutorial.minibatch_steps(W, data.train_x, data.train_y, rates.columns(), batch_size,
                                 start, stop, order=segment.order, xp=data.backend.xp,
                                 step=stack.minibatch_step if stacked else tutorial.minibatch_step)
    else:
        # Per image by array calls: the rows are indexed with host integers.
        rows = (range(start, stop) if segment.host_order is None
                else segment.host_order[start:stop].tolist())
        if stacked:
            stack.per_image_steps(W, data.train_x, data.train_y, rates.columns(), rows,
                                  xp=data.backend.xp)
        else:
            tutorial.per_image_steps(W, data.train_x, data.train_y, rates.columns(), rows)


class StackTrainee(Trainee):
    """M models side by side on the device, from columns ``10 m : 10 m + 10`` of ``host_w``
    (784, 10 M), model m with learning rate ``alphas[m]``, computed as ``kernel`` says."""

    def __init__(self, data: DeviceData, config: TrainConfig, alphas, host_w,
                 kernel: KernelChoice):
        self.data, self.config, self.fused = data, config, kernel.training
        self.models, self.batch_size = len(alphas), config.batch_size
        self.alphas = list(alphas)
        self.rates = Rates(data.backend, alphas, data.dtype)
        self.W = data.backend.to_device(host_w)
        self.prepared = None
        if self.fused is not None:
            self.prepared = data.lit_pixels(self.fused, "train")
            self.fused.ready(self.prepared, data.train_labels, data.dtype, self.batch_size,
                             self.models)
        self.score_test = scoring.scorer(data, kernel.inference, self.models)
        self.frozen: dict[int, np.ndarray] = {}
        self.last_good = None
        self.start_mse = None  # per model, its test MSE at 0 images: what its bound counts from

    def train(self, segment):
        train_segment(self.W, self.data, self.batch_size, segment, self.rates, self.fused,
                      self.prepared)

    def non_finite(self, diverged) -> list[int]:
        xp, backend = self.data.backend.xp, self.data.backend
        if self.models == 1:
            finite = np.array([bool(tutorial.all_finite(self.W, xp=xp))])
        else:
            finite = backend.to_host(stack.models_finite(self.W, xp=xp)).astype(bool)
        return [int(m) for m in np.flatnonzero(~finite) if m not in diverged]

    def score(self, seen, diverged) -> list:
        points = scoring.checkpoints(self.data, self.score_test(self.W), seen, self.models)
        if self.start_mse is None:  # the first score, at 0 images (runner.run sees to it)
            self.start_mse = [point.mse for point in points]
        return [None if m in diverged else point for m, point in enumerate(points)]

    def over_bound(self, model, point) -> bool:
        # Past runner.loss_bound of its start; a NaN MSE fails the comparison too.
        return not point.mse <= runner.loss_bound(self.start_mse[model])

    def mark_good(self):
        self.last_good = _copy(self.data.backend.xp, self.W)

    def diverge(self, model, segments, seen, point) -> Divergence:
        """Freeze model ``model`` and take it out of the stack (zero weights and a zero rate keep
        its columns finite, so nothing it computes from here on can overflow). Weights that are
        no longer finite (``point`` None) are frozen at their last finite step, found by
        replaying the model alone from the last good checkpoint; finite weights whose test MSE
        passed its bound (``point``), as they are at this checkpoint."""
        alpha = self.alphas[model]
        if point is None:
            frozen, where = self._replay(model, segments)
            message = divergence.non_finite_message(where, alpha)
        else:
            frozen = self.data.backend.to_host(self.W[:, stack.columns(model)])
            where, message = divergence.over_bound(point, self.start_mse[model], seen,
                                                   self.data.dtype, alpha)
        self.frozen[model] = frozen
        self.W[:, stack.columns(model)] = 0
        self.rates.stop(model)
        return Divergence(where, seen, message)

    def _replay(self, model, segments):
        """(its weights before the step that made them non-finite, where that step was), by the
        run's own compute path, one model alone: the fused per-image pass gives the stack's
        weights bit for bit (and needs no dense copy of the images), the other paths follow the
        stack's to within rounding."""
        xp, backend = self.data.backend.xp, self.data.backend
        W = _copy(xp, self.last_good[:, stack.columns(model)])
        rates = Rates(backend, [self.alphas[model]], self.data.dtype)
        before = [W]

        def step(one):
            before[0] = _copy(xp, W)
            train_segment(W, self.data, self.batch_size, one, rates, self.fused, self.prepared)
            return not bool(tutorial.all_finite(W, xp=xp))

        one, _ = runner.replay(segments, self.batch_size, step)
        if one is None:
            return backend.to_host(before[0]), divergence.between(segments)
        name = divergence.step_name(one, self.data.n_train, self.batch_size, self.config.epochs)
        return backend.to_host(before[0]), f"at {name}"

    def host_weights(self) -> np.ndarray:
        weights = self.data.backend.to_host(self.W)
        for model, kept in self.frozen.items():
            weights[:, stack.columns(model)] = kept
        return weights


def _copy(xp, W):
    return xp.astype(W, W.dtype, copy=True)
