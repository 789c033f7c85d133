"""The flags: argument types that fail in one line, the flag groups commands share, the training
flags of ``train`` and ``sweep``, the presets overlaid on what the command line gave, and the
configurations built from parsed arguments (once, for every command that trains)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backend import AUTO_ORDER, BACKEND_CHOICES, BACKENDS, parse_device
from ..model.architecture import FLAGS as OLDER_FLAGS
from ..model.architecture import LAYERS, Architecture, parse_network
from ..model.network import LOSSES, Network
from ..model.presets import MEASURED_ON, PRESETS
from ..optim import OPTIMIZERS, SCHEDULES
from ..training import DTYPES, KERNELS, TUTORIAL_CHECKPOINTS, MLPConfig, TrainConfig
from .common import STDOUT, UsageError


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def int_at_least(minimum):
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


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a non-negative number, not {text}")
    return value


def fraction_below_one(text):
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), not {text}")
    return value


def fraction(text):
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in 0-1 (or 0%-100%), not {text}")
    return value


def int_list(text, minimum=0):
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


def choice_list(choices):
    def parse(text):
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(
                f"choose from {', '.join(choices)}, not {text!r}")
        return values
    return parse


def parsed(parse):
    """An argparse type from a parser that raises ValueError with a one-line reason."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = parse.__name__
    return convert


DEVICE_HELP = ("an index (CuPy's CUDA device, PyTorch's accelerator), or for --backend torch "
               "cpu, cuda, cuda:N (ROCm too), mps, xpu, xpu:N [CuPy: 0; PyTorch: its "
               "accelerator, else the CPU]")


# The backends' own words, from their registry: "numpy (the CPU), cupy (an NVIDIA GPU), ...".
BACKEND_HELP = ("array library: "
                + ", ".join(f"{name} ({BACKENDS[name].summary})" for name in BACKEND_CHOICES[1:])
                + ", or auto (" + ", else ".join(BACKENDS[name].in_auto for name in AUTO_ORDER)
                + ") [auto]")


def add_backend_args(parser):
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help=BACKEND_HELP)
    parser.add_argument("--device", type=parsed(parse_device), default=None, help=DEVICE_HELP)
    add_threads_flag(parser)


def add_threads_flag(parser):
    parser.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                        help="CPU threads: matrix products, compiled loops, a batch's shards "
                             "[half the CPUs this process may use; also OMP_NUM_THREADS, "
                             "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, NUMBA_NUM_THREADS]")


def add_json_flag(parser, what, not_suffixes=tuple):
    """``--json``, one meaning on every command: alone (or ``--json -``) ``what`` as one JSON
    object on stdout instead of the table; ``--json PATH`` written to PATH beside the table.
    ``not_suffixes()``: the suffixes of the command's inputs, never a JSON file's (``predict
    a.png --json b.png`` must not write over a picture)."""
    def path(text):
        if Path(text).suffix.lower() in not_suffixes():
            raise argparse.ArgumentTypeError(
                f"{text} is a picture, not where the JSON goes: give --json PATH.json, or put "
                "--json (stdout) after the pictures")
        return text

    return parser.add_argument(
        "--json", nargs="?", const=STDOUT, default=None, metavar="PATH", type=path,
        help=f"{what} as one JSON object: on stdout instead of the table (--json alone, or "
             "--json -), or written to PATH")


def add_data_args(parser):
    parser.add_argument("--data-dir", default=None,
                        help="where the MNIST files are or go (else $MNIST_GPU_DATA, else ./data)")
    parser.add_argument("--offline", action="store_true",
                        help="never download (also $MNIST_GPU_OFFLINE=1)")


