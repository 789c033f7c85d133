"""What every command shares: its errors and their exit statuses, the one-line log on stderr,
progress bars, the backend and data chosen at the edge, the checks made on output paths before
any work, and the writing of every output (one line and exit status 1 when it fails)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..backend import get_backend
from ..data import load_mnist, offline_from_environment
from ..io import strict_json
from ..io.files import output_problem, same_file, write_atomically
from ..io.weights import weights_path

# ``--json`` alone (or ``--json -``): the JSON object goes to stdout, instead of the table.
STDOUT = "-"


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


class Failure(Exception):
    """A run that failed on its own terms (exit status 1)."""


def log(message):
    print(f"mnist-gpu: {message}", file=sys.stderr)


def progress_bar(total, quiet, unit="img"):
    """A tqdm bar when stderr is a terminal (on stderr) or a notebook's (a widget, through
    ``tqdm.auto``); None (no bar) otherwise, so that a log or a pipe gets none."""
    if quiet or not (sys.stderr.isatty() or in_notebook()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (tqdm.auto's own test: its shell is loaded)."""
    return "ipykernel.zmqshell" in sys.modules


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
    offline = args.offline or offline_from_environment()  # a bad value refused before the work
    backend = get_backend(args.backend, args.device, log=log, dtype=getattr(args, "dtype", None))
    return backend, load_mnist(args.data_dir, offline=offline, log=log)


def check_outputs(args, *flags, inputs=()):
    """Refuse, before any work, an output path that could not be written (the work would be
    lost after it was done), or that is one of the command's inputs or another of its outputs,
    the same file by any path (a link, ``./``, a hard link): writing it would destroy what was
    read, or one output would replace the other. The inputs are ``--weights``, ``--init`` and
    the data directory's files where the command has them, and ``inputs`` ((name, path) pairs:
    ``predict``'s pictures)."""
    outputs = []
    for flag in flags:
        value = getattr(args, flag.replace("-", "_"))
        if not value or (flag == "json" and value == STDOUT):
            continue
        path = weights_path(value) if flag == "save" and not Path(value).is_dir() else value
        shown = f"{value} (written as {path})" if str(path) != str(value) else value
        problem = output_problem(path)
        if problem:
            raise UsageError(f"--{flag} {shown}: {problem}")
        outputs.append((f"--{flag} {shown}", path))
    read = [*_inputs_of(args), *inputs]
    for index, (name, path) in enumerate(outputs):
        for other, other_path in read:
            if same_file(path, other_path):
                raise UsageError(f"{name}: that file is {other}, which writing it would "
                                 "destroy; choose another path")
        for other, other_path in outputs[:index]:
            if same_file(path, other_path):
                raise UsageError(f"{name}: that file is {other} too, and one would replace the "
                                 "other; give each output a path of its own")


def _inputs_of(args) -> list:
    """(name, path) of the files a command reads: ``--weights`` or ``--init`` (a name without
    its ``.npz``, as the loader finds it), and the MNIST files of its data directory."""
    from ..data import MNIST_FILES, resolve_data_dir

    found = []
    for flag in ("weights", "init"):
        value = getattr(args, flag, None)
        if value:
            path = Path(value) if Path(value).exists() else weights_path(value)
            found.append((f"--{flag} {value}", path))
    if hasattr(args, "data_dir"):
        directory = resolve_data_dir(args.data_dir)
        found += [(f"the data file {directory / name}", directory / name)
                  for spec in MNIST_FILES for name in (spec.name, f"{spec.name}.gz")]
    return found


def require_plotting(flag):
    """Fail before the work, not after it, when a picture is asked for and cannot be drawn."""
    from ..viz.figures import MissingExtra, new_figure

    try:
        new_figure()
    except MissingExtra as err:
        raise UsageError(f"{flag}: {err}") from None


@contextlib.contextmanager
def writing(flag, path):
    """The writing of one output: an ``OSError`` (a full disk or device, a directory that
    vanished) becomes one line and exit status 1; ``write_atomically`` leaves nothing partial."""
    try:
        yield
    except OSError as err:
        raise Failure(f"cannot write {flag} {path}: {err.strerror or err}") from None


def json_on_stdout(args) -> bool:
    """Whether stdout carries the command's JSON object (``--json`` alone): then it carries
    nothing else, and the lines that say what was written go to stderr."""
    return getattr(args, "json", None) == STDOUT


def say(args, line) -> None:
    """A line beside the results ("wrote ..."): on stdout, or stderr when stdout is the JSON."""
    if json_on_stdout(args):
        log(line)
    else:
        print(line, flush=True)


def emit_json(args, document) -> None:
    """``--json``: ``document`` as one JSON object on stdout, or written to ``--json PATH``;
    strict JSON (a number that is not finite is null, its reason beside it: ``strict_json``)."""
    if json_on_stdout(args):
        print(strict_json.dumps(document), flush=True)
        return
    with writing("--json", args.json):
        write_atomically(args.json, (strict_json.dumps(document, indent=1) + "\n").encode())
    say(args, f"wrote {args.json}")


def save_figure(figure, path, flag="--plot") -> None:
    """Write a figure as a PNG, atomically."""
    from ..viz.figures import save_png

    with writing(flag, path):
        save_png(figure, path)
