"""The documented configurations, as data: what ``mnist-gpu train --preset NAME`` trains.

Each preset is a set of training settings, named as the command's options are (``alpha`` is
``--alpha``/``--lr``); the CLI overlays the flags given on the command line, and the benchmark
reads a preset's network with ``network(name)``, without any parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .architecture import parse_network
from .network import Network

# The settings that describe the network rather than its training.
NETWORK_SETTINGS = ("layers", "loss")
# The tutorial's own settings (any other makes a preset a deeper network's, its rate ``--lr``).
TUTORIAL_SETTINGS = ("batch_size", "alpha", "epochs", "shuffle", "seed")


# Where the presets' figures were measured. A figure holds on its machine: accuracy moves in the
# second decimal with the CPU's instruction set and BLAS threads (float32 sums in another
# order), and times scale with the cores.
MEASURED_ON = ("a 2-core AMD EPYC with AVX-512, NumPy, float32, seed 0; times are the training "
               "time the command prints")


@dataclass(frozen=True)
class Preset:
    settings: dict = field(default_factory=dict)
    measured: str = ""  # what it gave on the machine of ``MEASURED_ON``

    @property
    def accuracy(self) -> str:
        """The measured test accuracy, as written (``99.38%``)."""
        return self.measured.split(",", 1)[0]

    def flags(self) -> list[str]:
        """The command-line flags that give these settings (``--lr`` for a deeper network's
        learning rate, as its documentation writes it)."""
        deep = bool(set(self.settings) - set(TUTORIAL_SETTINGS))
        out = []
        for key, value in self.settings.items():
            flag = "--lr" if key == "alpha" and deep else "--" + key.replace("_", "-")
            if value is True:
                out.append(flag)
            else:
                out += [flag, _flag_value(value)]
        return out


def _flag_value(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, float) and value < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-")  # 5e-4, as a person writes it
    return str(value)


def _convs(*filters: int, dropout: float) -> str:
    """5x5 convolutions with biases, each pooled 2x2 then relu; a dense layer of 128; dropout
    after the convolutions and after the hidden layer."""
    convs = ",".join(f"conv{f}x5+bias,pool2,relu" for f in filters)
    return f"{convs},dropout{dropout:g},dense128+bias,relu,dropout{dropout:g},dense10+bias"


# The 99% network and its training, but for the number of epochs (cnn and cnn-long).
_CNN = {"layers": _convs(32, 64, dropout=0.25), "loss": "ce", "batch_size": 128, "alpha": 0.05,
        "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "shuffle": True}

# tuomaso/train_mnist_fast's recipe: a small CNN of mixed kernel sizes, Adam under a one-cycle
# rate (Adam's first beta not cycled), batches of 256; two epochs (one falls short of 99%).
_FAST = {"layers": "conv24x5+bias,pool2,relu,conv32x3+bias,pool2,relu,dense256+bias,relu,"
                   "dense10+bias", "loss": "ce", "batch_size": 256, "alpha": 0.01,
         "optimizer": "adam", "betas": (0.7, 0.9), "schedule": "one-cycle-lr", "epochs": 2,
         "shuffle": True}

# What they gave on the machine of ``MEASURED_ON`` (and elsewhere, where it was measured).
PRESETS = {
    "tutorial": Preset({}, "68.15%, 0.015 s: the tutorial, one image at a time"),
    "minibatch": Preset({"batch_size": 100, "alpha": 0.02, "epochs": 20}, "80.49%, 0.37 s"),
    "softmax": Preset({"layers": "dense10+bias", "loss": "ce", "batch_size": 100, "alpha": 0.5,
                       "momentum": 0.9, "schedule": "cosine", "epochs": 10, "shuffle": True},
                      "92.62%, 1.25 s: softmax regression"),
    "mlp": Preset({"layers": "dense256+bias,relu,dense10+bias", "loss": "ce", "batch_size": 128,
                   "alpha": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine",
                   "epochs": 15, "shuffle": True},
                  "98.21%, 10.2 s: the 98% command (one BLAS thread, the thread rule's on 2 "
                  "cores; 98.24% with two; on an AVX2 machine 98.18% with one)"),
    "cnn-fast": Preset({"layers": _convs(16, 32, dropout=0.1), "loss": "ce", "batch_size": 128,
                        "alpha": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                        "schedule": "cosine", "epochs": 3, "shuffle": True},
                       "99.22%, 28 s (seeds 1, 2: 99.16%, 99.09%)"),
    "cnn": Preset({**_CNN, "epochs": 7},
                  "99.38%, 182 s (seeds 1, 2: 99.32%, 99.25%): the 99% command"),
    "cnn-long": Preset({**_CNN, "epochs": 9},
                       "99.44%, 228 s (seeds 1, 2: 99.34%, 99.33%): cnn for 9 epochs"),
    "fast": Preset(_FAST, "99.13%, 21 s (seeds 1-4: 99.09%, 99.26%, 99.23%, 99.13%; mean "
                           "99.17%; --threads 2: 99.18%, 12 s, mean 99.19%): the fast recipe, "
                           "Adam under a one-cycle rate"),
}


def network(name: str) -> Network:
    """The network of preset ``name`` (the tutorial's for a preset without one)."""
    settings = PRESETS[name].settings
    return parse_network(settings.get("layers", "dense10"), settings.get("loss", "mse"))
