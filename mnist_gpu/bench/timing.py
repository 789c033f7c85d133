"""Timing and the machine's limits: every figure after a warm-up, between synchronisations of the
device, over repeats; the limits (copy bandwidth, GEMM rate) measured the same way on the device
a row ran on."""

from __future__ import annotations

import glob
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..backend import Backend, cpu_model, thread_record


@dataclass
class Row:
    """One measured configuration."""

    backend: str
    dtype: str
    kind: str  # "per-image", "mini-batch", "inference", "listing", "sweep", "peer"
    name: str
    batch_size: int | None
    images: int  # per timed run
    seconds: list[float] = field(repr=False)
    flops: float = 0.0  # per timed run, the arithmetic the row does
    bytes: float = 0.0  # compulsory traffic per timed run, of the data the row reads and writes
    dense_flops: float | None = None  # a fused row: what the dense algorithm would have done
    device_memory_rise: int | None = None  # bytes the device pool grew beyond the resident set
    models: int = 1  # a sweep's row: models side by side, ``images`` counting model-images
    launch: dict | None = None  # the CUDA pass's launch plan (kernels.cuda.LaunchPlan), if any
    accuracy: float | None = None  # a row that trains to the end: its final test accuracy
    threads: int | None = None  # a CPU row's threads, where it says (the fast rows)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def images_per_second(self) -> float:
        return self.images / self.median if self.images else 0.0

    def to_json(self, limit=None) -> dict:
        out = asdict(self)
        out.update(median_s=self.median, min_s=min(self.seconds), max_s=max(self.seconds),
                   images_per_second=self.images_per_second)
        if self.dense_flops is not None:
            out["dense_equivalent_gflops"] = self.dense_flops / self.median / 1e9
        if limit and self.images and (self.flops or self.bytes):  # work counted: a roofline
            gflops = self.flops / self.median / 1e9
            gbytes = self.bytes / self.median / 1e9
            out.update(limit=limit["device"], gflops=gflops, gbytes_per_s=gbytes,
                       fraction_of_gemm_peak=gflops / limit["gemm_gflops"],
                       fraction_of_bandwidth=gbytes / limit["copy_gbytes_per_s"])
        return out



# --------------------------------------------------------------------------- timing


# The shortest warm-up. Besides compilation and caches, it outlasts what the previous row leaves
# running: OpenBLAS's threads spin for a while after a call, waiting for more work, and take the
# cores from the next row's threads (Numba's parallel listing of lit pixels ran at half speed
# for ~60 ms after the mini-batch rows here).
WARMUP_SECONDS = 0.2


def time_repeats(backend: Backend, run, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of ``run()`` for each of ``repeats`` timed calls, after at least ``warmup``
    untimed ones and ``WARMUP_SECONDS``."""
    began = time.perf_counter()
    calls = 0
    while calls < warmup or time.perf_counter() - began < WARMUP_SECONDS:
        run()
        backend.synchronize()
        calls += 1
    seconds = []
    for _ in range(repeats):
        with backend.stopwatch() as clock:
            run()
        seconds.append(clock["seconds"])
    return seconds


# --------------------------------------------------------------------------- the machine's limit


def measure_limit(backend: Backend, dtype: str, repeats: int, quick: bool) -> dict:
    """Copy bandwidth (bytes read + written per second) and GEMM rate, on this backend's device."""
    xp = backend.xp
    n_bytes, side = limit_sizes(quick)
    with backend.activate():
        src = backend.to_device(np.ones(n_bytes // 4, dtype=np.float32))
        copy = time_repeats(backend, lambda: xp.astype(src, src.dtype, copy=True), repeats)
        a = backend.to_device(np.random.default_rng(0).random((side, side), dtype=np.dtype(dtype)))
        gemm = time_repeats(backend, lambda: a @ a, repeats)
    device = backend.describe().get("gpu") or "cpu"
    return limit_record(f"{backend.label} on {device}", n_bytes, copy, side, gemm)


def limit_sizes(quick: bool):
    """(bytes copied, side of the square GEMM): far larger than any cache in the full run."""
    return (64 if quick else 512) * 2**20, (1024 if quick else 2048)


def limit_record(device: str, n_bytes: int, copy_seconds, side: int, gemm_seconds) -> dict:
    return {
        "device": device,
        "copy_bytes": 2 * n_bytes,
        "copy_gbytes_per_s": 2 * n_bytes / statistics.median(copy_seconds) / 1e9,
        "gemm_side": side,
        "gemm_gflops": 2 * side**3 / statistics.median(gemm_seconds) / 1e9,
    }


def describe_machine(backends) -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_threads": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "last_level_cache_bytes": _last_level_cache_bytes(),
        "backends": [b.describe() for b in backends],
        "threads": thread_record(),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "threading_layer", "architecture")}
                        for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    return info


def _last_level_cache_bytes() -> int | None:
    """The largest CPU cache Linux reports for CPU 0 (sysfs), or None elsewhere."""
    sizes = []
    for size in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            text = open(size).read().strip().upper()
        except OSError:
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        if text[-1:] in units and text[:-1].isdigit():
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes) if sizes else None


def peak_host_memory_bytes() -> int:
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024

