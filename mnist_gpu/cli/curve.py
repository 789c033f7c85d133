"""``mnist-gpu curve``: the accuracy against images seen over several seeds, as a table and a
picture with the tutorial's published figures."""

from __future__ import annotations

import numpy as np

from .args import check_rates
from .common import (
    backend_and_mnist, check_outputs, emit_json, json_on_stdout, log, progress_bar,
    require_plotting, save_figure, say,
)


def run(args) -> int:
    from ..sweep import grid, run_sweep
    from ..training import TrainConfig, TrainingDiverged, to_device_data
    from ..viz.figures import TUTORIAL_POINTS, plot_curves

    check_outputs(args, "plot", "json")
    check_rates([args.alpha], args.dtype)
    if args.compare_batch_size:
        check_rates([args.compare_alpha], args.dtype, "--compare-alpha")
    if args.plot:
        require_plotting("--plot")
    backend, mnist = backend_and_mnist(args)
    data = to_device_data(backend, mnist, args.dtype)
    runs = [("per-image", TrainConfig(alpha=args.alpha, checkpoints=args.checkpoints))]
    if args.compare_batch_size:
        runs.append((f"mini-batch {args.compare_batch_size}",
                     TrainConfig(alpha=args.compare_alpha, batch_size=args.compare_batch_size,
                                 checkpoints=args.checkpoints)))
    bar = progress_bar(len(runs) * args.seeds, args.quiet or json_on_stdout(args), unit="run")
    series, report = {}, {}
    for label, config in runs:
        # The seeds of one configuration are one sweep: trained side by side, each model as its
        # own run would be.
        result = run_sweep(data, grid([config.alpha], range(args.seeds)), config, log=log,
                           on_chunk=bar.update if bar else None)
        failed = next((m for m in result.models if m.diverged), None)
        if failed:
            message = (f"seed {failed.seed}: training diverged {failed.diverged} (alpha = "
                       f"{failed.alpha}); try a smaller --alpha")
            if args.json:  # what was measured, and where it ended
                emit_json(args, {"diverged": f"{label}: {message}", "backend": backend.describe(),
                                 "seeds": args.seeds, "series": report,
                                 "tutorial": TUTORIAL_POINTS})
            raise TrainingDiverged(message)
        accuracies = [[c.accuracy for c in m.curve] for m in result.models]
        seen = [c.images_seen for c in result.models[0].curve]
        series[label] = (seen, accuracies)
        acc = np.asarray(accuracies)
        report[label] = {"images_seen": seen, "median": np.median(acc, axis=0).tolist(),
                         "min": acc.min(axis=0).tolist(), "max": acc.max(axis=0).tolist(),
                         "per_seed": accuracies}
    if bar:
        bar.close()
    if not json_on_stdout(args):
        for label, row in report.items():
            alpha = runs[0][1].alpha if label == "per-image" else args.compare_alpha
            print(f"{label} (alpha {alpha}, {args.seeds} seeds): images seen -> test accuracy, "
                  "median [min-max]")
            for n, med, lo, hi in zip(row["images_seen"], row["median"], row["min"], row["max"]):
                print(f"{n:>10,}  {med:7.2%}  [{lo:.2%} - {hi:.2%}]")
    if args.json:
        emit_json(args, {"backend": backend.describe(), "seeds": args.seeds, "series": report,
                         "tutorial": TUTORIAL_POINTS})
    if args.plot:
        save_figure(plot_curves(series), args.plot)
        say(args, f"wrote {args.plot}")
    return 0
