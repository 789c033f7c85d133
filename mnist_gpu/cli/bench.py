"""``mnist-gpu bench``: the throughput benchmark, its table, ratios, JSON and picture."""

from __future__ import annotations

from ..backend import get_backend
from ..data import load_mnist, resolve_data_dir
from .common import (
    check_outputs, emit_json, json_on_stdout, log, require_plotting, save_figure, say,
)


def run(args) -> int:
    from ..bench import plot, report

    check_outputs(args, "json", "plot")
    if args.plot:
        require_plotting("--plot")
    backends = []
    # A backend must compute in every dtype asked for: float64 is the one a device may lack.
    widest = "float64" if "float64" in args.dtype else args.dtype[0]
    for name in dict.fromkeys(args.backend):
        backend = get_backend(name, args.device, log=log, dtype=widest)
        if backend.label not in [b.label for b in backends]:
            backends.append(backend)
    mnist = load_mnist(args.data_dir, offline=args.offline or None, log=log)
    startup = None if args.no_startup else (resolve_data_dir(args.data_dir), bool(args.offline))
    measured = report.run_benchmark(
        backends, mnist, args.dtype, tuple(args.batch_sizes), args.repeats, quick=args.quick,
        peers=not args.no_peers, log=log,
        sweep_models=() if args.no_sweeps else tuple(args.sweep_models), cnn=not args.no_cnn,
        startup=startup, contention=None if args.no_contention else (
            resolve_data_dir(args.data_dir), bool(args.offline), args.threads))
    if not json_on_stdout(args):
        print(report.format_table(measured))
        for line in report.ratios(measured):
            print(line)
    if args.json:
        emit_json(args, measured)
    if args.plot:
        save_figure(plot.plot(measured), args.plot)
        say(args, f"wrote {args.plot}")
    return 0
