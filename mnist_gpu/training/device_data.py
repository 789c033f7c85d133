"""MNIST on a backend's device: labels and one-hot targets uploaded once, in one dtype, and each
copy of the images made only when a path reads it.

Every training and evaluation path reads its data from a ``DeviceData``. The scaled images
(``train_x``, ``test_x``: float copies, 188 MB and 31 MB in float32) are made on the device the
first time the array path, the GPU's pass or the dense evaluation asks for them. The fused CPU
passes never do: they read the lit pixels of the uint8 images, listed once per data set and kept
with it (a sweep's chunks, the seeds of ``curve``, a cluster worker all share them), and kept in
the data cache beside the images they were listed from, so that a later run maps them into memory
instead of listing them again.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..backend import Backend
from ..data import MNIST, N_CLASSES
from ..kernels.lit import LitPixels
from ..model.tutorial import N_INPUTS, N_OUTPUTS, one_hot, scale_images

DTYPES = ("float32", "float64")
_NAMES = {"train": "training", "test": "test"}


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


class DeviceData:
    """MNIST for one backend and dtype: labels and one-hot targets on the device; the images as
    the host's uint8 pixels, scaled onto the device (``train_x``, ``test_x``) on first use.

    ``sources`` (the published files of the full training and test images, or None) and
    ``cache`` (a ``data.cache.DataCache``, or None) say where the lists derived from the images
    may be kept between runs."""

    def __init__(self, backend: Backend, dtype: str, train_pixels, train_labels, test_pixels,
                 test_labels, *, sources=None, cache=None):
        xp = backend.xp
        self.backend, self.dtype = backend, dtype
        # The host's uint8 arrays (memory-mapped from the data cache when they came from it):
        # reading them costs nothing until a path needs the pixels.
        self.pixels = {"train": train_pixels, "test": test_pixels}
        self.sources = sources or {}
        self.cache = cache
        classes = backend.to_device(np.arange(N_CLASSES, dtype=np.uint8))
        with device_memory_guard(backend, "uploading the labels"):
            self.train_labels = backend.to_device(train_labels)
            self.test_labels = backend.to_device(test_labels)
            device_dtype = getattr(xp, dtype)
            self.train_y = one_hot(self.train_labels, classes, device_dtype, xp=xp)
            self.test_y = one_hot(self.test_labels, classes, device_dtype, xp=xp)
        self._scaled = {}
        # What the fused passes derive from the images (their lit pixels), listed once per set.
        self.derived = {}

    @property
    def train_x(self):
        """The training images scaled to [0, 1] in ``dtype`` on the device (made on first use)."""
        return self._scaled_images("train")

    @property
    def test_x(self):
        """The test images scaled to [0, 1] in ``dtype`` on the device (made on first use)."""
        return self._scaled_images("test")

    def _scaled_images(self, which: str):
        if which not in self._scaled:
            backend, pixels = self.backend, self.pixels[which]
            what = f"scaling {len(pixels):,} {_NAMES[which]} images to {self.dtype}"
            with device_memory_guard(backend, what, resident_bytes=self.resident_bytes):
                self._scaled[which] = scale_images(backend.to_device(pixels),
                                                   getattr(backend.xp, self.dtype),
                                                   xp=backend.xp)
        return self._scaled[which]

    def listing_input(self, fused, which: str):
        """What ``fused.prepare`` lists the lit pixels of: the host's uint8 pixels for a pass that
        lists them itself, else the scaled images on the device."""
        if fused.lists_pixels:
            return self.pixels[which]
        return self._scaled_images(which)

    def lit_pixels(self, fused, which: str) -> LitPixels:
        """The lit pixels of the ``"train"`` or ``"test"`` images as ``fused`` lists them: listed
        once per data set, and kept in the data cache when the images came from the published
        files (a prefix of them, ``--limit``, is listed afresh)."""
        key = (type(fused).__name__, which)
        if key not in self.derived:
            images = self.listing_input(fused, which)
            source = self.sources.get(which)
            if self.cache is None or source is None or fused.listing is None:
                self.derived[key] = fused.prepare(images)
            else:
                self.derived[key] = _lit_from_arrays(self.cache.derived(
                    f"{source.name}.{source.raw_sha256}.{fused.listing}",
                    lambda: _lit_arrays(fused.prepare(images))), images.shape[1])
        return self.derived[key]

    @property
    def n_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_labels.shape[0])

    @property
    def resident_bytes(self) -> int:
        """Device memory held by the arrays made so far (targets, labels, scaled images)."""
        item = np.dtype(self.dtype).itemsize
        rows = self.n_train + self.n_test
        scaled = sum(int(x.shape[0]) for x in self._scaled.values())
        return rows * N_OUTPUTS * item + rows + scaled * N_INPUTS * item


def _lit_arrays(lit: LitPixels) -> dict:
    return {"indptr": lit.indptr, "indices": lit.indices, "values": lit.values}


def _lit_from_arrays(arrays: dict, n_pixels: int) -> LitPixels:
    return LitPixels(arrays["indptr"], arrays["indices"], arrays["values"], n_pixels=n_pixels)


def to_device_data(backend: Backend, mnist: MNIST, dtype: str = "float32",
                   limit: int | None = None) -> DeviceData:
    """The data for ``backend`` in ``dtype``: labels and targets uploaded now, the images scaled
    onto the device when a path first reads them; the first ``limit`` training images only, if
    given."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    backend.check_dtype(dtype)  # MPS has no float64
    train_images, train_labels = mnist.train_images, mnist.train_labels
    if limit is not None and limit < len(train_labels):
        train_images, train_labels = train_images[:limit], train_labels[:limit]
    sources = {}
    if mnist.sources is not None:
        # The published images the lists of each set can be named after: a prefix is not them.
        if len(train_labels) == len(mnist.train_labels):
            sources["train"] = mnist.sources[0]
        sources["test"] = mnist.sources[2]
    return DeviceData(backend, dtype, train_images, train_labels, mnist.test_images,
                      mnist.test_labels, sources=sources, cache=mnist.cache)
