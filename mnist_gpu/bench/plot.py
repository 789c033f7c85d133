"""The benchmark's picture: a panel per kind of row, each with axes that say what they count.

* training, the tutorial's network: images/s against batch size, log-log, one line per backend,
  dtype and kernel, the peers dashed, and the per-image loops as stars at B = 1;
* sweeps: model-images/s (images x models, per second) against the models side by side, one
  line per backend, dtype and training mode;
* the CNN (``--preset cnn``'s network) at its batch size, and inference over the test set:
  images/s, one bar per row, ours and the peers'.

Rows of different work never share an axis: a CNN's 128-image batches are not a point of the
tutorial's curve, nor a sweep's model-images at B = 1,024.
"""

from __future__ import annotations

from ..viz.figures import new_figure

PANELS = ("training", "sweep", "cnn", "inference")


def panel_of(row: dict) -> str | None:
    """Which panel a report row belongs to (None: not drawn, as the lit-pixel listing)."""
    if row["kind"] == "peer":
        name = row["name"]
        if "cnn" in name:
            return "cnn"
        return "inference" if "inference" in name or "matmul" in name else "training"
    return {"per-image": "training", "mini-batch": "training", "sweep": "sweep", "cnn": "cnn",
            "inference": "inference"}.get(row["kind"])


def plot(report: dict):
    """The report's rows, a panel per kind (only the kinds it holds)."""
    rows = {panel: [] for panel in PANELS}
    for r in report["rows"]:
        panel = panel_of(r)
        if panel and r["images_per_second"]:
            rows[panel].append(r)
    shown = [panel for panel in PANELS if rows[panel]] or ["training"]
    columns = 1 if len(shown) == 1 else 2
    lines = -(-len(shown) // columns)
    fig = new_figure(figsize=(7 * columns, 4.8 * lines), dpi=100)
    axes = fig.subplots(lines, columns, squeeze=False).flat
    draw = {"training": _training, "sweep": _sweeps, "cnn": _cnn, "inference": _inference}
    for panel, ax in zip(shown, axes):
        draw[panel](ax, rows[panel])
    for ax in list(axes):  # an odd number of panels leaves one empty
        ax.axis("off")
    fig.suptitle("mnist-gpu bench: throughput by kind of work")
    fig.tight_layout()
    return fig


def _peer(row) -> bool:
    return row["kind"] == "peer"


def _lines(ax, series: dict) -> None:
    for label, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, "--" if label.startswith(("naive", "torch")) else "-", marker="o",
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _training(ax, rows) -> None:
    series, per_image = {}, {}
    for r in rows:
        label = f"{r['backend']} {r['dtype']}"
        if not _peer(r):
            label += " fused" if r["name"].endswith(" fused") else " array"
        # The per-image loop is a row of its own at B = 1, beside a mini-batch of one.
        into = per_image if "per-image" in r["name"] else series
        into.setdefault(label, []).append((r["batch_size"] or 1, r["images_per_second"]))
    _lines(ax, series)
    colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
    for label, points in sorted(per_image.items()):
        xs, ys = zip(*points)
        ax.scatter(xs, ys, marker="*", s=120, zorder=3, color=colours.get(label),
                   label=f"{label} per-image loop")
    ax.legend(fontsize=7)
    ax.set_xlabel("batch size (images per update; stars: the tutorial's per-image loop)")
    ax.set_ylabel("training images/s")
    ax.set_title("training the tutorial's network (784-10)")


def _sweeps(ax, rows) -> None:
    series = {}
    for r in rows:
        mode = r["name"].split(", ", 1)[-1]  # "sweep of 8 models, per-image fused"
        series.setdefault(f"{r['backend']} {r['dtype']} {mode}", []).append(
            (r["models"], r["images_per_second"]))
    _lines(ax, series)
    ax.set_xlabel("models trained side by side (one stack)")
    ax.set_ylabel("model-images/s (images x models, per second)")
    ax.set_title("sweeps: many tutorial models at once")


def _bars(ax, rows, title: str) -> None:
    labels = [f"{r['backend']} {r['dtype']}: {r['name']}" for r in rows]
    values = [r["images_per_second"] for r in rows]
    colours = ["C1" if _peer(r) else "C0" for r in rows]
    ax.barh(range(len(rows)), values, color=colours)
    for index, value in enumerate(values):
        ax.text(value, index, f" {value:,.0f}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.25 * max(values))  # linear from zero: a bar's length is its rate
    ax.set_xlabel("images/s (orange: peers)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title)


def _cnn(ax, rows) -> None:
    batches = sorted({r["batch_size"] for r in rows if r["batch_size"]})
    at = f", batches of {', '.join(map(str, batches))}" if batches else ""
    _bars(ax, rows, f"the CNN (--preset cnn's network){at}")


def _inference(ax, rows) -> None:
    images = sorted({r["images"] for r in rows})
    _bars(ax, rows, f"inference, passes of {', '.join(f'{n:,}' for n in images)} test images")
