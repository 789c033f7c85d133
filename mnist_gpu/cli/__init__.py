"""The ``mnist-gpu`` command: one module per command, the shared flags (``args.py``), what they
share (``common.py``) and print (``tables.py``), and the parser (``parser.py``).

Exit statuses: 0 success; 1 a run that failed on its own terms (data unavailable, training
diverged, accuracy below ``--min-accuracy``); 2 a bad argument or an unusable backend; 130
interrupted. Every error is one line on stderr, never a traceback. Nothing imports this package:
it is the top of mnist-gpu.
"""

from __future__ import annotations

import gc
import os
import sys

from ..backend import BackendUnavailable
from ..data import DataError
from ..training import DeviceOutOfMemory, TrainingDiverged
from .args import apply_preset
from .common import Failure, UsageError, log
from .parser import build_parser


def console() -> int:
    """The ``mnist-gpu`` program (and ``python -m mnist_gpu.cli``): ``main`` on the command line,
    then an exit that leaves the freeing of memory to the system."""
    # Loading the compiled loops makes Numba create a few hundred thousand objects, which
    # Python's cyclic collector, at its default thresholds, walks again and again (a tenth of a
    # warm `mnist-gpu train`): in this process, the young ones are collected every 20,000
    # allocations instead of 700 (which bounds what garbage waits, to a few megabytes).
    gc.set_threshold(20_000, 20, 20)
    status = main()
    # The process ends here. Python's cyclic collector would otherwise walk, at exit, every
    # object Numba made (0.1-0.2 s, a third of a run); the system frees them all at once. Only
    # in the program's own process: ``main``, called in-process, changes nothing.
    gc.freeze()
    gc.disable()
    return status


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = apply_preset(parser.parse_args(argv), argv)
    try:
        return args.run(args)
    except (UsageError, BackendUnavailable) as err:
        log(f"error: {err}")
        return 2
    except (Failure, DataError, TrainingDiverged, DeviceOutOfMemory) as err:
        log(f"error: {err}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`mnist-gpu ... | head`): stop quietly, as `cat` does,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
