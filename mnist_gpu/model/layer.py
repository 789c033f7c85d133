"""What a layer is: one class per layer type, the words that name it, its parameters, its forward
and backward passes written once against ``xp``, its cost and its PyTorch counterpart.

A network (``network.py``) is a list of layers and a loss. A layer is built for the shape of one
image as it arrives (``build``, e.g. (28, 28, 1)), which gives the shape it passes on; then

* ``init(rng, dtype, he)`` draws its parameters on the host (a list of NumPy arrays, none for a
  layer without), from the network's one generator, in the order of the list (``he``: a relu
  follows, so He initialisation rather than Xavier's);
* ``forward(params, x, xp, ctx)`` gives its output and what its backward pass needs;
* ``backward(params, saved, grad, xp, ctx, need_input)`` gives the gradients of its parameters
  (summed over the batch) and, when ``need_input``, that of its input;
* ``products(batch, need_input)`` lists the (m, k, n) matrix products of one training step
  (for the benchmark's flop count) and ``torch(nn)`` is the same layer as PyTorch's module.

A new layer type is a subclass with a ``name`` and these methods, registered with
``architecture.register_layer``; nothing else in the package needs to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass
class Context:
    """What a pass needs beyond the arrays: the backend (to upload what a layer computes on the
    host), the dtype's name, the host generator of random masks and whether it is training;
    ``passes``: compiled passes by layer name (else the array path); ``constants``: device arrays
    made once per run (a convolution's im2col positions); ``blocks``: compiled passes of runs of
    layers, by the run's layer names (``("conv", "pool", "relu")``), each a class made from the
    run's layers whose ``forward`` and ``backward`` are a layer's over the run's parameters (one
    list per layer) and give the run's results; ``made``: the blocks this context made, which
    keep buffers (a context serves one thread)."""

    backend: object
    dtype: str
    rng: np.random.Generator | None = None
    training: bool = False
    passes: dict = field(default_factory=dict)
    constants: dict = field(default_factory=dict)
    blocks: dict = field(default_factory=dict)
    made: dict = field(default_factory=dict, repr=False)

    def constant(self, key, make):
        """The device array ``make()`` gave the first time ``key`` was asked for."""
        if key not in self.constants:
            self.constants[key] = make()
        return self.constants[key]


class Layer:
    """The base of every layer type: no parameters, the identity, free."""

    name: ClassVar[str]  # the word that names it in a layer list
    # Options a spec word may carry after a "+" (``dense10+bias``).
    options: ClassVar[tuple[str, ...]] = ()
    # Neither an activation nor a layer with parameters, as pooling (``init``'s look-ahead for
    # the activation that follows a layer passes over it).
    transparent: ClassVar[bool] = False
    # A relu: the layer with parameters before it is drawn with He initialisation.
    he_before: ClassVar[bool] = False
    # Takes each image's features flattened (a dense layer), as PyTorch needs told.
    flat_input: ClassVar[bool] = False
    # Images per chunk when a network with this layer is evaluated (None: no bound of its own).
    eval_chunk: ClassVar[int | None] = None
    param_names: ClassVar[tuple[str, ...]] = ()

    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    @classmethod
    def parse(cls, word: str) -> Layer:
        """The layer a spec word names: ``name``, then the numbers of ``from_numbers``, then the
        options (``conv32x5+same+bias``). A ValueError names what is wrong."""
        head, *opts = word.split("+")
        numbers = head[len(cls.name):]
        bad = [o for o in opts if o not in cls.options]
        if bad:
            allowed = ", ".join(f"+{o}" for o in cls.options) or "none"
            raise ValueError(f"{word!r}: {cls.name} takes no option +{bad[0]} (options: "
                             f"{allowed})")
        return cls.from_numbers(numbers, set(opts), word)

    @classmethod
    def from_numbers(cls, numbers: str, opts: set, word: str) -> Layer:
        if numbers:
            raise ValueError(f"{word!r}: {cls.name} takes no number")
        return cls()

    def spec(self) -> str:
        """The word that names this layer (``parse(spec())`` gives it back)."""
        return self.name

    def build(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Fit this layer to inputs of ``in_shape`` (per image): the shape of its output."""
        self.in_shape = self.out_shape = tuple(in_shape)
        return self.out_shape

    def init(self, rng: np.random.Generator, dtype, he: bool = False) -> list:
        return []

    def param_shapes(self) -> list[tuple[int, ...]]:
        return []

    def forward(self, params, x, xp, ctx: Context):
        return x, None

    def backward(self, params, saved, grad, xp, ctx: Context, need_input: bool = True):
        return [], grad

    def products(self, batch: int, need_input: bool = True) -> list[tuple[int, int, int]]:
        return []

    def workspace(self) -> int:
        """Elements per image of the largest scratch array a training step keeps (im2col's)."""
        return 0

    def torch(self, nn):
        return nn.Identity()


def numbers(text: str, count: int, word: str) -> list[int]:
    """``count`` positive integers joined by ``x`` (``32x5``), else a ValueError naming ``word``."""
    if not re.fullmatch(r"\d+(x\d+)*", text) or len(text.split("x")) != count:
        raise ValueError(f"{word!r}: expected {count} number(s) joined by 'x' after its name")
    values = [int(v) for v in text.split("x")]
    if min(values) < 1:
        raise ValueError(f"{word!r}: sizes must be at least 1")
    return values
