"""The fastest published MNIST recipe (tuomaso/train_mnist_fast, its final notebook) in PyTorch
on this CPU: the reference the `fast` preset is timed against.

Conv 1->24 5x5, max pool 2, relu, conv 24->32 3x3, max pool 2, relu, dense 800->256, relu,
dense 256->10; one epoch in order, batches of 256, Adam (lr 0.01, betas 0.7, 0.9) under
OneCycleLR with cycle_momentum=False, as the notebook has it; images scaled to [0, 1] and
normalised by MNIST's mean and deviation (0.1307, 0.3081), as its data_saver does. Data already
in memory (float32 tensors); the training is timed alone, then the test set is scored.

    python bench/torch_fast.py [--seeds 0 1 2] [--threads 2] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnist_gpu.data import load_mnist, resolve_data_dir


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5, 1)
        self.conv2 = nn.Conv2d(24, 32, 3, 1)
        self.fc1 = nn.Linear(800, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


def tensors(images, labels, dtype):
    x = torch.tensor((images.astype(np.float32) / 255 - 0.1307) / 0.3081, dtype=dtype)
    return x.reshape(-1, 1, 28, 28), torch.tensor(labels.astype(np.int64))


def train_one(seed, train, test, batch=256, lr=0.01, dtype=torch.float32):
    torch.manual_seed(seed)
    model = Net().to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.7, 0.9))
    x, y = train
    steps = (len(x) - 1) // batch + 1
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                    cycle_momentum=False)
    start = time.perf_counter()
    model.train()
    for i in range(steps):
        optimizer.zero_grad()
        F.nll_loss(model(x[batch * i:batch * (i + 1)]), y[batch * i:batch * (i + 1)]).backward()
        optimizer.step()
        scheduler.step()
    seconds = time.perf_counter() - start
    return seconds, evaluate(model, test)


def evaluate(model, test):
    """Test accuracy in percent, in batches of 2,000."""
    model.eval()
    with torch.no_grad():
        tx, ty = test
        hits = sum(int((model(tx[s:s + 2000]).argmax(1) == ty[s:s + 2000]).sum())
                   for s in range(0, len(tx), 2000))
    return 100.0 * hits / len(tx)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    mnist = load_mnist(resolve_data_dir(), offline=True)
    train = tensors(mnist.train_images, mnist.train_labels, dtype)
    test = tensors(mnist.test_images, mnist.test_labels, dtype)
    for seed in args.seeds:
        seconds, accuracy = train_one(seed, train, test, dtype=dtype)
        print(f"torch {args.dtype} seed {seed}: {seconds:.2f} s training, "
              f"{len(train[0]) / seconds:,.0f} images/s, {accuracy:.2f}% test accuracy",
              flush=True)


if __name__ == "__main__":
    main()
