"""The training loop of the tutorial's network: data on the device once, segments between
checkpoints, evaluation at each checkpoint, and the only host-device synchronisations there.

``train(data, config)`` runs per-image training (``batch_size == 1``, the tutorial) or mini-batch
training, over ``epochs`` passes, and returns a ``TrainResult`` with the accuracy curve, the time
spent training (evaluation excluded) and the final weights as a NumPy array.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import numpy as np

from . import linear
from .backend import Backend, BackendUnavailable
from .data import MNIST, N_CLASSES

TUTORIAL_CHECKPOINTS = (0, 100, 1_000, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000)
DTYPES = ("float32", "float64")
KERNELS = ("auto", "fused", "array")


class TrainingDiverged(RuntimeError):
    """The weights became NaN or infinite; the message names the step."""


class DeviceOutOfMemory(RuntimeError):
    """The device ran out of memory; the message names the batch size and the memory involved."""


@contextlib.contextmanager
def device_memory_guard(backend: Backend, what: str, batch_size: int | None = None,
                        resident_bytes: int | None = None):
    """Turn the library's out-of-memory error into one message a user can act on."""
    try:
        yield
    except backend.out_of_memory_errors() as err:
        detail = str(err).strip() or type(err).__name__
        parts = [f"the {backend.name} device ran out of memory {what}"]
        if batch_size is not None:
            parts.append(f"in batches of {batch_size:,} images")
        if resident_bytes is not None:
            parts.append(f"with {resident_bytes / 2**20:,.0f} MiB of data already on it")
        advice = "try a smaller --batch-size" if batch_size and batch_size > 1 else (
            "try another --device or --backend numpy")
        raise DeviceOutOfMemory(f"{' '.join(parts)} ({detail}); {advice}") from None


@dataclass
class DeviceData:
    """MNIST uploaded once to a backend's device: scaled images, labels and one-hot targets."""

    backend: Backend
    dtype: str
    train_x: object
    train_y: object
    train_labels: object
    test_x: object
    test_y: object
    test_labels: object
    # What the fused passes derive from the images (their lit pixels), kept with the data so that
    # every run on it lists them once: a sweep's chunks, the seeds of `curve`, a cluster worker.
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    def lit_pixels(self, fused, which: str):
        """The lit pixels of the ``"train"`` or ``"test"`` images as ``fused`` lists them."""
        key = (type(fused).__name__, which)
        if key not in self.derived:
            self.derived[key] = fused.prepare(self.train_x if which == "train" else self.test_x)
        return self.derived[key]

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def resident_bytes(self) -> int:
        """Device memory held by the uploaded arrays (images, targets, labels)."""
        item = 4 if self.dtype == "float32" else 8
        rows = self.n_train + self.n_test
        return rows * (linear.N_INPUTS + linear.N_OUTPUTS) * item + rows


