"""The ``mnist-gpu`` command: one module per command, the shared flags (``args.py``), what they
share (``common.py``) and print (``tables.py``), and the parser (``parser.py``).

Exit statuses: 0 success; 1 a run that failed on its own terms (data unavailable, training
diverged, accuracy below ``--min-accuracy``, an output that could not be written, stdout full);
2 a bad argument or an unusable backend; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM); 141
stdout closed by its reader (``| head``), quietly, as a Unix tool killed by SIGPIPE. Every error
is one line on stderr, never a traceback. Nothing imports this package: it is the top of mnist-gpu.
"""

from __future__ import annotations

import gc
import os
import signal
import sys

from ..backend import BackendUnavailable, choose_threads, limited_threads
from ..data import DataError, SettingError
from ..training import DeviceOutOfMemory, TrainingDiverged
from .args import apply_preset
from .common import Failure, UsageError, log
from .parser import build_parser


class StdoutFailed(Exception):
    """Writing to stdout failed (``error``: a full device, a closed pipe): told apart from the
    command's own I/O, which has its own messages."""

    def __init__(self, error: OSError):
        super().__init__(str(error))
        self.error = error


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the program's main thread as an interruption: every ``finally`` runs
    (children stopped, temporary folders removed), and the run ends with status 143."""


def _terminate(signum, frame):
    # A second SIGTERM ends the process at once, as the system's default would.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated


class _Stdout:
    """``sys.stdout`` for the length of a command: its failed writes raised as
    ``StdoutFailed``; everything else is the stream's own."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as err:
            raise StdoutFailed(err) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as err:
            raise StdoutFailed(err) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def console() -> int:
    """The ``mnist-gpu`` program (and ``python -m mnist_gpu.cli``): ``main`` on the command line,
    then an exit that leaves the freeing of memory to the system."""
    # Loading the compiled loops makes Numba create a few hundred thousand objects, which
    # Python's cyclic collector, at its default thresholds, walks again and again (a tenth of a
    # warm `mnist-gpu train`): in this process, the young ones are collected every 20,000
    # allocations instead of 700 (which bounds what garbage waits, to a few megabytes).
    gc.set_threshold(20_000, 20, 20)
    # SIGTERM ends the program as Ctrl-C does, through its cleanup (only in the program's own
    # process: ``main``, called in-process, leaves the caller's handlers alone).
    signal.signal(signal.SIGTERM, _terminate)
    status = main()
    # The process ends here. Python's cyclic collector would otherwise walk, at exit, every
    # object Numba made (0.1-0.2 s, a third of a run); the system frees them all at once. Only
    # in the program's own process: ``main``, called in-process, changes nothing.
    gc.freeze()
    gc.disable()
    return status


def main(argv=None) -> int:
    stream = sys.stdout
    if _closed(stream):  # `mnist-gpu train >&-`: said before the work, not after it
        log("error: stdout is closed: nothing could be printed (run it with an open stdout, "
            "or >/dev/null)")
        return 1
    sys.stdout = _Stdout(stream)
    try:
        return _run(argv)
    except StdoutFailed as failed:
        # What is still buffered would fail again when Python flushes stdout at exit (and print
        # "Exception ignored ..."): from now on the descriptor writes to the null device.
        _silence(stream)
        if isinstance(failed.error, BrokenPipeError):  # the reader went away (`| head`)
            return 141
        log(f"error: cannot write to stdout: {failed.error.strerror or failed.error}")
        return 1
    finally:
        sys.stdout = stream


def _run(argv) -> int:
    # Everything inside: Ctrl-C while the flags are parsed is an interruption like any other.
    try:
        parser = build_parser()
        argv = sys.argv[1:] if argv is None else list(argv)
        args = apply_preset(parser.parse_args(argv), argv)
        # The CPU's threads by the rule (backend/threads.py), --threads or the libraries' own
        # variables, for this command only.
        with limited_threads(choose_threads(getattr(args, "threads", None))):
            status = args.run(args)
        sys.stdout.flush()  # a full or closed stdout is found here, not at exit
        return status
    except (UsageError, BackendUnavailable, SettingError) as err:
        log(f"error: {err}")
        return 2
    except (Failure, DataError, TrainingDiverged, DeviceOutOfMemory) as err:
        log(f"error: {err}")
        return 1
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        log("terminated" if terminated else "interrupted")
        return 143 if terminated else 130
    except BrokenPipeError as err:  # a pipe of the command's own, not stdout
        raise StdoutFailed(err) from None


def _closed(stream) -> bool:
    """Whether stdout is no stream at all: Python makes it None when descriptor 1 was closed
    before it started."""
    if stream is None:
        return True
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return False  # not a real file (a test's capture): it takes what is printed
    try:
        os.fstat(descriptor)
    except OSError:
        return True
    return False


def _silence(stream) -> None:
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return  # not a real file (a test's capture): nothing is flushed at exit
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)
