"""The per-image pass as one CUDA kernel launch per segment (``kernels/fused_pass.cu``).

Done as array calls, every one of the 60,000 sequential images costs several kernel launches of a
few microseconds each, so the GPU loses to the CPU. Here one warp walks a whole segment of images
with the weights held on chip (see the kernel's own comment for the algorithm). A sweep launches a
block per model; ``launch_plan`` decides, from the device's figures and from how often the training
images light each pixel, which rows each block keeps on chip, so that as many blocks as possible
run at once (1,024 float32 models in one wave on an H200).

It works through the CuPy backend it is given (its library and device); it imports no
library itself.

No GPU has run it yet: it is checked on the CPU, compiled by g++ around an emulation of a warp
(tests/test_cuda_emulated.py), bit for bit against a model of its sums, but the NVRTC compile, the
shared-memory opt-in and real block concurrency are unmeasured. So it is not ``verified``:
``--kernel auto`` trains by CuPy's own kernels, and only an explicit ``--kernel fused`` runs it,
told so (``unverified``). A kernel that does not compile, shared memory the device refuses, or a
launch that fails is a ``KernelUnavailable`` naming why, found by ``prepare`` before any training
(it compiles the kernel and launches it once on one image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np

from ..data import N_PIXELS
from .errors import KernelUnavailable
from .lit import LitPixels

KERNEL_SOURCE = resources.files(__package__).joinpath("fused_pass.cu")
# --fmad=false: keep each multiply and add separately rounded, as the array path does, so the
# kernel's weights follow the array path's to within the rounding of a different summation order.
COMPILE_OPTIONS = ("--std=c++17", "--fmad=false")
WARP = 32
N_OUT = 10


# The rows left in global memory may carry at most this share of the lit pixels (the kernel reads
# and writes them there, a few hundred cycles each instead of a few dozen).
RARE_ROWS = 1e-4


@dataclass(frozen=True)
class LaunchPlan:
    """How a launch of ``models`` blocks uses the device's shared memory."""

    shared_rows: int  # the ranks whose rows live in shared memory
    shared_bytes: int  # per block
    blocks_per_sm: int  # blocks that fit a multiprocessor at once
    waves: int  # rounds of blocks the launch takes: ceil(models / (blocks_per_sm * SMs))


