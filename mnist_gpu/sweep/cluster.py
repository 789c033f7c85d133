"""Sweeps beyond one machine: a grid's chunks on a Dask cluster, one stacked sweep per task.

Imported only for ``mnist-gpu sweep --cluster ...``: without it nothing here (and no Dask) loads.

* ``connect(spec)``: ``local:N`` starts N worker processes on this machine (Dask's
  ``LocalCluster``), ``cuda`` one worker per visible GPU (dask-cuda's ``LocalCUDACluster``),
  ``tcp://HOST:PORT`` joins a running scheduler (one started by dask-jobqueue on Slurm or PBS, say).
  An address that is not ``tcp://HOST:PORT`` (``reach.py``), an unreachable scheduler, a missing
  Dask or workers that cannot import mnist-gpu are one ``ClusterError`` line, before any
  training. The workers started here ignore a terminal's Ctrl-C; on an interruption the client
  kills them and removes their scratch folder.
* ``run_on_cluster``: the grid split into chunks (``--chunk-models``, else two per worker), each
  a task that trains its models side by side on its worker's device (``sweep.run_sweep``),
  gathered as they complete. Each worker loads and verifies MNIST once, from its own data
  directory, or from a copy the client scatters once when the workers have none.
* Fault tolerance: every finished model is appended to a results file (one JSON line each,
  written in one ``write`` to a file opened for appending, so a crash leaves at most a torn last
  line, which reading skips); a worker that dies mid-chunk has the chunk rerun elsewhere (Dask
  reschedules a lost task, up to ``ALLOWED_FAILURES`` times); a chunk that raises twice is
  reported with its error and the others complete; ``resume`` reruns only the chunks whose
  models are missing from the file, and the merged results are those of an uninterrupted run.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..model.tutorial import N_INPUTS, N_OUTPUTS
from ..training import TrainConfig
from .grid import Member
from .reach import ClusterError, scheduler_address
from .results_file import append_results, fingerprint, model_of, read_results, results_path
from .run import ModelResult, SweepResult

# A lost worker's task is rerun at most this many times before it is reported as failed.
ALLOWED_FAILURES = 2
# What the clusters started here are started with, for their own scheduler and workers only (the
# caller's Dask configuration is left as it was).
CLUSTER_CONFIG = {"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                  "distributed.worker.daemon": False}
# What the workers of a cluster started here run as they start (``reach.dask_setup``).
PRELOAD = "mnist_gpu.sweep.reach"
# One model's weights, as a results line carries them.
_MODEL_SHAPE = (N_INPUTS, N_OUTPUTS)


# --------------------------------------------------------------------------- connecting


def connect(spec: str, log=None):
    """(client, close): a ``distributed.Client`` for ``spec`` and a function that shuts down
    what was started here (the client, and the local cluster if one was started)."""
    try:
        import dask
        import distributed
    except ImportError as err:
        raise ClusterError(f"--cluster needs Dask's distributed ({err}): pip install "
                           "'mnist-gpu[cluster]'") from None
    address = scheduler_address(spec) if "://" in spec else None
    cluster, scratch = None, None
    try:
        if spec.startswith("local:") or spec == "cuda":
            # The scratch space of the cluster's scheduler and workers (their lock files too),
            # a folder of its own that goes with the cluster, not the shared temporary folder.
            scratch = tempfile.mkdtemp(prefix="mnist-gpu-dask-")
            config = {**CLUSTER_CONFIG, "temporary-directory": scratch}
        if spec.startswith("local:"):
            workers = _count(spec)
            # Each worker's compiled loops share the cores with the other workers' (Numba
            # starts as many threads as there are cores otherwise).
            threads = max(1, (os.cpu_count() or 1) // workers)
            with dask.config.set(config):
                cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.ERROR,
                    env={"NUMBA_NUM_THREADS": str(threads)}, local_directory=scratch,
                    preload=_preloads(dask),
                    # The scheduler's HTTP routes on a free port of this host's loopback, not
                    # on 8787 (a warning of four lines when another cluster holds it).
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
        elif spec == "cuda":
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError as err:
                raise ClusterError(f"--cluster cuda needs dask-cuda ({err}): pip install "
                                   "dask-cuda") from None
            with dask.config.set(config):
                cluster = LocalCUDACluster(dashboard_address=None, local_directory=scratch,
                                           preload=_preloads(dask))
        elif address:
            pass
        else:
            raise ClusterError(f"--cluster {spec}: expected local:N, cuda or tcp://HOST:PORT")
        try:
            client = distributed.Client(cluster or address, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"--cluster {spec}: cannot reach the scheduler "
                               f"({type(err).__name__}: {err})") from None
    except BaseException:
        if cluster is not None:
            cluster.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise

    def close(interrupted: bool = False):
        disabled = logging.root.manager.disable
        try:
            if interrupted and cluster is not None:
                # Dask would wait up to 4 s for each worker's running chunk; the run is over,
                # and what the scheduler says of the gathers it cut short is not the user's.
                logging.disable(logging.CRITICAL)
                _kill_workers(cluster)
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            logging.disable(disabled)
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    try:
        _check_workers(client, spec)
    except BaseException:
        close()
        raise
    return client, close


def _preloads(dask) -> list:
    """What the workers preload: this package's ``reach``, then what Dask's configuration
    names."""
    return [PRELOAD, *(dask.config.get("distributed.worker.preload", None) or ())]


def _kill_workers(cluster) -> None:
    """Kill the worker processes of a cluster started here, their nannies told first that they
    are closing (so that they close, rather than start the worker again)."""
    from distributed.core import Status

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)
        if isinstance(pid, int):
            nanny.status = Status.closing_gracefully
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # gone already


def _count(spec: str) -> int:
    try:
        workers = int(spec.split(":", 1)[1])
    except ValueError:
        raise ClusterError(f"--cluster {spec}: expected local:N with N a number") from None
    if workers < 1:
        raise ClusterError(f"--cluster {spec}: N must be at least 1")
    return workers


def _check_workers(client, spec):
    """Every worker imports this very version of mnist-gpu, or one line says which cannot."""
    from .. import __version__

    if not client.scheduler_info().get("workers"):
        client.wait_for_workers(1, timeout=30)
    try:
        versions = client.run(_worker_version)
    except Exception as err:  # noqa: BLE001 - whatever a worker raises on unpickling our code
        raise ClusterError(f"--cluster {spec}: the workers cannot run mnist-gpu "
                           f"({type(err).__name__}: {err}); install it on every worker") from None
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        worker, version = next(iter(wrong.items()))
        raise ClusterError(f"--cluster {spec}: worker {worker} has mnist-gpu {version}, this "
                           f"client {__version__}")


def _worker_version():
    from .. import __version__

    return __version__


# --------------------------------------------------------------------------- on a worker


_LOADED = {}  # per worker process: the data, loaded and uploaded once, by what it came from


def _worker_data(source, backend_name: str, device, dtype: str, limit):
    """The worker's data on its device, loaded and verified on first use only: ``source`` is a
    data directory on the worker, or the MNIST arrays the client scattered."""
    from ..backend import get_backend
    from ..data import load_mnist
    from ..training import to_device_data

    key = (source if isinstance(source, str) else "scattered", backend_name, device, dtype,
           limit)
    if key not in _LOADED:
        backend = get_backend(backend_name, device, log=None, dtype=dtype)
        mnist = load_mnist(source, offline=True) if isinstance(source, str) else source
        _LOADED[key] = to_device_data(backend, mnist, dtype, limit=limit)
    return _LOADED[key]


def _has_data(directory: str) -> bool:
    from ..data import MNIST_FILES

    return all((Path(directory) / f"{spec.name}.gz").is_file()
               or (Path(directory) / spec.name).is_file() for spec in MNIST_FILES)


def train_chunk(settings: dict, indices, members, source) -> list[dict]:
    """A task: the members of one chunk trained side by side on this worker's device."""
    from .run import run_sweep

    began = time.perf_counter()
    config = TrainConfig(**settings["config"])
    data = _worker_data(source, settings["backend"], settings["device"], settings["dtype"],
                        settings["limit"])
    result = run_sweep(data, [Member(*m) for m in members], config)
    lines = [_model_line(settings["fingerprint"], indices[0], index, model, weights, result)
             for index, model, weights in zip(indices, result.models, result.weights)]
    for line in lines:  # the task's own time on its worker, data loading included
        line["task_seconds"] = time.perf_counter() - began
    return lines


