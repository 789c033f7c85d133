"""Sweeps: a grid of configurations (learning rates x seeds) trained together, as one stack of
models on one device.

A single tutorial model cannot fill a GPU (one warp of thousands) and barely uses a CPU's vector
units between its reads of an image; many models that see the same images in the same order
share every read of an image and fill both. ``run_sweep`` builds the grid's initial weights on
the host (each model exactly as ``train --seed`` draws it), trains them side by side through
``training.train_models`` (the tutorial's loop, one stack), and reports every model as its own run
would: the same weights, the same accuracy table. A model that diverges is marked at its step
and frozen there; the others are unaffected.

When the grid does not fit the device, it is split into chunks that do, trained one after
another (``plan_chunks``). Deeper networks (``--hidden`` ...) sweep model after model, with the
data uploaded once.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..io.display import Table, joined_html, joined_text
from ..model.tutorial import N_INPUTS, N_OUTPUTS, init_weights
from ..training import (
    Checkpoint, Curve, DeviceData, MLPConfig, TrainConfig, TrainingDiverged, choose_kernel,
    train_mlp, train_models,
)
from ..training.results import curve_json, ran_on
from .grid import Member

# --------------------------------------------------------------------------- memory


def bytes_per_model(batch_size: int, itemsize: int, fused: bool) -> int:
    """Device memory one model of a stack needs while training, beyond the shared data: its
    weights, their copy at the last good checkpoint, the gradient and predictions of a batch
    (array path), its padded copies (fused passes), and its share of the evaluation's scores."""
    weights = N_INPUTS * N_OUTPUTS
    words = 2 * weights  # the weights and the last good copy
    words += 2 * weights * 16 // 10 if fused else weights + 2 * batch_size * N_OUTPUTS
    words += 2 * N_OUTPUTS * 400  # evaluation: about 2**22 scores per chunk, shared
    return words * itemsize


def plan_chunks(models: int, per_model: int, available: int | None,
                chunk_models: int | None = None) -> list[range]:
    """The grid's models in chunks that fit: ``chunk_models`` each if given, else as many as
    ``available`` bytes hold (all of them when the memory is unknown). ValueError if not even
    one model fits."""
    if chunk_models is None:
        if available is None:
            chunk_models = models
        else:
            chunk_models = available // per_model
            if chunk_models < 1:
                raise ValueError(f"one model needs about {per_model / 2**20:.1f} MiB and the "
                                 f"device has {available / 2**20:.1f} MiB free")
    chunk_models = max(1, min(chunk_models, models))
    return [range(s, min(s + chunk_models, models)) for s in range(0, models, chunk_models)]


def result_bytes(models: int, parameters: int, itemsize: int, checkpoints: int) -> int:
    """Host memory a sweep's result takes at its peak: every model's weights (held once, and
    copied once more into a file's buffer by ``--save``) and its curve as Python objects."""
    return models * (2 * parameters * itemsize + 1024 + 400 * checkpoints)


def grid_problem(models: int, parameters: int, itemsize: int, checkpoints: int,
                 available: int | None) -> str | None:
    """Why a grid of ``models`` cannot be swept here (its result would not fit the host's
    ``available`` memory), found before any work; None when it fits or the memory is unknown.
    The models train chunk by chunk, but the result holds every one of them."""
    needed = result_bytes(models, parameters, itemsize, checkpoints)
    if available is None or needed <= available:
        return None
    return (f"a grid of {models:,} models: their results (weights and curves) take about "
            f"{needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB of memory "
            "available here; sweep fewer models, or in several runs")


# --------------------------------------------------------------------------- results


@dataclass
class ModelResult:
    """One model of a sweep, as its own run reports it."""

    alpha: float
    seed: int
    curve: Curve  # a list of Checkpoint; it stops where the model diverged
    diverged: str | None = None  # where it diverged ("at step 6 (...)"), or None
    diverged_at: int | None = None  # the images seen at the checkpoint that found it

    def __post_init__(self):
        self.curve = Curve(self.curve)

    @property
    def final_accuracy(self) -> float | None:
        return None if self.diverged else self.curve[-1].accuracy

    @property
    def best(self) -> Checkpoint | None:
        return max(self.curve, key=lambda c: c.accuracy) if self.curve else None

    def to_json(self, loss: str = "mse") -> dict:
        """As JSON, the test loss named for the ``loss`` trained (``curve_json``)."""
        best = self.best
        return {"alpha": self.alpha, "seed": self.seed, "final_accuracy": self.final_accuracy,
                "best": curve_json([best], loss)[0] if best else None,
                "diverged": self.diverged, "diverged_at": self.diverged_at,
                "curve": curve_json(self.curve, loss)}


