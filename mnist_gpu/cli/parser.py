"""The command line's parser: the subcommands, their flags, and the help a user reads first."""

from __future__ import annotations

import argparse

from .. import __version__
from ..backend import BACKEND_CHOICES, parse_device
from ..bench import BATCH_SIZES, SWEEP_MODELS
from ..model.presets import PRESETS
from ..training import DTYPES, KERNELS
from . import bench, curve, evaluate, predict, serve, sweep, train
from .args import (
    DEVICE_HELP, add_backend_args, add_data_args, add_json_flag, add_threads_flag,
    add_training_args, choice_list, int_at_least, int_list, parsed, positive_float,
)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        # No abbreviations: ``--epoch 1`` would be taken for ``--epochs 1``, and a preset's
        # overlay, which looks for the flags as documented, would put its own value over it.
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        # One line, not argparse's usage block: the user sees the fault, --help shows the rest.
        self.exit(2, f"{self.prog}: error: {message}\n")


DESCRIPTION = """\
The classic beginner network for handwritten digits (784 inputs, 10 outputs, trained one image at
a time), from scratch, on NumPy (the CPU) or CuPy (an NVIDIA GPU), with mini-batches, deeper and
convolutional networks, sweeps of many models trained together (on a Dask cluster too),
benchmarks and pictures. MNIST is downloaded into ./data and verified on first use."""

