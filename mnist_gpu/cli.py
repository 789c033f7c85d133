"""The ``mnist-gpu`` command: argument parsing, the backend chosen at the edge, and exit statuses.

Exit statuses: 0 success; 1 a run that failed on its own terms (data unavailable, training
diverged, accuracy below ``--min-accuracy``); 2 a bad argument or an unusable backend; 130
interrupted. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .backend import BACKEND_CHOICES, BackendUnavailable, get_backend
from .files import output_problem, write_atomically
from .bench import BATCH_SIZES, SWEEP_MODELS
from .data import DataError, load_mnist
from .trainer import (
    DTYPES, KERNELS, DeviceOutOfMemory, TrainConfig, TrainingDiverged, TUTORIAL_CHECKPOINTS,
    kernel_name, to_device_data, train,
)
from .weights_io import WeightsFileError, load_weights, save_weights, weights_path


class UsageError(Exception):
    """A bad argument found after parsing (exit status 2)."""


class Failure(Exception):
    """A run that failed on its own terms (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block: the user sees the fault, --help shows the rest.
        self.exit(2, f"{self.prog}: error: {message}\n")


# --------------------------------------------------------------------------- argument types


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def mlp_choices(name):
    from . import mlp

    return getattr(mlp, name)


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {text}")
    return value


def _fraction_below_one(text):
    value = _non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), not {text}")
    return value


def _fraction(text):
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in 0-1 (or 0%-100%), not {text}")
    return value


def _int_list(text, minimum=0):
    """``0,100,1k,10000`` -> (0, 100, 1000, 10000); a ``k`` suffix means thousands."""
    values = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            value = int(float(part[:-1]) * 1000) if part.endswith("k") else int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {part}")
        values.append(value)
    return tuple(values)


def _choice_list(choices):
    def parse(text):
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(choices)}, not {text!r}")
        return values
    return parse


# --------------------------------------------------------------------------- the parser


def _add_backend_args(parser):
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="array library: cupy (an NVIDIA GPU), numpy (the CPU), or auto "
                             "(CuPy when a GPU answers, else NumPy) [auto]")
    parser.add_argument("--device", type=_int_at_least(0), default=0,
                        help="CUDA device number for --backend cupy/auto [0]")


def _add_data_args(parser):
    parser.add_argument("--data-dir", default=None,
                        help="where the MNIST files are or go (else $MNIST_GPU_DATA, else ./data)")
    parser.add_argument("--offline", action="store_true",
                        help="never download (also $MNIST_GPU_OFFLINE=1)")


DESCRIPTION = """\
The classic beginner network for handwritten digits (784 inputs, 10 outputs, trained one image at
a time), from scratch, on NumPy (the CPU) or CuPy (an NVIDIA GPU), with mini-batches, deeper and
convolutional networks, sweeps of many models trained together (on a Dask cluster too),
benchmarks and pictures. MNIST is downloaded into ./data and verified on first use."""

EXAMPLES = """\
examples:
  mnist-gpu train                          the tutorial: about 68% after one pass
  mnist-gpu train --batch-size 100 --alpha 0.02 --epochs 20 --save w.npz
  mnist-gpu train --preset cnn             a CNN, 99.2%; --preset list shows the others
  mnist-gpu sweep --alpha 0.001,0.003,0.01 --seed 0-9 --plot sweep.png
  mnist-gpu eval --weights w.npz --plot confusion.png
  mnist-gpu predict my_digit.png --weights w.npz
  mnist-gpu curve --seeds 5 --plot curve.png
  mnist-gpu bench --quick

Each command's flags: mnist-gpu COMMAND --help. Exit status: 0 success, 1 the run failed on its
own terms (data unavailable, training diverged, accuracy below --min-accuracy), 2 a bad argument
or an unusable backend, 130 interrupted."""