def to_device_data(backend: Backend, mnist: MNIST, dtype: str = "float32",
                   limit: int | None = None) -> DeviceData:
    """Upload the uint8 arrays once; scale and one-hot encode them there, in ``dtype``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    xp = backend.xp
    device_dtype = getattr(xp, dtype)
    train_images, train_labels = mnist.train_images, mnist.train_labels
    if limit is not None:
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    classes = backend.to_device(np.arange(N_CLASSES, dtype=np.uint8))

    def upload(images, labels):
        x = linear.scale_images(backend.to_device(images), device_dtype, xp=xp)
        labels = backend.to_device(labels)
        return x, linear.one_hot(labels, classes, device_dtype, xp=xp), labels

    with device_memory_guard(backend, f"uploading {len(train_images):,} training images"):
        train_x, train_y, train_labels = upload(train_images, train_labels)
        test_x, test_y, test_labels = upload(mnist.test_images, mnist.test_labels)
    return DeviceData(backend, dtype, train_x, train_y, train_labels, test_x, test_y, test_labels)


@dataclass
class TrainConfig:
    alpha: float = 0.01
    batch_size: int = 1
    epochs: int = 1
    seed: int = 0
    shuffle: bool = False
    checkpoints: tuple[int, ...] | None = None  # None: the tutorial's, or every epoch's end
    # Seeds the shuffling apart from the weights (None: ``seed`` does both). A sweep gives all its
    # models one, so that they see the same images in the same order.
    data_seed: int | None = None
    # "fused": compiled training, per image or by mini-batches (and the checkpoints' evaluation,
    # where the backend has it); "array": xp calls throughout; "auto": fused where available.
    kernel: str = "auto"

    def validate(self):
        if not (self.alpha > 0 and np.isfinite(self.alpha)):
            raise ValueError(f"alpha must be a positive number, not {self.alpha}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, not {self.epochs}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {self.kernel!r}")
        if self.checkpoints is not None and any(c < 0 for c in self.checkpoints):
            raise ValueError("checkpoints must be non-negative image counts")


@dataclass
class Checkpoint:
    images_seen: int
    accuracy: float
    mse: float


class _ResultSummary:
    """What every training result reports, derived from its curve, images and seconds."""

    @property
    def final_accuracy(self) -> float:
        return self.curve[-1].accuracy

    @property
    def images_per_second(self) -> float:
        return self.images_trained / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        return {
            "config": self.config,
            "backend": self.backend,
            "kernel": self.kernel,
            "curve": [asdict(c) for c in self.curve],
            "final_accuracy": self.final_accuracy,
            "seconds": self.seconds,
            "images_trained": self.images_trained,
            "images_per_second": self.images_per_second,
        }


@dataclass
class TrainResult(_ResultSummary):
    config: dict
    backend: dict
    kernel: str
    curve: list[Checkpoint]
    seconds: float  # training only: evaluation at the checkpoints is not counted
    prepare_seconds: float  # the fused kernels' one-off listing of lit pixels (0 without them)
    images_trained: int
    weights: np.ndarray = field(repr=False)
    evaluation: str = "array"  # how the checkpoints' test-set figures were computed

    def to_json(self) -> dict:
        return {**super().to_json(), "prepare_seconds": self.prepare_seconds,
                "evaluation": self.evaluation}


def check_initial_weights(weights, dtype: str) -> np.ndarray:
    """Initial weights given by a user: a finite (784, 10) real array, cast to ``dtype``."""
    weights = np.asarray(weights)
    if weights.shape != (linear.N_INPUTS, linear.N_OUTPUTS):
        raise ValueError(
            f"initial weights must have shape (784, 10), not {weights.shape}"
        )
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise ValueError(f"initial weights must be real numbers, not {weights.dtype}")
    if not np.all(np.isfinite(weights)):
        raise ValueError("initial weights contain NaN or infinite values")
    return weights.astype(dtype)


def default_checkpoints(n_train: int, epochs: int) -> tuple[int, ...]:
    if epochs == 1:
        return tuple(c for c in TUTORIAL_CHECKPOINTS if c < n_train) + (n_train,)
    return (0,) + tuple(n_train * (e + 1) for e in range(epochs))


def _segment_stops(n: int, offset: int, checkpoints, unit: int) -> list[int]:
    """Where to pause inside one epoch: at each checkpoint, rounded up to the end of its batch."""
    stops = {n}
    for c in checkpoints:
        local = c - offset
        if 0 < local < n:
            stops.add(min(n, -(-local // unit) * unit))
    return sorted(stops)


# Above this many models side by side, `auto` trains mini-batches by the array path: the fused
# pass keeps every model's weights and gradient (64 KB each in float32) in the caches, and past
# them BLAS wins (measured on 2 cores at B=1024: 128 models 9.9 M model-images/s fused against
# 5.3 M by BLAS; 1,024 models 3.2 M fused against 5.4 M).
FUSED_MINIBATCH_MAX_MODELS = 256


def _choose_kernel(backend: Backend, config: TrainConfig, models: int = 1):
    """(name, fused pass or None): the compiled pass for per-image or mini-batch training."""
    if config.kernel == "array" or (config.kernel == "auto" and config.batch_size > 1
                                    and models > FUSED_MINIBATCH_MAX_MODELS):
        return "array", None
    try:
        if config.batch_size == 1:
            return "fused", backend.fused_per_image()
        return "fused", backend.fused_minibatch()
    except BackendUnavailable:
        if config.kernel == "fused":
            raise
        return "array", None


def kernel_name(backend: Backend, config: TrainConfig, models: int = 1) -> str:
    """The compute path ``train`` (``train_models`` with ``models``) takes for ``config`` on
    ``backend``: fused or array."""
    return _choose_kernel(backend, config, models)[0]


def _choose_evaluation(backend: Backend, kernel: str):
    """(name, fused inference or None) for the test set at the checkpoints.

    Fused only beside a fused training pass. After an epoch of array mini-batches OpenBLAS's
    threads still spin, waiting for more work, and take the cores from the fused pass's threads:
    measured here, it then took 1.9 to 8.2 ms (median 3.4) against the dense product's steady
    3.8 ms, no gain to pay for listing the test set's lit pixels.
    """
    if kernel != "fused":
        return "array", None
    try:
        return "fused", backend.fused_inference()
    except BackendUnavailable:  # none on this backend: the dense product
        return "array", None


def train(data: DeviceData, config: TrainConfig | None = None, init_weights=None,
          progress=None, on_checkpoint=None) -> TrainResult:
    """Train the tutorial's network on ``data`` (see the module docstring).

    ``init_weights`` (a host array) replaces the seeded uniform draw. ``progress(images_seen)``
    is called after each segment, ``on_checkpoint(point)`` with each ``Checkpoint`` as soon as it
    is evaluated (so that a caller can show it before the run ends). Weights that stop being
    finite raise ``TrainingDiverged`` naming the step.
    """
    config = config or TrainConfig()
    config.validate()
    if init_weights is None:
        host_w = linear.init_weights(config.seed, data.dtype)
    else:
        host_w = check_initial_weights(init_weights, data.dtype)
    run = train_models(data, config, [config.alpha], host_w, progress=progress,
                       on_checkpoint=on_checkpoint and (lambda points: on_checkpoint(points[0])))
    if run.diverged:
        raise TrainingDiverged(run.diverged[0].message)
    return TrainResult(
        config={**asdict(config), "checkpoints": run.checkpoints, "dtype": data.dtype,
                "n_train": data.n_train, "init": "seeded" if init_weights is None else "given"},
        backend=data.backend.describe(),
        kernel=run.kernel,
        curve=run.curves[0],
        seconds=run.seconds,
        prepare_seconds=run.prepare_seconds,
        images_trained=run.images_trained,
        weights=run.weights,
        evaluation=run.evaluation,
    )


@dataclass
class Divergence:
    """Where a model of a stack diverged: its weights are frozen at the last finite step."""

    where: str  # "at step 6 (images 501 to 600 of the epoch; 600 images seen)"
    images_seen: int  # when it was found: the checkpoint after the step
    alpha: float

    @property
    def message(self) -> str:
        return (f"the weights became NaN or infinite {self.where} (alpha = {self.alpha}); "
                "try a smaller --alpha")


@dataclass
class ModelsRun:
    """What ``train_models`` returns: per model its curve (it stops where the model diverged)
    and its divergence (or none), and the stack's shared figures."""

    curves: list[list[Checkpoint]]
    diverged: dict[int, Divergence]
    weights: np.ndarray = field(repr=False)  # host (784, 10 M), diverged models frozen
    kernel: str = "array"
    evaluation: str = "array"
    checkpoints: list[int] = field(default_factory=list)
    seconds: float = 0.0
    prepare_seconds: float = 0.0
    images_trained: int = 0


