"""Adam, AdamW and the one-cycle schedule against PyTorch's own (CPU build, float64): the same
gradients fed to both, then a small dense network trained both ways on real MNIST, the
parameters agreeing to 1e-9 after hundreds of steps."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_gpu.optim import OPTIMIZERS, SCHEDULES, Adam, AdamW

torch = pytest.importorskip("torch", reason="PyTorch (CPU build) is the reference")

STEPS = 300
TOLERANCE = 1e-9

CASES = [  # (our optimizer, torch's, settings, one-cycle)
    ("adam", "Adam", {}, False),
    ("adam", "Adam", {"betas": (0.7, 0.9), "weight_decay": 0.05, "eps": 1e-6}, False),
    ("adamw", "AdamW", {}, False),
    ("adamw", "AdamW", {"betas": (0.8, 0.99), "weight_decay": 0.1}, False),
    ("adam", "Adam", {"betas": (0.7, 0.9)}, True),
    ("adamw", "AdamW", {"weight_decay": 0.02}, True),
]


def _torch_pair(torch_name, tensors, lr, settings, cycle, total):
    optimizer = getattr(torch.optim, torch_name)(tensors, lr=lr, **settings)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total)
                 if cycle else None)
    return optimizer, scheduler


def _ours(name, params, settings, cycle, lr, total):
    optimizer = OPTIMIZERS[name](params, np, **settings)

    def step(grads, batch, t):
        rate, momentum = SCHEDULES["one-cycle"](t, total, lr) if cycle else (lr, None)
        optimizer.step(params, grads, batch, rate, momentum)
    return step


@pytest.mark.parametrize("name, torch_name, settings, cycle", CASES)
def test_the_same_gradients_give_pytorchs_parameters(name, torch_name, settings, cycle):
    rng = np.random.default_rng(3)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    params = [rng.normal(size=s) for s in shapes]
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    lr, batch = 0.01, 32
    optimizer, scheduler = _torch_pair(torch_name, tensors, lr, settings, cycle, STEPS)
    ours = _ours(name, params, settings, cycle, lr, STEPS)
    for t in range(STEPS):
        summed = [rng.normal(size=s) * batch for s in shapes]  # summed over a batch of 32
        for tensor, g in zip(tensors, summed):
            tensor.grad = torch.tensor(g / batch)
        optimizer.step()
        if scheduler:
            scheduler.step()
        ours(summed, batch, t)
    for p, tensor in zip(params, tensors):
        np.testing.assert_allclose(p, tensor.detach().numpy(), rtol=0, atol=TOLERANCE)


def test_one_cycle_is_pytorchs_rates_and_first_betas():
    for total in (1000, 235, 7):
        tensor = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.Adam([tensor], lr=0.01, betas=(0.7, 0.9))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01,
                                                        total_steps=total)
        for t in range(total):
            group = optimizer.param_groups[0]
            rate, beta1 = SCHEDULES["one-cycle"](t, total, 0.01)
            assert rate == pytest.approx(group["lr"], rel=1e-14, abs=1e-18)
            assert beta1 == pytest.approx(group["betas"][0], rel=1e-14)
            optimizer.step()
            scheduler.step()
    with pytest.raises(ValueError):
        SCHEDULES["one-cycle"](7, 7, 0.01)


def test_one_cycle_lr_is_pytorchs_without_cycling_the_first_beta():
    total = 235
    tensor = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([tensor], lr=0.01, betas=(0.7, 0.9))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=total,
                                                    cycle_momentum=False)
    for t in range(total):
        rate, beta1 = SCHEDULES["one-cycle-lr"](t, total, 0.01)
        assert rate == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-14, abs=1e-18)
        assert beta1 is None and optimizer.param_groups[0]["betas"][0] == 0.7
        optimizer.step()
        scheduler.step()


def test_defaults_are_pytorchs():
    for ours, theirs in ((Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)):
        defaults = theirs([torch.zeros(1)]).defaults
        for key, value in ours.settings.items():
            assert tuple(defaults[key]) == value if key == "betas" else defaults[key] == value


def test_state_and_restore_replay_the_same_steps():
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(4, 3))]
    optimizer = Adam(params, np)
    optimizer.step(params, [rng.normal(size=(4, 3))], 8, 0.01)
    saved, before = optimizer.state(), params[0].copy()
    grad = rng.normal(size=(4, 3))
    optimizer.step(params, [grad], 8, 0.01)
    after = params[0].copy()
    params[0][...] = before
    optimizer.restore(saved)
    optimizer.step(params, [grad], 8, 0.01)
    np.testing.assert_array_equal(params[0], after)


def _dense_grads(params, x, onehot):
    """Summed cross-entropy gradients of relu(x W0 + b0) W1 + b1: ours, on the host."""
    W0, b0, W1, b1 = params
    hidden = np.maximum(x @ W0 + b0, 0)
    z = hidden @ W1 + b1
    p = np.exp(z - z.max(axis=1, keepdims=True))
    delta = p / p.sum(axis=1, keepdims=True) - onehot
    d_hidden = (delta @ W1.T) * (hidden > 0)
    return [x.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ delta, delta.sum(axis=0)]


@pytest.mark.parametrize("name, torch_name, settings", [
    ("adam", "Adam", {"betas": (0.7, 0.9)}), ("adamw", "AdamW", {})])
def test_a_dense_network_trains_as_in_pytorch(mnist, name, torch_name, settings):
    images, batch, epochs, lr = 512, 32, 20, 0.01  # 320 steps
    x = mnist.train_images[:images].reshape(images, -1).astype(np.float64) / 255
    labels = mnist.train_labels[:images].astype(np.int64)
    onehot = np.eye(10)[labels]
    rng = np.random.default_rng(1)
    params = [rng.normal(0, 0.05, (784, 32)), np.zeros(32), rng.normal(0, 0.2, (32, 10)),
              np.zeros(10)]
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    total = epochs * images // batch
    optimizer, scheduler = _torch_pair(torch_name, tensors, lr, settings, True, total)
    ours = _ours(name, params, settings, True, lr, total)
    tx, tlabels = torch.tensor(x), torch.tensor(labels)
    t = 0
    for _ in range(epochs):
        for s in range(0, images, batch):
            optimizer.zero_grad()
            hidden = torch.relu(tx[s:s + batch] @ tensors[0] + tensors[1])
            loss = torch.nn.functional.cross_entropy(hidden @ tensors[2] + tensors[3],
                                                     tlabels[s:s + batch])  # the mean
            loss.backward()
            optimizer.step()
            scheduler.step()
            ours(_dense_grads(params, x[s:s + batch], onehot[s:s + batch]), batch, t)
            t += 1
    for p, tensor in zip(params, tensors):
        np.testing.assert_allclose(p, tensor.detach().numpy(), rtol=0, atol=TOLERANCE)
    assert (np.argmax(np.maximum(x @ params[0] + params[1], 0) @ params[2], 1)
            == labels).mean() > 0.9  # it learned: the parity is not of a stuck network
