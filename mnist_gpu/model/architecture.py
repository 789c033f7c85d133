"""What networks are made of: every layer type by the word that names it (``LAYERS``; a new one is
added with ``register_layer``), a layer list read from its words, and the older way of describing
a network by settings mapped to a list.

A layer list is its words joined by commas, e.g. ``conv32x5+bias,pool2,relu,dense10+bias``
(docs/networks.md has every word). The older settings are what the flags ``--conv``,
``--conv-size``, ``--padding``, ``--hidden``, ``--activation``, ``--bias`` and ``--dropout`` say,
and what weight files written before layer lists record (their metadata's ``arch``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .conv import Conv, MaxPool
from .dense import Dense, ReLU, Sigmoid, Tanh
from .dropout import Dropout
from .layer import Layer
from .network import Network
from .tutorial import N_OUTPUTS

# Every layer type by the word that names it.
LAYERS: dict[str, type[Layer]] = {cls.name: cls for cls in (Dense, Conv, MaxPool, ReLU,
                                                             Sigmoid, Tanh, Dropout)}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Make ``cls`` (a ``layer.Layer`` with a ``name``) a layer type that layer lists may name;
    usable as a class decorator."""
    if not (cls.name.isalpha() and cls.name.islower()):
        raise ValueError(f"a layer's name is lower-case letters only, not {cls.name!r}")
    if LAYERS.get(cls.name, cls) is not cls:
        raise ValueError(f"a layer named {cls.name!r} exists already: {LAYERS[cls.name]}")
    LAYERS[cls.name] = cls
    return cls


def parse_layers(text: str) -> list[Layer]:
    """The layers a comma-separated list of words names (``conv32x5,pool2,relu,dense10``)."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise ValueError("an empty layer list: e.g. dense256+bias,relu,dense10+bias")
    out = []
    for word in words:
        name = re.match(r"[a-z]*", word).group()
        if name not in LAYERS:
            raise ValueError(f"{word!r} names no layer: the layers are "
                             + ", ".join(sorted(LAYERS)))
        out.append(LAYERS[name].parse(word))
    return out


def parse_network(text: str, loss: str = "mse") -> Network:
    """The network of a layer list and a loss (a ValueError saying what is wrong)."""
    return Network(parse_layers(text), loss)


def network_from_json(described: dict) -> Network:
    """The network a saved file's metadata records: a layer list, or an older file's settings."""
    if "layers" in described:
        return parse_network(described["layers"], described["loss"])
    return Architecture.from_json(described).network()


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
PADDINGS = ("valid", "same")

# The older flags, as data for the command line: (setting, flag, kind of value, help). The kinds
# are the CLI's argument types: "sizes" (a comma list of integers >= 1), "size" (an integer
# >= 1), "fraction" (in [0, 1)), a tuple of choices, or "switch".
FLAGS = (
    ("conv", "--conv", "sizes", "convolution layers, their output channels, e.g. 32,64; each "
     "followed by 2x2 max pooling and relu, before the dense layers [none]"),
    ("conv_size", "--conv-size", "size", "the convolutions' kernels are K x K (not --kernel, the "
     "compute path) [5]"),
    ("padding", "--padding", PADDINGS, "valid (no padding) or same (output as large as the "
     "input) [valid]"),
    ("hidden", "--hidden", "sizes", "hidden layer sizes, e.g. 256,128 [none]"),
    ("activation", "--activation", tuple(ACTIVATIONS), "of the hidden layers, so it needs "
     "--hidden [relu]"),
    ("bias", "--bias", "switch", "give every layer a bias"),
    ("dropout", "--dropout", "fraction", "while training, drop each feature with probability P "
     "after the convolutions and after each hidden layer [0]"),
)


@dataclass(frozen=True)
class Architecture:
    """Convolution layers (each ``conv[i]`` output channels, k x k with ``conv_size`` k, then
    2x2 max pooling and relu), then dense layers (``hidden``, then the ten outputs) with
    ``activation`` between them, biases or not, dropout of rate ``dropout`` after the
    convolutions and after each hidden dense layer while training, and the loss."""

    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    bias: bool = False
    loss: str = "mse"
    conv: tuple[int, ...] = ()
    conv_size: int = 5
    padding: str = "valid"
    dropout: float = 0.0

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}")
        if any(h < 1 for h in self.hidden) or any(c < 1 for c in self.conv):
            raise ValueError("layer sizes must be at least 1")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}")
        if self.conv_size < 1 or (self.padding == "same" and self.conv_size % 2 == 0):
            raise ValueError("the kernel size must be at least 1, and odd for 'same' padding")

    def layers(self) -> list:
        """The same network as a list of layers."""
        def dropped():
            return [Dropout(self.dropout)] if self.dropout else []

        out = []
        for filters in self.conv:
            out += [Conv(filters, self.conv_size, self.padding == "same", self.bias), MaxPool(),
                    ReLU()]
        if self.conv:
            out += dropped()
        for size in self.hidden:
            out += [Dense(size, self.bias), ACTIVATIONS[self.activation](), *dropped()]
        return out + [Dense(N_OUTPUTS, self.bias)]

    def network(self) -> Network:
        """The network these settings describe (a ValueError if its images shrink to nothing)."""
        try:
            return Network(self.layers(), self.loss)
        except ValueError as err:
            if not self.conv:
                raise
            raise ValueError(f"{len(self.conv)} convolutions of {self.conv_size}x"
                             f"{self.conv_size} with pooling leave no image ({err})") from None

    @classmethod
    def from_json(cls, described: dict) -> Architecture:
        """From ``asdict(arch)`` as files written before layer lists record it (older ones: no
        conv)."""
        return cls(tuple(described["hidden"]), described["activation"], bool(described["bias"]),
                   described["loss"], tuple(described.get("conv", ())),
                   int(described.get("conv_size", 5)), described.get("padding", "valid"),
                   float(described.get("dropout", 0.0)))

