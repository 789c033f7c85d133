"""The `fast` recipe trained by mnist-gpu's own pieces on the CPU, side by side with PyTorch's:
the driver of issue 36's measurements until the layer classes carry the recipe.

Conv 1->24 5x5, pool 2, relu, conv 24->32 3x3, pool 2, relu, dense 800->256, relu, dense
256->10; softmax cross-entropy summed over each batch of 256; Adam (lr 0.01, betas 0.7, 0.9)
under the one-cycle schedule; one epoch in order; float32. Ours trains through either the array
path (``model/layers.py``) or the compiled passes (``kernels.conv_pass``), and PyTorch trains
``bench/torch_fast.py``'s network; the runs advance one batch each in turn, each batch timed
alone, so that a busy machine slows both alike. Prints each run's seconds, images/s, test
accuracy and our ratio to PyTorch; ``--profile`` adds where our time goes.

On a shared machine, ``--threads 1 --clock cpu`` (process CPU time) gives figures that other
processes hardly disturb.

    python bench/fast_recipe.py [--seeds 0] [--paths compiled array torch] [--profile]
        [--threads 2] [--clock wall] [--dtype float32] [--images 60000]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import defaultdict


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--paths", nargs="+", default=["compiled", "torch"],
                        choices=["compiled", "array", "torch"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    parser.add_argument("--cycle-momentum", action="store_true",
                        help="cycle Adam's first beta 0.95 -> 0.85 -> 0.95 (OneCycleLR's default; "
                        "the recipe turns it off)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--init", default="torch", choices=["torch", "he"],
                        help="PyTorch's default initialisation, or He's (normal, sqrt(2 / fan_in); "
                        "biases zero)")
    return parser.parse_args()


ARGS = parse()
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[name] = str(ARGS.threads)  # before NumPy, Numba and PyTorch start their pools

import numpy as np  # noqa: E402

from mnist_gpu import kernels  # noqa: E402
from mnist_gpu.backend import get_backend  # noqa: E402
from mnist_gpu.data import load_mnist, resolve_data_dir  # noqa: E402
from mnist_gpu.model import layers  # noqa: E402
from mnist_gpu.model.layers import ConvShape  # noqa: E402
from mnist_gpu.optim import SCHEDULES, Adam  # noqa: E402

CLOCK = time.process_time if ARGS.clock == "cpu" else time.perf_counter

BATCH, BETAS = ARGS.batch, (0.7, 0.9)
MEAN, DEVIATION = 0.1307, 0.3081
SHAPES = (ConvShape(28, 28, 1, 5, 0), ConvShape(12, 12, 24, 3, 0))
FILTERS = (24, 32)
DENSE = ((800, 256), (256, 10))


def normalised(images, dtype):
    return ((images.reshape(-1, 28, 28, 1).astype(np.float32) / 255 - MEAN)
            / DEVIATION).astype(dtype)


def init_params(seed, dtype):
    """PyTorch's default initialisation: weights and biases uniform in +-1 / sqrt(fan_in)."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in [(s.k * s.k * s.channels, f) for s, f in zip(SHAPES, FILTERS)] \
            + list(DENSE):
        bound = 1 / math.sqrt(fan_in)
        if ARGS.init == "he":
            params += [rng.normal(0, math.sqrt(2 / fan_in), (fan_in, fan_out)).astype(dtype),
                       np.zeros(fan_out, dtype)]
            continue
        params += [rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype),
                   rng.uniform(-bound, bound, fan_out).astype(dtype)]
    return params


class Timer:
    def __init__(self, enabled):
        self.enabled, self.seconds, self.last = enabled, defaultdict(float), 0.0

    def __call__(self, name):
        if self.enabled:
            now = CLOCK()
            if name:
                self.seconds[name] += now - self.last
            self.last = now


