"""The ``fast`` preset's recipe trained to the end of one epoch, by mnist-gpu and by PyTorch, in
the same run: the same network (each layer's PyTorch counterpart), the same batches (in order,
from data already in memory), the same optimiser (Adam's PyTorch counterpart) and schedule
(``OneCycleLR`` without cycling Adam's first beta), on the CPU on as many threads (our shards,
PyTorch's intra-op threads); each timed once, its test accuracy beside.
The initial weights are each library's own (He's for ours, PyTorch's defaults for PyTorch's).
Ours is here, PyTorch's with the other peers (``peers.bench_torch_fast``)."""

from __future__ import annotations

import numpy as np

from ..model.tutorial import N_INPUTS
from ..training import config_from_preset, to_device_data, train_mlp
from .timing import Row

PRESET = "fast"
NAME = "fast recipe, one epoch"
PEER_NAME = "torch fast recipe, one epoch"


def traffic(images: int, dtype: str) -> float:
    """The compulsory bytes of an epoch: each image and its one-hot label read once."""
    return float(images * (N_INPUTS + 10) * np.dtype(dtype).itemsize)


def recipe():
    """The preset's configuration for one epoch in order (the same batches for both)."""
    return config_from_preset(PRESET, epochs=1, shuffle=False, seed=0)


def threads_of(backend) -> int | None:
    """The CPU threads ``backend``'s training runs on: NumPy's batch shards, PyTorch's intra-op
    threads; None on a GPU."""
    if not backend.runs_on_cpu:
        return None
    found = backend.describe().get("threads")
    return found.get("shards") if isinstance(found, dict) else found


def bench_fast(backend, mnist, dtype: str, images: int, log=None) -> list[Row]:
    """mnist-gpu training the recipe on ``backend`` over the first ``images`` images (the
    compiled passes where the backend has them, else the array path)."""
    config = recipe()
    data = to_device_data(backend, mnist, dtype, limit=images)
    result = train_mlp(data, config)
    row = Row(backend.label, dtype, "fast", NAME, config.batch_size, data.n_train,
              [result.seconds], config.net.training_flops(config.batch_size, data.n_train),
              traffic(data.n_train, dtype), accuracy=result.final_accuracy,
              threads=threads_of(backend))
    if log:
        log(f"{backend.label} {dtype} {NAME}: {row.images_per_second:,.0f} images/s, "
            f"{row.accuracy:.2%}")
    return [row]


def fast_ratios(report: dict, find, backend: str, dtype: str) -> list[str]:
    """Ours against PyTorch's on the recipe: speed and accuracy."""
    rows = {r["name"]: r for r in report["rows"] if r["dtype"] == dtype and (
        r["backend"] == backend and r["name"] == NAME
        or r["backend"].startswith("torch") and r["name"] == PEER_NAME)}
    ours, peer = find(backend, dtype, NAME), find("torch", dtype, PEER_NAME)
    if not (ours and peer):
        return []
    mine, theirs = rows[NAME], rows[PEER_NAME]
    return [f"{backend} {dtype}: the fast recipe is {peer / ours:.2f}x the speed of PyTorch's "
            f"({mine['accuracy']:.2%} against {theirs['accuracy']:.2%}"
            + ("" if mine.get("threads") is None else
               f"; {_threads(mine['threads'])} against {_threads(theirs.get('threads'))}") + ")"]


def _threads(count) -> str:
    return "? threads" if count is None else f"{count} thread" + ("s" if count != 1 else "")