def _add_training_args(parser, sweep: bool):
    """The flags of `train`, and of `sweep` (where --alpha and --seed take lists, and the
    outputs are files)."""
    from .sweep import parse_alphas, parse_seeds

    _add_backend_args(parser)
    _add_data_args(parser)
    p = parser
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="[float32]")
    p.add_argument("--batch-size", type=_int_at_least(1), default=1,
                   help="1: the tutorial's per-image update; B: mini-batches of B images [1]")
    p.add_argument("--epochs", type=_int_at_least(1), default=1, help="passes over the data [1]")
    if sweep:
        p.add_argument("--alpha", "--lr", type=_parsed(parse_alphas), default=(0.01,),
                       metavar="A,A,...", help="learning rates, e.g. 0.001,0.003,0.01 [0.01]")
        p.add_argument("--seed", type=_parsed(parse_seeds), default=(0,), metavar="S-S,S",
                       help="seeds of the initial weights, e.g. 0-9 or 0,3,7 [0]")
        p.add_argument("--data-seed", type=_int_at_least(0), default=None,
                       help="seeds the shuffled order, the same for every model [the first seed]")
    else:
        p.add_argument("--alpha", "--lr", type=_positive_float, default=0.01,
                       help="learning rate [0.01]")
        p.add_argument("--seed", type=_int_at_least(0), default=0,
                       help="seeds the initial weights (and the shuffling, unless --data-seed) "
                            "[0]")
        p.add_argument("--data-seed", type=_int_at_least(0), default=None,
                       help="seeds the shuffling apart from the weights [--seed]")
    p.add_argument("--shuffle", action="store_true",
                   help="visit the images in a seeded random order each epoch")
    p.add_argument("--limit", type=_int_at_least(1), default=None,
                   help="train on the first N images only")
    p.add_argument("--checkpoints", type=_int_list, default=None,
                   help="image counts at which to evaluate, e.g. 0,100,1k,10k [the tutorial's: "
                        + ",".join(map(str, TUTORIAL_CHECKPOINTS)) + "; every epoch if >1]")
    p.add_argument("--kernel", choices=KERNELS, default="auto",
                   help="fused (compiled passes over the lit pixels: per image on the CPU "
                        "and GPU, mini-batches on the CPU; the checkpoints' test-set evaluation "
                        "too, where the backend has it), array (one array call per operation, "
                        "the reference) or auto (fused where available) [auto]")
    if sweep:
        p.add_argument("--json", default=None, metavar="PATH",
                       help="write every model's settings, curve and accuracy, and the sweep's "
                            "timing, as JSON")
        p.add_argument("--save", default=None, metavar="PATH",
                       help="write every model's weights (.npz, key 'weights', shape (M, 784, "
                            "10)) with each model's settings; eval/predict --model K use one")
        p.add_argument("--plot", default=None, metavar="PATH",
                       help="accuracy against learning rate (median and band over seeds) and "
                            "the curves, as a PNG (needs mnist-gpu[plot])")
        p.add_argument("--chunk-models", type=_int_at_least(1), default=None, metavar="N",
                       help="train at most N models at once [as many as the device holds; "
                            "with --cluster, two chunks per worker]")
        p.add_argument("--cluster", default=None, metavar="SPEC",
                       help="run the grid's chunks on a Dask cluster: local:N (N worker "
                            "processes here), cuda (one worker per GPU, dask-cuda) or "
                            "tcp://HOST:PORT (a running scheduler); needs --json, and "
                            "mnist-gpu[cluster]")
        p.add_argument("--resume", action="store_true",
                       help="with --cluster: train only the models missing from the results "
                            "file beside --json (after Ctrl-C or a crash)")
    else:
        p.add_argument("--init", default=None, metavar="FILE",
                       help="initial weights, a (784, 10) array in .npy or .npz (key 'weights')")
        p.add_argument("--save", default=None, metavar="PATH",
                       help="write the weights, configuration and accuracy to PATH (.npz)")
        p.add_argument("--json", action="store_true",
                       help="print one JSON object on stdout instead of the table")
        p.add_argument("--min-accuracy", type=_fraction, default=None, metavar="X",
                       help="exit with status 1 if the final accuracy is below X (0.7 or 70%%)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    deep = p.add_argument_group(
        "beyond the tutorial", "any of these trains a stack of dense layers by mini-batch SGD "
        "(mnist_gpu/mlp.py); without them it is the tutorial's network")
    deep.add_argument("--hidden", type=lambda text: _int_list(text, minimum=1), default=(),
                      help="hidden layer sizes, e.g. 256,128 [none]")
    deep.add_argument("--activation", choices=mlp_choices("ACTIVATIONS"), default=None,
                      help="of the hidden layers, so it needs --hidden [relu]")
    deep.add_argument("--bias", action="store_true", help="give every layer a bias")
    deep.add_argument("--loss", choices=mlp_choices("LOSSES"), default="mse",
                      help="mse: the tutorial's squared error; ce: softmax cross-entropy [mse]")
    deep.add_argument("--momentum", type=_fraction_below_one, default=0.0, help="[0]")
    deep.add_argument("--weight-decay", type=_non_negative_float, default=0.0, help="[0]")
    deep.add_argument("--schedule", choices=mlp_choices("SCHEDULES"), default="constant",
                      help="learning rate: constant; step (x0.1 at 50%% and 75%% of the steps); "
                           "cosine (to zero) [constant]")
    deep.add_argument("--conv", type=lambda text: _int_list(text, minimum=1), default=(),
                      metavar="C,C,...",
                      help="convolution layers, their output channels, e.g. 32,64; each "
                           "followed by relu and 2x2 max pooling, before the dense layers [none]")
    deep.add_argument("--conv-size", type=_int_at_least(1), default=5, metavar="K",
                      help="the convolutions' kernels are K x K (not --kernel, the compute "
                           "path) [5]")
    deep.add_argument("--padding", choices=mlp_choices("PADDINGS"), default="valid",
                      help="valid (no padding) or same (output as large as the input) [valid]")
    deep.add_argument("--dropout", type=_fraction_below_one, default=0.0, metavar="P",
                      help="while training, drop each feature with probability P after the "
                           "convolutions and after each hidden layer [0]")
    if not sweep:
        p.add_argument("--preset", default=None, metavar="NAME",
                       help="a documented configuration (explicit flags override its values): "
                            + ", ".join(PRESETS) + "; --preset list shows them")


# The 99% network and its training, but for the number of epochs (cnn and cnn-long).
_CNN = ["--conv", "32,64", "--conv-size", "5", "--hidden", "128", "--dropout", "0.25", "--bias",
        "--loss", "ce", "--batch-size", "128", "--lr", "0.05", "--momentum", "0.9",
        "--weight-decay", "5e-4", "--schedule", "cosine", "--shuffle"]

