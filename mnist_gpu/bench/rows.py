"""Our rows: training and inference images/s for one backend and dtype, per image and by
mini-batches, by each compute path it has, and sweeps of M models side by side."""

from __future__ import annotations

import statistics

import numpy as np

from .. import kernels
from ..backend import Backend
from ..model import stack, tutorial
from ..training import DeviceData, TrainConfig
from ..training.tutorial import choose_kernel
from .timing import Row, time_repeats
from .work import inference_work, listing_work, lit_entry_bytes, train_work



def bench_backend(backend: Backend, data: DeviceData, batch_sizes, repeats: int,
                  per_image_images: int, log=None) -> list[Row]:
    """Training and inference rows for one backend and dtype."""
    xp = backend.xp
    dtype = data.dtype
    itemsize = np.dtype(dtype).itemsize
    n = data.n_train
    rows = []
    with backend.activate():
        W0 = backend.to_device(tutorial.init_weights(0, dtype))

        def measure(kind, name, batch, images, step, work, dense_work=None):
            """Time ``step(W)`` from fresh copies of the same weights; record how far the
            device's memory rose beyond what was resident before."""
            W = xp.astype(W0, W0.dtype, copy=True)
            backend.reset_memory_pool()
            seconds = time_repeats(backend, lambda: step(W), repeats)
            rows.append(Row(backend.label, dtype, kind, name, batch, images, seconds, *work,
                            dense_flops=None if dense_work is None else dense_work[0],
                            device_memory_rise=backend.memory_pool_rise()))
            if log:
                log(f"{backend.label} {dtype} {name}: {images / statistics.median(seconds):,.0f} "
                    "images/s")

        fused = _optional(kernels.training_pass, backend, 1)
        fused_minibatch = _optional(kernels.training_pass, backend, 2)
        inference = _optional(kernels.inference_pass, backend)
        m = min(per_image_images, n)
        # The lit pixels of the training images, listed once for the fused training passes.
        lister = fused or fused_minibatch or inference
        prepared = (lister.prepare(data.listing_input(lister, "train")) if lister is not None
                    else None)
        entry = lit_entry_bytes(prepared) if prepared is not None else None

        def lit(images):
            """The number of lit pixels in the first ``images`` training images."""
            return int(backend.to_host(prepared.indptr[images:images + 1])[0])

        # Per-image: the fused kernel (when the backend has one) and the array path.
        if fused is not None:
            measure("per-image", "per-image fused", 1, m,
                    lambda W: fused.train(W, prepared, data.train_labels, [0.01], 1, 0, m),
                    train_work(m, 1, itemsize, lit(m), entry), train_work(m, 1, itemsize))
        measure("per-image", "per-image array", 1, m,
                lambda W: tutorial.per_image_steps(W, data.train_x, data.train_y, 0.01, range(m)),
                train_work(m, 1, itemsize))

        # Mini-batches: one epoch each (B=1 over per_image_images, as it is as slow as per-image),
        # by the array path, then by the fused pass where the backend has one. (Each path's rows
        # together: the BLAS threads and the compiled loops' threads each spin a while after
        # their last call, and the warm-up need only outlast the previous row's.)
        for b in batch_sizes:
            images = m if b == 1 else n
            measure("mini-batch", f"mini-batch {b}", b, images,
                    lambda W: tutorial.minibatch_steps(W, data.train_x, data.train_y, 0.01, b, 0,
                                                       images, xp=xp),
                    train_work(images, b, itemsize))
        for b in batch_sizes if fused_minibatch is not None else ():
            images = m if b == 1 else n
            measure("mini-batch", f"mini-batch {b} fused", b, images,
                    lambda W: fused_minibatch.train(W, prepared, data.train_labels, [0.01], b,
                                                    0, images),
                    train_work(images, b, itemsize, lit(images), entry),
                    train_work(images, b, itemsize))

        # The fused passes' listing of the lit pixels, once per image set like the upload.
        if lister is not None:
            train_images = data.listing_input(lister, "train")
            test_images = data.listing_input(lister, "test")
            pixel_bytes = train_images.dtype.itemsize
            test_lit = lister.prepare(test_images)
            test_lit_count = int(backend.to_host(test_lit.indptr[-1:])[0])
            measure("listing", "lit-pixel listing (training set)", None, n,
                    lambda W: lister.prepare(train_images),
                    listing_work(n, itemsize, lit(n), entry, pixel_bytes))
            measure("listing", "lit-pixel listing (test set)", None, data.n_test,
                    lambda W: lister.prepare(test_images),
                    listing_work(data.n_test, itemsize, test_lit_count, entry, pixel_bytes))

        # Inference over the test set: the predicted class of every image, by the fused pass
        # when the backend has one and by the dense product.
        if inference is not None:
            measure("inference", "inference fused", None, data.n_test,
                    lambda W: inference.classify(W, test_lit),
                    inference_work(data.n_test, itemsize, test_lit_count, entry),
                    inference_work(data.n_test, itemsize))
        if lister is not None:
            del test_lit
        measure("inference", "inference array", None, data.n_test,
                lambda W: tutorial.classify(W, data.test_x, xp=xp),
                inference_work(data.n_test, itemsize))
    return rows


