"""The peers, timed in the same run as our rows: the naive baseline (the same algorithm as a plain
NumPy loop, as a user first writes it) and PyTorch running the same update and the same CNN, when
it is installed. Both are timed through the backend layer (``get_backend``: the NumPy backend's
clock, the torch backend's stopwatch and synchronisation), which also holds PyTorch's float32
matrix products at full precision (no TF32) for the duration of its update's rows."""

from __future__ import annotations

import contextlib
import time

import numpy as np

from ..backend import BackendUnavailable, get_backend, shards_in_force
from ..model.tutorial import N_INPUTS, init_weights
from ..optim import OPTIMIZERS, schedules
from ..training import config_from_preset
from . import fast
from .timing import Row, measure_limit, time_repeats
from .work import inference_work, train_work


def torch_backend(device: str, log=None):
    """The torch backend on ``device`` (``cuda``, else the CPU), or None where PyTorch cannot run
    (saying why to ``log``)."""
    for target in dict.fromkeys((device, "cpu")):
        try:
            return get_backend("torch", target, log=None)
        except BackendUnavailable as err:
            reason = err
    if log:
        log(f"no PyTorch peer: {reason}")
    return None


def bench_torch_cnn(mnist, dtype: str, repeats: int, images: int = 1024, batch: int = 128,
                    device: str = "cpu", log=None) -> list[Row]:
    """PyTorch's equivalent of ``--preset cnn`` (each layer's PyTorch counterpart, the preset's
    optimiser with its settings, batches of 128), when PyTorch is installed."""
    backend = torch_backend(device)
    if backend is None:
        return []
    torch, device = backend.torch, backend.device
    nn = torch.nn
    tdtype = getattr(torch, dtype)
    config = config_from_preset("cnn")
    net = config.net
    torch.manual_seed(0)
    model = net.torch(nn).to(device=device, dtype=tdtype)
    optimiser = OPTIMIZERS[config.optimizer].torch(torch.optim, model.parameters(), 0.01,
                                                   config.settings)
    X = (torch.tensor(mnist.train_images[:images], device=device).to(tdtype) / 255).reshape(
        -1, 1, 28, 28)
    y = torch.tensor(mnist.train_labels[:images].astype(np.int64), device=device)
    Xt = (torch.tensor(mnist.test_images[:2000], device=device).to(tdtype) / 255).reshape(
        -1, 1, 28, 28)

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
    flops = net.training_flops(batch, images)
    traffic = float(images * (N_INPUTS + 10) * np.dtype(dtype).itemsize)
    name = f"torch {device.type}"
    rows = [Row(name, dtype, "peer", "torch cnn training", batch, images,
                time_repeats(backend, train_pass, repeats), flops, traffic),
            Row(name, dtype, "peer", "torch cnn inference", batch, Xt.shape[0],
                time_repeats(backend, inference, repeats), flops / 3 * Xt.shape[0] / images,
                traffic * Xt.shape[0] / images)]
    if log:
        log(f"{name} {dtype} cnn: {rows[0].images_per_second:,.0f} training images/s")
    return rows


def bench_torch_fast(mnist, dtype: str, images: int, device: str = "cpu",
                     log=None) -> list[Row]:
    """PyTorch training the same recipe on ``device`` (the torch backend's), when it can run: on
    the CPU on as many threads as ours (the shards in force), so that the ratio compares like
    with like."""
    backend = torch_backend(device, log)
    if backend is None:
        return []
    with _torch_threads(backend, shards_in_force() if backend.runs_on_cpu else None):
        return _torch_fast(backend, mnist, dtype, images, log)


