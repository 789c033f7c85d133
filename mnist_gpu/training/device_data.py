"""MNIST on a backend's device: uploaded once, scaled and one-hot encoded there, in one dtype.

Every training and evaluation path reads its data from a ``DeviceData``; what the compiled passes
derive from the images (their lit pixels) is kept with it, so that every run on the same data
lists them once: a sweep's chunks, the seeds of ``curve``, a cluster worker.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from ..backend import Backend
from ..data import MNIST, N_CLASSES
from ..model.tutorial import N_INPUTS, N_OUTPUTS, one_hot, scale_images

DTYPES = ("float32", "float64")


class DeviceOutOfMemory(RuntimeError):
    """The device ran out of memory; the message names the batch size and the memory involved."""


@contextlib.contextmanager
def device_memory_guard(backend: Backend, what: str, batch_size: int | None = None,
                        resident_bytes: int | None = None):
    """Turn the library's out-of-memory error into one message a user can act on."""
    try:
        yield
    except backend.out_of_memory_errors() as err:
        detail = str(err).strip() or type(err).__name__
        parts = [f"the {backend.name} device ran out of memory {what}"]
        if batch_size is not None:
            parts.append(f"in batches of {batch_size:,} images")
        if resident_bytes is not None:
            parts.append(f"with {resident_bytes / 2**20:,.0f} MiB of data already on it")
        advice = "try a smaller --batch-size" if batch_size and batch_size > 1 else (
            "try another --device or --backend numpy")
        raise DeviceOutOfMemory(f"{' '.join(parts)} ({detail}); {advice}") from None


@dataclass
class DeviceData:
    """MNIST uploaded once to a backend's device: scaled images, labels and one-hot targets."""

    backend: Backend
    dtype: str
    train_x: object
    train_y: object
    train_labels: object
    test_x: object
    test_y: object
    test_labels: object
    # What the fused passes derive from the images (their lit pixels), listed once per data set.
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    def lit_pixels(self, fused, which: str):
        """The lit pixels of the ``"train"`` or ``"test"`` images as ``fused`` lists them."""
        key = (type(fused).__name__, which)
        if key not in self.derived:
            self.derived[key] = fused.prepare(self.train_x if which == "train" else self.test_x)
        return self.derived[key]

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def resident_bytes(self) -> int:
        """Device memory held by the uploaded arrays (images, targets, labels)."""
        item = np.dtype(self.dtype).itemsize
        rows = self.n_train + self.n_test
        return rows * (N_INPUTS + N_OUTPUTS) * item + rows


def to_device_data(backend: Backend, mnist: MNIST, dtype: str = "float32",
                   limit: int | None = None) -> DeviceData:
    """Upload the uint8 arrays once; scale and one-hot encode them there, in ``dtype``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    backend.check_dtype(dtype)  # MPS has no float64
    xp = backend.xp
    device_dtype = getattr(xp, dtype)
    train_images, train_labels = mnist.train_images, mnist.train_labels
    if limit is not None:
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    classes = backend.to_device(np.arange(N_CLASSES, dtype=np.uint8))

    def upload(images, labels):
        x = scale_images(backend.to_device(images), device_dtype, xp=xp)
        labels = backend.to_device(labels)
        return x, one_hot(labels, classes, device_dtype, xp=xp), labels

    with device_memory_guard(backend, f"uploading {len(train_images):,} training images"):
        train_x, train_y, train_labels = upload(train_images, train_labels)
        test_x, test_y, test_labels = upload(mnist.test_images, mnist.test_labels)
    return DeviceData(backend, dtype, train_x, train_y, train_labels, test_x, test_y, test_labels)
