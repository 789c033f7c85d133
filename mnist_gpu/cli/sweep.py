"""``mnist-gpu sweep`` (and the seeds of ``curve``): a grid of learning rates x seeds trained
together, in one process or on a Dask cluster, with its table, JSON, weights and picture."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..backend import host_memory_available
from ..io.weights import save_weights
from .args import network, training_config, wants_network
from .common import (
    STDOUT, Failure, UsageError, backend_and_mnist, check_outputs, emit_json, json_on_stdout, log,
    progress_bar, require_plotting, save_figure, say, writing,
)
from .tables import print_sweep
from .train import say_dropped_checkpoints, training_data


def run(args) -> int:
    from .. import sweep

    resumed = []  # what --cluster appends to and --resume reads, beside --json
    if args.cluster and args.json and args.json != STDOUT:
        from ..sweep.results_file import results_path

        resumed = [(f"the results file {results_path(args.json)}", results_path(args.json))]
    check_outputs(args, "json", "save", "plot", inputs=resumed)
    if args.plot:
        require_plotting("--plot")
    members = sweep.grid(args.alpha, args.seed)
    data_seed = members[0].seed if args.data_seed is None else args.data_seed
    deep = wants_network(args)
    if args.cluster or args.resume:
        if not args.cluster:
            raise UsageError("--resume continues a --cluster sweep: give the same --cluster")
        if not args.json or args.json == STDOUT or (Path(args.json).exists()
                                                    and not Path(args.json).is_file()):
            raise UsageError("--cluster needs --json PATH, a file: finished models are kept "
                             "beside it (PATH.results.jsonl), which is what --resume reads")
        if deep:
            raise UsageError("--cluster sweeps the tutorial's network (and softmax regression "
                             "through it) only; deeper networks sweep in one process")
    if deep and (args.checkpoints or args.kernel == "fused"):
        raise UsageError("--checkpoints and --kernel fused apply to the tutorial's network "
                         "only (a deeper network is evaluated after every epoch)")
    config = training_config(args, members[0].alpha, members[0].seed, data_seed)
    _check_grid_fits(args, len(members), deep)
    if args.cluster:
        result = _on_cluster(args, members, config)
        _finish(args, result, deep)
        return 1 if any(m.diverged and m.diverged.startswith("not trained")
                        for m in result.models) else 0
    backend, mnist = backend_and_mnist(args)
    data = training_data(args, backend, mnist)
    if not deep:
        say_dropped_checkpoints(args.checkpoints, data.n_train * args.epochs)
    bar = progress_bar(len(members), args.quiet, unit="model")
    advance = bar.update if bar else None
    try:
        if deep:
            result = sweep.run_mlp_sweep(data, members, config, log=log, on_chunk=advance)
        else:
            try:
                result = sweep.run_sweep(data, members, config, args.chunk_models, log=log,
                                         on_chunk=advance)
            except ValueError as err:  # not even one model fits the device
                raise Failure(str(err)) from None
    finally:
        if bar:
            bar.close()
    _finish(args, result, deep)
    return 0


def _on_cluster(args, members, config):
    """The grid's chunks on a Dask cluster (``mnist_gpu/sweep/cluster.py``, imported only
    here)."""
    from ..data import resolve_data_dir
    from ..sweep import cluster, results_file

    try:
        client, close = cluster.connect(args.cluster, log=log)
    except cluster.ClusterError as err:
        raise UsageError(str(err)) from None
    bar = progress_bar(len(members), args.quiet, unit="model")
    interrupted = False
    try:
        done = cluster.run_on_cluster(
            client, members, config, args.backend, args.device, args.dtype, args.limit,
            resolve_data_dir(args.data_dir), args.json, args.chunk_models, args.resume,
            log=log, progress=bar.update if bar else None)
    except results_file.ForeignResults as err:
        raise UsageError(str(err)) from None
    except results_file.ResultsFileError as err:
        raise Failure(str(err)) from None
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C or SIGTERM: the workers are stopped at once
        raise
    finally:
        if bar:
            bar.close()
        close(interrupted)
    if args.resume:
        log(f"trained {done.chunks_run} of {done.chunks} chunks (the others' models were in "
            "the results file)")
    for line in done.failed:
        log(f"error: a chunk failed twice: {line}")
    return done.result


def _check_grid_fits(args, models: int, deep: bool) -> None:
    """Refuse, before any work, a grid whose result (every model's weights and curve) would
    not fit this machine's memory: it would grow until it failed, long after it started."""
    from ..sweep import grid_problem

    parameters = sum(math.prod(shape) for layer in network(args).layers
                     for shape in layer.param_shapes())
    checkpoints = max(len(args.checkpoints or ()), 9) + args.epochs + 1  # at most about so many
    problem = grid_problem(models, parameters, np.dtype(args.dtype).itemsize, checkpoints,
                           host_memory_available())
    if problem:
        raise UsageError(problem)


def _finish(args, result, deep):
    if not json_on_stdout(args):
        print_sweep(result, len(args.alpha), len(args.seed))
    if args.json:
        emit_json(args, result.to_json())
    if args.save:
        with writing("--save", args.save):
            saved = _save(args.save, result, deep)
        say(args, f"saved {len(result.models)} models' weights to {saved}")
    if args.plot:
        from ..viz.figures import plot_sweep

        save_figure(plot_sweep(result), args.plot)
        say(args, f"wrote {args.plot}")


def _save(path, result, deep):
    """Every model's weights in one .npz, a leading model axis on every array, with each model's
    settings in the metadata (eval and predict take one with --model K)."""
    models = [{"alpha": m.alpha, "seed": m.seed, "final_accuracy": m.final_accuracy,
               "diverged": m.diverged} for m in result.models]
    metadata = {"sweep": result.settings, "models": models}
    if not deep:
        return save_weights(path, result.weights, metadata)
    from ..model.architecture import network_from_json
    from ..model.network import init_params, params_to_arrays

    described = result.settings["net"]
    metadata["config"] = {"net": described}
    # A diverged model has no weights: zeros of the right shapes keep the file's model axis whole.
    shapes = params_to_arrays(init_params(network_from_json(described), 0,
                                          result.settings["dtype"]))
    stacked = {key: np.stack([params_to_arrays(p)[key] if p is not None else np.zeros_like(z)
                              for p in result.weights]) for key, z in shapes.items()}
    weights = stacked.pop("W0")
    return save_weights(path, weights, metadata, **stacked)