EXAMPLES = f"""\
examples:
  mnist-gpu train                          the tutorial: about 68% after one pass
  mnist-gpu train --batch-size 100 --alpha 0.02 --epochs 20 --save w.npz
  mnist-gpu train --preset cnn             a CNN: {PRESETS["cnn"].accuracy} on a 2-core AVX-512 CPU
                                           (--preset list: the others, and the machine)
  mnist-gpu sweep --alpha 0.001,0.003,0.01 --seed 0-9 --plot sweep.png
  mnist-gpu eval --weights w.npz --plot confusion.png
  mnist-gpu predict my_digit.png --weights w.npz
  mnist-gpu curve --seeds 5 --plot curve.png
  mnist-gpu serve --open                   watch it learn in a browser; draw a digit
  mnist-gpu bench --quick

Each command's flags: mnist-gpu COMMAND --help. Exit status: 0 success, 1 the run failed on its
own terms (data unavailable, training diverged, accuracy below --min-accuracy, an output or
stdout that cannot be written), 2 a bad argument or an unusable backend, 130 interrupted, 143
terminated (SIGTERM), 141 stdout closed by its reader (| head)."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mnist-gpu", description=DESCRIPTION, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mnist-gpu {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)
    _add_sweep(commands)
    _add_bench(commands)
    _add_curve(commands)
    _add_eval(commands)
    _add_predict(commands)
    _add_serve(commands)
    return parser


def _add_train(commands):
    t = commands.add_parser(
        "train", help="train the tutorial's network and print its accuracy table",
        description="Train the tutorial's 784->10 network. The defaults reproduce the tutorial: "
                    "one image at a time, one pass in file order, alpha 0.01, float32.")
    t.set_defaults(run=train.run, flag_names=add_training_args(t, sweep=False))


def _add_sweep(commands):
    w = commands.add_parser(
        "sweep", help="train a grid of learning rates x seeds together, one stack on one device",
        description="Train every configuration of a grid (the product of --alpha and --seed) "
                    "together, as one stack of models on one device: the models see the same "
                    "images in the same order and share every read of them. Each model ends "
                    "with the weights and the accuracy table its own `mnist-gpu train` run "
                    "gives; a model that diverges is marked where it diverged and frozen, and "
                    "the others are unaffected. Prints one row per model and one summary per "
                    "learning rate.")
    w.set_defaults(run=sweep.run, flag_names=add_training_args(w, sweep=True))


def _add_bench(commands):
    b = commands.add_parser(
        "bench", help="measure training and inference throughput",
        description="Training images/s per batch size and inference images/s, per backend and "
                    "dtype, after warm-up, over repeats (median, min-max), with the naive NumPy "
                    "loop and PyTorch (when installed) as peers and the machine's measured copy "
                    "bandwidth and GEMM rate as the limit.")
    b.add_argument("--backend", type=choice_list(BACKEND_CHOICES), default=("auto",),
                   help=f"one or more of {', '.join(BACKEND_CHOICES)}, comma-separated [auto]")
    b.add_argument("--device", type=parsed(parse_device), default=None, help=DEVICE_HELP)
    add_threads_flag(b)
    b.add_argument("--dtype", type=choice_list(DTYPES), default=("float32",),
                   help="float32 and/or float64, comma-separated [float32]")
    b.add_argument("--batch-sizes", type=lambda text: int_list(text, minimum=1),
                   default=BATCH_SIZES,
                   help="mini-batch sizes [" + ",".join(map(str, BATCH_SIZES)) + "]")
    b.add_argument("--repeats", type=int_at_least(1), default=5, help="timed runs each [5]")
    b.add_argument("--quick", action="store_true",
                   help="a smoke run: 5,000 images, 2,000 per-image, batch sizes up to 1,024")
    b.add_argument("--no-peers", action="store_true", help="skip the naive loop and PyTorch")
    b.add_argument("--sweep-models", type=lambda text: int_list(text, minimum=1),
                   default=SWEEP_MODELS, metavar="M,M,...",
                   help="sizes of the sweep rows, models side by side ["
                        + ",".join(map(str, SWEEP_MODELS)) + "; --quick on the CPU: up to 32]")
    b.add_argument("--no-sweeps", action="store_true", help="skip the sweep rows")
    b.add_argument("--no-cnn", action="store_true", help="skip the CNN rows (--preset cnn)")
    b.add_argument("--no-fast", action="store_true",
                   help="skip the fast recipe's rows (--preset fast for one epoch, and "
                        "PyTorch's)")
    b.add_argument("--no-startup", action="store_true",
                   help="skip the startup rows (mnist-gpu train in fresh processes, warm and "
                        "cold, beside the import of NumPy and Numba)")
    b.add_argument("--no-contention", action="store_true",
                   help="skip the shared-machine rows (train --preset mlp and cnn-fast in fresh "
                        "processes, quiet and beside a busy process the bench starts)")
    add_json_flag(b, "the full report")
    b.add_argument("--plot", default=None, metavar="PATH",
                   help="write a PNG, a panel per kind of row: training images/s against "
                        "batch size, sweeps' model-images/s against models, CNN and inference "
                        "images/s (needs mnist-gpu[plot])")
    add_data_args(b)
    b.set_defaults(run=bench.run)


def _add_curve(commands):
    c = commands.add_parser(
        "curve", help="accuracy against images seen over several seeds, as a table and a PNG",
        description="Train the tutorial's network once per seed and report the test accuracy at "
                    "each checkpoint: median and min-max over the seeds, plotted with the "
                    "tutorial's published figures.")
    add_backend_args(c)
    add_data_args(c)
    c.add_argument("--seeds", type=int_at_least(1), default=5, help="how many seeds [5]")
    c.add_argument("--alpha", type=positive_float, default=0.01, help="[0.01]")
    c.add_argument("--dtype", choices=DTYPES, default="float32", help="[float32]")
    c.add_argument("--checkpoints", type=int_list,
                   default=(0, 100, 300, 1000, 3000, 10_000, 20_000, 30_000, 40_000, 50_000,
                            60_000), help="image counts at which to evaluate")
    c.add_argument("--compare-batch-size", type=int_at_least(2), default=None, metavar="B",
                   help="also plot mini-batches of B images (one epoch) on the same axes")
    c.add_argument("--compare-alpha", type=positive_float, default=0.02, help="[0.02]")
    c.add_argument("--plot", default=None, metavar="PATH", help="write the PNG here")
    add_json_flag(c, "the median, min-max and every seed's accuracy at each checkpoint")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=curve.run)


def _add_eval(commands):
    e = commands.add_parser(
        "eval", help="accuracy, per-class accuracy and confusion matrix of saved weights",
        description="Load weights saved by `mnist-gpu train --save` (any architecture) and score "
                    "them on the 10,000 test images: accuracy, accuracy per digit and the "
                    "confusion matrix, printed, and drawn with --plot; --weight-map draws the "
                    "weights themselves.")
    e.add_argument("--weights", required=True, metavar="FILE",
                   help="a file written by mnist-gpu train --save (or a (784, 10) .npy)")
    add_backend_args(e)
    add_data_args(e)
    e.add_argument("--model", type=int_at_least(0), default=None, metavar="K",
                   help="which model of a file written by `mnist-gpu sweep --save`")
    e.add_argument("--plot", default=None, metavar="PATH", help="the confusion matrix as a PNG")
    e.add_argument("--weight-map", default=None, metavar="PATH",
                   help="the weights as 28x28 maps (first-layer units for a deeper network)")
    add_json_flag(e, "the accuracy, per class, and the confusion matrix")
    e.set_defaults(run=evaluate.run)


def _add_predict(commands):
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
    p.add_argument("--model", type=int_at_least(0), default=None, metavar="K",
                   help="which model of a file written by `mnist-gpu sweep --save`")
    p.add_argument("--show", default=None, metavar="PATH",
                   help="write the 28x28 image the network actually saw (PNG; one image only)")
    add_json_flag(p, "every file's digit and scores (or its error)",
                  not_suffixes=predict.image_suffixes)
    p.set_defaults(run=predict.run)


def _port(text):
    port = int_at_least(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, not {port}")
    return port


def _add_serve(commands):
    s = commands.add_parser(
        "serve", help="a local web page: watch the network learn, draw a digit for it",
        description="Serve a page where the tutorial's network (or a preset's) trains on MNIST "
                    "as you watch: play, pause, step, reset, the pace and alpha live, the "
                    "weights as ten maps, the current image's numbers and the test accuracy; "
                    "and a canvas where a digit you draw is prepared as `predict` prepares a "
                    "file and scored. Needs mnist-gpu[serve]. Listens on 127.0.0.1 only, "
                    "unless --host says otherwise (docs/serve.md).")
    s.add_argument("--port", type=_port, default=8000,
                   help="TCP port; 0 picks a free one, named in the line printed [8000]")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but the loopback lets other machines "
                        "open the page [127.0.0.1]")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.add_argument("--weights", default=None, metavar="FILE",
                   help="a saved model (any that eval reads): the drawing is scored with it, and "
                        "the tutorial's weights are where the run starts")
    add_backend_args(s)
    s.add_argument("--dtype", choices=DTYPES, default="float32", help="[float32]")
    s.add_argument("--kernel", choices=KERNELS, default="auto",
                   help="the tutorial's compute path, as for train [auto]")
    s.add_argument("--seed", type=int_at_least(0), default=0, help="the weights' seed [0]")
    s.add_argument("--limit", type=int_at_least(1), default=None, metavar="N",
                   help="train on the first N training images only")
    add_data_args(s)
    s.set_defaults(run=serve.run)
