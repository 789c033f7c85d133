"""Evaluation in chunks of rows, so that its memory is bounded whatever the size of the set.

Every evaluation of mnist-gpu (one model, models side by side, the deeper networks) goes through
``summed_over_chunks``: the chunks' sums are added in order, on the device, and nothing is read
back to the host here.
"""

from __future__ import annotations


def chunk_bounds(n: int, chunk: int):
    """The (start, stop) of each chunk of ``n`` rows (the array API leaves slices past the end
    unspecified, so the last stop is ``n`` exactly)."""
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def summed_over_chunks(n: int, chunk: int, score):
    """The sums, chunk after chunk, of the device values ``score(start, stop)`` returns (a tuple
    of them), as one tuple of device values."""
    return summed(score(start, stop) for start, stop in chunk_bounds(n, chunk))


def summed(parts):
    """Tuples of device values added element by element, part after part, in order (the order
    of every evaluation's sums, however its chunks were scored)."""
    totals = None
    for part in parts:
        totals = part if totals is None else tuple(t + p for t, p in zip(totals, part))
    return totals
