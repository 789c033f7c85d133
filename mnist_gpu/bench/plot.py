"""The benchmark's picture: images/s against batch size, one line per backend and dtype."""

from __future__ import annotations

from ..viz.figures import new_figure

def plot(report: dict):
    """images/s against batch size, log-log, one line per backend and dtype, with the peers."""
    fig = new_figure(figsize=(8, 5.5), dpi=100)
    ax = fig.subplots()
    series, fused = {}, {}
    for r in report["rows"]:
        if r["batch_size"] is None:
            continue
        label = f"{r['backend']} {r['dtype']}"
        if r["name"] == "per-image fused":
            fused[label] = r["images_per_second"]
        elif "per-image" not in r["name"]:
            if r["name"].endswith(" fused"):
                label += " fused"
            series.setdefault(label, []).append((r["batch_size"], r["images_per_second"]))
    colours = {}
    for label, points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points)
        style = "--" if label.startswith(("naive", "torch")) else "-"
        colours[label] = ax.plot(xs, ys, style, marker="o", label=label)[0].get_color()
    for label, images_per_second in fused.items():  # a star in its fused line's colour, at B = 1
        ax.scatter([1], [images_per_second], marker="*", s=140, zorder=3,
                   color=colours.get(f"{label} fused", colours.get(label)),
                   label=f"{label} per-image fused")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (images per update)")
    ax.set_ylabel("training throughput (images/s)")
    ax.set_title("mnist-gpu: training throughput by batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