def train_models(data: DeviceData, config: TrainConfig, alphas, host_w, progress=None,
                 on_checkpoint=None) -> ModelsRun:
    """Train M models side by side (see ``linear``): model m from columns ``10 m : 10 m + 10`` of
    ``host_w`` (784, 10 M), with learning rate ``alphas[m]``; every other setting of ``config``
    (batch size, epochs, order, checkpoints, kernel) is shared, as are all reads of the data.

    One model is the tutorial's run. With several, a model whose weights stop being finite is
    marked diverged at its step (found by replaying it alone from the last checkpoint), its
    weights frozen at the last finite step and taken out of the stack (zero weights, zero rate),
    and the others go on exactly as they would have: no column of the stack depends on another.
    ``on_checkpoint(points)`` gets each checkpoint's list of M points (None for diverged models).
    """
    backend, xp = data.backend, data.backend.xp
    n = data.n_train
    if n == 0:
        raise ValueError("no training images (check --limit)")
    alphas = [float(a) for a in alphas]
    models = len(alphas)
    if host_w.shape != (linear.N_INPUTS, linear.N_OUTPUTS * models):
        raise ValueError(f"{models} models need weights of shape (784, {10 * models}), not "
                         f"{host_w.shape}")
    total = n * config.epochs
    asked = (config.checkpoints if config.checkpoints is not None
             else default_checkpoints(n, config.epochs))
    checkpoints = sorted({c for c in asked if c <= total} | {total})  # always the final one
    kernel_name, fused = _choose_kernel(backend, config, models)
    evaluation, inference = _choose_evaluation(backend, kernel_name)
    data_seed = config.seed if config.data_seed is None else config.data_seed
    shuffle_rng = np.random.default_rng([data_seed, 1])  # a stream apart from the weights'
    unit = config.batch_size
    rates = _Rates(backend, alphas, data.dtype)
    curves = [[] for _ in range(models)]
    diverged: dict[int, Divergence] = {}
    frozen: dict[int, np.ndarray] = {}

    with backend.activate(), device_memory_guard(backend, "while training", config.batch_size,
                                                 data.resident_bytes):
        W = backend.to_device(host_w)
        # Once per run, like the upload: the lit pixels of the training and test images.
        with backend.stopwatch() as clock:
            prepared = data.lit_pixels(fused, "train") if fused is not None else None
            score = _scorer(data, inference, models)
        prepare_seconds = clock["seconds"]
        seconds = 0.0

        def reached(seen):
            points = [None if m in diverged else point
                      for m, point in enumerate(_checkpoints(data, score(W), seen, models))]
            for curve, point in zip(curves, points):
                if point is not None:
                    curve.append(point)
            if on_checkpoint:
                on_checkpoint(points)

        if checkpoints[0] == 0:
            reached(0)
        # What a failed checkpoint replays, one step at a time, to name the step that diverged:
        # the weights at the last good checkpoint and the segments run since.
        last_good, since_good = _copy(xp, W), []
        for epoch in range(config.epochs):
            host_order = shuffle_rng.permutation(n) if config.shuffle else None
            # The permutation is drawn on the host (identical on every backend) and uploaded once
            # per epoch; per-image array training indexes with host integers instead.
            order = backend.to_device(host_order) if host_order is not None else None
            start = 0
            for stop in _segment_stops(n, epoch * n, checkpoints, unit):
                segment = _Segment(epoch * n, start, stop, host_order, order)
                with backend.stopwatch() as clock:
                    _run_segment(W, data, config, segment, rates, fused, prepared)
                seconds += clock["seconds"]
                since_good.append(segment)
                seen = epoch * n + stop
                if any(seen - (stop - start) < c <= seen for c in checkpoints):
                    # A checkpoint: the one place where values come back to the host.
                    finite = _finite_models(W, models, backend)
                    for m in np.flatnonzero(~finite):
                        if m in diverged:
                            continue
                        frozen[m], where = _replay_model(last_good, since_good, data, config,
                                                         m, alphas[m])
                        diverged[m] = Divergence(where, seen, alphas[m])
                        # Out of the stack: zero weights and a zero rate keep its columns
                        # finite, so nothing it computes from here on can overflow.
                        W[:, 10 * m:10 * m + 10] = 0
                        rates.stop(m)
                    if models == 1 and diverged:
                        break
                    reached(seen)
                    last_good, since_good = _copy(xp, W), []
                if progress:
                    progress(seen)
                start = stop
            if models == 1 and diverged:
                break
        weights = backend.to_host(W)
    for m, kept in frozen.items():
        weights[:, 10 * m:10 * m + 10] = kept
    return ModelsRun(curves, diverged, weights, kernel_name, evaluation, checkpoints, seconds,
                     prepare_seconds, total)


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

    @property
    def single(self) -> bool:
        return len(self.alphas) == 1

    def columns(self):
        """One model: its rate; several: a device vector of one rate per column."""
        if self.single:
            return self.alphas[0]
        if self._columns is None:
            self._columns = self.backend.to_device(
                np.repeat(np.asarray(self.alphas), linear.N_OUTPUTS).astype(self.dtype))
        return self._columns


