"""The work a benchmark row does, counted from what it computes and reads: the dense rows from the
shapes, the fused rows from the lit pixels they visit and the lists they read (a roofline that
credits a sparse pass with the dense product's bytes would print more than the machine's
bandwidth)."""

from __future__ import annotations

from ..model.tutorial import N_INPUTS as N_PIX
from ..model.tutorial import N_OUTPUTS as N_OUT


def train_work(n: int, batch_size: int, itemsize: int, lit: int | None = None,
               entry_bytes: int | None = None):
    """(flops, compulsory bytes) of one epoch of n images in batches of ``batch_size``.

    Dense (``lit`` None, the array path and the peers): forward 2*b*784*10, delta b*10, gradient
    2*b*784*10, the scaled update 2*784*10 per step; the images and targets read once, the
    weights (31 KB in float32) read and written once, since they stay in cache between steps.

    Fused (``lit``: the number of lit pixels in the n images): the same arithmetic on the lit
    pixels only (the update too, per image; a mini-batch's update still covers every row), and
    what it reads: each lit pixel's entry in the lists (``entry_bytes``: its value and index,
    by default a value of ``itemsize`` and an int32 index), one int64 row pointer and one uint8
    label per image, and the weights.
    """
    steps = -(-n // batch_size)
    weights = N_PIX * N_OUT
    if lit is None:
        flops = 4.0 * n * weights + n * N_OUT + 2.0 * steps * weights
        return flops, (n * (N_PIX + N_OUT) + 2.0 * weights) * itemsize
    touched = float(lit * N_OUT)
    update = 2.0 * touched if batch_size == 1 else 2.0 * steps * weights
    flops = 4.0 * touched + n * N_OUT + update
    return flops, _lists_bytes(n, lit, itemsize, entry_bytes) + n + 2.0 * weights * itemsize


def inference_work(n: int, itemsize: int, lit: int | None = None,
                   entry_bytes: int | None = None):
    """Predicted classes of n images: the product X @ W, then the argmax of each row.

    Dense: every pixel read once with the weights. Fused (``lit`` lit pixels in the n images):
    the products over the lit pixels, from their lists.
    """
    weights = N_PIX * N_OUT
    if lit is None:
        return 2.0 * n * weights, (n * N_PIX + weights) * itemsize
    return (2.0 * lit * N_OUT,
            _lists_bytes(n, lit, itemsize, entry_bytes) + weights * itemsize)


def listing_work(n: int, itemsize: int, lit: int, entry_bytes: int | None = None,
                 pixel_bytes: int | None = None):
    """Listing the lit pixels of n images: one comparison per pixel, the images read once
    (``pixel_bytes`` each: 1 for uint8 pixels, by default ``itemsize``, scaled images) and their
    lists written."""
    pixel_bytes = itemsize if pixel_bytes is None else pixel_bytes
    return (float(n * N_PIX),
            float(n * N_PIX * pixel_bytes) + _lists_bytes(n, lit, itemsize, entry_bytes))


def lit_entry_bytes(lit) -> int:
    """The bytes of one lit pixel's entry in ``lit``'s lists (a ``LitPixels``): value and index."""
    return int(lit.values.dtype.itemsize + lit.indices.dtype.itemsize)


def _lists_bytes(n: int, lit: int, itemsize: int, entry_bytes: int | None = None) -> float:
    """The lit-pixel lists of n images: an entry per lit pixel (``entry_bytes``, by default a
    value of ``itemsize`` and an int32 index), an int64 row pointer per image."""
    entry_bytes = itemsize + 4 if entry_bytes is None else entry_bytes
    return float(lit * entry_bytes + (n + 1) * 8)

