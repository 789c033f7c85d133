"""The compiled kernels: library-specific fast paths, found by the backend's name.

The math is written once against ``xp`` (``mnist_gpu/model``); where a library can do the
tutorial's loop far faster as a compiled pass over each image's lit pixels, that pass lives here,
registered under the name of the backend whose arrays it takes:

* ``numpy``: the CPU passes (``cpu.py``, Numba): per image, mini-batches, models side by side,
  and inference over the lit pixels;
* ``cupy``: the CUDA pass (``cuda.py`` and ``fused_pass.cu``): per image, one block per model.

A training pass has ``prepare(X)`` (the lit pixels of a set of images, once per set: of the
uint8 pixels when ``lists_pixels``, else of the scaled images; ``listing`` names what it lists,
for the data cache, or is None when its lists are not kept), ``ready(lit, labels, dtype,
batch_size, models)`` (compile what ``train`` will run, before the clock starts),
``train(W, lit, labels, alphas, batch_size, start, stop, order)`` (in place, one model or
several side by side), ``launch_plan(models, dtype, lit)`` (how a launch lays out on the device,
or None), ``verified`` (whether it has been measured on its hardware; ``--kernel auto`` takes only
such passes, and an unverified one says in ``unverified`` what a user who asks for it should
know) and ``minibatch`` (whether it trains mini-batches). A pass that cannot run (it does not
compile, or its launch fails) raises ``KernelUnavailable``. An inference pass has
``prepare``, ``ready_inference(lit, labels, dtype)``, ``classify(W, lit)`` and
``evaluate(W, lit, labels)``. A pass is imported only when
asked for, so that importing mnist-gpu imports no Numba.

A layer's compiled pass (``conv_pass``: ``cpu_conv.py`` for ``numpy``) has the array path's
functions for a convolution and its pooling at their signatures, and the fused convolution,
pooling and relu; a backend without one gets None, and its layers take the array path. A run of
layers that a backend passes as one (``layer_blocks``: a convolution, its pooling and relu on
``numpy``) is a block of ``model.layer.Context.blocks``.
"""

from __future__ import annotations

from ..backend import apply_to_numba
from .errors import KernelUnavailable

__all__ = ["BLOCKS", "CONV", "INFERENCE", "TRAINING", "KernelUnavailable", "conv_pass",
           "inference_pass", "layer_blocks", "layer_passes", "training_pass"]


def _cpu_passes(backend):
    try:
        from .cpu import FusedCPU
    except ImportError as err:  # numba is missing or broken
        raise KernelUnavailable(f"the fused CPU loops need Numba ({err})") from None
    apply_to_numba()  # the command's thread count, now that Numba is loaded
    return FusedCPU()


def _cuda_pass(backend):
    from .cuda import FusedCUDA

    return FusedCUDA(backend)


TRAINING = {"numpy": _cpu_passes, "cupy": _cuda_pass}
INFERENCE = {"numpy": _cpu_passes}


def training_pass(backend, batch_size: int = 1):
    """The compiled training pass for ``backend``'s arrays and ``batch_size``, or
    ``KernelUnavailable`` saying why there is none."""
    make = TRAINING.get(backend.name)
    if make is None:
        raise KernelUnavailable(f"no fused per-image kernel for the {backend.name} backend"
                                if batch_size == 1 else
                                f"no fused mini-batch pass for the {backend.name} backend")
    kernel = make(backend)
    if batch_size > 1 and not kernel.minibatch:
        raise KernelUnavailable(f"no fused mini-batch pass for the {backend.name} backend")
    return kernel


def inference_pass(backend):
    """The compiled inference over lit pixels for ``backend``'s arrays, or ``KernelUnavailable``
    (it exists only where it beats the dense product: on the CPU, which that product leaves
    bound by reading pixels)."""
    make = INFERENCE.get(backend.name)
    if make is None:
        raise KernelUnavailable(f"no fused inference for the {backend.name} backend")
    return make(backend)


def _cpu_conv(backend):
    try:
        from .cpu_conv import ConvPassCPU
    except ImportError:  # numba is missing or broken: the array path stands in
        return None
    return ConvPassCPU()


CONV = {"numpy": _cpu_conv}


def conv_pass(backend):
    """A new compiled pass for one convolutional layer on ``backend``'s arrays (it keeps that
    layer's buffers), or None where the backend has none."""
    make = CONV.get(backend.name)
    return make(backend) if make else None


# The layers whose passes ``conv_pass`` gives at the array path's signatures.
CONV_LAYERS = ("conv", "pool")


def layer_passes(backend, layer_names, dtype: str) -> dict:
    """The compiled passes of a network's layers on ``backend``'s arrays, by layer name, as a
    ``model.layer.Context`` takes them (``{}``: every layer on the array path), their loops
    ready for ``dtype`` before any clock starts. Only the per-operation functions are given,
    which keep no buffers: a training and an evaluation context may share them. Nothing is
    imported for a network without such layers."""
    wanted = [name for name in CONV_LAYERS if name in set(layer_names)]
    found = conv_pass(backend) if wanted else None
    if found is None:
        return {}
    found.ready(dtype)
    return {name: found for name in wanted}


def _cpu_conv_block(backend):
    try:
        from .cpu_conv import ConvBlockCPU
    except ImportError:  # numba is missing or broken: the layers run one by one
        return None
    return ConvBlockCPU


# The runs of layers a backend passes as one, by the run's layer names.
BLOCKS = {"numpy": {("conv", "pool", "relu"): _cpu_conv_block}}


def layer_blocks(backend, layer_names) -> dict:
    """The blocks of ``backend`` for the runs of layers in ``layer_names`` (``{}``: every layer
    on its own), as ``model.layer.Context`` takes them: each a class made from a run's layers.
    Their loops are those of ``layer_passes``, which readies them."""
    names, found = list(layer_names), {}
    for run, make in BLOCKS.get(backend.name, {}).items():
        present = any(tuple(names[i:i + len(run)]) == run for i in range(len(names)))
        block = make(backend) if present else None
        if block is not None:
            found[run] = block
    return found