# The README's documented configurations: flags, and what they gave here (2-core AMD EPYC, NumPy,
# float32, training time as the command prints it, seed 0; 2026-11-28, the CNNs 2026-11-28/29).
PRESETS = {
    "tutorial": ([], "68.15%, 0.015 s: the tutorial, one image at a time"),
    "minibatch": (["--batch-size", "100", "--alpha", "0.02", "--epochs", "20"],
                  "80.49%, 0.37 s"),
    "softmax": (["--bias", "--loss", "ce", "--batch-size", "100", "--lr", "0.5", "--momentum",
                 "0.9", "--schedule", "cosine", "--epochs", "10", "--shuffle"],
                "92.62%, 0.79 s: softmax regression"),
    "mlp": (["--hidden", "256", "--bias", "--loss", "ce", "--batch-size", "128", "--lr", "0.1",
             "--momentum", "0.9", "--weight-decay", "5e-4", "--schedule", "cosine", "--epochs",
             "15", "--shuffle"], "98.24%, 6.9 s: the 98% command"),
    "cnn-fast": (["--conv", "16,32", "--conv-size", "5", "--hidden", "128", "--dropout", "0.1",
                  "--bias", "--loss", "ce", "--batch-size", "128", "--lr", "0.1", "--momentum",
                  "0.9", "--weight-decay", "5e-4", "--schedule", "cosine", "--epochs", "3",
                  "--shuffle"], "99.22%, 40 s (seeds 1, 2: 99.16%, 99.09%)"),
    "cnn": (_CNN + ["--epochs", "7"],
            "99.38%, 187 s (seeds 1, 2: 99.32%, 99.25%): the 99% command"),
    "cnn-long": (_CNN + ["--epochs", "9"],
                 "99.44%, 260 s (seeds 1, 2: 99.34%, 99.33%): cnn for 9 epochs"),
}


def _apply_preset(parser, args, argv):
    """Fill in the flags of ``--preset NAME`` that the command line did not give itself."""
    if not getattr(args, "preset", None):
        return args
    if args.preset == "list":
        for name, (flags, measured) in PRESETS.items():
            print(f"{name:<10} {' '.join(flags) or '(the defaults)'}\n{'':<10} measured: "
                  f"{measured}")
        raise SystemExit(0)
    if args.preset not in PRESETS:
        parser.exit(2, f"mnist-gpu train: error: --preset: choose from "
                       f"{', '.join(PRESETS)} or list, not {args.preset!r}\n")
    given = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    train_parser = _subparser(parser, "train")
    from_preset = train_parser.parse_args(PRESETS[args.preset][0])
    for action in train_parser._actions:
        if action.dest in ("help", "preset") or not action.option_strings:
            continue
        if not given.intersection(action.option_strings):
            setattr(args, action.dest, getattr(from_preset, action.dest))
    return args


