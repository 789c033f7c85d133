"""What a network is: its layers, their shapes and what they cost, with no arithmetic on arrays.

``Architecture`` describes one model (convolutions, dense layers, activation, bias, dropout,
loss); the tutorial's network is its default, ``Architecture()``. The flop count of a training
pass lives here beside the shapes it is counted from, so that the benchmark reads it rather
than deriving it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import IMAGE_SIDE
from .layers import ConvShape
from .tutorial import N_INPUTS, N_OUTPUTS

ACTIVATIONS = ("relu", "sigmoid", "tanh")
LOSSES = ("mse", "ce")
SCHEDULES = ("constant", "step", "cosine")


PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Architecture:
    """One model description: convolution layers (each ``conv[i]`` output channels, k x k with
    ``conv_size`` k, then relu and 2x2 max pooling), then dense layers (``hidden``, then the ten
    outputs) with ``activation`` between them, biases or not, dropout of rate ``dropout`` after
    the convolutions and after each hidden dense layer while training, and the loss."""

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
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}")
        if any(h < 1 for h in self.hidden) or any(c < 1 for c in self.conv):
            raise ValueError("layer sizes must be at least 1")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}")
        if self.conv_size < 1 or (self.padding == "same" and self.conv_size % 2 == 0):
            raise ValueError("the kernel size must be at least 1, and odd for 'same' padding")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), not {self.dropout}")
        if self.conv:
            self.conv_shapes()  # raises if the image shrinks to nothing

    def conv_shapes(self):
        """Each convolution's ``ConvShape``, the image pooled 2x2 after each."""
        height = width = IMAGE_SIDE
        channels, shapes = 1, []
        pad = (self.conv_size - 1) // 2 if self.padding == "same" else 0
        for filters in self.conv:
            shape = ConvShape(height, width, channels, self.conv_size, pad)
            height, width, channels = shape.out_height // 2, shape.out_width // 2, filters
            if height < 1 or width < 1:
                raise ValueError(f"{len(self.conv)} convolutions of {self.conv_size}x"
                                 f"{self.conv_size} with pooling leave no image")
            shapes.append(shape)
        return shapes

    @classmethod
    def from_json(cls, described: dict) -> Architecture:
        """From ``asdict(arch)`` as saved in a weights file's metadata (older files: no conv)."""
        return cls(tuple(described["hidden"]), described["activation"], bool(described["bias"]),
                   described["loss"], tuple(described.get("conv", ())),
                   int(described.get("conv_size", 5)), described.get("padding", "valid"),
                   float(described.get("dropout", 0.0)))

    def layer_shapes(self) -> list[tuple[tuple[int, int], int]]:
        """Each layer's (weights shape, bias length): the convolutions' kernel matrices, then
        the dense layers."""
        shapes = [((s.k * s.k * s.channels, f), f)
                  for s, f in zip(self.conv_shapes() if self.conv else [], self.conv)]
        sizes = self.sizes
        return shapes + [((a, b), b) for a, b in zip(sizes[:-1], sizes[1:])]

    @property
    def features(self) -> int:
        """What the dense layers take: the pixels, or the last pooled feature map, flattened."""
        if not self.conv:
            return N_INPUTS
        last = self.conv_shapes()[-1]
        return (last.out_height // 2) * (last.out_width // 2) * self.conv[-1]

    @property
    def sizes(self) -> tuple[int, ...]:
        """The dense layers' sizes, input first."""
        return (self.features, *self.hidden, N_OUTPUTS)

    @property
    def is_tutorial(self) -> bool:
        return (not self.hidden and not self.bias and self.loss == "mse" and not self.conv
                and not self.dropout)

    def describe(self) -> str:
        layers = "-".join(map(str, self.sizes))
        if self.conv:
            convs = "-".join(f"conv{f}" for f in self.conv)
            layers = (f"28x28-{convs} ({self.conv_size}x{self.conv_size} {self.padding}, relu, "
                      f"2x2 max-pool)-{layers}")
        parts = [layers]
        if self.hidden:
            parts.append(self.activation)
        parts.append("bias" if self.bias else "no bias")
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        parts.append("softmax cross-entropy" if self.loss == "ce" else "squared error")
        return ", ".join(parts)


def conv_workspace_bytes(arch: Architecture, batch: int, itemsize: int) -> int:
    """The largest im2col patches of a training step: each convolution's forward patches (kept
    for the backward pass) and the largest patch gradients of the backward pass (those of every
    convolution but the first, whose input needs no gradient), for ``batch`` images."""
    if not arch.conv:
        return 0
    sizes = [s.out_height * s.out_width * s.k * s.k * s.channels for s in arch.conv_shapes()]
    return (sum(sizes) + max(sizes[1:], default=0)) * batch * itemsize



def training_products(arch: Architecture, batch: int, images: int):
    """The (m, k, n) shapes of the matrix products of one training pass over ``images`` in
    batches of ``batch``, with how often each runs: per convolution its forward product, its
    kernels' gradient and (but the first) its patches' gradient; per dense layer the same
    three."""
    steps = -(-images // batch)
    products = []
    for i, (shape, filters) in enumerate(zip(arch.conv_shapes() if arch.conv else [],
                                             arch.conv)):
        rows = batch * shape.out_height * shape.out_width
        patch = shape.k * shape.k * shape.channels
        products += [((rows, patch, filters), steps), ((patch, rows, filters), steps)]
        if i > 0:  # the patches' gradient, which col2im adds back into the input's
            products.append(((rows, filters, patch), steps))
    sizes = arch.sizes
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        products += [((batch, fan_in, fan_out), steps), ((fan_in, batch, fan_out), steps),
                     ((batch, fan_out, fan_in), steps)]
    return products


def training_flops(arch: Architecture, batch: int, images: int) -> float:
    """The matrix products' arithmetic of one training pass of ``arch`` over ``images``."""
    return sum(2.0 * m * k * n * count
               for (m, k, n), count in training_products(arch, batch, images))
