"""What a training run returns: its accuracy curve, its timing and its final weights, on the
host."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


class TrainingDiverged(RuntimeError):
    """The weights became NaN or infinite, or the loss blew up; the message names the step."""


@dataclass
class Checkpoint:
    images_seen: int
    accuracy: float
    mse: float  # the test loss per image (the tutorial's: squared error per output)


# The JSON name of a curve's test loss, by the loss trained (``Checkpoint.mse`` holds either).
LOSS_KEYS = {"mse": "mse", "ce": "cross_entropy"}


def curve_json(curve, loss: str = "mse") -> list[dict]:
    """A curve's checkpoints as JSON, the test loss per image under its own name: ``mse`` (the
    tutorial's squared error, summed over the outputs) or ``cross_entropy``."""
    key = LOSS_KEYS[loss]
    return [{"images_seen": c.images_seen, "accuracy": c.accuracy, key: c.mse} for c in curve]


class ResultSummary:
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
class TrainResult(ResultSummary):
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


@dataclass
class MLPResult(ResultSummary):
    config: dict
    backend: dict
    curve: list[Checkpoint]  # after each epoch; ``mse`` holds the mean test loss per image
    seconds: float
    images_trained: int
    params: list = field(repr=False)  # host (W, b) per layer
    kernel: str = "array"  # mini-batches always run as array calls

    def to_json(self) -> dict:
        # The keys of the tutorial's result, its test loss named for what it is; a deeper
        # network lists no pixels before training, and evaluates by array calls.
        return {**super().to_json(), "curve": curve_json(self.curve, self.config["arch"]["loss"]),
                "prepare_seconds": 0.0, "evaluation": "array"}


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