def _subparser(parser, name):
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _parsed(parse):
    """An argparse type from a parser that raises ValueError with a one-line reason."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnist-gpu", description=DESCRIPTION, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mnist-gpu {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = commands.add_parser(
        "train", help="train the tutorial's network and print its accuracy table",
        description="Train the tutorial's 784->10 network. The defaults reproduce the tutorial: "
                    "one image at a time, one pass in file order, alpha 0.01, float32.")
    _add_training_args(t, sweep=False)
    t.set_defaults(run=cmd_train)

    w = commands.add_parser(
        "sweep", help="train a grid of learning rates x seeds together, one stack on one device",
        description="Train every configuration of a grid (the product of --alpha and --seed) "
                    "together, as one stack of models on one device: the models see the same "
                    "images in the same order and share every read of them. Each model ends "
                    "with the weights and the accuracy table its own `mnist-gpu train` run "
                    "gives; a model that diverges is marked at its step and frozen, and the "
                    "others are unaffected. Prints one row per model and one summary per "
                    "learning rate.")
    _add_training_args(w, sweep=True)
    w.set_defaults(run=cmd_sweep)

    b = commands.add_parser(
        "bench", help="measure training and inference throughput",
        description="Training images/s per batch size and inference images/s, per backend and "
                    "dtype, after warm-up, over repeats (median, min-max), with the naive NumPy "
                    "loop and PyTorch (when installed) as peers and the machine's measured copy "
                    "bandwidth and GEMM rate as the limit.")
    b.add_argument("--backend", type=_choice_list(BACKEND_CHOICES), default=("auto",),
                   help="one or more of auto, numpy, cupy, comma-separated [auto]")
    b.add_argument("--device", type=_int_at_least(0), default=0, help="CUDA device [0]")
    b.add_argument("--dtype", type=_choice_list(DTYPES), default=("float32",),
                   help="float32 and/or float64, comma-separated [float32]")
    b.add_argument("--batch-sizes", type=lambda text: _int_list(text, minimum=1),
                   default=BATCH_SIZES,
                   help="mini-batch sizes [" + ",".join(map(str, BATCH_SIZES)) + "]")
    b.add_argument("--repeats", type=_int_at_least(1), default=5, help="timed runs each [5]")
    b.add_argument("--quick", action="store_true",
                   help="a smoke run: 5,000 images, 2,000 per-image, batch sizes up to 1,024")
    b.add_argument("--no-peers", action="store_true", help="skip the naive loop and PyTorch")
    b.add_argument("--sweep-models", type=lambda text: _int_list(text, minimum=1),
                   default=SWEEP_MODELS, metavar="M,M,...",
                   help="sizes of the sweep rows, models side by side ["
                        + ",".join(map(str, SWEEP_MODELS)) + "; --quick on the CPU: up to 32]")
    b.add_argument("--no-sweeps", action="store_true", help="skip the sweep rows")
    b.add_argument("--no-cnn", action="store_true", help="skip the CNN rows (--preset cnn)")
    b.add_argument("--json", default=None, metavar="PATH", help="write the full report as JSON")
    b.add_argument("--plot", default=None, metavar="PATH",
                   help="write a PNG of images/s against batch size (needs mnist-gpu[plot])")
    _add_data_args(b)
    b.set_defaults(run=cmd_bench)

    c = commands.add_parser(
        "curve", help="accuracy against images seen over several seeds, as a table and a PNG",
        description="Train the tutorial's network once per seed and report the test accuracy at "
                    "each checkpoint: median and min-max over the seeds, plotted with the "
                    "tutorial's published figures.")
    _add_backend_args(c)
    _add_data_args(c)
    c.add_argument("--seeds", type=_int_at_least(1), default=5, help="how many seeds [5]")
    c.add_argument("--alpha", type=_positive_float, default=0.01, help="[0.01]")
    c.add_argument("--dtype", choices=DTYPES, default="float32", help="[float32]")
    c.add_argument("--checkpoints", type=_int_list,
                   default=(0, 100, 300, 1000, 3000, 10_000, 20_000, 30_000, 40_000, 50_000,
                            60_000), help="image counts at which to evaluate")
    c.add_argument("--compare-batch-size", type=_int_at_least(2), default=None, metavar="B",
                   help="also plot mini-batches of B images (one epoch) on the same axes")
    c.add_argument("--compare-alpha", type=_positive_float, default=0.02, help="[0.02]")
    c.add_argument("--plot", default=None, metavar="PATH", help="write the PNG here")
    c.add_argument("--json", action="store_true", help="one JSON object on stdout")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=cmd_curve)

    e = commands.add_parser(
        "eval", help="accuracy, per-class accuracy and confusion matrix of saved weights",
        description="Load weights saved by `mnist-gpu train --save` (any architecture) and score "
                    "them on the 10,000 test images: accuracy, accuracy per digit and the "
                    "confusion matrix, printed, and drawn with --plot; --weight-map draws the "
                    "weights themselves.")
    e.add_argument("--weights", required=True, metavar="FILE",
                   help="a file written by mnist-gpu train --save (or a (784, 10) .npy)")
    _add_backend_args(e)
    _add_data_args(e)
    e.add_argument("--model", type=_int_at_least(0), default=None, metavar="K",
                   help="which model of a file written by `mnist-gpu sweep --save`")
    e.add_argument("--plot", default=None, metavar="PATH", help="the confusion matrix as a PNG")
    e.add_argument("--weight-map", default=None, metavar="PATH",
                   help="the weights as 28x28 maps (first-layer units for a deeper network)")
    e.add_argument("--json", action="store_true", help="one JSON object on stdout")
    e.set_defaults(run=cmd_eval)

    p = commands.add_parser(
        "predict", help="read your own digits from image files",
        description="Prepare each picture the way MNIST was made (grayscale, inverted if the "
                    "background is light, fitted into a 20x20 box, centred by its centre of mass "
                    "in 28x28) and print the digit the network sees: with one file, its ten "
                    "scores too; with several (or a folder), one line per file. A file that "
                    "cannot be read is reported in one line and the others are still predicted "
                    "(exit status 2 for a single file, 1 if any of several failed). Pictures of "
                    "more than 64 megapixels are refused; large ones are reduced as they are "
                    "decoded.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (PNG, JPEG, GIF, TIFF, ...) or folders of them")
    p.add_argument("--weights", required=True, metavar="FILE", help="as for eval")
    p.add_argument("--model", type=_int_at_least(0), default=None, metavar="K",
                   help="which model of a file written by `mnist-gpu sweep --save`")
    p.add_argument("--show", default=None, metavar="PATH",
                   help="write the 28x28 image the network actually saw (PNG; one image only)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(run=cmd_predict)
    return parser


# --------------------------------------------------------------------------- commands


def _log(message):
    print(f"mnist-gpu: {message}", file=sys.stderr)


def _progress_bar(total, quiet, unit="img"):
    """A tqdm bar on stderr when it is a terminal; None (no bar) otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=True, file=sys.stderr, leave=False)


def _backend_and_mnist(args):
    """The backend chosen at the edge, and the verified data: how every training command starts."""
    backend = get_backend(args.backend, args.device, log=_log)
    return backend, load_mnist(args.data_dir, offline=args.offline or None, log=_log)


def _wants_mlp(args) -> bool:
    """Whether the flags ask for more than the tutorial's network (refusing an activation that
    has no hidden layer to act in)."""
    if args.activation and not args.hidden:
        raise UsageError(f"--activation {args.activation} applies to hidden layers, and there "
                         "are none: add --hidden N (e.g. --hidden 100)")
    return bool(args.hidden or args.bias or args.loss != "mse" or args.momentum
                or args.weight_decay or args.schedule != "constant" or args.conv
                or args.dropout)


