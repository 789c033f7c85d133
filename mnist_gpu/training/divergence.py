"""What a user is told when a model of the tutorial's network diverges: where (the step, or the
checkpoint), why (weights no longer finite, or a test MSE past its bound), and what to try."""

from __future__ import annotations

import math

from . import runner
from .results import Checkpoint
from .trainee import Segment


def step_name(step: Segment, n: int, batch_size: int, epochs: int) -> str:
    """"step 6 of epoch 1 (images 501 to 600 of the epoch; 600 seen)": a step is one update,
    of one image or of one batch, of an epoch of ``n`` images."""
    number = step.start // batch_size + 1
    where = (f"image {step.start + 1:,}" if batch_size == 1
             else f"images {step.start + 1:,} to {step.stop:,}")
    of_epoch = f" of epoch {step.offset // n + 1}" if epochs > 1 else ""
    return (f"step {number:,}{of_epoch} ({where} of the epoch; "
            f"{images_seen(step.offset + step.stop)})")


def between(segments: list[Segment]) -> str:
    """Where no single step could be named: the images ``segments`` span."""
    first, last = segments[0], segments[-1]
    return f"between images {first.offset + first.start:,} and {last.offset + last.stop:,}"


def non_finite_message(where: str, alpha: float) -> str:
    """The weights stopped being finite ``where`` (a step's name, or ``between``)."""
    return (f"the weights became NaN or infinite {where} (alpha = {alpha}); try a smaller "
            "--alpha")


def over_bound(point: Checkpoint, start: float, seen: int, dtype: str, alpha: float):
    """(where, message) for a test MSE (``point``'s) past ``runner.loss_bound`` of its
    ``start``, at the checkpoint after ``seen`` images."""
    over = (f"over {runner.DIVERGED_FACTOR:,g} times its {start:,.4g} at 0 images"
            if start >= 1 else f"over {runner.loss_bound(start):,g}")
    if math.isfinite(point.mse):
        mse, went = f"{point.mse:.3g}", f"reached {point.mse:.3g}"
    elif math.isnan(point.mse):
        mse, went = "NaN", "became NaN"
    else:
        mse = f"past the {dtype} range"
        went = f"overflowed the {dtype} range"
    where = f"at {images_seen(seen)} (test MSE {mse}, {over})"
    message = (f"the test MSE {went} at {images_seen(seen)}, {over}: the weights blew up "
               f"(alpha = {alpha}); try a smaller --alpha")
    return where, message


def images_seen(count: int) -> str:
    """"1 image seen", "1,000 images seen"."""
    return f"{count:,} image{'' if count == 1 else 's'} seen"