def _model_line(fingerprint, chunk: int, index, model: ModelResult, weights: np.ndarray,
                result: SweepResult) -> dict:
    return {"sweep": fingerprint, "chunk": chunk, "index": index, "model": model.to_json(),
            "weights": base64.b64encode(np.ascontiguousarray(weights).tobytes()).decode(),
            "dtype": str(weights.dtype), "kernel": result.kernel, "seconds": result.seconds,
            "backend": result.backend, "settings": result.settings,
            "images_per_model": result.images_per_model}


# --------------------------------------------------------------------------- the client's side


@dataclass
class ClusterRun:
    result: SweepResult
    chunks_run: int
    chunks: int
    failed: list[str]  # one line per chunk that failed twice


def run_on_cluster(client, members: list[Member], config: TrainConfig, backend_name: str,
                   device, dtype: str, limit, data_dir: Path, json_path,
                   chunk_models: int | None = None, resume: bool = False, log=None,
                   progress=None) -> ClusterRun:
    """The sweep of ``members`` on the cluster's workers, merged in grid order (see the module
    docstring)."""
    from distributed import as_completed

    config_json = asdict(config)
    settings = {"config": config_json, "backend": backend_name, "device": device,
                "dtype": dtype, "limit": limit}
    as_pairs = [(m.alpha, m.seed) for m in members]
    settings["fingerprint"] = fingerprint(as_pairs, settings)
    path = results_path(json_path)
    done = read_results(path, settings["fingerprint"], len(members), log) if resume else {}
    earlier = set(done)
    if not resume and path.exists():
        path.unlink()  # a fresh run: the previous run's results are not this one's
    if done and log:
        log(f"--resume: {len(done)} of {len(members)} models already in {path}")
    workers = max(1, len(client.scheduler_info()["workers"]))
    size = chunk_models or max(1, math.ceil(len(members) / (2 * workers)))
    chunks = [list(range(s, min(s + size, len(members)))) for s in range(0, len(members), size)]
    todo = [c for c in chunks if any(i not in done for i in c)]
    if progress and done:
        progress(sum(1 for c in chunks if c not in todo for _ in c))
    source = str(data_dir.resolve())
    if not all(client.run(_has_data, source).values()):
        from ..data import load_mnist

        if log:
            log(f"some workers have no MNIST in {source}: sending them this client's copy, once")
        source = client.scatter(load_mnist(data_dir, offline=True), broadcast=True)
    futures = {client.submit(train_chunk, settings, chunk, [as_pairs[i] for i in chunk],
                             source, retries=1, pure=False): chunk for chunk in todo}
    failed = []
    for future in as_completed(futures):
        chunk = futures[future]
        try:
            lines = future.result()
        except Exception as err:  # noqa: BLE001 - reported per chunk; the others go on
            failed.append(f"models {chunk[0]} to {chunk[-1]}: {type(err).__name__}: {err}")
            if log:
                log(f"chunk of models {chunk[0]} to {chunk[-1]} failed twice: "
                    f"{type(err).__name__}: {err}")
            continue
        append_results(path, lines)
        done.update({line["index"]: line for line in lines})
        earlier.difference_update(line["index"] for line in lines)  # trained again, here
        if progress:
            progress(len(lines))
    return ClusterRun(_merge(members, done, config_json, dtype, earlier), len(todo), len(chunks),
                      failed)