def add_training_args(parser, sweep: bool) -> dict:
    """The flags of `train`, and of `sweep` (where --alpha and --seed take lists, and the
    outputs are files). Returns each setting's option strings, by name, for the presets."""
    add_backend_args(parser)
    add_data_args(parser)
    p = _Recorder(parser)
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="[float32]")
    p.add_argument("--batch-size", type=int_at_least(1), default=1,
                   help="1: the tutorial's per-image update; B: mini-batches of B images [1]")
    p.add_argument("--epochs", type=int_at_least(1), default=1, help="passes over the data [1]")
    _add_rates_and_seeds(p, sweep)
    p.add_argument("--shuffle", action="store_true",
                   help="visit the images in a seeded random order each epoch")
    p.add_argument("--limit", type=int_at_least(1), default=None,
                   help="train on the first N images only")
    p.add_argument("--checkpoints", type=int_list, default=None,
                   help="image counts at which to evaluate, e.g. 0,100,1k,10k [the tutorial's: "
                        + ",".join(map(str, TUTORIAL_CHECKPOINTS)) + "; every epoch if >1]")
    p.add_argument("--kernel", choices=KERNELS, default="auto",
                   help="fused (compiled passes over the lit pixels: per image on the CPU "
                        "and GPU, mini-batches on the CPU; the checkpoints' test-set evaluation "
                        "too, where the backend has it), array (one array call per operation, "
                        "the reference) or auto (fused where it has been verified on its "
                        "hardware: on the CPU; on a GPU the array path, until the CUDA kernel "
                        "is measured there) [auto]")
    (_add_sweep_outputs if sweep else _add_train_outputs)(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_network_args(_Recorder(p.parser.add_argument_group(
        "beyond the tutorial", "any of these trains a stack of dense layers by mini-batch SGD "
        "(mnist_gpu/model/network.py); without them it is the tutorial's network"), p.names))
    if not sweep:
        p.add_argument("--preset", default=None, metavar="NAME",
                       help="a documented configuration (explicit flags override its values): "
                            + ", ".join(PRESETS) + "; --preset list shows them and what each "
                            "measured, on which machine")
    return p.names


def _add_rates_and_seeds(p, sweep: bool):
    """One learning rate and seed for `train`; lists of them, a grid, for `sweep`."""
    from ..sweep.grid import parse_alphas, parse_seeds

    if sweep:
        p.add_argument("--alpha", "--lr", type=parsed(parse_alphas), default=(0.01,),
                       metavar="A,A,...", help="learning rates, e.g. 0.001,0.003,0.01 [0.01]")
        p.add_argument("--seed", type=parsed(parse_seeds), default=(0,), metavar="S-S,S",
                       help="seeds of the initial weights, e.g. 0-9 or 0,3,7 [0]")
        p.add_argument("--data-seed", type=int_at_least(0), default=None,
                       help="seeds the shuffled order, the same for every model [the first seed]")
    else:
        p.add_argument("--alpha", "--lr", type=positive_float, default=0.01,
                       help="learning rate [0.01]")
        p.add_argument("--seed", type=int_at_least(0), default=0,
                       help="seeds the initial weights (and the shuffling, unless --data-seed) "
                            "[0]")
        p.add_argument("--data-seed", type=int_at_least(0), default=None,
                       help="seeds the shuffling apart from the weights [--seed]")


def _add_sweep_outputs(p):
    add_json_flag(p, "every model's settings, curve and accuracy, and the sweep's timing")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="write every model's weights (.npz, key 'weights', shape (M, 784, "
                        "10)) with each model's settings; eval/predict --model K use one")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="accuracy against learning rate (median and band over seeds) and "
                        "the curves, as a PNG (needs mnist-gpu[plot])")
    p.add_argument("--chunk-models", type=int_at_least(1), default=None, metavar="N",
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


def _add_train_outputs(p):
    p.add_argument("--init", default=None, metavar="FILE",
                   help="initial weights, a (784, 10) array in .npy or .npz (key 'weights')")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="write the weights, configuration and accuracy to PATH (.npz)")
    add_json_flag(p, "the configuration, backend, kernel, curve, accuracy and timing")
    p.add_argument("--min-accuracy", type=fraction, default=None, metavar="X",
                   help="exit with status 1 if the final accuracy is below X (0.7 or 70%%)")


def float_list(text):
    """``0.9,0.999`` -> (0.9, 0.999), each a non-negative number."""
    return tuple(non_negative_float(part) for part in text.split(","))


def _add_network_args(deep):
    """The flags beyond the tutorial: any of them trains a deeper network."""
    deep.add_argument("--layers", default=None, metavar="SPEC",
                      help="the network, its layers in order, e.g. conv24x5,pool2,relu,"
                           "conv32x3,pool2,relu,dense256,relu,dense10 (words: "
                           + ", ".join(sorted(LAYERS)) + "; docs/networks.md) [dense10]")
    deep.add_argument("--loss", choices=LOSSES, default="mse",
                      help="mse: the tutorial's squared error; ce: softmax cross-entropy [mse]")
    deep.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="[sgd]")
    for name, cls in OPTIMIZERS.items():
        for key, default in cls.settings.items():
            if key in deep.names:
                continue  # a setting several optimisers take, already a flag
            deep.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                              type=float_list if isinstance(default, tuple) else
                              non_negative_float, metavar="X,X" if isinstance(default, tuple)
                              else None,
                              help=f"the optimiser's {key.replace('_', ' ')} [{_words(default)}]")
    deep.add_argument("--schedule", choices=SCHEDULES, default="constant",
                      help="learning rate: constant, step, cosine, one-cycle, one-cycle-lr "
                           "(docs/networks.md) [constant]")
    kinds = {"sizes": lambda text: int_list(text, minimum=1), "size": int_at_least(1),
             "fraction": fraction_below_one}
    for setting, flag, kind, words in OLDER_FLAGS:
        if kind == "switch":
            deep.add_argument(flag, dest=setting, action="store_true", help=words)
        elif isinstance(kind, tuple):
            deep.add_argument(flag, dest=setting, choices=kind, default=None, help=words)
        else:
            deep.add_argument(flag, dest=setting, type=kinds[kind], default=None,
                              metavar="P" if kind == "fraction" else None,
                              help=words + " (older than --layers)")


def _words(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}"