@dataclass(repr=False)
class SweepResult:
    """A sweep's models, each as its own run reports it; shows itself as two tables, per
    learning rate over its seeds and per model."""

    settings: dict
    backend: dict
    kernel: str
    models: list[ModelResult]
    weights: np.ndarray | list = field(repr=False)  # (M, 784, 10); deeper: per layer (W, b)
    seconds: float  # training only, all chunks this run trained
    images_per_model: int
    chunks: int = 1
    resumed: int = 0  # models read back from an earlier run's results file (--resume)
    untrained: int = 0  # models no chunk delivered (a chunk that failed twice)

    @property
    def models_trained(self) -> int:
        """The models this run trained: not those it resumed, nor those whose chunk failed."""
        return len(self.models) - self.resumed - self.untrained

    @property
    def model_images_per_second(self) -> float:
        images = self.images_per_model * self.models_trained
        return images / self.seconds if self.seconds > 0 else float("inf")

    def summaries(self) -> list[dict]:
        """Per learning rate, over its seeds: mean, min and max of the final accuracy of the
        models that did not diverge, and how many did."""
        out = []
        for alpha in dict.fromkeys(m.alpha for m in self.models):
            finals = [m.final_accuracy for m in self.models
                      if m.alpha == alpha and m.final_accuracy is not None]
            diverged = sum(1 for m in self.models if m.alpha == alpha and m.diverged)
            out.append({"alpha": alpha, "models": len(finals) + diverged, "diverged": diverged,
                        "mean": statistics.fmean(finals) if finals else None,
                        "min": min(finals) if finals else None,
                        "max": max(finals) if finals else None})
        return out

    def to_json(self) -> dict:
        loss = (self.settings.get("net") or {}).get("loss", "mse")
        return {"settings": self.settings, "backend": self.backend, "kernel": self.kernel,
                "models": [m.to_json(loss) for m in self.models], "summaries": self.summaries(),
                "seconds": self.seconds, "chunks": self.chunks,
                "models_trained": self.models_trained, "models_resumed": self.resumed,
                "model_images_per_second": self.model_images_per_second}

    def tables(self) -> tuple[Table, Table]:
        """(per learning rate over its seeds, per model)."""
        s = self.settings
        mode = "per-image" if s["batch_size"] == 1 else f"mini-batches of {s['batch_size']}"
        title = (f"sweep of {len(self.models)} models ({len(s['alphas'])} learning rate(s) x "
                 f"{len(s['seeds'])} seed(s)): {s.get('architecture', '784-10, the tutorial')}, "
                 f"{mode} ({self.kernel} kernel), {s['epochs']} epoch(s); {ran_on(self.backend)}, "
                 f"{s['dtype']}")
        summary = [(f"{row['alpha']:g}", f"{row['models']}", f"{row['diverged']}",
                    *(("-",) * 3 if row["mean"] is None else
                      (f"{row['mean']:.2%}", f"{row['min']:.2%}", f"{row['max']:.2%}")))
                   for row in self.summaries()]
        chunks = f", in {self.chunks} chunks" if self.chunks > 1 else ""
        per_alpha = Table(title, ("alpha", "models", "diverged", "mean final", "min", "max"),
                          summary, [f"trained {len(self.models)} models x "
                                    f"{self.images_per_model:,} images in {self.seconds:.3f} s "
                                    f"({self.model_images_per_second:,.0f} model-images/s"
                                    f"{chunks})"])
        rows = []
        for m in self.models:
            best = m.best
            rows.append((f"{m.alpha:g}", f"{m.seed}",
                         "-" if m.final_accuracy is None else f"{m.final_accuracy:.2%}",
                         f"{best.accuracy:.2%} ({best.images_seen:,})" if best else "-",
                         f"diverged {m.diverged}" if m.diverged else "ok"))
        per_model = Table("", ("alpha", "seed", "final", "best (images seen)", "status"), rows,
                          left=("status",))
        return per_alpha, per_model

    def __repr__(self) -> str:
        return joined_text(*self.tables())

    def _repr_html_(self) -> str:
        return joined_html(*self.tables())


