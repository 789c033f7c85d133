"""Training the tutorial's network: one model (``train``), or M side by side (``train_models``),
per image or by mini-batches, by a compiled pass or by array calls.

``train(data, config)`` returns a ``TrainResult`` with the accuracy curve, the time spent
training (evaluation excluded) and the final weights as a NumPy array. The loop itself, with its
checkpoints and divergence handling, is ``runner.run``; this module says how the tutorial's
weights are trained over a segment, scored and replayed.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np

from .. import kernels
from ..backend import Backend
from ..model import stack, tutorial
from ..model.tutorial import N_INPUTS, N_OUTPUTS
from . import runner
from .config import TrainConfig, default_checkpoints, shuffle_rng
from .device_data import DeviceData, device_memory_guard
from .results import Checkpoint, Divergence, ModelsRun, TrainingDiverged, TrainResult

# Above this many models side by side, `auto` trains mini-batches by the array path: the fused
# pass keeps every model's weights and gradient (64 KB each in float32) in the caches, and past
# them BLAS wins (docs/performance.md has the measurements).
FUSED_MINIBATCH_MAX_MODELS = 256


def choose_kernel(backend: Backend, config: TrainConfig, models: int = 1):
    """(name, compiled pass or None): how ``config`` trains ``models`` models on ``backend``.

    ``auto`` takes the backend's compiled pass only if it has been verified on its hardware
    (``verified``: correct before fast on what has never run), and not for mini-batches of more
    than ``FUSED_MINIBATCH_MAX_MODELS`` models; otherwise the array path. An explicit ``fused``
    takes the pass, verified or not (``kernel_note`` says which), or raises
    ``KernelUnavailable`` where the backend has none.
    """
    if config.kernel == "array" or (config.kernel == "auto" and config.batch_size > 1
                                    and models > FUSED_MINIBATCH_MAX_MODELS):
        return "array", None
    try:
        fused = kernels.training_pass(backend, config.batch_size)
    except kernels.KernelUnavailable:
        if config.kernel == "fused":
            raise
        return "array", None
    if config.kernel == "auto" and not fused.verified:
        return "array", None
    return "fused", fused


def kernel_name(backend: Backend, config: TrainConfig, models: int = 1) -> str:
    """The compute path ``train`` (``train_models`` with ``models``) takes: fused or array."""
    return choose_kernel(backend, config, models)[0]


def kernel_note(backend: Backend, config: TrainConfig, models: int = 1) -> str | None:
    """What a user should be told about the path ``config`` takes: that its compiled pass has
    not been verified on this hardware, and how to check it (only an explicit ``fused`` takes
    such a pass); None when there is nothing to say."""
    _, fused = choose_kernel(backend, config, models)
    return None if fused is None or fused.verified else fused.unverified


def _choose_evaluation(backend: Backend, kernel: str):
    """(name, compiled inference or None) for the test set at the checkpoints: fused only beside
    a fused training pass (after array mini-batches BLAS's threads still spin and take the cores
    from the compiled pass's, which then gains nothing)."""
    if kernel != "fused":
        return "array", None
    try:
        return "fused", kernels.inference_pass(backend)
    except kernels.KernelUnavailable:  # none on this backend: the dense product
        return "array", None


def check_initial_weights(weights, dtype: str) -> np.ndarray:
    """Initial weights given by a user: a finite (784, 10) real array, cast to ``dtype``."""
    weights = np.asarray(weights)
    if weights.shape != (N_INPUTS, N_OUTPUTS):
        raise ValueError(f"initial weights must have shape (784, 10), not {weights.shape}")
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise ValueError(f"initial weights must be real numbers, not {weights.dtype}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("initial weights contain NaN or infinite values")
    return weights.astype(dtype)


def train(data: DeviceData, config: TrainConfig | None = None, init_weights=None,
          progress=None, on_checkpoint=None, log=None) -> TrainResult:
    """Train the tutorial's network on ``data``.

    ``init_weights`` (a host array) replaces the seeded uniform draw. ``progress(images_seen)``
    is called after each segment, ``on_checkpoint(point)`` with each ``Checkpoint`` as soon as it
    is evaluated (so that a caller can show it before the run ends), ``log(line)`` with what a
    user should know before it starts (``kernel_note``). A run that diverges (weights no longer
    finite, or a test MSE past ``runner.loss_bound`` of its start) raises
    ``TrainingDiverged`` naming the step.
    """
    config = config or TrainConfig()
    config.validate()
    note = kernel_note(data.backend, config)
    if note and log:
        log(note)
    if init_weights is None:
        host_w = tutorial.init_weights(config.seed, data.dtype)
    else:
        host_w = check_initial_weights(init_weights, data.dtype)
    run = train_models(data, config, [config.alpha], host_w, progress=progress,
                       on_checkpoint=on_checkpoint and (lambda points: on_checkpoint(points[0])))
    if run.diverged:
        raise TrainingDiverged(run.diverged[0].message)
    return TrainResult(
        config={**asdict(config), "checkpoints": run.checkpoints, "dtype": data.dtype,
                "n_train": data.n_train, "init": "seeded" if init_weights is None else "given"},
        backend=data.backend.describe(), kernel=run.kernel, curve=run.curves[0],
        seconds=run.seconds, prepare_seconds=run.prepare_seconds,
        images_trained=run.images_trained, weights=run.weights, evaluation=run.evaluation)


def train_models(data: DeviceData, config: TrainConfig, alphas, host_w, progress=None,
                 on_checkpoint=None) -> ModelsRun:
    """Train M models side by side (``model/stack.py``): model m from columns ``10 m : 10 m + 10``
    of ``host_w`` (784, 10 M), with learning rate ``alphas[m]``; every other setting of
    ``config`` (batch size, epochs, order, checkpoints, kernel) is shared, as are all reads of
    the data. One model is the tutorial's run.

    With several, a model whose weights stop being finite is marked diverged at its step (found
    by replaying it alone from the last checkpoint), its weights frozen at the last finite step
    and taken out of the stack (zero weights, zero rate); one whose test MSE at a checkpoint is
    more than ``runner.DIVERGED_FACTOR`` times its MSE at 0 images (``runner.loss_bound``) is
    marked diverged at that checkpoint and frozen there, as it is. The others go on exactly as
    they would have: no column of the stack depends on another. ``on_checkpoint(points)`` gets
    each checkpoint's list of M points (None for diverged models).
    """
    backend = data.backend
    n = data.n_train
    if n == 0:
        raise ValueError("no training images (check --limit)")
    alphas = [float(a) for a in alphas]
    models = len(alphas)
    if host_w.shape != (N_INPUTS, N_OUTPUTS * models):
        raise ValueError(f"{models} models need weights of shape (784, {10 * models}), not "
                         f"{host_w.shape}")
    total = n * config.epochs
    asked = (config.checkpoints if config.checkpoints is not None
             else default_checkpoints(n, config.epochs))
    checkpoints = sorted({c for c in asked if c <= total} | {total})  # always the final one
    kernel, fused = choose_kernel(backend, config, models)
    evaluation, inference = _choose_evaluation(backend, kernel)

    with backend.activate(), device_memory_guard(backend, "while training", config.batch_size,
                                                 data.resident_bytes):
        # Once per run, like the upload: the lit pixels of the training and test images.
        with backend.stopwatch() as clock:
            trainee = _Stack(data, config, alphas, host_w, fused, inference)
        done = runner.run(trainee, backend, n, config.epochs, checkpoints,
                          shuffle_rng(config.seed, config.data_seed), config.shuffle,
                          progress=progress, on_checkpoint=on_checkpoint)
        weights = trainee.host_weights()
    return ModelsRun(done.curves, done.diverged, weights, kernel, evaluation, checkpoints,
                     done.seconds, clock["seconds"], total)


def trainee(data: DeviceData, config: TrainConfig, host_w):
    """The tutorial's weights (from ``host_w``, (784, 10)) as ``train`` hands them to
    ``runner.run``, with the compute path ``train`` takes (its name beside it): for a caller that
    drives the loop itself, a segment at a time (``mnist-gpu serve``). Build it inside
    ``data.backend.activate()``; ``trainee.W`` holds the weights on the device."""
    kernel, fused = choose_kernel(data.backend, config)
    inference = _choose_evaluation(data.backend, kernel)[1]
    return _Stack(data, config, [config.alpha], host_w, fused, inference), kernel


class _Rates:
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


def train_segment(W, data: DeviceData, batch_size: int, segment: runner.Segment, rates: _Rates,
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


class _Stack:
    """The tutorial's weights as ``runner.run`` trains them: M models side by side on the
    device (M = 1: the tutorial's own run)."""

    def __init__(self, data: DeviceData, config: TrainConfig, alphas, host_w, fused, inference):
        self.data, self.config, self.fused = data, config, fused
        self.models, self.batch_size = len(alphas), config.batch_size
        self.alphas = list(alphas)
        self.rates = _Rates(data.backend, alphas, data.dtype)
        self.W = data.backend.to_device(host_w)
        self.prepared = None
        if fused is not None:
            self.prepared = data.lit_pixels(fused, "train")
            fused.ready(self.prepared, data.train_labels, data.dtype, self.batch_size,
                        self.models)
        self.score_test = _scorer(data, inference, self.models)
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
        points = _checkpoints(self.data, self.score_test(self.W), seen, self.models)
        if self.start_mse is None:  # the first score, at 0 images (runner.run sees to it)
            self.start_mse = [point.mse for point in points]
        return [None if m in diverged else point for m, point in enumerate(points)]

    def over_bound(self, model, point) -> bool:
        # Past runner.loss_bound of its start; a NaN MSE fails the comparison too.
        return not point.mse <= runner.loss_bound(self.start_mse[model])

    def diverge(self, model, segments, seen, point) -> Divergence:
        """Freeze model ``model`` and take it out of the stack (zero weights and a zero rate keep
        its columns finite, so nothing it computes from here on can overflow). Weights that are
        no longer finite (``point`` None) are frozen at their last finite step, found by
        replaying the model alone from the last good checkpoint; finite weights whose test MSE
        passed its bound (``point``), as they are at this checkpoint."""
        alpha = self.alphas[model]
        if point is None:
            frozen, where = self._replay(model, segments)
            message = (f"the weights became NaN or infinite {where} (alpha = {alpha}); try a "
                       "smaller --alpha")
        else:
            frozen = self.data.backend.to_host(self.W[:, stack.columns(model)])
            start = self.start_mse[model]
            over = (f"over {runner.DIVERGED_FACTOR:,g} times its {start:,.4g} at 0 images"
                    if start >= 1 else f"over {runner.loss_bound(start):,g}")
            if math.isfinite(point.mse):
                mse, went = f"{point.mse:.3g}", f"reached {point.mse:.3g}"
            elif math.isnan(point.mse):
                mse, went = "NaN", "became NaN"
            else:
                mse = f"past the {self.data.dtype} range"
                went = f"overflowed the {self.data.dtype} range"
            where = f"at {images_seen(seen)} (test MSE {mse}, {over})"
            message = (f"the test MSE {went} at {images_seen(seen)}, {over}: the weights blew "
                       f"up (alpha = {alpha}); try a smaller --alpha")
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
        rates = _Rates(backend, [self.alphas[model]], self.data.dtype)
        before = [W]

        def step(one):
            before[0] = _copy(xp, W)
            train_segment(W, self.data, self.batch_size, one, rates, self.fused, self.prepared)
            return not bool(tutorial.all_finite(W, xp=xp))

        one, _ = runner.replay(segments, self.batch_size, step)
        if one is not None:
            return backend.to_host(before[0]), f"at {self._step_name(one)}"
        first, last = segments[0], segments[-1]
        return backend.to_host(before[0]), (f"between images {first.offset + first.start:,} and "
                                            f"{last.offset + last.stop:,}")

    def _step_name(self, step: runner.Segment) -> str:
        """"step 6 of epoch 1 (images 501 to 600 of the epoch; 600 seen)": a step is one update,
        of one image or of one batch."""
        n, b = self.data.n_train, self.batch_size
        number = step.start // b + 1
        where = (f"image {step.start + 1:,}" if b == 1
                 else f"images {step.start + 1:,} to {step.stop:,}")
        of_epoch = f" of epoch {step.offset // n + 1}" if self.config.epochs > 1 else ""
        return (f"step {number:,}{of_epoch} ({where} of the epoch; "
                f"{images_seen(step.offset + step.stop)})")

    def mark_good(self):
        self.last_good = _copy(self.data.backend.xp, self.W)

    def host_weights(self) -> np.ndarray:
        weights = self.data.backend.to_host(self.W)
        for model, kept in self.frozen.items():
            weights[:, stack.columns(model)] = kept
        return weights


def evaluate_weights(data: DeviceData, weights) -> Checkpoint:
    """Test-set accuracy and MSE of host ``weights`` (784, 10), computed on ``data``'s device."""
    host_w = check_initial_weights(weights, data.dtype)
    with data.backend.activate():
        return _checkpoint(data, _scorer(data)(data.backend.to_device(host_w)), 0)


def _scorer(data: DeviceData, inference=None, models: int = 1):
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


def _checkpoint(data: DeviceData, scores, seen: int) -> Checkpoint:
    correct, sq_errors = scores
    n = data.n_test
    return Checkpoint(seen, int(correct) / n, float(sq_errors) / (n * N_OUTPUTS))


def _checkpoints(data: DeviceData, scores, seen: int, models: int) -> list[Checkpoint]:
    """One checkpoint per model, from one transfer of each score to the host."""
    if models == 1:
        return [_checkpoint(data, scores, seen)]
    correct, sq_errors = (data.backend.to_host(v) for v in scores)
    return [_checkpoint(data, (c, e), seen) for c, e in zip(correct, sq_errors)]


def _copy(xp, W):
    return xp.astype(W, W.dtype, copy=True)


def images_seen(count: int) -> str:
    """"1 image seen", "1,000 images seen"."""
    return f"{count:,} image{'' if count == 1 else 's'} seen"
