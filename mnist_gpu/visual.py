"""Pictures (matplotlib, Agg) and your own digits (Pillow): both from the ``plot`` extra.

* ``plot_curves``: accuracy against images seen over several seeds (median line, min-max band).
* ``plot_weight_maps``: what the network learned, each output's (or first-layer unit's) weights as
  a 28x28 image in a diverging colour map.
* ``plot_confusion``: the confusion matrix.
* ``mnist_style``: any picture of a digit prepared the way MNIST's were made.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np

from .files import write_atomically

# The tutorial's published figures that this project quotes (test accuracy after N images).
TUTORIAL_POINTS = {0: 0.1256, 60_000: 0.6928}


class MissingExtra(ImportError):
    """A picture needs matplotlib or Pillow: install mnist-gpu[plot]."""


def pyplot():
    """matplotlib.pyplot on the headless Agg backend, or ``MissingExtra`` saying what to install."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra("this needs matplotlib: pip install 'mnist-gpu[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Write a matplotlib figure as a PNG, atomically (as every output of mnist-gpu), and close
    it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        pyplot().close(fig)
    write_atomically(path, buffer.getvalue())


def _image_module():
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtra("this needs Pillow: pip install 'mnist-gpu[plot]'") from None
    return Image


def plot_curves(series: dict, path, title="Test accuracy as images stream in") -> None:
    """``series[label] = (images_seen, accuracies)`` with accuracies (seeds, checkpoints)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for label, (seen, accuracies) in series.items():
        acc = np.asarray(accuracies) * 100
        line, = ax.plot(seen, np.median(acc, axis=0), marker="o", label=f"{label} (median)")
        ax.fill_between(seen, acc.min(axis=0), acc.max(axis=0), alpha=0.2, color=line.get_color(),
                        label=f"{label} (min-max over {acc.shape[0]} seeds)")
    ax.scatter(list(TUTORIAL_POINTS), [100 * v for v in TUTORIAL_POINTS.values()], marker="*",
               s=180, color="black", zorder=4, label="the tutorial's published figures")
    _images_seen_axis(ax)
    _accuracy_axes(ax, title, "test accuracy (%)")
    fig.tight_layout()
    save_figure(fig, path)


def _images_seen_axis(ax) -> None:
    # A linear stretch below 100 images keeps the 0-image point on a log-scaled axis.
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(left=0)
    ax.set_xlabel("training images seen")


def _accuracy_axes(ax, title: str, ylabel: str) -> None:
    """An accuracy axis in percent, a light grid and the legend."""
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    # Upper left: every curve starts near 10% and climbs to the right, so that corner stays
    # empty (lower right covered the mini-batch curve, which climbs late).
    ax.legend(fontsize=8, loc="upper left")


# The images' main directions a weight map is drawn in: 30 carry 84% of the training images'
# energy (the mean square of their pixels), and drawn in them the tutorial's weights show digits.
MAP_DIRECTIONS = 30


def image_directions(images: np.ndarray, k: int = MAP_DIRECTIONS) -> np.ndarray:
    """The ``k`` main directions of ``images`` (n, 784), as orthonormal columns (784, k): the
    eigenvectors of their second moment ``X^T X / n`` with the largest eigenvalues."""
    X = np.asarray(images, dtype=np.float64) / 255
    values, vectors = np.linalg.eigh(X.T @ X / len(X))
    return vectors[:, np.argsort(values)[::-1][:k]]


def plot_sweep(result, path) -> None:
    """A sweep at a glance: the final accuracy against the learning rate (log scale; median over
    the seeds, their min-max band, each model a dot, diverged models a cross at the bottom), and
    each learning rate's median curve over its seeds."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=100)
    alphas = list(dict.fromkeys(m.alpha for m in result.models))
    finals = {a: [100 * m.final_accuracy for m in result.models
                  if m.alpha == a and m.final_accuracy is not None] for a in alphas}
    kept = [a for a in alphas if finals[a]]
    if kept:
        left.plot(kept, [np.median(finals[a]) for a in kept], marker="o", color="C0",
                  label="median over seeds")
        left.fill_between(kept, [min(finals[a]) for a in kept], [max(finals[a]) for a in kept],
                          alpha=0.2, color="C0", label="min-max over seeds")
        for a in kept:
            left.scatter([a] * len(finals[a]), finals[a], s=8, color="C0", alpha=0.6)
    diverged = [m.alpha for m in result.models if m.diverged]
    if diverged:
        left.scatter(diverged, [1] * len(diverged), marker="x", s=50, color="C3",
                     label=f"diverged ({len(diverged)})")
    left.set_xscale("log")
    left.set_xlabel("learning rate (alpha)")
    _accuracy_axes(left, "final accuracy by learning rate", "final test accuracy (%)")
    for index, alpha in enumerate(alphas):
        curves = [m.curve for m in result.models if m.alpha == alpha and not m.diverged]
        if not curves:
            continue
        seen = [c.images_seen for c in curves[0]]
        accuracy = np.median([[100 * c.accuracy for c in curve] for curve in curves], axis=0)
        right.plot(seen, accuracy, marker=".", color=f"C{index % 10}",
                   label=f"alpha {alpha:g} ({len(curves)} seeds)")
    _images_seen_axis(right)
    _accuracy_axes(right, "learning curves", "test accuracy (%), median over seeds")
    fig.suptitle(f"sweep of {len(result.models)} models, trained side by side")
    fig.tight_layout()
    save_figure(fig, path)


