"""What every command shares: its errors and their exit statuses, the one-line log on stderr,
progress bars, the backend and data chosen at the edge, and the checks made on output paths
before any work."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..backend import get_backend
from ..data import load_mnist
from ..io.files import output_problem
from ..io.weights import weights_path


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


class Failure(Exception):
    """A run that failed on its own terms (exit status 1)."""


def log(message):
    print(f"mnist-gpu: {message}", file=sys.stderr)


def progress_bar(total, quiet, unit="img"):
    """A tqdm bar on stderr when it is a terminal; None (no bar) otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False)


@contextlib.contextmanager
def images_progress(total, quiet):
    """A ``progress(images_seen)`` callback drawing a bar, or None when there is no bar."""
    bar = progress_bar(total, quiet)
    try:
        yield (lambda seen: bar.update(seen - bar.n)) if bar else None
    finally:
        if bar:
            bar.close()


def backend_and_mnist(args):
    """The backend chosen at the edge, and the verified data: how every training command starts."""
    backend = get_backend(args.backend, args.device, log=log, dtype=getattr(args, "dtype", None))
    return backend, load_mnist(args.data_dir, offline=args.offline or None, log=log)


def check_outputs(args, *flags):
    """Refuse, before any work, an output path that could not be written (the work would be
    lost after it was done)."""
    for flag in flags:
        value = getattr(args, flag.replace("-", "_"))
        if not value:
            continue
        path = weights_path(value) if flag == "save" and not Path(value).is_dir() else value
        problem = output_problem(path)
        if problem:
            shown = f"{value} (written as {path})" if str(path) != str(value) else value
            raise UsageError(f"--{flag} {shown}: {problem}")


def require_plotting(flag):
    """Fail before the work, not after it, when a picture is asked for and cannot be drawn."""
    from ..viz.figures import MissingExtra, new_figure

    try:
        new_figure()
    except MissingExtra as err:
        raise UsageError(f"{flag}: {err}") from None


def save_figure(figure, path) -> None:
    """Write a figure as a PNG, atomically."""
    from ..viz.figures import save_png

    save_png(figure, path)
