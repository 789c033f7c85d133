"""A sweep's grid: learning rates x seeds, parsed from the command line's lists.

Seed ranges stay ranges (``0-99999999`` is one ``range``, not a hundred million integers) and the
grid makes each configuration as it is read: parsing takes time and memory in proportion to the
text, not to the grid, and a sweep draws its members chunk by chunk.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def parse_alphas(text: str) -> tuple[float, ...]:
    """``0.001,0.003,0.01``: positive, finite, distinct learning rates, in the order given."""
    if not text.strip():
        raise ValueError("no learning rate given: list them, as in 0.001,0.01,0.1")
    values = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"not a number: {part!r} in {text!r}") from None
        if not (value > 0 and np.isfinite(value)):
            raise ValueError(f"learning rates must be positive numbers, not {part}")
        values.append(value)
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"learning rate {value:g} is listed twice")
        seen.add(value)
    return tuple(values)


def parse_seeds(text: str) -> Seeds:
    """``0-9`` or ``0,3,7`` or ``0-4,10``: non-negative, distinct seeds, in the order given."""
    if not text.strip():
        raise ValueError("no seed given: list them, as in 0-4 or 0,3,7")
    ranges = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ValueError(f"not a seed or a range of seeds: {part!r} in {text!r}") from None
        if first < 0:
            raise ValueError(f"seeds must be non-negative, not {first}")
        if last < first:
            raise ValueError(f"the range {part} is empty: write it from low to high")
        ranges.append(range(first, last + 1))
    # Two parts share a seed exactly when, sorted by their first seed, one starts before the
    # previous one ends: a sort of the parts, never a look at every seed.
    ordered = sorted(ranges, key=lambda r: r.start)
    for previous, current in zip(ordered, ordered[1:]):
        if current.start < previous.stop:
            raise ValueError(f"seed {current.start} is listed twice")
    return Seeds(ranges)


class Seeds(Sequence):
    """Seeds as the ranges they were written in: ``len``, indexing and iteration without the
    list (equal to the tuple of the same seeds)."""

    def __init__(self, ranges):
        self.ranges = tuple(ranges)
        self._ends = list(itertools.accumulate(len(r) for r in self.ranges))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("seed index out of range")
        part = bisect.bisect_right(self._ends, index)
        return self.ranges[part][index - (self._ends[part - 1] if part else 0)]

    def __iter__(self):
        return itertools.chain.from_iterable(self.ranges)

    def __eq__(self, other):
        if not isinstance(other, (Seeds, tuple, list, range)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self):
        return hash(self.ranges)

    def __repr__(self):
        return "Seeds(" + ",".join(f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start)
                                   for r in self.ranges) + ")"


@dataclass(frozen=True)
class Member:
    """One configuration of the grid."""

    alpha: float
    seed: int


class Grid(Sequence):
    """Every (alpha, seed) pair, learning rate first: the models of a sweep, in order, each made
    when it is read (``len``, indexing, slices and iteration; no list of them all)."""

    def __init__(self, alphas, seeds):
        self.alphas, self.seeds = tuple(alphas), seeds

    def __len__(self) -> int:
        return len(self.alphas) * len(self.seeds)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("grid index out of range")
        row, column = divmod(index, len(self.seeds))
        return Member(self.alphas[row], self.seeds[column])

    def __iter__(self):
        return (Member(a, s) for a in self.alphas for s in self.seeds)

    def __repr__(self):
        return f"Grid({len(self.alphas)} learning rate(s) x {len(self.seeds)} seed(s))"


def grid(alphas, seeds) -> Grid:
    """Every (alpha, seed) pair, learning rate first: the models of a sweep, in order."""
    return Grid(alphas, seeds)