# --------------------------------------------------------------------------- running


def run_sweep(data: DeviceData, members: list[Member], config: TrainConfig,
              chunk_models: int | None = None, log=None, on_chunk=None) -> SweepResult:
    """Train the tutorial's network for every member of the grid, side by side (see the module
    docstring). ``config`` holds the shared settings (its alpha and seed are the members'); its
    ``data_seed`` orders the images for all (the first member's seed if None). ``log(line)``
    is told what a user should know: the chunks, and a compiled pass not yet verified on this
    hardware (the kernel's ``note``). The compute path is chosen once, for the models side by
    side in a chunk (all of them, or ``chunk_models``), and every chunk takes it."""
    config = replace(config, data_seed=(members[0].seed if config.data_seed is None
                                        else config.data_seed))
    config.validate()
    backend = data.backend
    kernel = choose_kernel(backend, config, min(len(members), chunk_models or len(members)))
    if kernel.note and log:
        log(kernel.note)
    per_model = bytes_per_model(config.batch_size, np.dtype(data.dtype).itemsize,
                                kernel.name == "fused")
    chunks = plan_chunks(len(members), per_model, backend.memory_available(), chunk_models)
    if len(chunks) > 1 and log:
        why = ("--chunk-models" if chunk_models else
               f"they do not fit the device together, about {per_model / 2**20:.1f} MiB each")
        log(f"training the grid's {len(members):,} models in {len(chunks):,} chunks of up to "
            f"{len(chunks[0]):,}, one after another ({why})")
    results, seconds, images = [], 0.0, 0
    # Filled chunk by chunk: the members and their initial weights exist for one chunk at a time.
    weights = np.empty((len(members), N_INPUTS, N_OUTPUTS), dtype=data.dtype)
    for chunk in chunks:
        chunk_members = [members[i] for i in chunk]
        host_w = np.concatenate([init_weights(m.seed, data.dtype) for m in chunk_members],
                                axis=1)
        run = train_models(data, config, [m.alpha for m in chunk_members], host_w,
                           kernel=kernel)
        del host_w
        for index, member in enumerate(chunk_members):
            divergence = run.diverged.get(index)
            results.append(ModelResult(member.alpha, member.seed, run.curves[index],
                                       divergence.where if divergence else None,
                                       divergence.images_seen if divergence else None))
        weights[chunk.start:chunk.stop] = np.moveaxis(
            run.weights.reshape(N_INPUTS, len(chunk), N_OUTPUTS), 1, 0)
        seconds += run.seconds
        images = run.images_trained
        if on_chunk:
            on_chunk(len(chunk))
    settings = {**asdict(config), "alphas": list(dict.fromkeys(m.alpha for m in members)),
                "seeds": list(dict.fromkeys(m.seed for m in members)), "dtype": data.dtype,
                "n_train": data.n_train, "checkpoints": run.checkpoints}
    del settings["alpha"], settings["seed"]
    return SweepResult(settings, backend.describe(), kernel.name, results, weights, seconds,
                       images, len(chunks))


def run_mlp_sweep(data: DeviceData, members: list[Member], config: MLPConfig, log=None,
                  on_chunk=None) -> SweepResult:
    """Deeper networks, model after model on the device (the data uploaded once): ``config``
    is an ``MLPConfig`` whose ``lr`` and ``seed`` are the members'."""
    results, params, seconds, images = [], [], 0.0, 0
    for member in members:
        model_config = replace(config, lr=member.alpha, seed=member.seed)
        try:
            run = train_mlp(data, model_config)
        except TrainingDiverged as err:
            results.append(ModelResult(member.alpha, member.seed, [],
                                       str(err).removeprefix("training diverged ")))
            params.append(None)
        else:
            results.append(ModelResult(member.alpha, member.seed, run.curve))
            params.append(run.params)
            seconds += run.seconds
            images = run.images_trained
        if on_chunk:
            on_chunk(1)
    settings = {**config.to_json(), "alphas": list(dict.fromkeys(m.alpha for m in members)),
                "seeds": list(dict.fromkeys(m.seed for m in members)), "dtype": data.dtype,
                "n_train": data.n_train, "architecture": config.net.describe(),
                "rate": config.rate_words()}
    del settings["lr"], settings["seed"]
    return SweepResult(settings, data.backend.describe(), "array", results, params, seconds,
                       images or data.n_train * config.epochs)
