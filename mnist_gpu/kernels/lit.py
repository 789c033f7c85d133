"""The lit pixels of a set of images, as the fused passes read them (CSR lists)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LitPixels:
    """Image i's lit pixels are entries ``indptr[i]:indptr[i + 1]`` of ``indices`` (the pixels,
    in pixel order) and ``values`` (theirs, in the weights' dtype; for the CPU passes also their
    uint8 pixels, which the passes scale as they read them), on the pass's device.

    The CUDA pass names each pixel by its rank in how often the images light it (0: the most
    often): then ``pixel_of_rank`` maps a rank back to its pixel and ``rank_counts`` (host) says
    how many images light the pixel of each rank."""

    indptr: object  # int64 (n + 1,)
    indices: object  # int16 (the CPU passes) or int32 (the CUDA pass: ranks)
    values: object
    n_pixels: int  # pixels per image: the rows the weights must have
    pixel_of_rank: object = None
    rank_counts: np.ndarray | None = None