def _merge(members, done: dict[int, dict], config_json: dict, dtype: str,
           earlier=frozenset()) -> SweepResult:
    """The sweep's result from its models' lines, in grid order (missing models: a failed chunk,
    reported as such); the models of ``earlier`` (indices) came from an earlier run, and count
    neither in this run's seconds nor in its models trained."""
    models, weights, first, chunk_seconds, untrained = [], [], None, {}, 0
    for index, member in enumerate(members):
        line = done.get(index)
        if line is None:
            models.append(ModelResult(member.alpha, member.seed, [], "not trained: its chunk "
                                      "failed (see above)"))
            weights.append(np.full(_MODEL_SHAPE, np.nan, dtype=dtype))
            untrained += 1
            continue
        first = first or line
        model, model_weights = model_of(line)
        models.append(model)
        weights.append(model_weights)
        if index not in earlier:
            chunk_seconds[line["chunk"]] = line["seconds"]  # the training time of its chunk
    seconds = sum(chunk_seconds.values())
    settings = dict(first["settings"]) if first else {**config_json, "dtype": dtype}
    settings["alphas"] = list(dict.fromkeys(m.alpha for m in members))
    settings["seeds"] = list(dict.fromkeys(m.seed for m in members))
    return SweepResult(settings, first["backend"] if first else {}, first["kernel"] if first
                       else "array", models, np.stack(weights), seconds,
                       first["images_per_model"] if first else 0, len(chunk_seconds),
                       resumed=len(earlier), untrained=untrained)
