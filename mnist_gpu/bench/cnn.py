"""The CNN of ``--preset cnn``: training and inference images/s (through the backend's compiled
passes and blocks where it has them, each batch in the backend's shards: as ``train`` runs
them), and its matrix products timed apart (their share of the time)."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..backend import Backend
from ..model import network
from ..model.layer import Context
from ..model.tutorial import N_INPUTS
from ..optim import OPTIMIZERS
from ..training import DeviceData, config_from_preset
from ..training.shards import Shards
from .timing import Row, time_repeats

def bench_cnn(backend: Backend, data: DeviceData, repeats: int, images: int = 1024,
              batch: int = 128, log=None) -> list[Row]:
    """The CNN of ``--preset cnn``: training images/s (forward, backward, the preset's optimiser,
    in batches of 128) and inference images/s; and, as a row of its own, the matrix products of a
    training pass alone (the same shapes, timed apart), which says what share of the time they
    take (the rest: im2col's gathers, pooling, activations)."""
    xp = backend.xp
    config = config_from_preset("cnn")
    net = config.net
    itemsize = np.dtype(data.dtype).itemsize
    images = min(images, data.n_train)
    rows = []
    with backend.activate():
        params = network.to_device(backend, network.init_params(net, 0, data.dtype))
        optimizer = OPTIMIZERS[config.optimizer](network.flat(params), xp, **config.settings)
        names = [layer.name for layer in net.layers]
        compiled = {"passes": kernels.layer_passes(backend, names, data.dtype),
                    "blocks": kernels.layer_blocks(backend, names)}
        shards = Shards.for_step(Context(backend, data.dtype, np.random.default_rng(0),
                                         training=True, **compiled), 0)
        test_ctx = Context(backend, data.dtype, constants=shards.contexts[0].constants,
                           **compiled)

        def train_pass():
            with shards.running():
                for s in range(0, images, batch):
                    e = min(s + batch, images)
                    _, grads = shards.gradients(net, params, data.train_x[s:e, :],
                                                data.train_y[s:e, :])
                    optimizer.step(network.flat(params), network.flat(grads), e - s, 0.01)

        products = _cnn_products(net, batch, images, backend, data.dtype)
        flops = sum(2.0 * m * k * n * count for (m, k, n), count, _, _ in products)
        test = min(2000, data.n_test)
        for name, step, n_images, work in (
                ("cnn training", train_pass, images, flops),
                ("cnn matrix products of training", lambda: _run_products(products, backend),
                 images, flops),
                ("cnn inference",
                 lambda: network.classify(net, params, data.test_x[:test, :], test_ctx), test,
                 flops / 3 * test / images)):
            backend.reset_memory_pool()
            seconds = time_repeats(backend, step, repeats)
            rows.append(Row(backend.label, data.dtype, "cnn", name, batch, n_images, seconds,
                            work, float(n_images * (N_INPUTS + 10) * itemsize),
                            device_memory_rise=backend.memory_pool_rise()))
            if log:
                log(f"{backend.label} {data.dtype} {name}: {rows[-1].images_per_second:,.0f} "
                    "images/s")
        shards.close()
    return rows


def _cnn_products(net, batch, images, backend, dtype):
    """The products of ``net.training_products``, with operands of those shapes on the device."""
    rng = np.random.default_rng(0)
    return [((m, k, n), count,
             backend.to_device(rng.random((m, k), dtype=np.dtype(dtype))),
             backend.to_device(rng.random((k, n), dtype=np.dtype(dtype))))
            for (m, k, n), count in net.training_products(batch, images)]


def _run_products(products, backend):
    for _, count, a, b in products:
        for _ in range(count):
            a @ b


