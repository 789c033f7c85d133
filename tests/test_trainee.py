"""The trainee protocol (``mnist_gpu.training.Trainee``): what the one training loop calls. Every
trainee the loop is given, the tutorial's stack and a deeper network, satisfies it: each member
implemented by the trainee itself (not the protocol's empty stub), with the protocol's
parameters."""

from __future__ import annotations

import inspect

import pytest

from mnist_gpu.backend import get_backend
from mnist_gpu.training import (
    TrainConfig, Trainee, config_from_preset, to_device_data, train, train_mlp,
)
from mnist_gpu.training import runner

METHODS = sorted(name for name, value in vars(Trainee).items()
                 if inspect.isfunction(value) and not name.startswith("_"))
ATTRIBUTES = sorted(Trainee.__annotations__)


def test_the_protocol_is_what_the_loop_calls():
    assert METHODS == ["diverge", "mark_good", "non_finite", "over_bound", "score", "train"]
    assert ATTRIBUTES == ["batch_size", "models"]


@pytest.fixture
def given_to_the_loop(monkeypatch):
    """The trainees that ``runner.run`` is given, as it is given them."""
    seen = []
    real = runner.run

    def recording(trainee, *args, **kwargs):
        seen.append(trainee)
        return real(trainee, *args, **kwargs)

    monkeypatch.setattr(runner, "run", recording)
    return seen


@pytest.fixture
def small(mnist):
    return to_device_data(get_backend("numpy"), type(mnist)(
        mnist.train_images[:100], mnist.train_labels[:100], mnist.test_images[:50],
        mnist.test_labels[:50]))


def _runs(small):
    yield "tutorial", lambda: train(small, TrainConfig(checkpoints=(0, 100)))
    yield "deeper network", lambda: train_mlp(small, config_from_preset("softmax", epochs=1))


@pytest.mark.parametrize("which", ["tutorial", "deeper network"])
def test_every_trainee_satisfies_the_protocol(small, given_to_the_loop, which):
    dict(_runs(small))[which]()
    (trainee,) = given_to_the_loop
    assert isinstance(trainee, Trainee)
    assert isinstance(trainee.models, int) and isinstance(trainee.batch_size, int)
    kind = type(trainee)
    for name in METHODS:
        implemented = getattr(kind, name)
        assert implemented is not getattr(Trainee, name), f"{kind.__name__}.{name} is the stub"
        ours = list(inspect.signature(implemented).parameters)
        assert ours == list(inspect.signature(getattr(Trainee, name)).parameters), (
            f"{kind.__name__}.{name}{inspect.signature(implemented)}")


def test_a_trainee_missing_a_member_is_refused():
    """What the checks above see: a class that declares the protocol but leaves a member to the
    stub, or an object that has only some of the members."""
    class Half(Trainee):
        models = batch_size = 1

        def train(self, segment):
            pass

    assert getattr(Half, "score") is getattr(Trainee, "score")
    partial = type("Partial", (), {"models": 1, "batch_size": 1, "train": lambda self, s: None})
    assert not isinstance(partial(), Trainee)
