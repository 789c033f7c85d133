"""Our rows: training and inference images/s for one backend and dtype, per image and by
mini-batches, by each compute path it has, and sweeps of M models side by side."""

from __future__ import annotations

import statistics

import numpy as np

from .. import kernels
from ..backend import Backend
from ..model import stack, tutorial
from ..training import DeviceData, TrainConfig, choose_kernel
from .timing import Row, time_repeats
from .work import inference_work, listing_work, lit_entry_bytes, train_work



def bench_backend(backend: Backend, data: DeviceData, batch_sizes, repeats: int,
                  per_image_images: int, log=None) -> list[Row]:
    """Training and inference rows for one backend and dtype."""
    with backend.activate():
        bench = _Bench(backend, data, repeats, log)
        m = min(per_image_images, data.n_train)
        bench.per_image(m)
        # Mini-batches: one epoch each (B=1 over per_image_images, as it is as slow as per-image),
        # by the array path, then by the fused pass where the backend has one. (Each path's rows
        # together: the BLAS threads and the compiled loops' threads each spin a while after
        # their last call, and the warm-up need only outlast the previous row's.)
        bench.minibatches(batch_sizes, m)
        bench.listing_and_inference()
    return bench.rows


class _Bench:
    """The rows of one backend and dtype, each timed from fresh copies of the same weights, and
    the compiled passes they time (None where the backend has none)."""

    def __init__(self, backend: Backend, data: DeviceData, repeats: int, log=None):
        self.backend, self.data, self.repeats, self.log = backend, data, repeats, log
        self.itemsize = np.dtype(data.dtype).itemsize
        self.rows = []
        self.W0 = backend.to_device(tutorial.init_weights(0, data.dtype))
        self.fused = _optional(kernels.training_pass, backend, 1)
        self.fused_minibatch = _optional(kernels.training_pass, backend, 2)
        self.inference = _optional(kernels.inference_pass, backend)
        # The lit pixels of the training images, listed once for the fused training passes.
        self.lister = self.fused or self.fused_minibatch or self.inference
        self.prepared = (self.lister.prepare(data.listing_input(self.lister, "train"))
                         if self.lister is not None else None)
        self.entry = lit_entry_bytes(self.prepared) if self.prepared is not None else None

    def measure(self, kind, name, batch, images, step, work, dense_work=None):
        """Time ``step(W)`` from fresh copies of the same weights; record how far the device's
        memory rose beyond what was resident before."""
        backend, dtype = self.backend, self.data.dtype
        W = backend.xp.astype(self.W0, self.W0.dtype, copy=True)
        backend.reset_memory_pool()
        seconds = time_repeats(backend, lambda: step(W), self.repeats)
        self.rows.append(Row(backend.label, dtype, kind, name, batch, images, seconds, *work,
                             dense_flops=None if dense_work is None else dense_work[0],
                             device_memory_rise=backend.memory_pool_rise()))
        if self.log:
            self.log(f"{backend.label} {dtype} {name}: "
                     f"{images / statistics.median(seconds):,.0f} images/s")

    def lit(self, images):
        """The number of lit pixels in the first ``images`` training images."""
        return int(self.backend.to_host(self.prepared.indptr[images:images + 1])[0])

    def per_image(self, m):
        """The fused kernel (when the backend has one) and the array path, over ``m`` images."""
        data, itemsize, fused = self.data, self.itemsize, self.fused
        if fused is not None:
            self.measure("per-image", "per-image fused", 1, m,
                         lambda W: fused.train(W, self.prepared, data.train_labels, [0.01], 1, 0,
                                               m),
                         train_work(m, 1, itemsize, self.lit(m), self.entry),
                         train_work(m, 1, itemsize))
        self.measure("per-image", "per-image array", 1, m,
                     lambda W: tutorial.per_image_steps(W, data.train_x, data.train_y, 0.01,
                                                        range(m)),
                     train_work(m, 1, itemsize))

    def minibatches(self, batch_sizes, m):
        """One epoch per batch size by the array path, then by the fused pass."""
        data, itemsize, fused = self.data, self.itemsize, self.fused_minibatch
        for b in batch_sizes:
            images = m if b == 1 else data.n_train
            self.measure("mini-batch", f"mini-batch {b}", b, images,
                         lambda W: tutorial.minibatch_steps(W, data.train_x, data.train_y, 0.01,
                                                            b, 0, images, xp=self.backend.xp),
                         train_work(images, b, itemsize))
        for b in batch_sizes if fused is not None else ():
            images = m if b == 1 else data.n_train
            self.measure("mini-batch", f"mini-batch {b} fused", b, images,
                         lambda W: fused.train(W, self.prepared, data.train_labels, [0.01], b,
                                               0, images),
                         train_work(images, b, itemsize, self.lit(images), self.entry),
                         train_work(images, b, itemsize))

    def listing_and_inference(self):
        """The fused passes' listing of the lit pixels (once per image set, like the upload),
        then inference over the test set: the predicted class of every image, by the fused pass
        when the backend has one and by the dense product."""
        data, itemsize, lister = self.data, self.itemsize, self.lister
        n = data.n_train
        if lister is not None:
            train_images = data.listing_input(lister, "train")
            test_images = data.listing_input(lister, "test")
            pixel_bytes = train_images.dtype.itemsize
            test_lit = lister.prepare(test_images)
            test_lit_count = int(self.backend.to_host(test_lit.indptr[-1:])[0])
            self.measure("listing", "lit-pixel listing (training set)", None, n,
                         lambda W: lister.prepare(train_images),
                         listing_work(n, itemsize, self.lit(n), self.entry, pixel_bytes))
            self.measure("listing", "lit-pixel listing (test set)", None, data.n_test,
                         lambda W: lister.prepare(test_images),
                         listing_work(data.n_test, itemsize, test_lit_count, self.entry,
                                      pixel_bytes))
            if self.inference is not None:
                self.measure("inference", "inference fused", None, data.n_test,
                             lambda W: self.inference.classify(W, test_lit),
                             inference_work(data.n_test, itemsize, test_lit_count, self.entry),
                             inference_work(data.n_test, itemsize))
            del test_lit
        self.measure("inference", "inference array", None, data.n_test,
                     lambda W: tutorial.classify(W, data.test_x, xp=self.backend.xp),
                     inference_work(data.n_test, itemsize))


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
                    fused = choose_kernel(backend, TrainConfig(batch_size=batch,
                                                               kernel=kernel)).training
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