# A sweep row on the CPU trains at most about this many model-images per timed run (fewer images
# for more models), so that the row for a thousand models takes seconds, not minutes: the
# per-image array path, which writes every weight of every model for each image, far fewer.
CPU_SWEEP_MODEL_IMAGES = {"fused": 4_000_000, "array": 4_000_000, "per-image array": 250_000}


def bench_sweeps(backend: Backend, data: DeviceData, models_list, repeats: int,
                 per_image_images: int, log=None) -> list[Row]:
    """Model-images/s of sweeps of M models side by side, per image and by batches of 1,024, by
    each compute path the backend has; with the M = 1 rows, the amortisation (what M models cost
    against one) is in ``ratios``."""
    xp = backend.xp
    itemsize = np.dtype(data.dtype).itemsize
    rows = []
    with backend.activate():
        for batch in (1, 1024):
            for kernel in ("fused", "array"):
                try:
                    _, fused = choose_kernel(backend, TrainConfig(batch_size=batch, kernel=kernel))
                except kernels.KernelUnavailable:
                    continue
                prepared = (fused.prepare(data.listing_input(fused, "train"))
                            if fused is not None else None)
                for models in models_list:
                    budget = CPU_SWEEP_MODEL_IMAGES.get(
                        "per-image array" if (batch, kernel) == (1, "array") else kernel)
                    limit = (max(200, budget // models) if backend.runs_on_cpu
                             else data.n_train)
                    images = min(per_image_images if batch == 1 else data.n_train, limit)
                    alphas = [0.001] * models
                    W0 = backend.to_device(np.concatenate(
                        [tutorial.init_weights(s, data.dtype) for s in range(models)], axis=1))
                    W = xp.astype(W0, W0.dtype, copy=True)
                    if fused is not None:
                        def step(W=W, alphas=alphas, images=images):
                            fused.train(W, prepared, data.train_labels, alphas, batch, 0, images)
                    else:
                        columns = backend.to_device(np.full(10 * models, 0.001, data.dtype))

                        def step(W=W, columns=columns, images=images):
                            if batch == 1:
                                stack.per_image_steps(W, data.train_x, data.train_y, columns,
                                                      range(images), xp=xp)
                            else:
                                tutorial.minibatch_steps(W, data.train_x, data.train_y, columns,
                                                         batch, 0, images, xp=xp,
                                                         step=stack.minibatch_step)
                    backend.reset_memory_pool()
                    seconds = time_repeats(backend, step, repeats)
                    # Counted as the work done: over the lit pixels for the fused passes. The
                    # images are read once for all the models; each model's weights twice.
                    lit = (int(backend.to_host(prepared.indptr[images:images + 1])[0])
                           if fused is not None else None)
                    flops, traffic = train_work(
                        images, batch, itemsize, lit,
                        None if fused is None else lit_entry_bytes(prepared))
                    rows.append(Row(backend.label, data.dtype, "sweep",
                                    sweep_row_name(models, batch, kernel), batch,
                                    images * models, seconds, flops * models,
                                    traffic + (models - 1) * 2 * 7840 * itemsize,
                                    dense_flops=(None if lit is None else
                                                 train_work(images, batch, itemsize)[0] * models),
                                    device_memory_rise=backend.memory_pool_rise(),
                                    models=models,
                                    launch=_launch_record(fused, models, data, prepared)))
                    if log:
                        log(f"{backend.label} {data.dtype} {rows[-1].name}: "
                            f"{rows[-1].images_per_second:,.0f} model-images/s")
                    del W, W0
    return rows


def _launch_record(fused, models: int, data: DeviceData, prepared) -> dict | None:
    """How a compiled pass lays out a launch of ``models`` (rows on chip, blocks per
    multiprocessor, waves), for the record beside its timing; None for the array path."""
    return None if fused is None else fused.launch_plan(models, data.dtype, prepared)


def sweep_row_name(models: int, batch: int, kernel: str) -> str:
    mode = "per-image" if batch == 1 else f"mini-batch {batch}"
    return f"sweep of {models} model{'s' if models > 1 else ''}, {mode} {kernel}"


def _optional(find, *args):
    """A compiled pass, or None where the backend has none."""
    try:
        return find(*args)
    except kernels.KernelUnavailable:
        return None


