"""Training the tutorial's network: one model (``train``), or M side by side (``train_models``),
per image or by mini-batches, by a compiled pass or by array calls; and scoring given weights
(``evaluate_weights``).

``train(data, config)`` returns a ``TrainResult`` with the accuracy curve, the time spent
training (evaluation excluded) and the final weights as a NumPy array. The loop itself, with its
checkpoints and divergence handling, is ``runner.run``; what it trains is the stack of
``stack_trainee.py``, computed as ``kernel_choice.py`` chose once for the run, scored by
``scoring.py``.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..model import tutorial
from ..model.tutorial import N_INPUTS, N_OUTPUTS
from . import runner, scoring
from .config import TrainConfig, default_checkpoints, shuffle_rng
from .device_data import DeviceData, device_memory_guard
from .kernel_choice import KernelChoice, choose_kernel
from .results import Checkpoint, ModelsRun, TrainingDiverged, TrainResult
from .stack_trainee import StackTrainee


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
          progress=None, on_checkpoint=None, log=None,
          kernel: KernelChoice | None = None) -> TrainResult:
    """Train the tutorial's network on ``data``.

    ``init_weights`` (a host array) replaces the seeded uniform draw. ``progress(images_seen)``
    is called after each segment, ``on_checkpoint(point)`` with each ``Checkpoint`` as soon as it
    is evaluated (so that a caller can show it before the run ends), ``log(line)`` with what a
    user should know before it starts (the kernel's ``note``). ``kernel``: the compute path
    already chosen for this run (``choose_kernel``), else chosen here. A run that diverges
    (weights no longer finite, or a test MSE past ``runner.loss_bound`` of its start) raises
    ``TrainingDiverged`` naming the step.
    """
    config = config or TrainConfig()
    config.validate()
    kernel = kernel or choose_kernel(data.backend, config)
    if kernel.note and log:
        log(kernel.note)
    if init_weights is None:
        host_w = tutorial.init_weights(config.seed, data.dtype)
    else:
        host_w = check_initial_weights(init_weights, data.dtype)
    run = train_models(data, config, [config.alpha], host_w, progress=progress,
                       on_checkpoint=on_checkpoint and (lambda points: on_checkpoint(points[0])),
                       kernel=kernel)
    if run.diverged:
        raise TrainingDiverged(run.diverged[0].message)
    return TrainResult(
        config={**asdict(config), "checkpoints": run.checkpoints, "dtype": data.dtype,
                "n_train": data.n_train, "init": "seeded" if init_weights is None else "given"},
        backend=data.backend.describe(), kernel=run.kernel, curve=run.curves[0],
        seconds=run.seconds, prepare_seconds=run.prepare_seconds,
        images_trained=run.images_trained, weights=run.weights, evaluation=run.evaluation)


def train_models(data: DeviceData, config: TrainConfig, alphas, host_w, progress=None,
                 on_checkpoint=None, kernel: KernelChoice | None = None) -> ModelsRun:
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
    each checkpoint's list of M points (None for diverged models). ``kernel``: the compute path
    already chosen for the run (``choose_kernel``), else chosen here for M models.
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
    kernel = kernel or choose_kernel(backend, config, models)

    with backend.activate(), device_memory_guard(backend, "while training", config.batch_size,
                                                 data.resident_bytes):
        # Once per run, like the upload: the lit pixels of the training and test images.
        with backend.stopwatch() as clock:
            trainee = StackTrainee(data, config, alphas, host_w, kernel)
        done = runner.run(trainee, backend, n, config.epochs, checkpoints,
                          shuffle_rng(config.seed, config.data_seed), config.shuffle,
                          progress=progress, on_checkpoint=on_checkpoint)
        weights = trainee.host_weights()
    return ModelsRun(done.curves, done.diverged, weights, kernel.name, kernel.evaluation,
                     checkpoints, done.seconds, clock["seconds"], total)


def evaluate_weights(data: DeviceData, weights) -> Checkpoint:
    """Test-set accuracy and MSE of host ``weights`` (784, 10), computed on ``data``'s device."""
    host_w = check_initial_weights(weights, data.dtype)
    with data.backend.activate():
        return scoring.checkpoint(data, scoring.scorer(data)(data.backend.to_device(host_w)), 0)


def trainee(data: DeviceData, config: TrainConfig, host_w):
    """The tutorial's weights (from ``host_w``, (784, 10)) as ``train`` hands them to
    ``runner.run``, with the compute path ``train`` takes (its name beside it): for a caller that
    drives the loop itself, a segment at a time (``mnist-gpu serve``). Build it inside
    ``data.backend.activate()``; ``trainee.W`` holds the weights on the device."""
    kernel = choose_kernel(data.backend, config)
    return StackTrainee(data, config, [config.alpha], host_w, kernel), kernel.name
