"""A sweep's grid: learning rates x seeds, parsed from the command line's lists."""

from __future__ import annotations

import itertools
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
    return _distinct(values, "learning rate")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0-9`` or ``0,3,7`` or ``0-4,10``: non-negative, distinct seeds, in the order given."""
    if not text.strip():
        raise ValueError("no seed given: list them, as in 0-4 or 0,3,7")
    values = []
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
        values.extend(range(first, last + 1))
    return _distinct(values, "seed")


def _distinct(values, what):
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{what} {repeated[0]} is listed twice")
    return tuple(values)


@dataclass(frozen=True)
class Member:
    """One configuration of the grid."""

    alpha: float
    seed: int


def grid(alphas, seeds) -> list[Member]:
    """Every (alpha, seed) pair, learning rate first: the models of a sweep, in order."""
    return [Member(a, s) for a, s in itertools.product(alphas, seeds)]


