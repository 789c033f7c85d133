"""What a training run returns: its accuracy curve, its timing and its final weights, on the
host. A result and its curve show themselves as tables (as text, and as HTML in a notebook)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..io.display import Table


class TrainingDiverged(RuntimeError):
    """The weights became NaN or infinite, or the loss blew up; the message names the step."""


@dataclass
class Checkpoint:
    images_seen: int
    accuracy: float
    mse: float  # the test loss per image (the tutorial's: squared error per output)


class Curve(list):
    """A run's checkpoints, in order: a list of ``Checkpoint`` that shows itself as a table.

    ``loss`` names what each point's ``mse`` holds (``"MSE"``, the tutorial's squared error, or
    ``"cross-entropy"``), for the table's header only.
    """

    def __init__(self, points=(), loss: str = "MSE"):
        super().__init__(points)
        self.loss = loss

    @property
    def images_seen(self) -> list[int]:
        return [point.images_seen for point in self]

    @property
    def accuracies(self) -> list[float]:
        return [point.accuracy for point in self]

    def table(self, title: str = "", notes=()) -> Table:
        rows = [(f"{p.images_seen:,}", f"{p.accuracy:.2%}", f"{p.mse:.4f}") for p in self]
        return Table(title, ("images seen", "test accuracy", f"test {self.loss}"), rows,
                     list(notes))

    def __repr__(self) -> str:
        return self.table().text()

    def _repr_html_(self) -> str:
        return self.table().html()


# The JSON name of a curve's test loss, by the loss trained (``Checkpoint.mse`` holds either).
LOSS_KEYS = {"mse": "mse", "ce": "cross_entropy"}


def curve_json(curve, loss: str = "mse") -> list[dict]:
    """A curve's checkpoints as JSON, the test loss per image under its own name: ``mse`` (the
    tutorial's squared error, summed over the outputs) or ``cross_entropy``."""
    key = LOSS_KEYS[loss]
    return [{"images_seen": c.images_seen, "accuracy": c.accuracy, key: c.mse} for c in curve]


class ResultSummary:
    """What every training result reports, derived from its curve, images and seconds, and how
    it shows itself: its settings, the curve as a table, the time and the final accuracy."""

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

    def describe(self) -> str:
        """One line: the network, how it was trained, and where."""
        raise NotImplementedError

    def table(self) -> Table:
        return self.curve.table(self.describe(), [
            f"trained {self.images_trained:,} images in {self.seconds:.3f} s "
            f"({self.images_per_second:,.0f} images/s); final test accuracy "
            f"{self.final_accuracy:.2%}"])

    def __repr__(self) -> str:
        return self.table().text()

    def _repr_html_(self) -> str:
        return self.table().html()


def ran_on(backend: dict) -> str:
    """The library and the device a run used, as in "numpy on cpu"."""
    return f"{backend.get('backend')} on {backend.get('gpu') or backend.get('device', '?')}"


@dataclass(repr=False)
class TrainResult(ResultSummary):
    config: dict
    backend: dict
    kernel: str
    curve: Curve  # a list of Checkpoint
    seconds: float  # training only: evaluation at the checkpoints is not counted
    prepare_seconds: float  # the fused kernels' one-off listing of lit pixels (0 without them)
    images_trained: int
    weights: np.ndarray = field(repr=False)
    evaluation: str = "array"  # how the checkpoints' test-set figures were computed

    def __post_init__(self):
        self.curve = Curve(self.curve, "MSE")

    def to_json(self) -> dict:
        return {**super().to_json(), "prepare_seconds": self.prepare_seconds,
                "evaluation": self.evaluation}

    def describe(self) -> str:
        cfg = self.config
        mode = ("per-image" if cfg["batch_size"] == 1
                else f"mini-batches of {cfg['batch_size']}")
        return (f"784-10, the tutorial: {mode} ({self.kernel} kernel), alpha {cfg['alpha']}, "
                f"{_epochs(cfg)}, seed {cfg['seed']}{_shuffled(cfg)}; {ran_on(self.backend)}, "
                f"{cfg['dtype']}")


@dataclass(repr=False)
class MLPResult(ResultSummary):
    config: dict
    backend: dict
    curve: Curve  # after each epoch; ``mse`` holds the mean test loss per image
    seconds: float
    images_trained: int
    params: list = field(repr=False)  # host (W, b) per layer
    kernel: str = "array"  # mini-batches always run as array calls

    def __post_init__(self):
        loss = (self.config.get("net") or {}).get("loss")
        self.curve = Curve(self.curve, "cross-entropy" if loss == "ce" else "MSE")

    def describe(self) -> str:
        cfg = self.config
        return (f"{cfg.get('architecture', 'a network')}: mini-batches of {cfg['batch_size']}, "
                f"{cfg.get('rate', 'lr ' + str(cfg['lr']))}, {_epochs(cfg)}, "
                f"seed {cfg['seed']}{_shuffled(cfg)}; "
                f"{ran_on(self.backend)}, {cfg['dtype']}")

    def to_json(self) -> dict:
        # The keys of the tutorial's result, its test loss named for what it is; a deeper
        # network lists no pixels before training, and evaluates by array calls.
        return {**super().to_json(), "curve": curve_json(self.curve, self.config["net"]["loss"]),
                "prepare_seconds": 0.0, "evaluation": "array"}


def _epochs(cfg: dict) -> str:
    return f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''}"


def _shuffled(cfg: dict) -> str:
    return ", shuffled" if cfg.get("shuffle") else ""


@dataclass
class Divergence:
    """Where a model of a stack diverged: its weights are frozen at the last finite step."""

    where: str  # "at step 6 (images 501 to 600 of the epoch; 600 images seen)"
    images_seen: int  # when it was found: the checkpoint after the step
    message: str  # the whole story, for a run of one model: where, why, and what to try


@dataclass
class ModelsRun:
    """Models trained side by side: per model its curve (it stops where the model diverged) and
    its divergence (or none), and the stack's shared figures."""

    curves: list[list[Checkpoint]]
    diverged: dict[int, Divergence]
    weights: object = field(repr=False)  # the family's host weights, diverged models frozen
    kernel: str = "array"
    evaluation: str = "array"
    checkpoints: list[int] = field(default_factory=list)
    seconds: float = 0.0
    prepare_seconds: float = 0.0
    images_trained: int = 0