class _Recorder:
    """``add_argument`` on ``parser`` (or an argument group), recording each setting's option
    strings by name (what a preset's overlay needs to know which settings were given)."""

    def __init__(self, parser, names=None):
        self.parser, self.names = parser, {} if names is None else names

    def add_argument(self, *flags, **options):
        action = self.parser.add_argument(*flags, **options)
        self.names[action.dest] = tuple(action.option_strings)
        return action


def apply_preset(args, argv):
    """Fill in the settings of ``--preset NAME`` that the command line did not give itself
    (``--preset list`` prints them and exits)."""
    if not getattr(args, "preset", None):
        return args
    if args.preset == "list":
        print(f"measured on {MEASURED_ON}")
        for name, preset in PRESETS.items():
            print(f"{name:<10} {' '.join(preset.flags()) or '(the defaults)'}\n{'':<10} "
                  f"measured: {preset.measured}")
        raise SystemExit(0)
    if args.preset not in PRESETS:
        print(f"mnist-gpu train: error: --preset: choose from {', '.join(PRESETS)} or list, not "
              f"{args.preset!r}", file=sys.stderr)
        raise SystemExit(2)
    given = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    settings = PRESETS[args.preset].settings
    older = [flag for _, flag, _, _ in OLDER_FLAGS if flag in given]
    if older and "layers" in settings:
        raise UsageError(f"--preset {args.preset} gives its network as layers "
                         f"({settings['layers']}): change it with --layers, not {older[0]}")
    # Another optimiser given on the command line takes none of the preset's one's settings.
    chosen = args.optimizer if "--optimizer" in given else settings.get("optimizer", "sgd")
    others = set(OPTIMIZERS[settings.get("optimizer", "sgd")].settings) - set(
        OPTIMIZERS[chosen].settings)
    for name, value in settings.items():
        if name not in others and not given.intersection(args.flag_names[name]):
            setattr(args, name, value)
    return args


def _older_flags_given(args) -> list[str]:
    return [flag for setting, flag, _, _ in OLDER_FLAGS if getattr(args, setting)]


def optimizer_settings(args) -> dict:
    """The optimiser's settings the command line (or a preset) gave."""
    return {key: getattr(args, key) for cls in OPTIMIZERS.values() for key in cls.settings
            if getattr(args, key, None) is not None}


def wants_network(args) -> bool:
    """Whether the flags ask for more than the tutorial's network (refusing an activation that
    has no hidden layer to act in)."""
    if args.activation and not args.hidden:
        raise UsageError(f"--activation {args.activation} applies to hidden layers, and there "
                         "are none: add --hidden N (e.g. --hidden 100)")
    older = [flag for flag in _older_flags_given(args)
             if flag not in ("--conv-size", "--padding", "--activation")]
    return bool(args.layers or older or args.loss != "mse" or args.optimizer != "sgd"
                or any(optimizer_settings(args).values()) or args.schedule != "constant")


def network(args) -> Network:
    """The network of ``--layers``, or of the older flags (``--conv``, ``--hidden``, ...)."""
    try:
        if args.layers:
            if _older_flags_given(args):
                raise ValueError(f"--layers gives the whole network: drop "
                                 f"{', '.join(_older_flags_given(args))}")
            return parse_network(args.layers, args.loss)
        given = {setting: getattr(args, setting) for setting, _, _, _ in OLDER_FLAGS
                 if getattr(args, setting) not in (None, False)}
        return Architecture(loss=args.loss, **given).network()
    except ValueError as err:
        raise UsageError(f"--layers: {err}" if args.layers else str(err)) from None


def check_rates(rates, dtype: str, flag: str = "--alpha") -> None:
    """Refuse a rate that ``dtype`` rounds to 0 (``--alpha 1e-320`` in float32): nothing trains."""
    import numpy as np

    for rate in rates:
        if np.asarray(rate, dtype=dtype) == 0:
            raise UsageError(f"{flag} {rate!r}: {dtype} rounds it to 0, so nothing would train; "
                             f"the smallest {dtype} rate is {np.finfo(dtype).smallest_subnormal:g}")


def training_config(args, alpha: float, seed: int, data_seed=None):
    """The configuration of a run from ``train``'s or ``sweep``'s flags, with learning rate
    ``alpha`` and seed ``seed``: an ``MLPConfig`` for a deeper network, else a ``TrainConfig``;
    checked, a fault being a ``UsageError``."""
    check_rates(args.alpha if isinstance(args.alpha, tuple) else (alpha,), args.dtype)
    if wants_network(args):
        config = MLPConfig(network(args), lr=alpha, batch_size=args.batch_size,
                           epochs=args.epochs, optimizer=args.optimizer,
                           settings=optimizer_settings(args), schedule=args.schedule, seed=seed,
                           shuffle=args.shuffle, data_seed=data_seed)
    else:
        config = TrainConfig(alpha=alpha, batch_size=args.batch_size, epochs=args.epochs,
                             seed=seed, shuffle=args.shuffle, checkpoints=args.checkpoints,
                             kernel=args.kernel, data_seed=data_seed)
    try:
        config.validate()
    except ValueError as err:
        raise UsageError(str(err)) from None
    return config