@contextlib.contextmanager
def _images_progress(total, quiet):
    """A ``progress(images_seen)`` callback drawing a bar, or None when there is no bar."""
    bar = _progress_bar(total, quiet)
    try:
        yield (lambda seen: bar.update(seen - bar.n)) if bar else None
    finally:
        if bar:
            bar.close()


def cmd_train(args) -> int:
    _check_outputs(args, "save")
    if _wants_mlp(args):
        return cmd_train_mlp(args)
    init = None
    if args.init:
        try:
            init, _ = load_weights(args.init, shape=(784, 10))
        except WeightsFileError as err:
            raise UsageError(f"--init {err}") from None
    config = TrainConfig(alpha=args.alpha, batch_size=args.batch_size, epochs=args.epochs,
                         seed=args.seed, shuffle=args.shuffle, checkpoints=args.checkpoints,
                         kernel=args.kernel, data_seed=args.data_seed)
    try:
        config.validate()
    except ValueError as err:
        raise UsageError(str(err)) from None
    backend, mnist = _backend_and_mnist(args)
    data = _training_data(args, backend, mnist)
    _say_dropped_checkpoints(args.checkpoints, data.n_train * args.epochs)
    table = _Table(args, {**asdict(config), "dtype": args.dtype},
                   backend.describe(), kernel_name(backend, config))
    with _images_progress(data.n_train * args.epochs, args.quiet or args.json) as progress:
        with table.interruptible():
            result = train(data, config, init_weights=init, progress=progress,
                           on_checkpoint=table.row)
    table.finish(result, {}, result.weights)
    return 0


def cmd_train_mlp(args) -> int:
    from .mlp import MLPConfig, params_to_arrays, train_mlp

    if args.init or args.checkpoints or args.kernel == "fused":
        raise UsageError("--init, --checkpoints and --kernel fused apply to the tutorial's "
                         "network only (a deeper network is evaluated after every epoch)")
    arch = _deep_architecture(args)
    config = MLPConfig(arch, lr=args.alpha, batch_size=args.batch_size, epochs=args.epochs,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       schedule=args.schedule, seed=args.seed, shuffle=args.shuffle,
                       data_seed=args.data_seed)
    try:
        config.validate()
    except ValueError as err:
        raise UsageError(str(err)) from None
    backend, mnist = _backend_and_mnist(args)
    data = _training_data(args, backend, mnist)
    described = {"architecture": arch.describe(), "batch_size": config.batch_size,
                 "lr": config.lr, "momentum": config.momentum, "epochs": config.epochs,
                 "seed": config.seed, "shuffle": config.shuffle, "dtype": args.dtype}
    table = _Table(args, described, backend.describe(), "array")
    with _images_progress(data.n_train * args.epochs, args.quiet or args.json) as progress:
        with table.interruptible():
            result = train_mlp(data, config, progress=progress, on_checkpoint=table.row)
    table.finish(result, params_to_arrays(result.params), result.params[0][0])
    return 0


def _training_data(args, backend, mnist):
    """The data on the device, limited to ``--limit`` images, saying so if fewer exist."""
    available = len(mnist.train_labels)
    if args.limit is not None and args.limit > available:
        _log(f"--limit {args.limit:,}: the training set has {available:,} images; training on "
             "all of them")
    return to_device_data(backend, mnist, args.dtype, limit=args.limit)


def _say_dropped_checkpoints(asked, total):
    beyond = [c for c in asked or () if c > total]
    if beyond:
        _log(f"--checkpoints {','.join(f'{c:,}' for c in beyond)}: beyond the {total:,} images "
             "this run trains on, so not evaluated (the final checkpoint always is)")


class _Table:
    """The accuracy table of a training run, printed (and flushed) a row at a time as each
    checkpoint is evaluated, so that an interrupted run keeps what it printed; or, with
    ``--json``, one object at the end (marked ``interrupted`` with what finished, on Ctrl-C)."""

    def __init__(self, args, config: dict, backend: dict, kernel: str):
        self.args, self.config, self.backend, self.kernel = args, config, backend, kernel
        self.points = []

    def row(self, point):
        if not self.points and not self.args.json:
            self._print(*self._header())
        self.points.append(point)
        if not self.args.json:
            self._print(f"{point.images_seen:>12,}  {point.accuracy:>12.2%}  {point.mse:>10.4f}")

    def _header(self):
        cfg, info = self.config, self.backend
        where = info.get("gpu") or info.get("cpu") or info.get("device", "")
        deep = "architecture" in cfg
        mode = ("per-image" if cfg["batch_size"] == 1
                else f"mini-batches of {cfg['batch_size']}")
        if not deep:
            mode += f" ({self.kernel} kernel)"
        rate = f"lr {cfg['lr']}, momentum {cfg['momentum']}" if deep else f"alpha {cfg['alpha']}"
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
        try:
            yield
        except KeyboardInterrupt:
            if self.args.json:
                self._print(json.dumps({"interrupted": True, "config": self.config,
                                        "backend": self.backend, "kernel": self.kernel,
                                        "curve": [asdict(p) for p in self.points]}))
            raise

    def finish(self, result, arrays, weights):
        """Save, print the summary (or the JSON) and apply the accuracy gate."""
        args = self.args
        if args.save:
            try:
                saved = save_weights(args.save, weights, result.to_json(),
                                     **{k: v for k, v in arrays.items() if k != "weights"})
            except OSError as err:
                raise Failure(f"cannot write --save {args.save}: {err.strerror or err}") from None
            if not args.json:
                self._print(f"saved weights to {saved}")
        if args.json:
            self._print(json.dumps(result.to_json()))
        else:
            self._print(f"trained {result.images_trained:,} images in {result.seconds:.3f} s "
                        f"({result.images_per_second:,.0f} images/s)",
                        f"final test accuracy: {result.final_accuracy:.2%}")
        if args.min_accuracy is not None and result.final_accuracy < args.min_accuracy:
            raise Failure(
                f"final accuracy {result.final_accuracy:.2%} is below --min-accuracy "
                f"{args.min_accuracy:.2%}"
            )