@dataclass(frozen=True)
class _Segment:
    """Positions ``start:stop`` of the epoch that begins after ``offset`` images."""

    offset: int
    start: int
    stop: int
    host_order: np.ndarray | None
    order: object  # the same permutation on the device, or None for file order


def _run_segment(W, data, config, segment, rates: _Rates, fused=None, prepared=None):
    xp = data.backend.xp
    start, stop = segment.start, segment.stop
    if fused is not None and not rates.single:
        fused.run_models(W, prepared, data.train_labels, rates.alphas, config.batch_size,
                         start, stop, segment.order)
    elif config.batch_size > 1 and fused is not None:
        fused.run_minibatch(W, prepared, data.train_labels, rates.alphas[0], config.batch_size,
                            start, stop, segment.order)
    elif config.batch_size > 1:
        linear.minibatch_steps(W, data.train_x, data.train_y, rates.columns(), config.batch_size,
                               start, stop, order=segment.order, xp=xp)
    elif fused is not None:
        fused.run(W, prepared, data.train_labels, rates.alphas[0], start, stop, segment.order)
    else:
        rows = (range(start, stop) if segment.host_order is None
                else segment.host_order[start:stop].tolist())
        linear.per_image_steps(W, data.train_x, data.train_y, rates.columns(), rows, xp=xp)


