"""What a page draws of a run at one moment, computed on the host from the weights copied there
once per frame: the first layer's maps, the image about to be learnt with the tutorial's four
numbers, and the accuracy on a fixed subset of the test set.

Nothing here touches the device: ``live.py`` copies the weights to the host (at the drawing
rate, never more often) and hands them here.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field

import numpy as np

from ..model import network
from ..model.layer import Context
from ..model.network import Network

# The test images scored often (the whole set is scored at the run's checkpoints).
SUBSET = 1_000
# A deeper network's first layer has hundreds of units: the page draws this many of them.
MAX_MAPS = 100


def encode(array: np.ndarray) -> str:
    """uint8 bytes as base64 text (JSON carries it; the page decodes it with ``atob``)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.uint8).tobytes()).decode()


def weight_maps(W: np.ndarray) -> dict:
    """The first ``MAX_MAPS`` columns of a (784, units) layer as 28x28 maps on a colour scale
    symmetric about 0: each weight as a byte, 128 for 0 and 128 +- 127 for +-``scale`` (the
    largest magnitude drawn, which the legend names)."""
    count = min(W.shape[1], MAX_MAPS)
    block = np.asarray(W[:, :count], dtype=np.float64).T
    finite = block[np.isfinite(block)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    scale = scale if scale > 0 else 1.0
    levels = np.clip(np.rint(np.nan_to_num(block) / scale * 127) + 128, 1, 255)
    return {"count": count, "units": int(W.shape[1]), "scale": scale,
            "data": encode(levels.astype(np.uint8))}


def outputs(params, arch: Network, images_u8: np.ndarray) -> np.ndarray:
    """The network's raw outputs (float64) for uint8 images (rows of 784), on the host, scaled
    to [0, 1] in the weights' dtype as training scales them."""
    ctx = Context(_host_backend(), str(network.flat(params)[0].dtype))
    x = (np.asarray(images_u8).reshape(-1, 784) / 255).astype(ctx.dtype)
    return np.asarray(network.logits(arch, params, x, ctx), dtype=np.float64)


def _host_backend():
    from ..backend import get_backend

    return get_backend("numpy")


def readout(params, arch: Network, image_u8: np.ndarray, label: int, index: int) -> dict:
    """The tutorial's four lines for one image: ``pred = x @ W``, ``delta = pred - y``,
    ``error = delta ** 2`` (a deeper network with cross-entropy: its softmax, ``p - y``, and the
    loss ``-log p[label]``)."""
    out = outputs(params, arch, image_u8)[0]
    target = np.eye(10)[label]
    if arch.loss == "ce":
        shifted = out - out.max()
        pred = np.exp(shifted) / np.exp(shifted).sum()
        delta = pred - target
        error = [float(-math.log(max(pred[label], 1e-300)))]
    else:
        pred = out
        delta = pred - target
        error = (delta ** 2).tolist()
    return {"index": int(index), "label": int(label), "pred": pred.tolist(),
            "delta": delta.tolist(), "error": error, "loss": arch.loss,
            "image": encode(np.asarray(image_u8).reshape(784))}


def next_image(seen: int, n: int, segment) -> int:
    """The training image the next step starts with (the tutorial prints its four lines before
    the update), ``segment`` being the last one trained; at the end of a shuffled epoch, whose
    next order is not drawn yet, the last one learnt."""
    position = seen % n
    if segment is None or segment.host_order is None:
        return position
    if position == 0 and seen:
        return int(segment.host_order[n - 1])
    return int(segment.host_order[position])


def accuracy(params, arch: Network, images_u8, labels) -> float:
    return float(np.mean(np.argmax(outputs(params, arch, images_u8), axis=1) == labels))


def scores(params, arch: Network, image_u8: np.ndarray) -> list[float]:
    """The ten scores of one prepared 28x28 image, as ``predict`` computes them."""
    return outputs(params, arch, image_u8)[0].tolist()


@dataclass
class Snapshot:
    """One frame of a run: made by the training thread between steps, read by every page."""

    run_id: int
    version: int  # steps trained in this run: a page that has this version has these maps
    seen: int
    params: list  # host copies of every layer's parameters
    arch: Network
    maps: dict
    current: dict | None
    extra: dict = field(default_factory=dict)

    def message(self) -> dict:
        return {"run": self.run_id, "version": self.version, "seen": self.seen,
                "maps": self.maps, "current": self.current, **self.extra}
