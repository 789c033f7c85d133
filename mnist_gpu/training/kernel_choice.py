"""How the tutorial's network is computed, by a compiled pass or by array calls: chosen once per
run, at the edge (the command, or the first call of the Python API), and passed down.

``choose_kernel(backend, config, models)`` gives a ``KernelChoice``: the path's name (what the
table and the JSON report), the training pass and the test set's inference pass it takes (None on
the array path), and ``note``, what a user should be told about it (a pass not yet verified on
this hardware).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import kernels
from ..backend import Backend
from .config import TrainConfig

# Above this many models side by side, `auto` trains mini-batches by the array path: the fused
# pass keeps every model's weights and gradient (64 KB each in float32) in the caches, and past
# them BLAS wins (docs/performance.md has the measurements).
FUSED_MINIBATCH_MAX_MODELS = 256


@dataclass(frozen=True)
class KernelChoice:
    """The compute path of a run: ``fused`` (a compiled ``training`` pass) or ``array``, and how
    the checkpoints score the test set (``evaluation``: ``fused`` by the compiled ``inference``
    pass, else ``array``)."""

    name: str
    training: object = None  # the compiled training pass, or None on the array path
    evaluation: str = "array"
    inference: object = None  # the compiled inference pass, or None for the dense product

    @property
    def note(self) -> str | None:
        """What a user should be told about this path: that its compiled pass has not been
        verified on this hardware, and how to check it (only an explicit ``fused`` takes such a
        pass); None when there is nothing to say."""
        fused = self.training
        return None if fused is None or fused.verified else fused.unverified


ARRAY = KernelChoice("array")


def choose_kernel(backend: Backend, config: TrainConfig, models: int = 1) -> KernelChoice:
    """How ``config`` trains ``models`` models side by side on ``backend``.

    ``auto`` takes the backend's compiled pass only if it has been verified on its hardware
    (``verified``: correct before fast on what has never run), and not for mini-batches of more
    than ``FUSED_MINIBATCH_MAX_MODELS`` models; otherwise the array path. An explicit ``fused``
    takes the pass, verified or not (``note`` says which), or raises ``KernelUnavailable``
    where the backend has none.
    """
    if config.kernel == "array" or (config.kernel == "auto" and config.batch_size > 1
                                    and models > FUSED_MINIBATCH_MAX_MODELS):
        return ARRAY
    try:
        fused = kernels.training_pass(backend, config.batch_size)
    except kernels.KernelUnavailable:
        if config.kernel == "fused":
            raise
        return ARRAY
    if config.kernel == "auto" and not fused.verified:
        return ARRAY
    evaluation, inference = _choose_evaluation(backend)
    return KernelChoice("fused", fused, evaluation, inference)


def _choose_evaluation(backend: Backend):
    """(name, compiled inference or None) for the test set at the checkpoints, beside a fused
    training pass (only there: after array mini-batches BLAS's threads still spin and take the
    cores from the compiled pass's, which then gains nothing)."""
    try:
        return "fused", kernels.inference_pass(backend)
    except kernels.KernelUnavailable:  # none on this backend: the dense product
        return "array", None
