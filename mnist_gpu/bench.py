"""Throughput benchmarks: where the time goes, against the peers and the machine's own limit.

For each backend and dtype, after a warm-up, over ``repeats`` timed runs (the device synchronised
before every clock read; CUDA events on CuPy), median and min-max of:

* training images/s: per-image (the fused kernel and the array path), and mini-batches of each
  batch size over one epoch (the array path, and the fused pass where the backend has one);
* inference images/s over the 10,000 test images: the dense product and argmax, and the fused
  pass over the lit pixels where the backend has one;
* the fused passes' one-off listing of the lit pixels, of the training and of the test images,
  as rows of their own, so that a single run can be costed with it;
* the peers, in the same run: the naive baseline (the same algorithm as a plain NumPy loop, as a
  user first writes it) and PyTorch running the same update when it is installed;
* each device's limit, measured the same way on the device the row ran on: memory bandwidth (a
  large copy) and matrix-multiply peak (a large GEMM), by NumPy for the CPU's rows (ours, the
  naive loop's and PyTorch's on the CPU), by CuPy for ours on a GPU and by PyTorch for its own
  CUDA rows; against it each configuration's flops and compulsory bytes per run give the fraction
  of the roofline reached. Both are counted as the work the row does: the dense rows from the
  shapes, the fused rows from the lit pixels they visit and the lists they read.

All data is on the device before the first clock read; each configuration starts from the same
host-initialised weights, and its repeats go on training them (the work per run is the same).
"""

from __future__ import annotations

import glob
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import linear
from .backend import Backend, BackendUnavailable, _cpu_model
from .trainer import DeviceData

BATCH_SIZES = (1, 8, 32, 128, 1024, 8192, 60000)
N_PIX, N_OUT = linear.N_INPUTS, linear.N_OUTPUTS


@dataclass
class Row:
    """One measured configuration."""

    backend: str
    dtype: str
    kind: str  # "per-image", "mini-batch", "inference", "listing", "sweep", "peer"
    name: str
    batch_size: int | None
    images: int  # per timed run
    seconds: list[float] = field(repr=False)
    flops: float = 0.0  # per timed run, the arithmetic the row does
    bytes: float = 0.0  # compulsory traffic per timed run, of the data the row reads and writes
    dense_flops: float | None = None  # a fused row: what the dense algorithm would have done
    device_memory_rise: int | None = None  # bytes the device pool grew beyond the resident set
    models: int = 1  # a sweep's row: models side by side, ``images`` counting model-images
    launch: dict | None = None  # the CUDA pass's launch plan (fused_cuda.LaunchPlan), if any

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_second(self) -> float:
        return self.images / self.median if self.images else 0.0

    def to_json(self, limit=None) -> dict:
        out = asdict(self)
        out.update(median_s=self.median, min_s=min(self.seconds), max_s=max(self.seconds),
                   images_per_second=self.images_per_second)
        if self.dense_flops is not None:
            out["dense_equivalent_gflops"] = self.dense_flops / self.median / 1e9
        if limit and self.images and (self.flops or self.bytes):  # work counted: a roofline
            gflops = self.flops / self.median / 1e9
            gbytes = self.bytes / self.median / 1e9
            out.update(limit=limit["device"], gflops=gflops, gbytes_per_s=gbytes,
                       fraction_of_gemm_peak=gflops / limit["gemm_gflops"],
                       fraction_of_bandwidth=gbytes / limit["copy_gbytes_per_s"])
        return out


# --------------------------------------------------------------------------- counting the work


