"""``mnist-gpu bench``: the throughput benchmark, its table, ratios, JSON and picture."""

from __future__ import annotations

import contextlib
import shutil
import sys

from ..backend import get_backend
from ..data import load_mnist, offline_from_environment, resolve_data_dir
from .common import (
    check_outputs, emit_json, json_on_stdout, log, require_plotting, save_figure, say,
)


def run(args) -> int:
    from ..bench import plot, report

    check_outputs(args, "json", "plot")
    if args.plot:
        require_plotting("--plot")
    offline = args.offline or offline_from_environment()  # a bad value refused before the work
    backends = []
    # A backend must compute in every dtype asked for: float64 is the one a device may lack.
    widest = "float64" if "float64" in args.dtype else args.dtype[0]
    for name in dict.fromkeys(args.backend):
        backend = get_backend(name, args.device, log=log, dtype=widest)
        if backend.label not in [b.label for b in backends]:
            backends.append(backend)
    mnist = load_mnist(args.data_dir, offline=offline, log=log)
    startup = None if args.no_startup else (resolve_data_dir(args.data_dir), bool(args.offline))
    with measuring() as status:
        measured = report.run_benchmark(
            backends, mnist, args.dtype, tuple(args.batch_sizes), args.repeats,
            quick=args.quick, peers=not args.no_peers, log=status,
            sweep_models=() if args.no_sweeps else tuple(args.sweep_models),
            cnn=not args.no_cnn, startup=startup, contention=None if args.no_contention else (
                resolve_data_dir(args.data_dir), bool(args.offline), args.threads),
            fast=not args.no_fast)
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


@contextlib.contextmanager
def measuring():
    """The benchmark's running commentary (each row's figure as it is measured): progress, as a
    bar would be. On a terminal, one line on stderr rewritten in place and cleared at the end;
    elsewhere (a log, a pipe) none: the table, or the JSON, holds every figure, once."""
    if not sys.stderr.isatty():
        yield None
        return

    def status(line):
        sys.stderr.write(f"\r\033[Kmnist-gpu: {line}"[:shutil.get_terminal_size().columns + 4])
        sys.stderr.flush()
    try:
        yield status
    finally:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
