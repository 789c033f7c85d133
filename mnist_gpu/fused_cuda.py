"""The per-image pass as one CUDA kernel launch per segment (``kernels/fused_pass.cu``).

Done as array calls, every one of the 60,000 sequential images costs several kernel launches of a
few microseconds each, so the GPU loses to the CPU. Here one warp walks a whole segment of images
with the weights held on chip (see the kernel's own comment for the algorithm).

The backend hands this module its CuPy namespace and device; it imports no library itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

KERNEL_SOURCE = resources.files(__package__).joinpath("kernels/fused_pass.cu")
# --fmad=false: keep each multiply and add separately rounded, as the array path does, so the
# kernel's weights follow the array path's to within the rounding of a different summation order.
COMPILE_OPTIONS = ("--std=c++17", "--fmad=false")
WARP = 32
N_PIXELS, N_OUT = 784, 10


@dataclass(frozen=True)
class LitPixels:
    """The lit pixels of every image, on the device: image i's are ``indptr[i]:indptr[i + 1]``."""

    indptr: object  # int64 (n + 1,)
    indices: object  # int32 pixel numbers
    values: object  # the pixels' values, in the weights' dtype


class FusedCUDA:
    """The fused per-image pass for CuPy arrays on one device."""

    name = "cuda"

    def __init__(self, cupy, device):
        self.cp = cupy
        self.device = device
        self._module = None

    def _kernel(self, dtype):
        if self._module is None:
            self._module = self.cp.RawModule(code=KERNEL_SOURCE.read_text(),
                                             options=COMPILE_OPTIONS)
        kernel = self._module.get_function(f"per_image_pass_{np.dtype(dtype).name}")
        shared_bytes = N_PIXELS * N_OUT * np.dtype(dtype).itemsize
        # float64 weights (62,720 bytes) exceed the 48 KiB a block gets without opting in.
        kernel.max_dynamic_shared_size_bytes = shared_bytes
        return kernel, shared_bytes

    def prepare(self, X) -> LitPixels:
        cp = self.cp
        with self.device:
            lit = X != 0
            indptr = cp.zeros(X.shape[0] + 1, dtype=cp.int64)
            cp.cumsum(cp.sum(lit, axis=1), out=indptr[1:])
            _, columns = cp.nonzero(lit)  # row-major: grouped by image, in pixel order
            prepared = LitPixels(indptr, columns.astype(cp.int32), X[lit])
            self._kernel(X.dtype)  # compile now, not inside the first timed segment
        return prepared

    def run(self, W, lit: LitPixels, labels, alpha, start, stop, order=None):
        """Train ``W`` in place on the images at positions ``start:stop`` (of ``order`` if given).

        One launch; nothing is read back, so the call returns as soon as the launch is queued.
        """
        return self.run_models(W, lit, labels, [alpha], 1, start, stop, order)

    def run_models(self, W, lit: LitPixels, labels, alphas, batch_size, start, stop,
                   order=None):
        """Train models side by side, ``W`` (784, 10 M) in place, model m with ``alphas[m]``: one
        launch of M blocks, one model each. Per image only (``batch_size`` 1): the GPU's
        mini-batches are cuBLAS products."""
        cp = self.cp
        models = len(alphas)
        if batch_size != 1:
            raise ValueError("the fused CUDA pass trains per image only")
        if (W.shape != (N_PIXELS, N_OUT * models) or W.dtype != lit.values.dtype
                or not W.flags.c_contiguous):
            raise ValueError(f"the fused pass needs C-contiguous (784, {N_OUT * models}) weights "
                             "in the data's dtype")
        with self.device:
            # The kernel indexes the lists with these positions unchecked: an index out of range
            # would read (and write) other memory, so they are checked here, on the host.
            _check_positions(lit, labels, start, stop, order)
            if stop <= start:
                return W
            kernel, shared_bytes = self._kernel(W.dtype)
            use_order = order is not None
            order = order.astype(cp.int64, copy=False) if use_order else lit.indptr  # unread
            labels = labels.astype(cp.uint8, copy=False)
            rates = cp.asarray(np.asarray(alphas, dtype=np.float64).astype(W.dtype))
            kernel((models,), (WARP,),
                   (W, np.int64(N_OUT * models), rates, lit.indptr, lit.indices, lit.values,
                    labels, order, np.int32(use_order), np.int64(start), np.int64(stop)),
                   shared_mem=shared_bytes)
        return W


def _check_positions(lit: LitPixels, labels, start, stop, order) -> None:
    """Refuse positions, an order or labels that would send the kernel outside its arrays.

    With an order, its entries in ``start:stop`` are checked on the device and their range read
    back: two small reductions and synchronisations per launch, that is per checkpoint segment,
    where the trainer synchronises anyway. Written against any array library (the tests run it
    on NumPy arrays).
    """
    n_images = int(lit.indptr.shape[0]) - 1
    if labels.ndim != 1 or labels.shape[0] != n_images:
        raise ValueError(f"{labels.shape} labels for {n_images} images")
    positions = n_images if order is None else None
    if order is not None:
        if order.ndim != 1 or order.dtype.kind not in "iu":
            raise ValueError(f"the order must be a 1-d array of integers, not {order.dtype} "
                             f"of shape {order.shape}")
        positions = int(order.shape[0])
    if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))
            and 0 <= start <= positions and 0 <= stop <= positions):
        raise ValueError(f"positions {start}:{stop} outside 0:{positions}")
    if order is not None and stop > start:
        segment = order[start:stop]
        low, high = int(segment.min()), int(segment.max())
        if low < 0 or high >= n_images:
            raise ValueError(f"the order holds image {low if low < 0 else high}, outside "
                             f"0:{n_images}")