def ours(seed, x, labels, path, timer):
    """Our training, one batch per ``next``; at the end, the parameters."""
    dtype = x.dtype
    params = init_params(seed, dtype)
    adam = Adam(params, np, betas=BETAS)
    passes = [kernels.conv_pass(get_backend("numpy")) for _ in SHAPES] if path == "compiled" \
        else None
    indices = [s.host_indices() for s in SHAPES]
    eye = np.eye(10, dtype=dtype)
    per_epoch = (len(x) - 1) // BATCH + 1
    steps = per_epoch * ARGS.epochs
    for step in range(steps):
        timer(None)
        first = step % per_epoch * BATCH
        a, y = x[first:first + BATCH], eye[labels[first:first + BATCH]]
        saved = []
        for i, shape in enumerate(SHAPES):
            W, b = params[2 * i], params[2 * i + 1]
            if passes:
                a, s = passes[i].conv_pool_relu_forward(a, W, b, shape)
            else:
                z, cols = layers.conv_forward(a, W, b, shape, indices[i], np)
                timer("conv forward (im2col, product)")
                pz, windows = layers.pool_forward(z, np)
                s = (a, cols, z.shape, windows, pz)
                a = np.maximum(pz, 0)
            saved.append((s, a))
            timer("conv forward (im2col, product)" if passes else "pool, relu forward")
        h0 = a.reshape(len(a), -1)
        h1 = np.maximum(h0 @ params[4] + params[5], 0)
        out = h1 @ params[6] + params[7]
        p = np.exp(out - out.max(axis=1, keepdims=True))
        delta = p / p.sum(axis=1, keepdims=True) - y
        grads = [None] * 8
        grads[6], grads[7] = h1.T @ delta, delta.sum(axis=0)
        d1 = (delta @ params[6].T) * (h1 > 0)
        grads[4], grads[5] = h0.T @ d1, d1.sum(axis=0)
        g = (d1 @ params[4].T).reshape(a.shape)
        timer("dense, loss")
        for i in (1, 0):
            s, pooled = saved[i]
            W = params[2 * i]
            if passes:
                grads[2 * i], grads[2 * i + 1], g = passes[i].conv_pool_relu_backward(
                    g, s, W, need_input=i > 0)
            else:
                inp, cols, z_shape, windows, pz = s
                g = layers.pool_backward(g * (pooled > 0), windows, pz, z_shape, np)
                timer("pool, relu backward")
                grads[2 * i], grads[2 * i + 1], g = layers.conv_backward(
                    g, inp, cols, W, SHAPES[i], np, need_input=i > 0)
            timer("conv backward (products, col2im)")
        lr, momentum = SCHEDULES["one-cycle"](step, steps, ARGS.lr)
        # The recipe keeps beta1 at 0.7 (cycle_momentum=False).
        adam.step(params, grads, len(a), lr, momentum if ARGS.cycle_momentum else None)
        timer("adam")
        yield
    yield params


def accuracy_ours(params, x, labels, path):
    passes = [kernels.conv_pass(get_backend("numpy")) for _ in SHAPES]
    hits = 0
    for s in range(0, len(x), 2000):
        a = x[s:s + 2000]
        for i, shape in enumerate(SHAPES):
            a, _ = passes[i].conv_pool_relu_forward(a, params[2 * i], params[2 * i + 1], shape)
        h = np.maximum(a.reshape(len(a), -1) @ params[4] + params[5], 0)
        hits += int(((h @ params[6] + params[7]).argmax(1) == labels[s:s + 2000]).sum())
    return 100.0 * hits / len(x)


def torch_run(seed, train, dtype_name):
    import torch
    import torch.nn.functional as F
    from torch_fast import Net

    torch.manual_seed(seed)
    model = Net().to(getattr(torch, dtype_name))
    optimizer = torch.optim.Adam(model.parameters(), lr=ARGS.lr, betas=BETAS)
    x, y = train
    per_epoch = (len(x) - 1) // BATCH + 1
    steps = per_epoch * ARGS.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=ARGS.lr, total_steps=steps,
                                                    cycle_momentum=ARGS.cycle_momentum)
    model.train()
    for step in range(steps):
        i = step % per_epoch
        optimizer.zero_grad()
        F.nll_loss(model(x[BATCH * i:BATCH * (i + 1)]), y[BATCH * i:BATCH * (i + 1)]).backward()
        optimizer.step()
        scheduler.step()
        yield
    yield model


def main():
    args = ARGS
    mnist = load_mnist(resolve_data_dir(), offline=True)
    x = normalised(mnist.train_images[:args.images], args.dtype)
    tx = normalised(mnist.test_images, args.dtype)
    labels, tlabels = mnist.train_labels[:args.images], mnist.test_labels
    if "torch" in args.paths:
        import torch
        from torch_fast import tensors

        torch.set_num_threads(args.threads)
        t_train = tensors(mnist.train_images[:args.images], labels, getattr(torch, args.dtype))
        t_test = tensors(mnist.test_images, tlabels, getattr(torch, args.dtype))
    if "compiled" in args.paths:  # compile (or load) the loops before any clock starts
        for _ in ours(0, x[:2 * BATCH], labels, "compiled", Timer(False)):
            pass
    for seed in args.seeds:
        timers = {p: Timer(args.profile and p != "torch") for p in args.paths}
        runs = {p: torch_run(seed, t_train, args.dtype) if p == "torch"
                else ours(seed, x, labels, p, timers[p]) for p in args.paths}
        seconds, results = dict.fromkeys(runs, 0.0), {}
        while len(results) < len(runs):
            for p, run in runs.items():
                if p in results:
                    continue
                start = CLOCK()
                result = next(run)
                seconds[p] += CLOCK() - start
                if result is not None:
                    results[p] = result
        for p in runs:
            if p == "torch":
                from torch_fast import evaluate

                acc = evaluate(results[p], t_test)
            else:
                acc = accuracy_ours(results[p], tx, tlabels, p)
            ratio = (f", {seconds['torch'] / seconds[p]:.2f}x torch"
                     if "torch" in seconds and p != "torch" else "")
            print(f"seed {seed} {p:8} {args.dtype}: {seconds[p]:6.2f} s, "
                  f"{len(x) * args.epochs / seconds[p]:7,.0f} images/s, {acc:.2f}%{ratio}",
                  flush=True)
            if timers[p].seconds:
                for name, t in sorted(timers[p].seconds.items(), key=lambda kv: -kv[1]):
                    print(f"    {name:34} {t:6.2f} s")


if __name__ == "__main__":
    main()