def train_work(n: int, batch_size: int, itemsize: int, lit: int | None = None):
    """(flops, compulsory bytes) of one epoch of n images in batches of ``batch_size``.

    Dense (``lit`` None, the array path and the peers): forward 2*b*784*10, delta b*10, gradient
    2*b*784*10, the scaled update 2*784*10 per step; the images and targets read once, the
    weights (31 KB in float32) read and written once, since they stay in cache between steps.

    Fused (``lit``: the number of lit pixels in the n images): the same arithmetic on the lit
    pixels only (the update too, per image; a mini-batch's update still covers every row), and
    what it reads: each lit pixel's value and int32 index, one int64 row pointer and one uint8
    label per image, and the weights.
    """
    steps = -(-n // batch_size)
    weights = N_PIX * N_OUT
    if lit is None:
        flops = 4.0 * n * weights + n * N_OUT + 2.0 * steps * weights
        return flops, (n * (N_PIX + N_OUT) + 2.0 * weights) * itemsize
    touched = float(lit * N_OUT)
    update = 2.0 * touched if batch_size == 1 else 2.0 * steps * weights
    flops = 4.0 * touched + n * N_OUT + update
    return flops, _lists_bytes(n, lit, itemsize) + n + 2.0 * weights * itemsize


def inference_work(n: int, itemsize: int, lit: int | None = None):
    """Predicted classes of n images: the product X @ W, then the argmax of each row.

    Dense: every pixel read once with the weights. Fused (``lit`` lit pixels in the n images):
    the products over the lit pixels, from their lists.
    """
    weights = N_PIX * N_OUT
    if lit is None:
        return 2.0 * n * weights, (n * N_PIX + weights) * itemsize
    return 2.0 * lit * N_OUT, _lists_bytes(n, lit, itemsize) + weights * itemsize


def listing_work(n: int, itemsize: int, lit: int):
    """Listing the lit pixels of n images: one comparison per pixel, the images read once and
    their lists written."""
    return float(n * N_PIX), float(n * N_PIX * itemsize) + _lists_bytes(n, lit, itemsize)


def _lists_bytes(n: int, lit: int, itemsize: int) -> float:
    """The lit-pixel lists of n images: a value and an int32 index per lit pixel, an int64 row
    pointer per image."""
    return float(lit * (itemsize + 4) + (n + 1) * 8)


# --------------------------------------------------------------------------- timing


# The shortest warm-up. Besides compilation and caches, it outlasts what the previous row leaves
# running: OpenBLAS's threads spin for a while after a call, waiting for more work, and take the
# cores from the next row's threads (Numba's parallel listing of lit pixels ran at half speed
# for ~60 ms after the mini-batch rows here).
WARMUP_SECONDS = 0.2


def time_repeats(backend: Backend, run, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``run()`` for each of ``repeats`` timed calls, after at least ``warmup``
    untimed ones and ``WARMUP_SECONDS``."""
    began = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - began < WARMUP_SECONDS:
        run()
        backend.synchronize()
        calls += 1
    seconds = []
    for _ in range(repeats):
        with backend.stopwatch() as clock:
            run()
        seconds.append(clock["seconds"])
    return seconds


def bench_backend(backend: Backend, data: DeviceData, batch_sizes, repeats: int,
                  per_image_images: int, log=None) -> list[Row]:
    """Training and inference rows for one backend and dtype."""
    xp = backend.xp
    dtype = data.dtype
    itemsize = np.dtype(dtype).itemsize
    n = data.n_train
    rows = []
    with backend.activate():
        W0 = backend.to_device(linear.init_weights(0, dtype))

        def measure(kind, name, batch, images, step, work, dense_work=None):
            """Time ``step(W)`` from fresh copies of the same weights; record how far the
            device's memory rose beyond what was resident before."""
            W = xp.astype(W0, W0.dtype, copy=True)
            backend.reset_memory_pool()
            seconds = time_repeats(backend, lambda: step(W), repeats)
            rows.append(Row(backend.name, dtype, kind, name, batch, images, seconds, *work,
                            dense_flops=None if dense_work is None else dense_work[0],
                            device_memory_rise=backend.memory_pool_rise()))
            if log:
                log(f"{backend.name} {dtype} {name}: {images / statistics.median(seconds):,.0f} "
                    "images/s")

        fused = _optional(backend.fused_per_image)
        fused_minibatch = _optional(backend.fused_minibatch)
        inference = _optional(backend.fused_inference)
        m = min(per_image_images, n)
        # The lit pixels of the training images, listed once for the fused training passes.
        lister = fused or fused_minibatch or inference
        prepared = lister.prepare(data.train_x) if lister is not None else None

        def lit(images):
            """The number of lit pixels in the first ``images`` training images."""
            return int(backend.to_host(prepared.indptr[images:images + 1])[0])

        # Per-image: the fused kernel (when the backend has one) and the array path.
        if fused is not None:
            measure("per-image", "per-image fused", 1, m,
                    lambda W: fused.run(W, prepared, data.train_labels, 0.01, 0, m),
                    train_work(m, 1, itemsize, lit(m)), train_work(m, 1, itemsize))
        measure("per-image", "per-image array", 1, m,
                lambda W: linear.per_image_steps(W, data.train_x, data.train_y, 0.01, range(m),
                                                 xp=xp),
                train_work(m, 1, itemsize))

        # Mini-batches: one epoch each (B=1 over per_image_images, as it is as slow as per-image),
        # by the array path, then by the fused pass where the backend has one. (Each path's rows
        # together: the BLAS threads and the compiled loops' threads each spin a while after
        # their last call, and the warm-up need only outlast the previous row's.)
        for b in batch_sizes:
            images = m if b == 1 else n
            measure("mini-batch", f"mini-batch {b}", b, images,
                    lambda W: linear.minibatch_steps(W, data.train_x, data.train_y, 0.01, b, 0,
                                                     images, xp=xp),
                    train_work(images, b, itemsize))
        for b in batch_sizes if fused_minibatch is not None else ():
            images = m if b == 1 else n
            measure("mini-batch", f"mini-batch {b} fused", b, images,
                    lambda W: fused_minibatch.run_minibatch(W, prepared, data.train_labels, 0.01,
                                                            b, 0, images),
                    train_work(images, b, itemsize, lit(images)), train_work(images, b, itemsize))

        # The fused passes' listing of the lit pixels, once per image set like the upload.
        if lister is not None:
            test_lit = lister.prepare(data.test_x)
            test_lit_count = int(backend.to_host(test_lit.indptr[-1:])[0])
            measure("listing", "lit-pixel listing (training set)", None, n,
                    lambda W: lister.prepare(data.train_x),
                    listing_work(n, itemsize, lit(n)))
            measure("listing", "lit-pixel listing (test set)", None, data.n_test,
                    lambda W: lister.prepare(data.test_x),
                    listing_work(data.n_test, itemsize, test_lit_count))

        # Inference over the test set: the predicted class of every image, by the fused pass
        # when the backend has one and by the dense product.
        if inference is not None:
            measure("inference", "inference fused", None, data.n_test,
                    lambda W: inference.classify(W, test_lit),
                    inference_work(data.n_test, itemsize, test_lit_count),
                    inference_work(data.n_test, itemsize))
        if lister is not None:
            del test_lit
        measure("inference", "inference array", None, data.n_test,
                lambda W: linear.classify(W, data.test_x, xp=xp),
                inference_work(data.n_test, itemsize))
    return rows


SWEEP_MODELS = (1, 8, 32, 128, 1024)
# A sweep row on the CPU trains at most about this many model-images per timed run (fewer images
# for more models), so that the row for a thousand models takes seconds, not minutes: the
# per-image array path, which writes every weight of every model for each image, far fewer.
CPU_SWEEP_MODEL_IMAGES = {"fused": 4_000_000, "array": 4_000_000, "per-image array": 250_000}


def bench_sweeps(backend: Backend, data: DeviceData, models_list, repeats: int,
                 per_image_images: int, log=None) -> list[Row]:
    """Model-images/s of sweeps of M models side by side, per image and by batches of 1,024, by
    each compute path the backend has; with the M = 1 rows, the amortisation (what M models cost
    against one) is in ``ratios``."""
    from .trainer import TrainConfig, _choose_kernel

    xp = backend.xp
    itemsize = np.dtype(data.dtype).itemsize
    rows = []
    with backend.activate():
        for batch in (1, 1024):
            for kernel in ("fused", "array"):
                try:
                    _, fused = _choose_kernel(backend, TrainConfig(batch_size=batch,
                                                                   kernel=kernel))
                except BackendUnavailable:
                    continue
                if fused is not None and not hasattr(fused, "run_models"):
                    continue
                prepared = fused.prepare(data.train_x) if fused is not None else None
                for models in models_list:
                    budget = CPU_SWEEP_MODEL_IMAGES.get(
                        "per-image array" if (batch, kernel) == (1, "array") else kernel)
                    limit = (data.n_train if backend.name == "cupy"
                             else max(200, budget // models))
                    images = min(per_image_images if batch == 1 else data.n_train, limit)
                    alphas = [0.001] * models
                    W0 = backend.to_device(np.concatenate(
                        [linear.init_weights(s, data.dtype) for s in range(models)], axis=1))
                    W = xp.astype(W0, W0.dtype, copy=True)
                    if fused is not None:
                        def step(W=W, alphas=alphas, images=images):
                            fused.run_models(W, prepared, data.train_labels, alphas, batch, 0,
                                             images)
                    else:
                        columns = backend.to_device(np.full(10 * models, 0.001, data.dtype))

                        def step(W=W, columns=columns, images=images):
                            if batch == 1:
                                linear.per_image_steps(W, data.train_x, data.train_y, columns,
                                                       range(images), xp=xp)
                            else:
                                linear.minibatch_steps(W, data.train_x, data.train_y, columns,
                                                       batch, 0, images, xp=xp)
                    backend.reset_memory_pool()
                    seconds = time_repeats(backend, step, repeats)
                    # Counted as the work done: over the lit pixels for the fused passes. The
                    # images are read once for all the models; each model's weights twice.
                    lit = (int(backend.to_host(prepared.indptr[images:images + 1])[0])
                           if fused is not None else None)
                    flops, traffic = train_work(images, batch, itemsize, lit)
                    rows.append(Row(backend.name, data.dtype, "sweep",
                                    sweep_row_name(models, batch, kernel), batch,
                                    images * models, seconds, flops * models,
                                    traffic + (models - 1) * 2 * 7840 * itemsize,
                                    dense_flops=(None if lit is None else
                                                 train_work(images, batch, itemsize)[0] * models),
                                    device_memory_rise=backend.memory_pool_rise(),
                                    models=models,
                                    launch=_launch_record(fused, models, data, prepared)))
                    if log:
                        log(f"{backend.name} {data.dtype} {rows[-1].name}: "
                            f"{rows[-1].images_per_second:,.0f} model-images/s")
                    del W, W0
    return rows


def _launch_record(fused, models: int, data: DeviceData, prepared) -> dict | None:
    """How the CUDA pass lays out a launch of ``models`` blocks (rows on chip, blocks per
    multiprocessor, waves), for the record beside its timing; None for the other paths."""
    if fused is None or not hasattr(fused, "plan"):
        return None
    return asdict(fused.plan(models, data.dtype, prepared))


def cnn_architecture():
    """The model of ``mnist-gpu train --preset cnn``."""
    from .cli import preset_architecture

    return preset_architecture("cnn")


def bench_cnn(backend: Backend, data: DeviceData, repeats: int, images: int = 1024,
              batch: int = 128, log=None) -> list[Row]:
    """The CNN of ``--preset cnn``: training images/s (forward, backward, SGD with momentum, in
    batches of 128) and inference images/s; and, as a row of its own, the matrix products of a
    training pass alone (the same shapes, timed apart), which says what share of the time they
    take (the rest: im2col's gathers, pooling, activations)."""
    from . import mlp

    xp = backend.xp
    arch = cnn_architecture()
    itemsize = np.dtype(data.dtype).itemsize
    images = min(images, data.n_train)
    rows = []
    with backend.activate():
        host = mlp.init_params(arch, 0, data.dtype)
        params = [(backend.to_device(W), backend.to_device(b)) for W, b in host]
        velocity = [(xp.zeros_like(W), xp.zeros_like(b)) for W, b in params]
        plan = mlp.ConvPlan(arch, backend)
        rng = np.random.default_rng(0)

        def train_pass():
            for s in range(0, images, batch):
                e = min(s + batch, images)
                masks = mlp.dropout_masks(arch, rng, e - s, data.dtype, backend)
                _, grads = mlp.gradients(params, data.train_x[s:e, :], data.train_y[s:e, :],
                                         arch, xp, plan, masks)
                mlp.sgd_step(params, grads, velocity, 0.01, e - s, 0.9, 5e-4)

        products = _cnn_products(arch, batch, images, backend, data.dtype)
        flops = sum(2.0 * m * k * n * count for (m, k, n), count, _, _ in products)
        test = min(2000, data.n_test)
        for name, step, n_images, work in (
                ("cnn training", train_pass, images, flops),
                ("cnn matrix products of training", lambda: _run_products(products, backend),
                 images, flops),
                ("cnn inference",
                 lambda: mlp.classify(params, data.test_x[:test, :], arch, xp, plan=plan), test,
                 flops / 3 * test / images)):
            backend.reset_memory_pool()
            seconds = time_repeats(backend, step, repeats)
            rows.append(Row(backend.name, data.dtype, "cnn", name, batch, n_images, seconds,
                            work, float(n_images * (linear.N_INPUTS + 10) * itemsize),
                            device_memory_rise=backend.memory_pool_rise()))
            if log:
                log(f"{backend.name} {data.dtype} {name}: {rows[-1].images_per_second:,.0f} "
                    "images/s")
    return rows


def bench_torch_cnn(mnist, dtype: str, repeats: int, images: int = 1024, batch: int = 128,
                    device: str = "cpu", log=None) -> list[Row]:
    """PyTorch's equivalent of ``--preset cnn`` (same layers, SGD with momentum and weight
    decay, batches of 128), when PyTorch is installed."""
    try:
        import torch
    except ImportError:
        return []
    if device != "cpu" and not torch.cuda.is_available():
        device = "cpu"
    nn = torch.nn
    tdtype = getattr(torch, dtype)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(1024, 128), nn.ReLU(),
        nn.Dropout(0.25), nn.Linear(128, 10)).to(device=device, dtype=tdtype)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    X = (torch.tensor(mnist.train_images[:images], device=device).to(tdtype) / 255).reshape(
        -1, 1, 28, 28)
    y = torch.tensor(mnist.train_labels[:images].astype(np.int64), device=device)
    Xt = (torch.tensor(mnist.test_images[:2000], device=device).to(tdtype) / 255).reshape(
        -1, 1, 28, 28)
    clock = _TorchClock(torch, device)

    def train_pass():
        model.train()
        for s in range(0, images, batch):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(X[s:s + batch]), y[s:s + batch]).backward()
            optimiser.step()

    @torch.no_grad()
    def inference():
        model.eval()
        return model(Xt).argmax(dim=1)

    # The same work as ours is counted, for the same roofline.
    flops = cnn_training_flops(cnn_architecture(), batch, images)
    traffic = float(images * (linear.N_INPUTS + 10) * np.dtype(dtype).itemsize)
    rows = [Row(f"torch {device}", dtype, "peer", "torch cnn training", batch, images,
                time_repeats(clock, train_pass, repeats), flops, traffic),
            Row(f"torch {device}", dtype, "peer", "torch cnn inference", batch, Xt.shape[0],
                time_repeats(clock, inference, repeats), flops / 3 * Xt.shape[0] / images,
                traffic * Xt.shape[0] / images)]
    if log:
        log(f"torch {device} {dtype} cnn: {rows[0].images_per_second:,.0f} training images/s")
    return rows


def cnn_training_flops(arch, batch: int, images: int) -> float:
    """The matrix products' arithmetic of one training pass of ``arch`` over ``images``."""
    return sum(2.0 * m * k * n * count
               for (m, k, n), count in _cnn_product_shapes(arch, batch, images))


def _cnn_products(arch, batch, images, backend, dtype):
    """The products of ``_cnn_product_shapes``, with operands of those shapes on the device."""
    rng = np.random.default_rng(0)
    return [((m, k, n), count,
             backend.to_device(rng.random((m, k), dtype=np.dtype(dtype))),
             backend.to_device(rng.random((k, n), dtype=np.dtype(dtype))))
            for (m, k, n), count in _cnn_product_shapes(arch, batch, images)]


def _cnn_product_shapes(arch, batch, images):
    """The (m, k, n) shapes of the matrix products of one training pass over ``images``, with
    how often each runs: per convolution its forward product, its kernels' gradient and (but
    the first) its input's gradient; per dense layer the same three."""
    shapes = arch.conv_shapes()
    steps = -(-images // batch)
    products = []
    for i, (shape, filters) in enumerate(zip(shapes, arch.conv)):
        rows_ = batch * shape.out_height * shape.out_width
        patch = shape.k * shape.k * shape.channels
        products += [((rows_, patch, filters), steps), ((patch, rows_, filters), steps)]
        if i > 0:  # the patches' gradient, which col2im adds back into the input's
            products.append(((rows_, filters, patch), steps))
    sizes = arch.sizes
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        products += [((batch, fan_in, fan_out), steps), ((fan_in, batch, fan_out), steps),
                     ((batch, fan_out, fan_in), steps)]
    return products


def _run_products(products, backend):
    for _, count, a, b in products:
        for _ in range(count):
            a @ b


def sweep_row_name(models: int, batch: int, kernel: str) -> str:
    mode = "per-image" if batch == 1 else f"mini-batch {batch}"
    return f"sweep of {models} model{'s' if models > 1 else ''}, {mode} {kernel}"


def _optional(verb):
    """A backend's fused pass, or None where it has none."""
    try:
        return verb()
    except BackendUnavailable:
        return None


# --------------------------------------------------------------------------- peers


def bench_naive_numpy(mnist, dtype: str, batch_sizes, repeats: int, per_image_images: int,
                      log=None) -> list[Row]:
    """The same algorithm as a plain NumPy loop, as a user first writes it (the tutorial's code)."""
    itemsize = np.dtype(dtype).itemsize
    images = (mnist.train_images / 255).astype(dtype)
    eye = np.eye(10, dtype=dtype)
    targets = eye[mnist.train_labels]
    start = linear.init_weights(0, dtype)
    m = min(per_image_images, len(images))
    alpha = np.dtype(dtype).type(0.01)
    rows = []

    def per_image():
        W = start.copy()
        for x, label in zip(images[:m], mnist.train_labels[:m]):
            pred = x @ W
            delta = pred - eye[label]
            W -= alpha * np.outer(x, delta)

    def minibatch(b, count):
        W = start.copy()
        for s in range(0, count, b):
            xb, yb = images[s:s + b], targets[s:s + b]
            W -= (alpha / len(xb)) * (xb.T @ (xb @ W - yb))

    def matmul():
        return mnist_test @ start  # the product alone, without even the argmax

    mnist_test = (mnist.test_images / 255).astype(dtype)
    cpu = _HostClock()
    rows.append(Row("naive numpy", dtype, "peer", "naive per-image loop", 1, m,
                    time_repeats(cpu, per_image, repeats), *train_work(m, 1, itemsize)))
    for b in batch_sizes:
        count = m if b == 1 else len(images)
        rows.append(Row("naive numpy", dtype, "peer", f"naive mini-batch {b}", b, count,
                        time_repeats(cpu, lambda: minibatch(b, count), repeats),
                        *train_work(count, b, itemsize)))
    rows.append(Row("naive numpy", dtype, "peer", "single numpy matmul", None, len(mnist_test),
                    time_repeats(cpu, matmul, repeats), *inference_work(len(mnist_test), itemsize)))
    if log:
        log(f"naive numpy {dtype}: done")
    return rows


def bench_torch(mnist, dtype: str, batch_sizes, repeats: int, per_image_images: int,
                device: str = "cpu", quick: bool = False, log=None):
    """PyTorch running the same update, when it is installed: (rows, the limit of the GPU it ran
    on, or None on the CPU). ([], None) without PyTorch."""
    try:
        import torch
    except ImportError:
        if log:
            log("PyTorch is not installed: no PyTorch peer")
        return [], None
    if device != "cpu" and not torch.cuda.is_available():
        device = "cpu"
    # Full-precision float32 matrix products, as in our parity runs.
    torch.backends.cuda.matmul.allow_tf32 = False
    tdtype = getattr(torch, dtype)
    itemsize = np.dtype(dtype).itemsize
    X = torch.tensor(mnist.train_images, device=device).to(tdtype) / 255
    Y = torch.nn.functional.one_hot(torch.tensor(mnist.train_labels.astype(np.int64),
                                                 device=device), 10).to(tdtype)
    Xt = torch.tensor(mnist.test_images, device=device).to(tdtype) / 255
    start = torch.tensor(linear.init_weights(0, dtype), device=device)
    m = min(per_image_images, X.shape[0])
    clock = _TorchClock(torch, device)
    rows = []

    @torch.no_grad()
    def per_image():
        W = start.clone()
        for i in range(m):
            x = X[i]
            delta = x @ W - Y[i]
            W -= 0.01 * torch.outer(x, delta)

    @torch.no_grad()
    def minibatch(b, count):
        W = start.clone()
        for s in range(0, count, b):
            xb, yb = X[s:s + b], Y[s:s + b]
            W -= (0.01 / xb.shape[0]) * (xb.T @ (xb @ W - yb))

    limit = None
    if device != "cpu":
        # Scored against the GPU it ran on, measured the same way by PyTorch itself.
        n_bytes, side = _limit_sizes(quick)
        src = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
        a = torch.rand((side, side), dtype=tdtype, device=device,
                       generator=torch.Generator(device=device).manual_seed(0))
        limit = _limit(f"torch on {torch.cuda.get_device_name(device)}", n_bytes,
                       time_repeats(clock, src.clone, repeats), side,
                       time_repeats(clock, lambda: a @ a, repeats))
        del src, a
    name = f"torch {device}"
    rows.append(Row(name, dtype, "peer", "torch per-image", 1, m,
                    time_repeats(clock, per_image, repeats), *train_work(m, 1, itemsize)))
    for b in batch_sizes:
        count = m if b == 1 else X.shape[0]
        rows.append(Row(name, dtype, "peer", f"torch mini-batch {b}", b, count,
                        time_repeats(clock, lambda: minibatch(b, count), repeats),
                        *train_work(count, b, itemsize)))
    rows.append(Row(name, dtype, "peer", "torch inference", None, Xt.shape[0],
                    time_repeats(clock, lambda: Xt @ start, repeats),
                    *inference_work(Xt.shape[0], itemsize)))
    if log:
        log(f"{name} {dtype}: done")
    return rows, limit


class _HostClock(Backend):
    """The stopwatch of a plain host loop: nothing is queued, so nothing to synchronise."""

    name = "host"


class _TorchClock(Backend):
    name = "torch"

    def __init__(self, torch, device):
        self.torch, self.device = torch, device

    def synchronize(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize()


# --------------------------------------------------------------------------- the machine's limit


def measure_limit(backend: Backend, dtype: str, repeats: int, quick: bool) -> dict:
    """Copy bandwidth (bytes read + written per second) and GEMM rate, on this backend's device."""
    xp = backend.xp
    n_bytes, side = _limit_sizes(quick)
    with backend.activate():
        src = backend.to_device(np.ones(n_bytes // 4, dtype=np.float32))
        copy = time_repeats(backend, lambda: xp.astype(src, src.dtype, copy=True), repeats)
        a = backend.to_device(np.random.default_rng(0).random((side, side), dtype=np.dtype(dtype)))
        gemm = time_repeats(backend, lambda: a @ a, repeats)
    device = backend.describe().get("gpu") or "cpu"
    return _limit(f"{backend.name} on {device}", n_bytes, copy, side, gemm)


def _limit_sizes(quick: bool):
    """(bytes copied, side of the square GEMM): far larger than any cache in the full run."""
    return (64 if quick else 512) * 2**20, (1024 if quick else 2048)


def _limit(device: str, n_bytes: int, copy_seconds, side: int, gemm_seconds) -> dict:
    return {
        "device": device,
        "copy_bytes": 2 * n_bytes,
        "copy_gbytes_per_s": 2 * n_bytes / statistics.median(copy_seconds) / 1e9,
        "gemm_side": side,
        "gemm_gflops": 2 * side**3 / statistics.median(gemm_seconds) / 1e9,
    }


def describe_machine(backends) -> dict:
    info = {
        "cpu": _cpu_model(),
        "cpu_threads": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "last_level_cache_bytes": _last_level_cache_bytes(),
        "backends": [b.describe() for b in backends],
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "threading_layer", "architecture")}
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def _last_level_cache_bytes() -> int | None:
    """The largest CPU cache Linux reports for CPU 0 (sysfs), or None elsewhere."""
    sizes = []
    for size in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(size).read().strip().upper()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if text[-1:] in units and text[:-1].isdigit():
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes) if sizes else None


def peak_host_memory_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_benchmark(backends, mnist, dtypes, batch_sizes=BATCH_SIZES, repeats=5, quick=False,
                  peers=True, log=None, sweep_models=SWEEP_MODELS, cnn=True) -> dict:
    """Every row for every backend and dtype, with the peers and the limits; a JSON-ready dict.
    ``sweep_models``: the sizes of the sweep rows (none: no sweep rows)."""
    from .trainer import to_device_data

    per_image_images = 2000 if quick else 60000
    if quick:
        batch_sizes = tuple(b for b in batch_sizes if b <= 1024) or batch_sizes[:1]
    started = time.perf_counter()
    rows, limits = [], {}
    for backend in backends:
        for dtype in dtypes:
            data = to_device_data(backend, mnist, dtype, limit=5000 if quick else None)
            limits[f"{backend.name} {dtype}"] = limit = measure_limit(backend, dtype, repeats,
                                                                      quick)
            rows += [(r, limit) for r in bench_backend(backend, data, batch_sizes, repeats,
                                                       per_image_images, log)]
            # A quick run on the CPU stops at 32 models; a GPU's sweeps are cheap, and the large
            # ones are what the GPU check must measure.
            models = tuple(m for m in sweep_models
                           if not (quick and backend.name != "cupy" and m > 32))
            if models:
                rows += [(r, limit) for r in bench_sweeps(backend, data, models, repeats,
                                                          per_image_images, log)]
            if cnn:
                rows += [(r, limit) for r in bench_cnn(backend, data, repeats,
                                                       256 if quick else 1024, log=log)]
            del data
    if peers:
        from .backend import NumpyBackend

        small = mnist if not quick else type(mnist)(mnist.train_images[:5000],
                                                    mnist.train_labels[:5000],
                                                    mnist.test_images, mnist.test_labels)
        gpu = any(b.name == "cupy" for b in backends)
        for dtype in dtypes:
            # Every row is scored against the device it ran on: the peers on the CPU against
            # the CPU's limit (measured here if no NumPy rows were asked for).
            key = f"numpy {dtype}"
            if key not in limits:
                limits[key] = measure_limit(NumpyBackend(), dtype, repeats, quick)
            cpu_limit = limits[key]
            rows += [(r, cpu_limit) for r in bench_naive_numpy(small, dtype, batch_sizes, repeats,
                                                                per_image_images, log)]
            torch_rows, torch_limit = bench_torch(small, dtype, batch_sizes, repeats,
                                                  per_image_images, "cuda" if gpu else "cpu",
                                                  quick, log)
            if torch_limit is not None:
                limits[f"torch cuda {dtype}"] = torch_limit
            rows += [(r, torch_limit or cpu_limit) for r in torch_rows]
            if cnn:
                rows += [(r, torch_limit or cpu_limit) for r in bench_torch_cnn(
                    mnist, dtype, repeats, 256 if quick else 1024,
                    device="cuda" if gpu else "cpu", log=log)]
    return {
        "machine": describe_machine(backends),
        "settings": {"repeats": repeats, "quick": quick, "dtypes": list(dtypes),
                     "batch_sizes": list(batch_sizes), "per_image_images": per_image_images,
                     "sweep_models": list(sweep_models)},
        "limits": limits,
        "rows": [r.to_json(limit) for r, limit in rows],
        "peak_host_memory_bytes": peak_host_memory_bytes(),
        "seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- reporting


def format_table(report: dict) -> str:
    lines = [f"machine: {report['machine']['cpu']}, {report['machine']['cpu_threads']} threads, "
             f"NumPy {report['machine']['numpy']}"]
    for backend in report["machine"]["backends"]:
        if backend.get("gpu"):
            lines.append(f"GPU: {backend['gpu']}, CuPy {backend['cupy']}, CUDA runtime "
                         f"{backend['cuda_runtime']}, driver {backend['cuda_driver']}")
    for key, limit in report["limits"].items():
        lines.append(f"limit {key}: copy {limit['copy_gbytes_per_s']:.1f} GB/s, "
                     f"GEMM {limit['gemm_gflops']:.1f} GFLOP/s")
    width = max([26] + [len(r["name"]) + 2 for r in report["rows"]])
    header = (f"{'backend':<14}{'dtype':<9}{'configuration':<{width}}{'images/s':>13}"
              f"{'median s':>11}{'min-max s':>19}{'GFLOP/s':>9}{'%GEMM':>8}{'%BW':>8}")
    lines += [header, "-" * len(header)]
    above = []
    for r in report["rows"]:
        spread = f"{r['min_s']:.4f}-{r['max_s']:.4f}"
        extra = ""
        if "gflops" in r:
            marks = ["*" if r[f] > 1 else " "
                     for f in ("fraction_of_gemm_peak", "fraction_of_bandwidth")]
            extra = (f"{r['gflops']:>9.2f}{100 * r['fraction_of_gemm_peak']:>7.1f}%"
                     f"{marks[0]}{100 * r['fraction_of_bandwidth']:>6.1f}%{marks[1]}")
            if "*" in marks:
                above.append(r)
        lines.append(f"{r['backend']:<14}{r['dtype']:<9}{r['name']:<{width}}"
                     f"{r['images_per_second']:>13,.0f}{r['median_s']:>11.4f}{spread:>19}{extra}")
    lines += above_the_limit_notes(above, report["machine"].get("last_level_cache_bytes"))
    lines.append(f"peak host memory: {report['peak_host_memory_bytes'] / 2**20:.0f} MiB")
    for r in report["rows"]:
        if r.get("device_memory_rise") is not None:
            lines.append(f"  {r['backend']} {r['dtype']} {r['name']}: device memory rose "
                         f"{r['device_memory_rise'] / 2**20:.1f} MiB over the resident set")
    return "\n".join(lines)


def above_the_limit_notes(rows, cache_bytes: int | None) -> list[str]:
    """Why a row marked * passed a measured limit. The work is counted as done (never credited
    with skipped work), so the only way past the copy limit, measured by streaming hundreds of
    MiB through main memory, is a working set that stays in the caches between repeats."""
    notes = []
    for r in rows:
        megabytes = r["bytes"] / 2**20
        if r["fraction_of_bandwidth"] > 1:
            where = (f"within the {cache_bytes / 2**20:.0f} MiB last-level cache"
                     if cache_bytes and r["bytes"] <= cache_bytes else "partly in the caches")
            notes.append(f"* {r['backend']} {r['dtype']} {r['name']}: reads {megabytes:.1f} MiB "
                         f"per run, {where}, so it runs faster than the copy limit, which "
                         "streams through main memory")
        if r["fraction_of_gemm_peak"] > 1:
            notes.append(f"* {r['backend']} {r['dtype']} {r['name']}: above the GEMM rate "
                         "measured on this device, which was then measured low (noise): rerun")
    return notes


def ratios(report: dict) -> list[str]:
    """Side-by-side ratios (same run) for the targets in the README."""
    def find(backend_prefix, dtype, name):
        for r in report["rows"]:
            if (r["backend"].startswith(backend_prefix) and r["dtype"] == dtype
                    and r["name"] == name):
                return r["median_s"] / r["images"]  # seconds per image
        return None

    out = []
    for dtype in report["settings"]["dtypes"]:
        for backend in sorted({r["backend"] for r in report["rows"]
                               if r["kind"] != "peer"}):
            pairs = [
                ("per-image fused", "naive numpy", "naive per-image loop"),
                ("per-image array", "naive numpy", "naive per-image loop"),
                ("mini-batch 1024", "naive numpy", "naive mini-batch 1024"),
                ("mini-batch 1024", "torch", "torch mini-batch 1024"),
                ("mini-batch 1024 fused", "naive numpy", "naive mini-batch 1024"),
                ("mini-batch 1024 fused", "torch", "torch mini-batch 1024"),
                ("inference fused", "naive numpy", "single numpy matmul"),
                ("inference array", "naive numpy", "single numpy matmul"),
                ("inference array", "torch", "torch inference"),
            ]
            for ours, peer_backend, peer in pairs:
                a, b = find(backend, dtype, ours), find(peer_backend, dtype, peer)
                if a and b:
                    out.append(f"{backend} {dtype}: {ours} is {b / a:.2f}x the speed of {peer}")
            # Sweeps: what M models side by side cost against one model trained alone by the
            # same path (its own row, else the sweep of one), per image; targets in the README.
            sweeps = [r for r in report["rows"] if r["kind"] == "sweep"
                      and r["backend"] == backend and r["dtype"] == dtype]
            for r in sweeps:
                kernel, batch = r["name"].rsplit(" ", 1)[1], r["batch_size"]
                alone = {("fused", True): "per-image fused", ("array", True): "per-image array",
                         ("fused", False): f"mini-batch {batch} fused",
                         ("array", False): f"mini-batch {batch}"}[kernel, batch == 1]
                one = find(backend, dtype, alone) or next(
                    (o["median_s"] / o["images"] for o in sweeps if o["models"] == 1
                     and o["batch_size"] == batch and o["name"].endswith(f" {kernel}")), None)
                if r["models"] > 1 and one:
                    cost = r["models"] * (r["median_s"] / r["images"]) / one
                    out.append(f"{backend} {dtype}: {r['name']} costs {cost:.2f}x the time of "
                               f"one model ({alone})")
            # The CNN: against PyTorch's same model, and the matrix products' share.
            cnn_train = find(backend, dtype, "cnn training")
            products = find(backend, dtype, "cnn matrix products of training")
            torch_train = find("torch", dtype, "torch cnn training")
            if cnn_train and products:
                out.append(f"{backend} {dtype}: the CNN's matrix products take "
                           f"{products / cnn_train:.0%} of its training time")
            if cnn_train and torch_train:
                out.append(f"{backend} {dtype}: cnn training is {torch_train / cnn_train:.2f}x "
                           "the speed of torch cnn training")
            cnn_infer, torch_infer = (find(backend, dtype, "cnn inference"),
                                      find("torch", dtype, "torch cnn inference"))
            if cnn_infer and torch_infer:
                out.append(f"{backend} {dtype}: cnn inference is {torch_infer / cnn_infer:.2f}x "
                           "the speed of torch cnn inference")
            # A single run on new images also pays for listing their lit pixels.
            for ours, listing, peer_backend, peer in (
                    ("inference fused", "lit-pixel listing (test set)", "naive numpy",
                     "single numpy matmul"),
                    ("mini-batch 1024 fused", "lit-pixel listing (training set)", "naive numpy",
                     "naive mini-batch 1024"),
                    ("mini-batch 1024 fused", "lit-pixel listing (training set)", "torch",
                     "torch mini-batch 1024")):
                a, cost, b = (find(backend, dtype, ours), find(backend, dtype, listing),
                              find(peer_backend, dtype, peer))
                if a and cost and b:
                    out.append(f"{backend} {dtype}: {ours} with its {listing} is "
                               f"{b / (a + cost):.2f}x the speed of {peer}")
    return out


def plot(report: dict, path) -> None:
    """images/s against batch size, log-log, one line per backend and dtype, with the peers."""
    from .visual import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=100)
    series, fused = {}, {}
    for r in report["rows"]:
        if r["batch_size"] is None:
            continue
        label = f"{r['backend']} {r['dtype']}"
        if r["name"] == "per-image fused":
            fused[label] = r["images_per_second"]
        elif "per-image" not in r["name"]:
            if r["name"].endswith(" fused"):
                label += " fused"
            series.setdefault(label, []).append((r["batch_size"], r["images_per_second"]))
    colours = {}
    for label, points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points)
        style = "--" if label.startswith(("naive", "torch")) else "-"
        colours[label] = ax.plot(xs, ys, style, marker="o", label=label)[0].get_color()
    for label, images_per_second in fused.items():  # a star in its fused line's colour, at B = 1
        ax.scatter([1], [images_per_second], marker="*", s=140, zorder=3,
                   color=colours.get(f"{label} fused", colours.get(label)),
                   label=f"{label} per-image fused")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (images per update)")
    ax.set_ylabel("training throughput (images/s)")
    ax.set_title("mnist-gpu: training throughput by batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
