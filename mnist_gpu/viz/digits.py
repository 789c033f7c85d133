"""Your own digits (Pillow, from the ``plot`` extra): any picture of a digit prepared the way
MNIST's were made, read with bounded memory whatever the file, and the 28x28 image the network
saw, as a PNG."""

from __future__ import annotations

import io
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from ..io.files import write_atomically
from .figures import MissingExtra


def _image_module():
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtra("this needs Pillow: pip install 'mnist-gpu[plot]'") from None
    return Image


# Pictures are refused beyond this many pixels (a 50-megapixel photo passes; the 400-megapixel
# "decompression bomb" of a few hundred KB does not), before anything is decoded.
MAX_PIXELS = 64_000_000
# A picture is reduced to at most about this many pixels per side while or right after it is
# decoded, before any conversion to floats: a digit needs 20x20 in the end.
WORKING_SIDE = 512
# What `predict FOLDER` reads: the extensions Pillow registers for reading that are common.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm", ".pnm")


class ImageReadError(ValueError):
    """A file that cannot be read as a picture of a digit: the message is one line naming it."""


def read_gray(path) -> np.ndarray:
    """A picture as a float64 grayscale array of at most ``WORKING_SIDE`` (about) per side.

    Memory is bounded by the job, not the file: the pixel count is checked from the header before
    decoding; JPEGs are decoded at a reduced scale (``draft``); other pictures are reduced right
    after decoding (``reduce``), before any conversion. Palette, 1-bit, 16-bit, 32-bit, float,
    CMYK and alpha pictures are all read; an alpha channel is composited on white (a digit drawn
    on a transparent canvas). Every failure is an ``ImageReadError`` naming the file.
    """
    Image = _image_module()
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        status = path.stat()
    except OSError as err:
        raise ImageReadError(f"{path}: {err.strerror or err}") from None
    if not stat.S_ISREG(status.st_mode):
        # A FIFO would block until a writer came and /dev/zero never ends: neither is a picture.
        raise ImageReadError(f"{path}: not a regular file ({_kind(status.st_mode)}); give a "
                             "picture's file")
    size = status.st_size
    if size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels; ours is the lower cap below, refused in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            picture = Image.open(path)
        with picture:
            width, height = picture.size
            if width * height > MAX_PIXELS:
                raise ImageReadError(f"{path}: {width}x{height} is {width * height:,} pixels, "
                                     f"more than the {MAX_PIXELS:,} accepted")
            frames = getattr(picture, "n_frames", 1)
            if frames > 1:
                raise ImageReadError(f"{path}: {frames} frames (an animation or a multi-page "
                                     "file); give a single picture")
            picture.draft(picture.mode, (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode smaller
            picture.load()
            return _small_gray(picture, Image)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as err:  # raised by open(), from the header's size
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ImageReadError(f"{path}: {count}, more than the {MAX_PIXELS:,} accepted "
                             "(a decompression bomb?)") from None
    except MemoryError:
        raise ImageReadError(f"{path}: not enough memory to decode it") from None
    except Exception as err:  # noqa: BLE001 - hostile input: Pillow raises many types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, Image.UnidentifiedImageError):
            reason = "not an image Pillow can read"
        raise ImageReadError(f"{path}: cannot read the image ({reason})") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _small_gray(picture, Image) -> np.ndarray:
    """``picture`` (decoded) reduced to about ``WORKING_SIDE`` per side, as float64 gray."""
    if picture.mode == "P":  # palette indices cannot be averaged: expand them first
        picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
    elif picture.mode == "1" or picture.mode.startswith("I;16"):
        picture = picture.convert("L" if picture.mode == "1" else "I")
    factor = max(picture.size) // WORKING_SIDE
    if factor > 1:
        picture = picture.reduce(factor)
    if picture.mode in ("I", "F"):  # 16-bit, 32-bit or float: stretch the range to 0-255
        values = np.asarray(picture, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        return (values - low) * (255 / (high - low)) if high > low else np.zeros_like(values)
    if "A" in picture.getbands() or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, rgba)
    return np.asarray(picture.convert("L"), dtype=np.float64)


def mnist_style(path) -> np.ndarray:
    """A picture of one digit as MNIST made its images: uint8 (28, 28), light digit on black.

    Read by ``read_gray`` (bounded memory, any mode); inverted if the background is light;
    cropped to the ink; scaled to fit a 20x20 box (aspect kept, anti-aliased); placed in 28x28
    with its centre of mass at the centre.
    """
    return prepare_digit(read_gray(path), path)


def prepare_digit(gray: np.ndarray, name) -> np.ndarray:
    """``mnist_style``'s preparation of a picture already read: ``gray`` (float64, 0-255, at
    most about ``WORKING_SIDE`` per side, as ``read_gray`` gives it) to uint8 (28, 28). The one
    code path of ``predict``'s files and ``serve``'s drawings; ``name`` names the picture in the
    ``ImageReadError`` of a blank one."""
    Image = _image_module()

    def border(image):
        return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])

    if np.median(border(gray)) > 127:  # dark ink on a light background
        gray = 255 - gray
    gray = np.clip(gray - np.median(border(gray)), 0, None)  # the background to black
    if gray.max() <= 0:
        raise ImageReadError(f"{name}: no digit found (the image is blank)")
    ink = gray > 0.1 * gray.max()
    rows, cols = np.nonzero(ink)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20 / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    glyph = Image.fromarray((crop / crop.max() * 255).astype(np.uint8)).resize(
        size, Image.Resampling.LANCZOS)
    glyph = np.asarray(glyph, dtype=np.float64)
    canvas = np.zeros((28, 28))
    top, left = (28 - glyph.shape[0]) // 2, (28 - glyph.shape[1]) // 2
    canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    # Shift the centre of mass to pixel (14, 14), where MNIST's digits have theirs (measured
    # over the test set: 13.99, 14.00), but never so far that the glyph's box leaves the frame:
    # a top-heavy 7 centred by its mass alone lost two rows of ink (MNIST's digits lose none).
    total = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / total
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / total
    dy = _within(int(round(14 - cy)), top, 28 - top - glyph.shape[0])
    dx = _within(int(round(14 - cx)), left, 28 - left - glyph.shape[1])
    canvas = _shift(canvas, dy, dx)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def _within(shift: int, before: int, after: int) -> int:
    """``shift`` bounded so that a box with ``before`` free pixels on one side and ``after`` on
    the other stays inside the frame."""
    return max(-before, min(after, shift))


def _shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = image[ys, xs]
    return out


def save_gray_png(image: np.ndarray, path, scale: int = 1) -> None:
    Image = _image_module()
    picture = Image.fromarray(image.astype(np.uint8))
    if scale > 1:
        picture = picture.resize((image.shape[1] * scale, image.shape[0] * scale),
                                 Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())
