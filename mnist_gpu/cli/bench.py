"""``mnist-gpu bench``: the throughput benchmark, its table, ratios, JSON and picture."""

from __future__ import annotations

import json

from ..backend import get_backend
from ..data import load_mnist, resolve_data_dir
from ..io.files import write_atomically
from .common import check_outputs, log, require_plotting, save_figure


def run(args) -> int:
    from ..bench import plot, report

    check_outputs(args, "json", "plot")
    if args.plot:
        require_plotting("--plot")
    backends = []
    for name in dict.fromkeys(args.backend):
        backend = get_backend(name, args.device, log=log)
        if backend.name not in [b.name for b in backends]:
            backends.append(backend)
    mnist = load_mnist(args.data_dir, offline=args.offline or None, log=log)
    startup = None if args.no_startup else (resolve_data_dir(args.data_dir), bool(args.offline))
    measured = report.run_benchmark(
        backends, mnist, args.dtype, tuple(args.batch_sizes), args.repeats, quick=args.quick,
        peers=not args.no_peers, log=log,
        sweep_models=() if args.no_sweeps else tuple(args.sweep_models), cnn=not args.no_cnn,
        startup=startup)
    print(report.format_table(measured))
    for line in report.ratios(measured):
        print(line)
    if args.json:
        write_atomically(args.json, json.dumps(measured, indent=1).encode())
        print(f"wrote {args.json}")
    if args.plot:
        save_figure(plot.plot(measured), args.plot)
        print(f"wrote {args.plot}")
    return 0
