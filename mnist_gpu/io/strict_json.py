"""JSON that every parser reads: Python's ``json`` writes ``Infinity`` and ``NaN``, which are not
JSON. A value that is not finite (a diverged model's loss, a score that overflowed float32, a
rate over no time) is written as ``null``, with the reason beside it, under the key's name and
``_not_finite``: ``"mse": null, "mse_not_finite": "inf"``; for a list, the positions of each
kind: ``"scores_not_finite": {"inf": [0, 3]}``."""

from __future__ import annotations

import json
import math


def dumps(document, **options) -> str:
    """``json.dumps(document)``, every non-finite number ``null`` with its reason beside it."""
    return json.dumps(finite(document), allow_nan=False, **options)


def finite(value):
    """A copy of ``value`` (dicts, lists, tuples and scalars) with no non-finite number: see
    the module's notes."""
    cleaned, _ = _clean(value)
    return cleaned


def _kind(number: float) -> str:
    return "nan" if math.isnan(number) else "inf" if number > 0 else "-inf"


def _clean(value):
    """(the value made finite, the reason to write beside it, or None)."""
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else (None, _kind(value))
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out[key], reason = _clean(item)
            if reason is not None:
                out[f"{key}_not_finite"] = reason
        return out, None
    if isinstance(value, (list, tuple)):
        out, where = [], {}
        for index, item in enumerate(value):
            cleaned, reason = _clean(item)
            out.append(cleaned)
            if isinstance(reason, str):
                where.setdefault(reason, []).append(index)
            elif reason is not None:  # a nested list's: under its position
                where[str(index)] = reason
        return out, where or None
    return value, None
