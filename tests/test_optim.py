"""Optimisers and learning-rate schedules: each step worked by hand on tiny arrays (values
exact in binary, so compared exactly), every step of a deeper run's schedule pinned (how many
steps, a short last batch included, and the rate at each), and a deeper-network sweep whose
every member is its own single run."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from mnist_gpu.model import network
from mnist_gpu.model.architecture import parse_network
from mnist_gpu.optim import OPTIMIZERS, SCHEDULES, SGD
from mnist_gpu.sweep import Member, run_mlp_sweep
from mnist_gpu.training import MLPConfig, to_device_data, train_mlp


def _sgd_steps(steps=1, **settings):
    p, g = np.array([1.0, 2.0]), np.array([1.0, -2.0])  # g summed over a batch of 2
    optimizer = SGD([p], np, **settings)
    for _ in range(steps):
        optimizer.step([p], [g], 2, 0.5)
    return p, optimizer


def test_plain_sgd_is_the_tutorials_update():
    p, _ = _sgd_steps()
    np.testing.assert_array_equal(p, [1 - 0.25 * 1, 2 + 0.25 * 2])  # p -= (lr / b) * g


def test_sgd_weight_decay_shrinks_the_parameter_not_the_gradient():
    p, _ = _sgd_steps(weight_decay=0.5)
    # p -= lr * wd * p: [0.75, 1.5]; then p -= (lr / b) * g
    np.testing.assert_array_equal(p, [0.5, 2.0])


def test_sgd_momentum_and_weight_decay_two_steps_by_hand():
    p, optimizer = _sgd_steps(2, momentum=0.5, weight_decay=0.25)
    # step 1: v = g / 2 + 0.25 p = [0.75, -0.5]; p -= 0.5 v -> [0.625, 2.25]
    # step 2: v = 0.5 v + g / 2 + 0.25 p = [1.03125, -0.6875]; p -= 0.5 v
    np.testing.assert_array_equal(optimizer.velocity[0], [1.03125, -0.6875])
    np.testing.assert_array_equal(p, [0.109375, 2.59375])


def test_a_schedules_momentum_replaces_the_setting_and_state_restores():
    p, g = np.array([1.0]), np.array([2.0])
    optimizer = SGD([p], np, momentum=0.5)
    kept = optimizer.state()
    optimizer.step([p], [g], 1, 0.25, 0.0)  # momentum 0 this step: plain SGD
    np.testing.assert_array_equal(p, [0.5])
    optimizer.step([p], [g], 1, 0.25)  # the setting's 0.5: v = 0.5 * 0 + 2, as it stayed 0
    np.testing.assert_array_equal(p, [0.0])
    optimizer.restore(kept)
    np.testing.assert_array_equal(optimizer.velocity[0], [0.0])


@pytest.mark.parametrize("settings, says", [
    ({"momentum": 1.0}, "momentum must lie in"), ({"weight_decay": -1.0}, "non-negative"),
    ({"betas": (0.9, 0.99)}, "sgd takes no betas"), ({"momentum": float("nan")}, "momentum"),
])
def test_bad_settings_are_refused(settings, says):
    with pytest.raises(ValueError, match=says):
        OPTIMIZERS["sgd"].check(settings)
    with pytest.raises(ValueError, match=says):
        MLPConfig(settings=settings).validate()


def test_the_schedules_rate_by_rate():
    assert [SCHEDULES["constant"](s, 8, 0.5) for s in range(8)] == [(0.5, None)] * 8
    rates = [SCHEDULES["step"](s, 8, 1.0)[0] for s in range(8)]
    assert rates == [1.0] * 4 + [0.1] * 2 + [0.1 ** 2] * 2
    rates = [SCHEDULES["cosine"](s, 4, 1.0)[0] for s in range(4)]
    assert rates == [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5 * (1 + math.cos(math.pi / 2)),
                     0.5 * (1 + math.cos(3 * math.pi / 4))]


class _Recording(SGD):
    """SGD that writes down the batch and the rate of every step."""

    name = "recording"
    steps: list = []

    def step(self, params, grads, batch, lr, cycled=None):
        self.steps.append((batch, lr, cycled))
        super().step(params, grads, batch, lr, cycled)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_every_step_of_a_deeper_runs_schedule(numpy_backend, mnist, monkeypatch, schedule):
    """250 images in batches of 100 for 2 epochs: 3 steps an epoch (the last of 50 images), 6
    in all, each at the schedule's rate of its 0-based step out of 6."""
    monkeypatch.setitem(OPTIMIZERS, "recording", _Recording)
    monkeypatch.setattr(_Recording, "steps", [])
    data = to_device_data(numpy_backend, mnist, "float64", limit=250)
    net = parse_network("dense8+bias,relu,dense10+bias", "ce")
    train_mlp(data, MLPConfig(net, lr=0.4, batch_size=100, epochs=2, optimizer="recording",
                              settings={"momentum": 0.9}, schedule=schedule))
    if schedule == "cosine":
        rates = [0.5 * 0.4 * (1 + math.cos(math.pi * s / 6)) for s in range(6)]
    else:  # x0.1 from step 3 (of 6), x0.01 from step 4 (3 * 6 // 4)
        rates = [0.4, 0.4, 0.4, 0.4 * 0.1, 0.4 * 0.1 ** 2, 0.4 * 0.1 ** 2]
    assert _Recording.steps == [(b, r, None) for b, r in zip([100, 100, 50] * 2, rates)]


def test_a_deeper_network_sweeps_members_are_their_own_runs(numpy_backend, mnist):
    data = to_device_data(numpy_backend, mnist, "float64", limit=300)
    config = MLPConfig(parse_network("dense8+bias,relu,dropout0.2,dense10+bias", "ce"),
                       lr=0.1, batch_size=64, epochs=2, settings={"momentum": 0.9},
                       schedule="cosine")
    members = [Member(0.1, 0), Member(0.1, 1), Member(0.05, 0)]
    swept = run_mlp_sweep(data, members, config)
    for member, params in zip(members, swept.weights):
        alone = train_mlp(data, replace(config, lr=member.alpha, seed=member.seed))
        for p, q in zip(network.flat(params), network.flat(alone.params)):
            np.testing.assert_array_equal(p, q)
    assert not np.array_equal(network.flat(swept.weights[0])[0],
                              network.flat(swept.weights[1])[0])


class _Halving(SGD):
    """An optimiser of the test's own, with a setting SGD has not."""

    name = "halving"
    settings = {"shrink": 0.5}
    described = ("shrink",)

    def __init__(self, params, xp, **settings):
        super().__init__(params, xp, **settings)
        self.values = {"momentum": 0.0, "weight_decay": 0.0, **self.values}


def test_the_command_lines_optimiser_flags_come_from_the_classes(monkeypatch):
    from mnist_gpu.cli.args import apply_preset, training_config
    from mnist_gpu.cli.parser import build_parser

    monkeypatch.setitem(OPTIMIZERS, "halving", _Halving)
    parser = build_parser()
    argv = ["train", "--preset", "mlp", "--optimizer", "halving", "--shrink", "0.25"]
    args = apply_preset(parser.parse_args(argv), argv)
    config = training_config(args, args.alpha, 0)
    # The preset's SGD settings are not the new optimiser's: left out.
    assert config.optimizer == "halving" and config.settings == {"shrink": 0.25}
    assert config.rate_words() == "lr 0.1, shrink 0.25"
    argv = ["train", "--preset", "mlp"]
    config = training_config(apply_preset(parser.parse_args(argv), argv), 0.1, 0)
    assert config.settings == {"momentum": 0.9, "weight_decay": 5e-4}