def _check_outputs(args, *flags):
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


def cmd_sweep(args) -> int:
    from . import sweep

    _check_outputs(args, "json", "save", "plot")
    if args.plot:
        _require_plotting("--plot")
    members = sweep.grid(args.alpha, args.seed)
    data_seed = members[0].seed if args.data_seed is None else args.data_seed
    deep = _wants_mlp(args)
    if args.cluster or args.resume:
        if not args.cluster:
            raise UsageError("--resume continues a --cluster sweep: give the same --cluster")
        if not args.json:
            raise UsageError("--cluster needs --json PATH: finished models are kept beside it "
                             "(PATH.results.jsonl), which is what --resume reads")
        if deep:
            raise UsageError("--cluster sweeps the tutorial's network (and softmax regression "
                             "through it) only; deeper networks sweep in one process")
    if deep:
        from .mlp import MLPConfig

        if args.checkpoints or args.kernel == "fused":
            raise UsageError("--checkpoints and --kernel fused apply to the tutorial's network "
                             "only (a deeper network is evaluated after every epoch)")
        arch = _deep_architecture(args)
        config = MLPConfig(arch, lr=members[0].alpha, batch_size=args.batch_size,
                           epochs=args.epochs, momentum=args.momentum,
                           weight_decay=args.weight_decay, schedule=args.schedule,
                           seed=members[0].seed, shuffle=args.shuffle, data_seed=data_seed)
    else:
        config = TrainConfig(alpha=members[0].alpha, batch_size=args.batch_size,
                             epochs=args.epochs, seed=members[0].seed, shuffle=args.shuffle,
                             checkpoints=args.checkpoints, kernel=args.kernel,
                             data_seed=data_seed)
    try:
        config.validate()
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.cluster:
        result = _sweep_on_cluster(args, members, config)
        _finish_sweep(args, result, deep)
        return 1 if any(m.diverged and m.diverged.startswith("not trained")
                        for m in result.models) else 0
    backend, mnist = _backend_and_mnist(args)
    data = _training_data(args, backend, mnist)
    if not deep:
        _say_dropped_checkpoints(args.checkpoints, data.n_train * args.epochs)
    bar = _progress_bar(len(members), args.quiet, unit="model")
    advance = bar.update if bar else None
    try:
        if deep:
            result = sweep.run_mlp_sweep(data, members, config, log=_log, on_chunk=advance)
        else:
            try:
                result = sweep.run_sweep(data, members, config, args.chunk_models, log=_log,
                                         on_chunk=advance)
            except ValueError as err:  # not even one model fits the device
                raise Failure(str(err)) from None
    finally:
        if bar:
            bar.close()
    _finish_sweep(args, result, deep)
    return 0