def launch_plan(models: int, itemsize: int, rank_counts, properties) -> LaunchPlan:
    """The fewest waves for ``models`` blocks, given the device's ``properties`` (CUDA's names).

    With w waves, each multiprocessor must hold ceil(models / (w * SMs)) blocks at once, which
    leaves each block its share of the multiprocessor's shared memory: the most often lit rows
    that fit there go on chip, the rest stay in global memory. The first w whose rows left out
    carry at most ``RARE_ROWS`` of the lit pixels wins; otherwise every lit row is on chip.
    """
    row_bytes = N_OUT * itemsize
    counts = np.asarray(rank_counts)
    lit_rows = int(np.count_nonzero(counts))
    total = max(int(counts.sum()), 1)
    carried = np.concatenate([[0], np.cumsum(counts)])  # lit pixels of the first r ranks
    sms = int(properties["multiProcessorCount"])
    per_sm = int(properties["sharedMemPerMultiprocessor"])
    reserved = int(properties.get("reservedSharedMemPerBlock", 0))
    per_block = int(properties["sharedMemPerBlockOptin"])
    most_blocks = int(properties.get("maxBlocksPerMultiProcessor", 32))
    all_rows = min(lit_rows, per_block // row_bytes)

    def plan(rows):
        shared = rows * row_bytes
        fit = max(1, min(most_blocks, per_sm // max(shared + reserved, 1)))
        return LaunchPlan(rows, shared, fit, -(-models // (fit * sms)))

    for waves in range(1, -(-models // sms) + 1):
        blocks = -(-models // (waves * sms))
        rows = min(all_rows, max(per_sm // blocks - reserved, 0) // row_bytes)
        if (total - carried[rows]) <= RARE_ROWS * total:
            return plan(rows)
    return plan(all_rows)


class FusedCUDA:
    """The fused per-image pass for CuPy arrays on one device."""

    name = "cuda"
    # Compiled and checked on the CPU (tests/test_cuda_emulated.py) but not yet measured on a
    # GPU: ``--kernel auto`` does not take it. bench/gpu_check.sh trains the tutorial by it and
    # by the array path and compares their weights: the evidence on which to set this.
    verified = False
    unverified = ("the fused CUDA kernel has not yet been verified on a GPU (only its emulation "
                  "on the CPU has been checked); to check it on this machine, run "
                  "`bash bench/gpu_check.sh` from a checkout of mnist-gpu, which trains by it and "
                  "by CuPy's own kernels and compares their weights")
    minibatch = False
    # It lists the lit pixels of the scaled images on its device, and keeps no cache of them.
    lists_pixels = False
    listing = None

    def __init__(self, backend):
        self.backend = backend
        self.cp = backend.cupy
        self._module = None
        self._properties = None
        self._launched = set()  # the dtypes whose kernel has been launched once

    def _errors(self):
        """How CuPy reports a kernel that does not compile (NVRTC's log, in a CompileException)
        or does not launch (the driver's and runtime's errors, RuntimeErrors, as is a CUDA
        library that cannot be loaded)."""
        return (self.cp.cuda.compiler.CompileException, RuntimeError)

    def _kernel(self, dtype):
        try:
            if self._module is None:
                self._module = self.cp.RawModule(code=KERNEL_SOURCE.read_text(),
                                                 options=COMPILE_OPTIONS)
            return self._module.get_function(f"per_image_pass_{np.dtype(dtype).name}")
        except self._errors() as err:
            raise KernelUnavailable(f"the fused CUDA kernel did not compile ({_why(err)}); "
                                    "kernel 'auto' trains without it") from None

    def prepare(self, X) -> LitPixels:
        cp = self.cp
        with self.backend.activate():
            lit = X != 0
            indptr = cp.zeros(X.shape[0] + 1, dtype=cp.int64)
            cp.cumsum(cp.sum(lit, axis=1), out=indptr[1:])
            _, columns = cp.nonzero(lit)  # row-major: grouped by image, in pixel order
            # Pixels ranked by how many images light them, ties by pixel number (784 counts,
            # ranked on the host); the lists name each pixel by its rank, their order unchanged
            # (so are the sums).
            counts = cp.asnumpy(cp.bincount(columns, minlength=N_PIXELS)).astype(np.int64)
            pixel_of_rank = np.argsort(-counts, kind="stable").astype(np.int32)
            rank_of_pixel = np.empty(N_PIXELS, dtype=np.int32)
            rank_of_pixel[pixel_of_rank] = np.arange(N_PIXELS, dtype=np.int32)
            prepared = LitPixels(indptr, cp.asarray(rank_of_pixel)[columns], X[lit], N_PIXELS,
                                 cp.asarray(pixel_of_rank), counts[pixel_of_rank])
            # Compiled and launched now, not inside the first timed segment, and not after a
            # run has begun: a kernel that cannot run fails here.
            self._kernel(X.dtype)
            if np.dtype(X.dtype) not in self._launched and X.shape[0] > 0:
                self._trial_launch(prepared, X.dtype)
        return prepared

    def _trial_launch(self, lit: LitPixels, dtype):
        """One launch on the first image with a model of zeros and a zero rate, waited for: the
        plan of one model, whose block keeps every lit row on chip, asks for the most shared
        memory any launch on these images asks for."""
        labels = self.cp.zeros(lit.indptr.shape[0] - 1, dtype=self.cp.uint8)
        W = self.cp.zeros((N_PIXELS, N_OUT), dtype=dtype)
        self.train(W, lit, labels, [0.0], 1, 0, 1)
        self._launched.add(np.dtype(dtype))

    def ready(self, lit: LitPixels, labels, dtype, batch_size=1, models=1):
        """Compile the kernel for ``dtype`` weights now, not inside the first timed segment, and
        launch it once (a kernel that cannot run fails here, before any training)."""
        with self.backend.activate():
            self._kernel(dtype)
            if np.dtype(dtype) not in self._launched and lit.indptr.shape[0] > 1:
                self._trial_launch(lit, dtype)

    def plan(self, models: int, dtype, lit: LitPixels) -> LaunchPlan:
        """The launch of ``models`` blocks of ``dtype`` weights on this device."""
        if self._properties is None:  # one query of the driver, not one per segment
            self._properties = self.cp.cuda.runtime.getDeviceProperties(self.backend.device_id)
        return launch_plan(models, np.dtype(dtype).itemsize, lit.rank_counts, self._properties)

    def launch_plan(self, models: int, dtype, lit: LitPixels) -> dict:
        """The launch plan of ``plan`` as a record, for a benchmark row."""
        return asdict(self.plan(models, dtype, lit))

    def train(self, W, lit: LitPixels, labels, alphas, batch_size, start, stop, order=None):
        """Train models side by side, ``W`` (784, 10 M) in place, model m with ``alphas[m]``,
        over positions ``start:stop`` (of ``order`` if given): one launch of M blocks, one model
        each (one model: one block). Per image only (``batch_size`` 1): the GPU's mini-batches
        are cuBLAS products. Returns when the launch is done (nothing is read back); a launch
        that fails raises ``KernelUnavailable``."""
        cp = self.cp
        models = len(alphas)
        if batch_size != 1:
            raise ValueError("the fused CUDA pass trains per image only")
        if (W.shape != (N_PIXELS, N_OUT * models) or W.dtype != lit.values.dtype
                or not W.flags.c_contiguous):
            raise ValueError(f"the fused pass needs C-contiguous (784, {N_OUT * models}) weights "
                             "in the data's dtype")
        with self.backend.activate():
            # The kernel indexes the lists with these positions unchecked: an index out of range
            # would read (and write) other memory, so they are checked here, on the host.
            check_positions(lit, labels, start, stop, order)
            if stop <= start:
                return W
            kernel = self._kernel(W.dtype)
            plan = self.plan(models, W.dtype, lit)
            try:
                # Past the 48 KiB a block gets without opting in (a float64 model's rows take
                # up to 62,720 bytes), and with the multiprocessors' memory given to shared
                # memory rather than to L1, so that plan.blocks_per_sm blocks fit at once.
                kernel.max_dynamic_shared_size_bytes = plan.shared_bytes
                kernel.preferred_shared_memory_carveout = 100
            except self._errors() as err:
                raise KernelUnavailable(
                    f"the device refused the fused CUDA kernel's {plan.shared_bytes:,} bytes of "
                    f"shared memory per block ({_why(err)}); kernel 'auto' trains without "
                    "it") from None
            use_order = order is not None
            order = order.astype(cp.int64, copy=False) if use_order else lit.indptr  # unread
            labels = labels.astype(cp.uint8, copy=False)
            rates = cp.asarray(np.asarray(alphas, dtype=np.float64).astype(W.dtype))
            try:
                kernel((models,), (WARP,),
                       (W, np.int64(N_OUT * models), rates, lit.pixel_of_rank,
                        np.int32(plan.shared_rows), lit.indptr, lit.indices, lit.values, labels,
                        order, np.int32(use_order), np.int64(start), np.int64(stop)),
                       shared_mem=plan.shared_bytes)
                # Waited for here, where the trainer's clock waits anyway, so that a launch
                # that fails on the device is reported as this kernel's failure, not as the
                # next call's.
                self.backend.synchronize()
            except self._errors() as err:
                raise KernelUnavailable(f"the fused CUDA kernel failed to launch ({_why(err)}); "
                                        "kernel 'auto' trains without it") from None
        return W


def check_positions(lit: LitPixels, labels, start, stop, order) -> None:
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


def _why(err: Exception) -> str:
    """A CuPy error in one line: NVRTC's first error line for a compile log, else the first line
    of the message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or [type(err).__name__])[0]
    return line if len(line) <= 300 else line[:297] + "..."
