"""The floor of the `fast` recipe's training step on this CPU (issue 36): its matrix products at
their real shapes, each timed alone, against the measured GEMM rate; its data movement (im2col,
col2im, pooling) timed alone, against the copy bandwidth (the speed of light: the bytes it must
read and write at that bandwidth); the compiled passes and the array path beside them; and one
step of PyTorch's recipe (``bench/torch_fast.py``) for the ratio.

On a shared machine, ``--threads 1`` with ``--clock cpu`` (process CPU time) gives figures that
other processes hardly disturb; each figure is the best of ``--repeats``.

    python bench/fast_floor.py [--threads 1] [--clock cpu] [--repeats 20] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    return parser.parse_args()


ARGS = parse()
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[name] = str(ARGS.threads)  # before NumPy, Numba and PyTorch start their pools

import numpy as np  # noqa: E402

from mnist_gpu.kernels.cpu_conv import ConvPassCPU  # noqa: E402
from mnist_gpu.model import layers  # noqa: E402
from mnist_gpu.model.layers import ConvShape  # noqa: E402

CLOCK = time.process_time if ARGS.clock == "cpu" else time.perf_counter
B = 256
S1, S2 = ConvShape(28, 28, 1, 5, 0), ConvShape(12, 12, 24, 3, 0)
PRODUCTS = [  # (what, m, k, n, transposed left operand)
    ("conv1 forward", B * 576, 25, 24, False), ("conv1 d kernels", 25, B * 576, 24, True),
    ("conv2 forward", B * 100, 216, 32, False), ("conv2 d kernels", 216, B * 100, 32, True),
    ("conv2 d patches", B * 100, 32, 216, False),
    ("dense1 forward", B, 800, 256, False), ("dense1 d weights", 800, B, 256, True),
    ("dense1 d input", B, 256, 800, False),
    ("dense2 forward", B, 256, 10, False), ("dense2 d weights", 256, B, 10, True),
    ("dense2 d input", B, 10, 256, False),
]


def best(step, repeats=ARGS.repeats):
    step()
    times = []
    for _ in range(repeats):
        start = CLOCK()
        step()
        times.append(CLOCK() - start)
    return min(times)


def main():
    dt = np.dtype(ARGS.dtype)
    size = dt.itemsize
    rng = np.random.default_rng(0)
    n = 2048
    a, b = rng.random((n, n)).astype(dt), rng.random((n, n)).astype(dt)
    gemm = 2 * n ** 3 / best(lambda: a @ b, 5)
    src = rng.random(32 * 2 ** 20 // size).astype(dt)
    dst = np.empty_like(src)
    bandwidth = 2 * src.nbytes / best(lambda: np.copyto(dst, src), 10)
    print(f"{ARGS.dtype}, {ARGS.threads} thread(s), {ARGS.clock} clock: GEMM {gemm / 1e9:.0f} "
          f"GFLOP/s (2048^3), copy {bandwidth / 1e9:.1f} GB/s (32 MiB, read + write)")
    total_products = floor_products = 0.0
    print(f"{'matrix product':20} {'m x k x n':>20} {'ms':>7} {'GFLOP/s':>8} {'at GEMM':>8}")
    for what, m, k, nn, transposed in PRODUCTS:
        left = rng.random((k, m) if transposed else (m, k)).astype(dt)
        left = left.T if transposed else left
        right = rng.random((k, nn)).astype(dt)
        out = np.empty((m, nn), dt)
        t = best(lambda: np.matmul(left, right, out=out))
        flops = 2 * m * k * nn
        total_products += t
        floor_products += flops / gemm
        print(f"{what:20} {f'{m} x {k} x {nn}':>20} {t * 1e3:7.2f} {flops / t / 1e9:8.0f} "
              f"{flops / gemm * 1e3:8.2f}")
    print(f"{'all products':20} {'':>20} {total_products * 1e3:7.2f} {'':>8} "
          f"{floor_products * 1e3:8.2f}")
    total_moves = floor_moves = total_array = 0.0
    conv = ConvPassCPU()
    x1 = rng.normal(size=(B, 28, 28, 1)).astype(dt)
    x2 = rng.normal(size=(B, 12, 12, 24)).astype(dt)
    z1 = rng.normal(size=(B, 24, 24, 24)).astype(dt)
    z2 = rng.normal(size=(B, 10, 10, 32)).astype(dt)
    cols1 = np.empty((B * 576, 25), dt)
    cols2 = np.empty((B * 100, 216), dt)
    d_x2 = np.empty_like(x2)
    i1, i2 = S1.host_indices(), S2.host_indices()
    p1, c1 = conv.pool_forward(z1)
    p2, c2 = conv.pool_forward(z2)
    zero24, zero32 = np.zeros(24, dt), np.zeros(32, dt)
    from mnist_gpu.kernels import cpu_conv_loops as loops
    moves = [  # (what, bytes read + written, compiled, array path)
        ("im2col conv1", x1.nbytes + cols1.nbytes, lambda: conv.im2col(x1, S1, out=cols1),
         lambda: layers.im2col(x1, S1, i1, np)),
        ("im2col conv2", x2.nbytes + cols2.nbytes, lambda: conv.im2col(x2, S2, out=cols2),
         lambda: layers.im2col(x2, S2, i2, np)),
        ("col2im conv2", cols2.nbytes + x2.nbytes, lambda: conv.col2im(cols2, x2, S2, out=d_x2),
         lambda: layers.col2im(cols2, x2, S2, np)),
        ("pool+relu conv1", z1.nbytes + p1.nbytes * (1 + 1 / size),
         lambda: loops.pool_relu(z1, zero24, True, p1, c1),
         lambda: np.maximum(layers.pool_forward(z1 + zero24, np)[0], 0)),
        ("pool+relu conv2", z2.nbytes + p2.nbytes * (1 + 1 / size),
         lambda: loops.pool_relu(z2, zero32, True, p2, c2),
         lambda: np.maximum(layers.pool_forward(z2 + zero32, np)[0], 0)),
        ("unpool+relu conv1", z1.nbytes + p1.nbytes * (1 + 1 / size),
         lambda: loops.unpool_relu(p1, c1, z1, np.empty(24, dt)),
         lambda: layers.pool_backward(p1 * (p1 > 0), *layers.pool_forward(z1, np)[::-1],
                                      z1.shape, np)),
        ("unpool+relu conv2", z2.nbytes + p2.nbytes * (1 + 1 / size),
         lambda: loops.unpool_relu(p2, c2, z2, np.empty(32, dt)),
         lambda: layers.pool_backward(p2 * (p2 > 0), *layers.pool_forward(z2, np)[::-1],
                                      z2.shape, np)),
    ]
    print(f"{'data movement':20} {'MB':>8} {'ms':>7} {'GB/s':>6} {'at copy':>8} {'array':>7}")
    for what, nbytes, compiled, array in moves:
        t, ta = best(compiled), best(array, max(3, ARGS.repeats // 4))
        total_moves += t
        total_array += ta
        floor_moves += nbytes / bandwidth
        print(f"{what:20} {nbytes / 1e6:8.1f} {t * 1e3:7.2f} {nbytes / t / 1e9:6.1f} "
              f"{nbytes / bandwidth * 1e3:8.2f} {ta * 1e3:7.2f}")
    print(f"{'all movement':20} {'':>8} {total_moves * 1e3:7.2f} {'':>6} "
          f"{floor_moves * 1e3:8.2f} {total_array * 1e3:7.2f}")
    print(f"floor of a step (products at GEMM rate + movement at copy bandwidth): "
          f"{(floor_products + floor_moves) * 1e3:.1f} ms; measured apart: products "
          f"{total_products * 1e3:.1f} ms + compiled movement {total_moves * 1e3:.1f} ms = "
          f"{(total_products + total_moves) * 1e3:.1f} ms")
    torch_step()


def torch_step():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("PyTorch not installed: no PyTorch step", file=sys.stderr)
        return
    sys.path.insert(0, os.path.dirname(__file__))
    from torch_fast import Net

    torch.set_num_threads(ARGS.threads)
    dtype = getattr(torch, ARGS.dtype)
    model = Net().to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.7, 0.9))
    x = torch.randn(B, 1, 28, 28, dtype=dtype)
    y = torch.randint(0, 10, (B,))

    def step():
        optimizer.zero_grad()
        F.nll_loss(model(x), y).backward()
        optimizer.step()
    print(f"PyTorch {torch.__version__}, one training step of the recipe: "
          f"{best(step) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
