"""``mnist-gpu train``: the tutorial's network (or a deeper one), its accuracy table as it trains,
its weights saved on request."""

from __future__ import annotations

from dataclasses import asdict

from ..io.weights import WeightsFileError
from ..training import to_device_data
from .args import training_config, wants_network
from .common import (
    UsageError, backend_and_mnist, check_outputs, images_progress, json_on_stdout, log,
)
from .tables import TrainingTable


def run(args) -> int:
    check_outputs(args, "save", "json")
    if wants_network(args):
        return _train_network(args)
    init = initial_weights(args.init) if args.init else None
    config = training_config(args, args.alpha, args.seed, args.data_seed)
    from ..training import choose_kernel, train

    backend, mnist = backend_and_mnist(args)
    data = training_data(args, backend, mnist)
    say_dropped_checkpoints(args.checkpoints, data.n_train * args.epochs)
    kernel = choose_kernel(backend, config)  # once for the run: the table names it
    table = TrainingTable(args, {**asdict(config), "dtype": args.dtype},
                          backend.describe(), kernel.name)
    quiet = args.quiet or json_on_stdout(args)
    with images_progress(data.n_train * args.epochs, quiet) as progress:
        with table.interruptible():
            result = train(data, config, init_weights=init, progress=progress,
                           on_checkpoint=table.row, log=log, kernel=kernel)
    table.finish(result, {}, result.weights)
    return 0


def _train_network(args) -> int:
    from ..model.network import params_to_arrays
    from ..training import train_mlp

    if args.init or args.checkpoints or args.kernel == "fused":
        raise UsageError("--init, --checkpoints and --kernel fused apply to the tutorial's "
                         "network only (a deeper network is evaluated after every epoch)")
    config = training_config(args, args.alpha, args.seed, args.data_seed)
    backend, mnist = backend_and_mnist(args)
    data = training_data(args, backend, mnist)
    described = {"architecture": config.net.describe(), "loss": config.net.loss,
                 "batch_size": config.batch_size, "lr": config.lr, "rate": config.rate_words(),
                 "epochs": config.epochs, "seed": config.seed, "shuffle": config.shuffle,
                 "dtype": args.dtype}
    table = TrainingTable(args, described, backend.describe(), "array")
    quiet = args.quiet or json_on_stdout(args)
    with images_progress(data.n_train * args.epochs, quiet) as progress:
        with table.interruptible():
            result = train_mlp(data, config, progress=progress, on_checkpoint=table.row)
    arrays = params_to_arrays(result.params)
    first = arrays.pop("W0")  # stored once, as ``weights``, where every reader looks first
    table.finish(result, arrays, first)
    return 0


def initial_weights(path):
    """``--init FILE``: the tutorial's (784, 10) weights, read by the loader of ``eval`` and
    ``predict`` (the same checks, the same messages)."""
    from ..model.saved import SweepFileError, load_model

    try:
        net, params = load_model(path)
    except SweepFileError as err:
        raise UsageError(f"--init {path}: holds the {err.models} models of a sweep; --init takes "
                         "one model's (784, 10) weights (a file written by train --save, or a "
                         ".npy)") from None
    except WeightsFileError as err:
        raise UsageError(f"--init {err}") from None
    if not net.is_tutorial:
        raise UsageError(f"--init {path}: holds a {net.describe()} network; --init takes the "
                         "tutorial's (784, 10) weights")
    return params[0][0]


def training_data(args, backend, mnist):
    """The data on the device, limited to ``--limit`` images, saying so if fewer exist."""
    available = len(mnist.train_labels)
    if args.limit is not None and args.limit > available:
        log(f"--limit {args.limit:,}: the training set has {available:,} images; training on "
            "all of them")
    return to_device_data(backend, mnist, args.dtype, limit=args.limit)


def say_dropped_checkpoints(asked, total):
    beyond = [c for c in asked or () if c > total]
    if beyond:
        log(f"--checkpoints {','.join(f'{c:,}' for c in beyond)}: beyond the {total:,} images "
            "this run trains on, so not evaluated (the final checkpoint always is)")