def plot_weight_maps(W: np.ndarray, path, max_units: int = 64, directions=None) -> None:
    """Each column of ``W`` (784, k) as a 28x28 map; the ten outputs in a row, else a grid.

    With ``directions`` (784, d orthonormal columns, from ``image_directions``) each map is drawn
    as the images see it: its projection on those directions. A digit only ever meets that part
    of the weights; the rest is mostly the random start, which pixels that are rarely lit keep
    (the rim of the inked area), and which otherwise hides every shape. The colour scale of each
    map is its own, symmetric about zero (red: pushes that output up, blue: down).
    """
    plt = pyplot()
    shown_W = W if directions is None else directions @ (directions.T @ W)
    units = min(W.shape[1], max_units)
    columns = units if units <= 10 else int(np.ceil(np.sqrt(units)))
    rows = int(np.ceil(units / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows + 0.4), dpi=100,
                             squeeze=False)
    for unit, ax in enumerate(axes.flat):
        ax.axis("off")
        if unit >= units:
            continue
        column = shown_W[:, unit]
        # A robust range: the 99th percentile of the magnitudes, so one extreme pixel does not
        # wash out the rest.
        span = float(np.percentile(np.abs(column), 99)) or 1.0
        ax.imshow(column.reshape(28, 28), cmap="RdBu_r", vmin=-span, vmax=span)
        ax.set_title(str(unit) if W.shape[1] == 10 else f"unit {unit}", fontsize=9)
    what = "weights per output digit" if W.shape[1] == 10 else "first-layer units"
    if directions is not None:
        what += f", as the images see them (their {directions.shape[1]} main directions)"
    fig.suptitle(what + "; red: up, blue: down", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels.astype(np.int64) * n + predictions.astype(np.int64),
                       minlength=n * n).reshape(n, n)


def plot_confusion(matrix: np.ndarray, path, title="Confusion matrix") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5), dpi=100)
    shown = ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax)
    fig.tight_layout()
    save_figure(fig, path)


# --------------------------------------------------------------------------- your own digit


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
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageReadError(f"{path}: {err.strerror or err}") from None
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
    Image = _image_module()
    gray = read_gray(path)

    def border(image):
        return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])

    if np.median(border(gray)) > 127:  # dark ink on a light background
        gray = 255 - gray
    gray = np.clip(gray - np.median(border(gray)), 0, None)  # the background to black
    if gray.max() <= 0:
        raise ImageReadError(f"{path}: no digit found (the image is blank)")
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
    # over the test set: 13.99, 14.00).
    total = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(28)).sum() / total
    cx = (canvas.sum(axis=0) * np.arange(28)).sum() / total
    canvas = _shift(canvas, int(round(14 - cy)), int(round(14 - cx)))
    return np.clip(canvas, 0, 255).astype(np.uint8)


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
