"""Pictures of training, as ``matplotlib.figure.Figure`` objects (the ``plot`` extra).

Every function returns a figure drawn on its own Agg canvas (``canvas.InlineFigure``), never
through pyplot's global state or ``matplotlib.use``: a notebook shows it inline when a cell
returns it (and keeps its own backend), a script saves it with ``save_png``.

* ``plot_digits``: a grid of digits with their labels (and predictions, if given).
* ``plot_curves``: accuracy against images seen over several seeds (median line, min-max band).
* ``plot_sweep``: a sweep's accuracy against its learning rates, and its curves.
* ``plot_weight_maps``: what the network learned, each output's (or first-layer unit's) weights as
  a 28x28 image in a diverging colour map.
* ``plot_conv_kernels``: a CNN's first convolution, each kernel as a small K x K image.
* ``plot_confusion``: the confusion matrix.
"""

from __future__ import annotations

import io

import numpy as np

from ..io.files import write_atomically

# The tutorial's published figures that this project quotes (test accuracy after N images).
TUTORIAL_POINTS = {0: 0.1256, 60_000: 0.6928}


class MissingExtra(ImportError):
    """A picture needs matplotlib or Pillow: install mnist-gpu[plot]."""


def new_figure(**options):
    """A ``matplotlib.figure.Figure`` on its own Agg canvas (no pyplot, no global backend) that
    a notebook shows inline, or ``MissingExtra`` saying what to install."""
    try:
        import matplotlib  # noqa: F401 - first: whether it is installed at all
    except ImportError:
        raise MissingExtra("this needs matplotlib: pip install 'mnist-gpu[plot]'") from None
    from .canvas import InlineFigure

    return InlineFigure(**options)


def png_bytes(figure) -> bytes:
    """The figure rendered as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_png(figure, path) -> None:
    """Write the figure as a PNG, atomically (as every output of mnist-gpu)."""
    write_atomically(path, png_bytes(figure))


def _image_grid(count: int, columns: int, cell: tuple[float, float], top: float):
    """(a figure of ``count`` small pictures, ``columns`` to a row, each ``cell`` inches, with
    ``top`` inches for its title; the axes of the ``count`` pictures, in order), every axis
    unframed and the grid's cells past ``count`` left empty."""
    rows = int(np.ceil(count / columns))
    fig = new_figure(figsize=(cell[0] * columns, cell[1] * rows + top), dpi=100)
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    for ax in axes:
        ax.axis("off")
    return fig, axes[:count]


def plot_digits(images, labels=None, predictions=None, count: int = 40, columns: int = 10,
                title: str | None = None):
    """The first ``count`` of ``images`` ((n, 784) or (n, 28, 28), uint8 or scaled) in a grid,
    each titled with its label, and with its prediction where ``predictions`` are given (red
    where it is wrong)."""
    images = np.asarray(images)[:count].reshape(-1, 28, 28)
    count = len(images)
    fig, axes = _image_grid(count, max(1, min(columns, count)), (1.1, 1.25), 0.4)
    for index, ax in enumerate(axes):
        ax.imshow(images[index], cmap="gray_r")
        caption, colour = [], "black"
        if labels is not None:
            caption.append(str(int(labels[index])))
        if predictions is not None:
            guess = int(predictions[index])
            caption.append(f"-> {guess}")
            if labels is not None and guess != int(labels[index]):
                colour = "C3"
        ax.set_title(" ".join(caption), fontsize=9, color=colour)
    if title is None:
        title = (f"{count} digits: label -> prediction (red: wrong)" if predictions is not None
                 else f"{count} digits and their labels")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(series: dict, title="Test accuracy as images stream in"):
    """``series[label]``: one run's curve (a ``Curve``, list of checkpoints), the curves of
    several seeds (a list of them), or ``(images_seen, accuracies)`` with accuracies of shape
    (seeds, checkpoints)."""
    fig = new_figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    for label, curves in series.items():
        seen, accuracies = _seen_and_accuracies(curves)
        acc = np.asarray(accuracies) * 100
        if len(acc) == 1:  # one run: its line, no band
            ax.plot(seen, acc[0], marker="o", label=label)
            continue
        line, = ax.plot(seen, np.median(acc, axis=0), marker="o", label=f"{label} (median)")
        ax.fill_between(seen, acc.min(axis=0), acc.max(axis=0), alpha=0.2, color=line.get_color(),
                        label=f"{label} (min-max over {acc.shape[0]} seeds)")
    ax.scatter(list(TUTORIAL_POINTS), [100 * v for v in TUTORIAL_POINTS.values()], marker="*",
               s=180, color="black", zorder=4, label="the tutorial's published figures")
    _images_seen_axis(ax)
    _accuracy_axes(ax, title, "test accuracy (%)")
    fig.tight_layout()
    return fig


