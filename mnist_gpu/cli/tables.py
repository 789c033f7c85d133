"""What the commands print: a training run's accuracy table, row by row as each checkpoint is
measured, and a sweep's table of models and summaries."""

from __future__ import annotations

import contextlib

from ..io.weights import save_weights
from ..training import TrainingDiverged
from ..training.results import curve_json
from .common import Failure, emit_json, json_on_stdout, say, writing


class TrainingTable:
    """The accuracy table of a training run, printed (and flushed) a row at a time as each
    checkpoint is evaluated, so that an interrupted run keeps what it printed; or, with
    ``--json``, one object at the end (marked ``interrupted`` with what finished, on Ctrl-C)."""

    def __init__(self, args, config: dict, backend: dict, kernel: str):
        self.args, self.config, self.backend, self.kernel = args, config, backend, kernel
        self.points = []

    def row(self, point):
        table = not json_on_stdout(self.args)
        if not self.points and table:
            self._print(*self._header())
        self.points.append(point)
        if table:
            self._print(f"{point.images_seen:>12,}  {point.accuracy:>12.2%}  {point.mse:>10.4f}")

    def _header(self):
        cfg, info = self.config, self.backend
        where = info.get("gpu") or info.get("cpu") or info.get("device", "")
        deep = "architecture" in cfg
        mode = ("per-image" if cfg["batch_size"] == 1
                else f"mini-batches of {cfg['batch_size']}")
        if not deep:
            mode += f" ({self.kernel} kernel)"
        rate = cfg["rate"] if deep else f"alpha {cfg['alpha']}"
        loss = "test loss" if deep else "test MSE"
        return (f"{cfg.get('architecture', '784-10, the tutorial')}: backend {info['backend']} "
                f"({where}), {cfg['dtype']}, {mode}, {rate}, {cfg['epochs']} epoch(s), "
                f"seed {cfg['seed']}{', shuffled' if cfg['shuffle'] else ''}",
                f"{'images seen':>12}  {'test accuracy':>13}  {loss:>10}")

    @staticmethod
    def _print(*lines):
        for line in lines:
            print(line, flush=True)

    @contextlib.contextmanager
    def interruptible(self):
        """The run inside: on Ctrl-C (``"interrupted": true``) or a divergence (``"diverged"``:
        where and why), ``--json`` still gets its object, with the curve that was measured."""
        try:
            yield
        except (KeyboardInterrupt, TrainingDiverged) as err:
            if self.args.json:
                ended = ({"interrupted": True} if isinstance(err, KeyboardInterrupt) else
                         {"diverged": str(err)})
                loss = self.config.get("loss", "mse")
                emit_json(self.args, {**ended, "config": self.config,
                                      "backend": self.backend, "kernel": self.kernel,
                                      "curve": curve_json(self.points, loss)})
            raise

    def finish(self, result, arrays, weights):
        """Save (``weights`` as ``weights``, and the other ``arrays``), print the summary and the
        JSON, and apply the accuracy gate."""
        args = self.args
        if args.save:
            with writing("--save", args.save):
                saved = save_weights(args.save, weights, result.to_json(), **arrays)
            say(args, f"saved weights to {saved}")
        if not json_on_stdout(args):
            self._print(f"trained {result.images_trained:,} images in {result.seconds:.3f} s "
                        f"({result.images_per_second:,.0f} images/s)",
                        f"final test accuracy: {result.final_accuracy:.2%}")
        if args.json:
            emit_json(args, result.to_json())
        if args.min_accuracy is not None and result.final_accuracy < args.min_accuracy:
            raise Failure(
                f"final accuracy {result.final_accuracy:.2%} is below --min-accuracy "
                f"{args.min_accuracy:.2%}"
            )




def print_sweep(result, n_alphas, n_seeds):
    settings, info = result.settings, result.backend
    where = info.get("gpu") or info.get("cpu") or info.get("device", "")
    mode = ("per-image" if settings["batch_size"] == 1
            else f"mini-batches of {settings['batch_size']}")
    what = settings.get("architecture", "784-10, the tutorial")
    order = (f"shuffled (data seed {settings['data_seed']})" if settings["shuffle"]
             else "file order")
    print(f"sweep of {len(result.models)} models ({n_alphas} learning rate(s) x {n_seeds} "
          f"seed(s)): {what}, backend {info['backend']} ({where}), {settings['dtype']}, {mode} "
          f"({result.kernel} kernel), {settings['epochs']} epoch(s), images in {order}",
          flush=True)
    print(f"{'alpha':>10}  {'seed':>5}  {'final':>7}  {'best (images seen)':>24}  status")
    for m in result.models:
        best = m.best
        best_text = f"{best.accuracy:.2%} ({best.images_seen:,})" if best else "-"
        final = "-" if m.final_accuracy is None else f"{m.final_accuracy:.2%}"
        status = f"diverged {m.diverged}" if m.diverged else "ok"
        print(f"{m.alpha:>10g}  {m.seed:>5}  {final:>7}  {best_text:>24}  {status}")
    print("per learning rate, over its seeds: final accuracy, mean [min - max]")
    for row in result.summaries():
        if row["mean"] is None:
            print(f"{row['alpha']:>10g}  all {row['diverged']} diverged")
            continue
        diverged = f"; {row['diverged']} diverged" if row["diverged"] else ""
        print(f"{row['alpha']:>10g}  {row['mean']:.2%} [{row['min']:.2%} - {row['max']:.2%}]  "
              f"({row['models']} models{diverged})")
    chunks = f", in {result.chunks} chunks" if result.chunks > 1 else ""
    timing = (f"x {result.images_per_model:,} images in {result.seconds:.3f} s "
              f"({result.model_images_per_second:,.0f} model-images/s{chunks})")
    if result.models_trained == len(result.models):
        print(f"trained {len(result.models)} models {timing}", flush=True)
        return
    # Resumed (or partly failed): the time and the rate are this run's, of what it trained.
    others = []
    if result.resumed:
        others.append(f"{result.resumed} came from the results file of an earlier run")
    if result.untrained:
        others.append(f"{result.untrained} were not trained (their chunk failed)")
    print(f"this run trained {result.models_trained} of the {len(result.models)} models "
          f"{timing}; of the others, {' and '.join(others)}", flush=True)