def _sweep_on_cluster(args, members, config):
    """The grid's chunks on a Dask cluster (mnist_gpu/cluster.py, imported only here)."""
    from . import cluster
    from .data import resolve_data_dir

    try:
        client, close = cluster.connect(args.cluster, log=_log)
    except cluster.ClusterError as err:
        raise UsageError(str(err)) from None
    bar = _progress_bar(len(members), args.quiet, unit="model")
    try:
        run = cluster.run_on_cluster(
            client, members, config, args.backend, args.device, args.dtype, args.limit,
            resolve_data_dir(args.data_dir), args.json, args.chunk_models, args.resume,
            log=_log, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
        close()
    if args.resume:
        _log(f"trained {run.chunks_run} of {run.chunks} chunks (the others' models were in "
             "the results file)")
    for line in run.failed:
        _log(f"error: a chunk failed twice: {line}")
    return run.result


def _finish_sweep(args, result, deep):
    _print_sweep(result, len(args.alpha), len(args.seed))
    if args.json:
        write_atomically(args.json, json.dumps(result.to_json(), indent=1).encode())
        print(f"wrote {args.json}")
    if args.save:
        saved = _save_sweep(args.save, result, deep)
        print(f"saved {len(result.models)} models' weights to {saved}")
    if args.plot:
        from .visual import plot_sweep

        plot_sweep(result, args.plot)
        print(f"wrote {args.plot}")


def _print_sweep(result, n_alphas, n_seeds):
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
    print(f"trained {len(result.models)} models x {result.images_per_model:,} images in "
          f"{result.seconds:.3f} s ({result.model_images_per_second:,.0f} model-images/s{chunks})",
          flush=True)


def _save_sweep(path, result, deep):
    """Every model's weights in one .npz, a leading model axis on every array, with each model's
    settings in the metadata (eval and predict take one with --model K)."""
    models = [{"alpha": m.alpha, "seed": m.seed, "final_accuracy": m.final_accuracy,
               "diverged": m.diverged} for m in result.models]
    metadata = {"sweep": result.settings, "models": models}
    if not deep:
        return save_weights(path, result.weights, metadata)
    from .mlp import Architecture, init_params, params_to_arrays

    arch = result.settings["arch"]
    metadata["config"] = {"arch": arch}
    # A diverged model has no weights: zeros of the right shapes keep the file's model axis whole.
    shapes = params_to_arrays(init_params(Architecture.from_json(arch), 0,
                                          result.settings["dtype"]))
    stacked = {key: np.stack([params_to_arrays(p)[key] if p is not None else np.zeros_like(z)
                              for p in result.weights]) for key, z in shapes.items()}
    weights = stacked.pop("W0")
    return save_weights(path, weights, metadata, **stacked)


def preset_architecture(name: str):
    """The network of ``mnist-gpu train --preset NAME``."""
    parser = build_parser()
    argv = ["train", "--preset", name]
    return _deep_architecture(_apply_preset(parser, parser.parse_args(argv), argv))


def _deep_architecture(args):
    from .mlp import Architecture

    try:
        return Architecture(tuple(args.hidden), args.activation or "relu", args.bias, args.loss,
                            tuple(args.conv), args.conv_size, args.padding, args.dropout)
    except ValueError as err:
        raise UsageError(str(err)) from None


def cmd_bench(args) -> int:
    from . import bench

    _check_outputs(args, "json", "plot")
    if args.plot:
        _require_plotting("--plot")
    backends = []
    for name in dict.fromkeys(args.backend):
        backend = get_backend(name, args.device, log=_log)
        if backend.name not in [b.name for b in backends]:
            backends.append(backend)
    mnist = load_mnist(args.data_dir, offline=args.offline or None, log=_log)
    report = bench.run_benchmark(backends, mnist, args.dtype, tuple(args.batch_sizes),
                                 args.repeats, quick=args.quick, peers=not args.no_peers,
                                 log=_log,
                                 sweep_models=() if args.no_sweeps else tuple(args.sweep_models),
                                 cnn=not args.no_cnn)
    print(bench.format_table(report))
    for line in bench.ratios(report):
        print(line)
    if args.json:
        write_atomically(args.json, json.dumps(report, indent=1).encode())
        print(f"wrote {args.json}")
    if args.plot:
        bench.plot(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def cmd_curve(args) -> int:
    from .sweep import grid, run_sweep
    from .visual import TUTORIAL_POINTS, plot_curves

    _check_outputs(args, "plot")
    if args.plot:
        _require_plotting("--plot")
    backend, mnist = _backend_and_mnist(args)
    data = to_device_data(backend, mnist, args.dtype)
    runs = [("per-image", TrainConfig(alpha=args.alpha, checkpoints=args.checkpoints))]
    if args.compare_batch_size:
        runs.append((f"mini-batch {args.compare_batch_size}",
                     TrainConfig(alpha=args.compare_alpha, batch_size=args.compare_batch_size,
                                 checkpoints=args.checkpoints)))
    bar = _progress_bar(len(runs) * args.seeds, args.quiet or args.json, unit="run")
    series, report = {}, {}
    for label, config in runs:
        # The seeds of one configuration are one sweep: trained side by side, each model as its
        # own run would be.
        result = run_sweep(data, grid([config.alpha], range(args.seeds)), config, log=_log,
                           on_chunk=bar.update if bar else None)
        failed = next((m for m in result.models if m.diverged), None)
        if failed:
            raise TrainingDiverged(f"seed {failed.seed}: the weights became NaN or infinite "
                                   f"{failed.diverged} (alpha = {failed.alpha}); try a smaller "
                                   "--alpha")
        accuracies = [[c.accuracy for c in m.curve] for m in result.models]
        seen = [c.images_seen for c in result.models[0].curve]
        series[label] = (seen, accuracies)
        acc = np.asarray(accuracies)
        report[label] = {"images_seen": seen, "median": np.median(acc, axis=0).tolist(),
                         "min": acc.min(axis=0).tolist(), "max": acc.max(axis=0).tolist(),
                         "per_seed": accuracies}
    if bar:
        bar.close()
    if args.json:
        print(json.dumps({"backend": backend.describe(), "seeds": args.seeds, "series": report,
                          "tutorial": TUTORIAL_POINTS}))
    else:
        for label, row in report.items():
            alpha = runs[0][1].alpha if label == "per-image" else args.compare_alpha
            print(f"{label} (alpha {alpha}, {args.seeds} seeds): images seen -> test accuracy, "
                  "median [min-max]")
            for n, med, lo, hi in zip(row["images_seen"], row["median"], row["min"], row["max"]):
                print(f"{n:>10,}  {med:7.2%}  [{lo:.2%} - {hi:.2%}]")
    if args.plot:
        plot_curves(series, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def _load_model_or_usage_error(path, model=None):
    from .mlp import load_model

    try:
        return load_model(path, model)
    except WeightsFileError as err:
        raise UsageError(f"--weights {err}") from None


def cmd_eval(args) -> int:
    from . import mlp, visual

    _check_outputs(args, "plot", "weight-map")
    if args.plot or args.weight_map:
        _require_plotting("--plot" if args.plot else "--weight-map")
    arch, host_params = _load_model_or_usage_error(args.weights, args.model)
    backend, mnist = _backend_and_mnist(args)
    dtype = str(host_params[0][0].dtype) if str(host_params[0][0].dtype) in DTYPES else "float32"
    data = to_device_data(backend, mnist, dtype, limit=1)
    with backend.activate():
        params = [(backend.to_device(W.astype(dtype)),
                   None if b is None else backend.to_device(b.astype(dtype)))
                  for W, b in host_params]
        plan = mlp.ConvPlan(arch, backend) if arch.conv else None
        predictions = backend.to_host(mlp.classify(params, data.test_x, arch, backend.xp,
                                                   plan=plan))
    labels = mnist.test_labels
    matrix = visual.confusion_matrix(labels, predictions)
    per_class = matrix.diagonal() / matrix.sum(axis=1)
    accuracy = float(matrix.trace() / matrix.sum())
    if args.json:
        print(json.dumps({"weights": args.weights, "architecture": arch.describe(),
                          "accuracy": accuracy, "per_class_accuracy": per_class.tolist(),
                          "confusion_matrix": matrix.tolist()}))
    else:
        print(f"{args.weights}: {arch.describe()}")
        print(f"test accuracy: {accuracy:.2%} ({matrix.trace():,} of {matrix.sum():,})")
        print("per class:  " + "  ".join(f"{d}: {a:.1%}" for d, a in enumerate(per_class)))
        print("confusion matrix (rows: true digit, columns: predicted):")
        print("      " + "".join(f"{d:>6}" for d in range(10)))
        for d, row in enumerate(matrix):
            print(f"{d:>6}" + "".join(f"{c:>6}" for c in row))
    if args.plot:
        visual.plot_confusion(matrix, args.plot, title=f"{arch.describe()}: {accuracy:.2%}")
    if args.weight_map:
        visual.plot_weight_maps(host_params[0][0], args.weight_map,
                                directions=visual.image_directions(mnist.train_images))
    return 0


def cmd_predict(args) -> int:
    from . import mlp, visual

    _check_outputs(args, "show")
    files = _image_files(args.images, visual.IMAGE_SUFFIXES)
    if args.show and len(files) != 1:
        raise UsageError(f"--show writes the image of one file, and {len(files)} were given")
    arch, params = _load_model_or_usage_error(args.weights, args.model)
    plan = mlp.ConvPlan(arch, get_backend("numpy")) if arch.conv else None
    results = []
    for path in files:
        try:
            image = visual.mnist_style(path)
        except visual.MissingExtra as err:
            raise UsageError(str(err)) from None
        except visual.ImageReadError as err:
            results.append({"file": str(path), "error": str(err)})
            continue
        x = (image.reshape(1, 784) / 255).astype(params[0][0].dtype)
        scores = mlp.forward(params, x, arch, np, plan)[-1][0]
        results.append({"file": str(path), "digit": int(np.argmax(scores)),
                        "scores": [float(v) for v in scores], "image": image})
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps({"weights": args.weights, "architecture": arch.describe(),
                          "predictions": [{k: v for k, v in r.items() if k != "image"}
                                          for r in results]}))
    elif len(files) == 1:
        if failed:
            raise UsageError(failed[0]["error"])
        result = results[0]
        print(f"digit: {result['digit']}")
        print("scores: " + "  ".join(f"{d}: {v:.3f}" for d, v in enumerate(result["scores"])))
    else:
        for r in results:
            if "error" in r:
                _log(f"error: {r['error']}")
            else:
                print(f"{r['file']}: {r['digit']}  (score {max(r['scores']):.3f})")
    if len(files) == 1 and failed:
        return 2  # one file, as any bad argument
    if args.show and not failed:
        visual.save_gray_png(results[0]["image"], args.show)
        if not args.json:
            print(f"wrote {args.show} (the 28x28 image the network saw)")
    return 1 if failed else 0


def _image_files(arguments, suffixes) -> list:
    """The files named, each folder replaced by its pictures (sorted; a folder without any is an
    error). A missing or unreadable name is kept, to be reported in its own line."""
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            pictures = sorted(p for p in path.iterdir()
                              if p.suffix.lower() in suffixes and p.is_file()
                              and not p.name.startswith("."))
            if not pictures:
                raise UsageError(f"{path}: a folder with no pictures "
                                 f"({', '.join(suffixes[:4])}, ...)")
            files += pictures
        else:
            files.append(path)
    return files


def _require_plotting(flag):
    """Fail before the work, not after it, when a picture is asked for and cannot be drawn."""
    from .visual import MissingExtra, pyplot

    try:
        pyplot()
    except MissingExtra as err:
        raise UsageError(f"{flag}: {err}") from None


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _apply_preset(parser, parser.parse_args(argv), argv)
    try:
        return args.run(args)
    except (UsageError, BackendUnavailable) as err:
        _log(f"error: {err}")
        return 2
    except (Failure, DataError, TrainingDiverged, DeviceOutOfMemory) as err:
        _log(f"error: {err}")
        return 1
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`mnist-gpu ... | head`): stop quietly, as `cat` does,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