def evaluate_weights(data: DeviceData, weights) -> Checkpoint:
    """Test-set accuracy and MSE of host ``weights`` (784, 10), computed on ``data``'s device."""
    host_w = check_initial_weights(weights, data.dtype)
    with data.backend.activate():
        return _checkpoint(data, _scorer(data)(data.backend.to_device(host_w)), 0)


def _scorer(data: DeviceData, inference=None, models: int = 1):
    """``score(W)``: (number correct, sum of squared errors) on the test set, as device values,
    per model for a stack.

    With ``inference`` (a backend's fused inference) the test images' lit pixels are listed once
    per data set and a stack is scored model by model through it; otherwise by the dense product
    of ``linear.evaluate`` (``evaluate_models`` for a stack).
    """
    xp = data.backend.xp
    if inference is None and models > 1:
        return lambda W: linear.evaluate_models(W, data.test_x, data.test_labels, data.test_y,
                                                xp=xp)
    if inference is None:
        return lambda W: linear.evaluate(W, data.test_x, data.test_labels, data.test_y, xp=xp)
    test_lit = data.lit_pixels(inference, "test")
    if models == 1:
        return lambda W: inference.evaluate(W, test_lit, data.test_labels)

    def score_each(W):
        # Model by model, each exactly as its own run scores it, whatever the threads of the
        # process (a BLAS product's rounding can depend on them, the compiled pass's does not).
        width = linear.N_OUTPUTS
        scores = [inference.evaluate(np.ascontiguousarray(W[:, width * m:width * (m + 1)]),
                                     test_lit, data.test_labels) for m in range(models)]
        return tuple(np.array([s[k] for s in scores]) for k in (0, 1))
    return score_each


def _checkpoint(data: DeviceData, scores, seen: int) -> Checkpoint:
    correct, sq_errors = scores
    n = data.n_test
    return Checkpoint(seen, int(correct) / n, float(sq_errors) / (n * linear.N_OUTPUTS))


def _checkpoints(data: DeviceData, scores, seen: int, models: int) -> list[Checkpoint]:
    """One checkpoint per model, from one transfer of each score to the host."""
    if models == 1:
        return [_checkpoint(data, scores, seen)]
    correct, sq_errors = (data.backend.to_host(v) for v in scores)
    return [_checkpoint(data, (c, e), seen) for c, e in zip(correct, sq_errors)]


def _finite_models(W, models: int, backend: Backend) -> np.ndarray:
    """Per model, whether its weights are all finite (brought back to the host)."""
    xp = backend.xp
    if models == 1:
        return np.array([bool(linear.all_finite(W, xp=xp))])
    return backend.to_host(linear.models_finite(W, xp=xp)).astype(bool)


def _copy(xp, W):
    return xp.astype(W, W.dtype, copy=True)


def _replay_model(last_good, segments, data, config, model: int, alpha: float):
    """Replay ``segments`` for one model alone, one step at a time, from the last good weights:
    (its weights before the step that made them non-finite, where that step was).

    Only reached after a failure, so its per-step synchronisation costs a good run nothing. The
    replay uses the array path, which follows the fused kernels to within rounding.
    """
    xp = data.backend.xp
    W = _copy(xp, last_good[:, 10 * model:10 * model + 10])
    rates = _Rates(data.backend, [alpha], data.dtype)
    before = W
    for segment in segments:
        for s in range(segment.start, segment.stop, config.batch_size):
            step = _Segment(segment.offset, s, min(s + config.batch_size, segment.stop),
                            segment.host_order, segment.order)
            before = _copy(xp, W)
            _run_segment(W, data, config, step, rates)
            if not bool(linear.all_finite(W, xp=xp)):
                return data.backend.to_host(before), f"at {_step_name(step, data, config)}"
    first, last = segments[0], segments[-1]
    return data.backend.to_host(before), (f"between images {first.offset + first.start:,} and "
                                          f"{last.offset + last.stop:,}")


def _step_name(step: _Segment, data: DeviceData, config: TrainConfig) -> str:
    """"step 6 of epoch 1 (images 501 to 600 of the epoch; 600 seen)": a step is one update,
    of one image or of one batch."""
    n, b = data.n_train, config.batch_size
    epoch = step.offset // n + 1
    number = step.start // b + 1
    where = (f"image {step.start + 1:,}" if b == 1
             else f"images {step.start + 1:,} to {step.stop:,}")
    of_epoch = f" of epoch {epoch}" if config.epochs > 1 else ""
    return (f"step {number:,}{of_epoch} ({where} of the epoch; {step.offset + step.stop:,} "
            "images seen)")