@contextlib.contextmanager
def _torch_threads(backend, count):
    """PyTorch's intra-op threads set to ``count`` (None: as they are) for the block."""
    torch = backend.torch
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _torch_fast(backend, mnist, dtype, images, log):
    torch, device = backend.torch, backend.device
    config = fast.recipe()
    nn, tdtype, batch = torch.nn, getattr(torch, dtype), config.batch_size
    torch.manual_seed(0)
    model = config.net.torch(nn).to(device=device, dtype=tdtype)
    optimiser = OPTIMIZERS[config.optimizer].torch(torch.optim, model.parameters(), config.lr,
                                                   config.settings)
    steps = -(-images // batch)
    schedule = schedules.one_cycle_torch(torch.optim.lr_scheduler, optimiser, config.lr, steps,
                                         cycled=config.schedule == "one-cycle")

    def images_of(pixels):
        return (torch.tensor(pixels, device=device).to(tdtype) / 255).reshape(-1, 1, 28, 28)

    X, Xt = images_of(mnist.train_images[:images]), images_of(mnist.test_images)
    y = torch.tensor(mnist.train_labels[:images].astype(np.int64), device=device)
    backend.synchronize()
    start = time.perf_counter()
    model.train()
    for s in range(0, X.shape[0], batch):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(X[s:s + batch]), y[s:s + batch]).backward()
        optimiser.step()
        schedule.step()
    backend.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(Xt[s:s + 1000]).argmax(dim=1)
                               for s in range(0, Xt.shape[0], 1000)])
    accuracy = float((predicted.cpu().numpy() == mnist.test_labels).mean())
    row = Row(f"torch {device.type}", dtype, "peer", fast.PEER_NAME, batch, X.shape[0], [seconds],
              config.net.training_flops(batch, X.shape[0]), fast.traffic(X.shape[0], dtype),
              accuracy=accuracy, threads=fast.threads_of(backend))
    if log:
        log(f"torch {device.type} {dtype} {fast.NAME}: {row.images_per_second:,.0f} images/s, "
            f"{accuracy:.2%}")
    return [row]


def bench_naive_numpy(mnist, dtype: str, batch_sizes, repeats: int, per_image_images: int,
                      log=None) -> list[Row]:
    """The same algorithm as a plain NumPy loop, as a user first writes it (the tutorial's code)."""
    itemsize = np.dtype(dtype).itemsize
    images = (mnist.train_images / 255).astype(dtype)
    eye = np.eye(10, dtype=dtype)
    targets = eye[mnist.train_labels]
    start = init_weights(0, dtype)
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
    cpu = get_backend("numpy")  # a plain host loop: nothing queued, nothing to synchronise
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
    on, or None on the CPU). ([], None) where PyTorch cannot run."""
    backend = torch_backend(device, log)
    if backend is None:
        return [], None
    # Full-precision float32 matrix products, as in our parity runs, for these rows only.
    with backend.activate():
        return _torch_rows(backend, mnist, dtype, batch_sizes, repeats, per_image_images, quick,
                           log)


def _torch_rows(backend, mnist, dtype, batch_sizes, repeats, per_image_images, quick, log):
    torch, device = backend.torch, backend.device
    tdtype = getattr(torch, dtype)
    itemsize = np.dtype(dtype).itemsize
    X = torch.tensor(mnist.train_images, device=device).to(tdtype) / 255
    Y = torch.nn.functional.one_hot(torch.tensor(mnist.train_labels.astype(np.int64),
                                                 device=device), 10).to(tdtype)
    Xt = torch.tensor(mnist.test_images, device=device).to(tdtype) / 255
    start = torch.tensor(init_weights(0, dtype), device=device)
    m = min(per_image_images, X.shape[0])
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

    # On a GPU, scored against the GPU it ran on, measured the same way through PyTorch itself.
    limit = None if backend.runs_on_cpu else measure_limit(backend, dtype, repeats, quick)
    name = f"torch {device.type}"
    rows.append(Row(name, dtype, "peer", "torch per-image", 1, m,
                    time_repeats(backend, per_image, repeats), *train_work(m, 1, itemsize)))
    for b in batch_sizes:
        count = m if b == 1 else X.shape[0]
        rows.append(Row(name, dtype, "peer", f"torch mini-batch {b}", b, count,
                        time_repeats(backend, lambda: minibatch(b, count), repeats),
                        *train_work(count, b, itemsize)))
    rows.append(Row(name, dtype, "peer", "torch inference", None, Xt.shape[0],
                    time_repeats(backend, lambda: Xt @ start, repeats),
                    *inference_work(Xt.shape[0], itemsize)))
    if log:
        log(f"{name} {dtype}: done")
    return rows, limit


