"""Every message a page sends, checked before anything acts on it: one JSON object whose ``type``
names what it asks, each field of the right kind and range. Anything else is ``Refused`` with a
reason the page shows, and the run is not touched.

The messages (``docs/serve.md`` lists them with the server's replies):

* ``{"type": "frame", "run": R, "version": V}``: the latest frame, unless the page has it;
* ``{"type": "control", "action": "play" | "pause" | "step" | "reset"}``;
* ``{"type": "alpha", "value": A}``: a positive finite learning rate, from the next step on;
* ``{"type": "pace", "value": P}``: steps a second (``MIN_PACE`` to ``MAX_PACE``), or null: full
  speed;
* ``{"type": "setup", "preset": NAME, "batch_size": B, "epochs": E}``: a new run (B, E optional);
* ``{"type": "draw", "width": W, "height": H, "pixels": BASE64, "model": "live" | "saved"}``: a
  drawing's W x H gray bytes (row by row, 0 black to 255 white), at most ``MAX_SIDE`` a side.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np

from ..viz.digits import WORKING_SIDE

# The largest text message read (a larger one closes the connection, by the WebSocket layer).
MAX_MESSAGE_BYTES = 1 << 20
# A drawing is at most this many pixels a side: what ``predict`` reduces a picture to.
MAX_SIDE = WORKING_SIDE
MIN_PACE, MAX_PACE = 0.1, 1e7
MAX_BATCH, MAX_EPOCHS = 60_000, 10_000
ACTIONS = ("play", "pause", "step", "reset")
MODELS = ("live", "saved")


class Refused(ValueError):
    """A message that is not one the server reads; the text says why."""


def parse(text: str, presets) -> dict:
    """The checked command of one message (``presets``: the names a setup may take)."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise Refused(f"message of {len(text):,} characters, over {MAX_MESSAGE_BYTES:,}")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused("not JSON") from None
    if not isinstance(message, dict):
        raise Refused("not a JSON object")
    kind = message.get("type")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise Refused(f"unknown message type {str(kind)[:40]!r}: expected one of "
                      f"{', '.join(_CHECKS)}")
    return {"type": kind, **check(message, presets)}


def _frame(message, presets) -> dict:
    return {"run": _optional_int(message, "run", 0, 2**53),
            "version": _optional_int(message, "version", 0, 2**53)}


def _control(message, presets) -> dict:
    action = message.get("action")
    if action not in ACTIONS:
        raise Refused(f"control action must be one of {', '.join(ACTIONS)}")
    return {"action": action}


def _alpha(message, presets) -> dict:
    value = _number(message.get("value"), "alpha")
    if not (math.isfinite(value) and value > 0):
        raise Refused(f"alpha must be a positive finite number, not {value}")
    return {"value": value}


def _pace(message, presets) -> dict:
    if message.get("value") is None:
        return {"value": None}
    value = _number(message.get("value"), "pace")
    if not MIN_PACE <= value <= MAX_PACE:
        raise Refused(f"pace must be from {MIN_PACE:g} to {MAX_PACE:g} steps a second, or null "
                      "(full speed)")
    return {"value": value}


def _setup(message, presets) -> dict:
    preset = message.get("preset")
    if preset not in presets:
        raise Refused(f"preset must be one of {', '.join(presets)}")
    return {"preset": preset,
            "batch_size": _optional_int(message, "batch_size", 1, MAX_BATCH),
            "epochs": _optional_int(message, "epochs", 1, MAX_EPOCHS)}


def _draw(message, presets) -> dict:
    width = _optional_int(message, "width", 1, MAX_SIDE)
    height = _optional_int(message, "height", 1, MAX_SIDE)
    if width is None or height is None:
        raise Refused(f"a drawing needs its width and height (1 to {MAX_SIDE})")
    model = message.get("model", "live")
    if model not in MODELS:
        raise Refused(f"model must be one of {', '.join(MODELS)}")
    pixels = message.get("pixels")
    if not isinstance(pixels, str):
        raise Refused("a drawing's pixels must be base64 text")
    if len(pixels) > 4 * (-(-width * height // 3)):
        raise Refused(f"a drawing of {width}x{height} has more than {width * height:,} pixels")
    try:
        raw = base64.b64decode(pixels, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("a drawing's pixels are not base64") from None
    if len(raw) != width * height:
        raise Refused(f"a drawing of {width}x{height} needs {width * height:,} pixels, not "
                      f"{len(raw):,}")
    gray = np.frombuffer(raw, dtype=np.uint8).reshape(height, width).astype(np.float64)
    return {"gray": gray, "model": model}


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Refused(f"{name} must be a number")
    return float(value)


def _optional_int(message, name: str, low: int, high: int):
    value = message.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{name} must be an integer from {low:,} to {high:,}")
    return value


_CHECKS = {"frame": _frame, "control": _control, "alpha": _alpha, "pace": _pace,
           "setup": _setup, "draw": _draw}