def _seen_and_accuracies(curves):
    """(images seen, accuracies (seeds, checkpoints)) of one series of ``plot_curves``."""
    if isinstance(curves, tuple):
        return curves
    if curves and hasattr(curves[0], "images_seen"):  # one curve: a list of checkpoints
        curves = [curves]
    return ([point.images_seen for point in curves[0]],
            [[point.accuracy for point in curve] for curve in curves])


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


def plot_sweep(result):
    """A sweep at a glance: the final accuracy against the learning rate (log scale; median over
    the seeds, their min-max band, each model a dot, diverged models a cross at the bottom), and
    each learning rate's median curve over its seeds."""
    fig = new_figure(figsize=(11, 4.6), dpi=100)
    left, right = fig.subplots(1, 2)
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
    return fig


def plot_weight_maps(W: np.ndarray, max_units: int = 64, directions=None):
    """Each column of ``W`` (784, k) as a 28x28 map; the ten outputs in a row, else a grid.

    With ``directions`` (784, d orthonormal columns, from ``image_directions``) each map is drawn
    as the images see it: its projection on those directions. A digit only ever meets that part
    of the weights; the rest is mostly the random start, which pixels that are rarely lit keep
    (the rim of the inked area), and which otherwise hides every shape. The colour scale of each
    map is its own, symmetric about zero (red: pushes that output up, blue: down).
    """
    shown_W = W if directions is None else directions @ (directions.T @ W)
    units = min(W.shape[1], max_units)
    columns = units if units <= 10 else int(np.ceil(np.sqrt(units)))
    fig, axes = _image_grid(units, columns, (1.4, 1.6), 0.4)
    for unit, ax in enumerate(axes):
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
    return fig


def plot_conv_kernels(W: np.ndarray, k: int, max_kernels: int = 64):
    """The first convolution's kernels, ``W`` (k * k, filters) with rows in (dy, dx) order (the
    im2col patches' order, one input channel), each as a k x k image: the strokes and edges a
    CNN's first layer responds to. Each kernel's colour scale is its own, symmetric about zero
    (red: the kernel adds where the ink is, blue: it subtracts)."""
    kernels = min(W.shape[1], max_kernels)
    fig, axes = _image_grid(kernels, min(kernels, 8), (1.2, 1.3), 0.5)
    for index, ax in enumerate(axes):
        kernel = W[:, index].reshape(k, k)
        span = float(np.abs(kernel).max()) or 1.0
        ax.imshow(kernel, cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
        ax.set_title(f"kernel {index}", fontsize=8)
    shown = f"{kernels} of {W.shape[1]}" if kernels < W.shape[1] else f"{kernels}"
    fig.suptitle(f"first convolution: {shown} kernels of {k}x{k} pixels; red: adds ink, "
                 "blue: subtracts", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels.astype(np.int64) * n + predictions.astype(np.int64),
                       minlength=n * n).reshape(n, n)


def plot_confusion(matrix: np.ndarray, title="Confusion matrix"):
    fig = new_figure(figsize=(6.5, 5.5), dpi=100)
    ax = fig.subplots()
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
    return fig
