"""What the one training loop (``runner.run``) trains: a *trainee*, declared here as a
``typing.Protocol``, and the ``Segment`` of an epoch it trains over.

A trainee holds one model or several side by side and knows how to train them over a segment of
positions, which of them are no longer finite, how to score them on the test set, when a score
means a model blew up, and how to name where a model diverged. The loop around it is the same for
all (``runner.py``). Two trainees exist: the tutorial's network, one model or a stack
(``stack_trainee.StackTrainee``), and a deeper network (``network.py``); each subclasses
``Trainee``, so that a type checker holds it to this contract, and a test checks that it
implements every member itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .results import Checkpoint, Divergence


@dataclass(frozen=True)
class Segment:
    """Positions ``start:stop`` of the epoch that begins after ``offset`` images."""

    offset: int
    start: int
    stop: int
    host_order: np.ndarray | None  # the epoch's permutation, or None for file order
    order: object  # the same permutation on the device, or None

    def steps(self, batch_size: int):
        """Each step of the segment (one image or one batch) as a segment of its own."""
        for s in range(self.start, self.stop, batch_size):
            yield Segment(self.offset, s, min(s + batch_size, self.stop), self.host_order,
                          self.order)


@runtime_checkable
class Trainee(Protocol):
    """What ``runner.run`` calls, in this order: ``train`` each segment; at a checkpoint
    ``non_finite``, then ``score``, ``over_bound`` for each point, ``diverge`` for each model
    found diverged, and ``mark_good`` once the checkpoint has passed."""

    models: int  # how many models it trains side by side
    batch_size: int  # images per step: the loop's segments end on whole steps

    def train(self, segment: Segment) -> None:
        """Train every model still running over ``segment`` (device work only: no sync)."""
        ...

    def non_finite(self, diverged: dict[int, Divergence]) -> list[int]:
        """The models, not yet in ``diverged``, whose weights are no longer finite."""
        ...

    def score(self, seen: int, diverged: dict[int, Divergence]) -> list[Checkpoint | None]:
        """Each model's test-set point after ``seen`` images (None for a diverged one). The
        first call, at 0 images, is the start that its bound counts from."""
        ...

    def over_bound(self, model: int, point: Checkpoint) -> bool:
        """Whether ``point`` says that ``model`` blew up (its loss past ``runner.loss_bound``
        of its start, or NaN)."""
        ...

    def mark_good(self) -> None:
        """Keep what a replay starts from: the checkpoint just passed is good."""
        ...

    def diverge(self, model: int, segments: list[Segment], seen: int,
                point: Checkpoint | None) -> Divergence:
        """Take ``model`` out (frozen where it went wrong) and say where: ``segments`` are
        those trained since the last good checkpoint (``runner.replay`` replays them a step at
        a time), ``point`` its score if that passed the bound, None if its weights are no longer
        finite."""
        ...
