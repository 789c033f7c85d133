"""The one training loop of mnist-gpu: epochs cut into segments at the checkpoints, and at each
checkpoint the only host-device synchronisations of a run.

Every network is trained through ``run``: the tutorial's (one model, or M side by side) and the
deeper ones. What is trained is a *trainee* (the ``Trainee`` protocol of ``trainee.py``: the
stack of ``stack_trainee.py``, the deeper network of ``network.py``), which knows how to train
over a segment of positions, which of its models are no longer finite, how to score them on the
test set, when a score means the run blew up, and how to name the step where a model diverged.
The loop around it is the same for all:

* each epoch's order is drawn on the host (identical on every backend) and uploaded once;
* the epoch is cut at the checkpoints, rounded up to the end of their batch, and each segment is
  timed between synchronisations (evaluation is never counted as training);
* at a checkpoint, a model whose weights are no longer finite, or whose score passed its bound
  (``loss_bound``: ``DIVERGED_FACTOR`` times its score at 0 images, which is measured even when
  0 is not a checkpoint), is diverged: the trainee names where (replaying it from the last good
  checkpoint, ``replay``, where it can name a step), freezes it and takes it out; the others go
  on exactly as they would have. A run of one model stops there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .results import Checkpoint, Divergence
from .trainee import Segment, Trainee

# A run whose test loss (the tutorial's MSE, a deeper network's loss per image) passes this many
# times its loss at the start has blown up, even while its weights are still finite: a healthy
# run falls far below its start (the tutorial's, from 2,933 to 0.09), a learning rate far too
# large multiplies it by orders of magnitude within a few hundred images.
DIVERGED_FACTOR = 1e3


def loss_bound(start: float) -> float:
    """The loss past which a run that started at loss ``start`` is diverged: ``DIVERGED_FACTOR``
    times its start, or ``DIVERGED_FACTOR`` itself when the start is below 1 (a run that starts
    near its optimum, from weights already trained, is held to a bound far above any healthy
    loss rather than to a multiple of a small number)."""
    return DIVERGED_FACTOR * max(start, 1.0)


def segment_stops(n: int, offset: int, checkpoints, unit: int) -> list[int]:
    """Where to pause inside one epoch: at each checkpoint, rounded up to the end of its batch."""
    stops = {n}
    for c in checkpoints:
        local = c - offset
        if 0 < local < n:
            stops.add(min(n, -(-local // unit) * unit))
    return sorted(stops)


def replay(segments, batch_size: int, step):
    """Replay ``segments`` one step at a time: ``step(one)`` trains one step and says what went
    wrong, if anything. (The first step that went wrong, what it was), or (None, None).

    Only reached after a failure, so its per-step synchronisation costs a good run nothing."""
    for segment in segments:
        for one in segment.steps(batch_size):
            problem = step(one)
            if problem:
                return one, problem
    return None, None


@dataclass
class Progress:
    """What a run did: per model its curve (it ends where the model diverged) and divergence."""

    curves: list[list[Checkpoint]]
    diverged: dict[int, Divergence]
    seconds: float  # training only


def run(trainee: Trainee, backend, n: int, epochs: int, checkpoints, order_rng, shuffle: bool,
        progress=None, on_checkpoint=None) -> Progress:
    """Train ``trainee`` for ``epochs`` passes over ``n`` images, checked at ``checkpoints``
    (sorted image counts, the last the run's end; each measured at the end of the batch it falls
    in). ``progress(images_seen)`` is called after each segment, ``on_checkpoint(points)`` with
    each checkpoint's points (None for a diverged model) as soon as they are measured."""
    curves = [[] for _ in range(trainee.models)]
    diverged: dict[int, Divergence] = {}
    since_good = []  # the segments trained since the last good checkpoint

    def check(seen) -> bool:
        """The checkpoint: whether the run goes on."""
        for m in trainee.non_finite(diverged):
            diverged[m] = trainee.diverge(m, since_good, seen, None)
        if trainee.models == 1 and diverged:
            return False
        points = trainee.score(seen, diverged)
        for m, point in enumerate(points):
            if point is not None and trainee.over_bound(m, point):
                diverged[m] = trainee.diverge(m, since_good, seen, point)
                points[m] = None
        if trainee.models == 1 and diverged:
            return False
        for curve, point in zip(curves, points):
            if point is not None:
                curve.append(point)
        if on_checkpoint:
            on_checkpoint(points)
        trainee.mark_good()
        since_good.clear()
        return True

    seconds = 0.0
    if checkpoints[0] != 0:
        # Scored, not reported: the start that the bounds on a diverging loss count from.
        trainee.score(0, diverged)
        trainee.mark_good()
    elif not check(0):
        return Progress(curves, diverged, seconds)
    for epoch in range(epochs):
        host_order = order_rng.permutation(n) if shuffle else None
        order = backend.to_device(host_order) if host_order is not None else None
        start = 0
        for stop in segment_stops(n, epoch * n, checkpoints, trainee.batch_size):
            segment = Segment(epoch * n, start, stop, host_order, order)
            with backend.stopwatch() as clock:
                trainee.train(segment)
            seconds += clock["seconds"]
            since_good.append(segment)
            seen = epoch * n + stop
            if any(seen - (stop - start) < c <= seen for c in checkpoints) and not check(seen):
                return Progress(curves, diverged, seconds)
            if progress:
                progress(seen)
            start = stop
    return Progress(curves, diverged, seconds)
