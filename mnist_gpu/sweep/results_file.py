"""A cluster sweep's results file (``--json PATH`` + ``.results.jsonl``): every finished model
appended as one JSON line, in one ``write`` to a file opened for appending (a crash leaves at
most a torn last line), and read back by ``--resume``: the lines of this sweep kept, damaged ones
named and their models trained again, another sweep's file refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..io.files import open_regular
from ..model.tutorial import N_INPUTS, N_OUTPUTS
from ..training import Checkpoint
from .run import ModelResult

# One model's weights, as a results line carries them.
MODEL_SHAPE = (N_INPUTS, N_OUTPUTS)


class ResultsFileError(RuntimeError):
    """The results file cannot be written (a full disk, say) or read; the message is one
    line."""


class ForeignResults(ResultsFileError):
    """``--resume`` given a results file of another sweep (a bad argument)."""


def results_path(json_path) -> Path:
    """The file beside ``--json`` where finished models are appended as they arrive."""
    return Path(str(json_path) + ".results.jsonl")


def read_results(path: Path, fingerprint: str, count: int, log=None) -> dict[int, dict]:
    """The models of this sweep (``count`` models) already in ``path``, by grid index. A line
    that cannot be used (cut by a crash, without its index, an index outside the grid, weights
    that do not decode) is named through ``log`` and its model trained again; a file that holds
    another sweep's results (another grid, other settings) is a ``ForeignResults``."""
    done, damaged, foreign = {}, [], 0
    try:
        with open_regular(path) as handle:  # never a FIFO, which would block
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return done
    except OSError as err:
        raise ResultsFileError(f"cannot read the results file {path}: "
                               f"{err.strerror or err}") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            damaged.append(f"line {number} (not a whole JSON line: cut by a crash?)")
            continue
        if isinstance(record, dict) and "sweep" in record and record["sweep"] != fingerprint:
            foreign += 1
            continue
        problem = _line_problem(record, fingerprint, count)
        if problem:
            damaged.append(f"line {number} ({problem})")
        else:
            done[record["index"]] = record
    if foreign:
        raise ForeignResults(f"the results file {path} holds {foreign} model(s) of another sweep "
                             "(another grid, or other settings): --resume continues the same "
                             "command; give --json another PATH, or delete the file to start "
                             "afresh")
    if damaged and log:
        log(f"the results file {path}: damaged, so their models are trained again: "
            f"{'; '.join(damaged)}")
    return done


def _line_problem(record, fingerprint: str, count: int) -> str | None:
    """What makes a results line unusable, or None."""
    if not isinstance(record, dict) or record.get("sweep") != fingerprint:
        return "not a results line"
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        return "no index"
    if not 0 <= index < count:
        return f"index {index}, outside the grid's 0 to {count - 1}"
    try:
        model_of(record)
        for key in ("chunk", "seconds", "settings", "backend", "kernel", "images_per_model"):
            record[key]
    except (KeyError, TypeError, ValueError, binascii.Error) as err:
        what = f"lacks {err}" if isinstance(err, KeyError) else str(err)
        return f"unusable model: {what}"
    return None


def model_of(line: dict) -> tuple[ModelResult, np.ndarray]:
    """A results line's model and weights (KeyError, TypeError, ValueError or binascii.Error
    when it does not hold them)."""
    record = line["model"]
    model = ModelResult(record["alpha"], record["seed"],
                        [Checkpoint(**c) for c in record["curve"]], record["diverged"],
                        record["diverged_at"])
    dtype = np.dtype(line["dtype"])
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"weights of dtype {dtype}")
    weights = np.frombuffer(base64.b64decode(line["weights"], validate=True), dtype=dtype)
    if weights.size != N_INPUTS * N_OUTPUTS:
        raise ValueError(f"{weights.size} weights, not {N_INPUTS * N_OUTPUTS}")
    return model, weights.reshape(MODEL_SHAPE)


def append_results(path: Path, records: list[dict]) -> None:
    blob = "".join(json.dumps(r) + "\n" for r in records).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            os.write(fd, blob)  # one write: a reader sees whole lines, or a torn last one
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise ResultsFileError(f"cannot write the results file {path}: "
                               f"{err.strerror or err}") from None


def fingerprint(members, settings: dict) -> str:
    """What identifies a sweep's results: its grid and every shared setting."""
    text = json.dumps({"members": [list(m) for m in members], "settings": settings},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
