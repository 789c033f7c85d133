"""Throughput benchmarks: where the time goes, against the peers and the machine's own limit.

For each backend and dtype, after a warm-up, over ``repeats`` timed runs (the device synchronised
before every clock read; CUDA events on CuPy), median and min-max of:

* training images/s: per-image (the fused kernel and the array path), and mini-batches of each
  batch size over one epoch (the array path, and the fused pass where the backend has one);
* inference images/s over the 10,000 test images: the dense product and argmax, and the fused
  pass over the lit pixels where the backend has one;
* the fused passes' one-off listing of the lit pixels, of the training and of the test images,
  as rows of their own, so that a single run can be costed with it;
* the time to a result (``startup.py``): ``mnist-gpu train`` from process start to exit, warm and
  cold, beside the import of NumPy and Numba in the same run, with the peak resident memory;
* a shared machine (``contention.py``): ``train --preset mlp`` and ``cnn-fast`` in fresh
  processes, quiet and beside a busy process the benchmark starts and stops, and the ratio;
* the peers, in the same run: the naive baseline (the same algorithm as a plain NumPy loop, as a
  user first writes it) and PyTorch running the same update when it is installed;
* each device's limit, measured the same way on the device the row ran on: memory bandwidth (a
  large copy) and matrix-multiply peak (a large GEMM), by NumPy for the CPU's rows (ours, the
  naive loop's and PyTorch's on the CPU), by CuPy for ours on a GPU and by PyTorch for its own
  CUDA rows; against it each configuration's flops and compulsory bytes per run give the fraction
  of the roofline reached. Both are counted as the work the row does: the dense rows from the
  shapes, the fused rows from the lit pixels they visit and the lists they read.

All data is on the device before the first clock read; each configuration starts from the same
host-initialised weights, and its repeats go on training them (the work per run is the same).
"""

from __future__ import annotations

import time

from ..backend import get_backend
from ..training import to_device_data
from . import BATCH_SIZES, SWEEP_MODELS
from .cnn import bench_cnn
from .contention import bench_contention, format_contention
from .fast import bench_fast, fast_ratios
from .peers import bench_naive_numpy, bench_torch, bench_torch_cnn, bench_torch_fast
from .rows import bench_backend, bench_sweeps
from .startup import bench_startup, format_startup
from .timing import describe_machine, measure_limit, peak_host_memory_bytes


def run_benchmark(backends, mnist, dtypes, batch_sizes=BATCH_SIZES, repeats=5, quick=False,
                  peers=True, log=None, sweep_models=SWEEP_MODELS, cnn=True, startup=None,
                  contention=None, fast=True) -> dict:
    """Every row for every backend and dtype, with the peers and the limits; a JSON-ready dict.
    ``sweep_models``: the sizes of the sweep rows (none: no sweep rows). ``startup``: (data
    directory, offline) for the startup rows of each backend, or None for none.
    ``contention``: (data directory, offline, --threads or None) for the shared-machine rows of
    the first backend that computes on the CPU, or None for none. ``fast``: the ``fast``
    preset's recipe for one epoch (of 2,560 images when ``quick``), with PyTorch's."""
    per_image_images = 2000 if quick else 60000
    fast_images = 2560 if quick else len(mnist.train_images)
    if quick:
        batch_sizes = tuple(b for b in batch_sizes if b <= 1024) or batch_sizes[:1]
    started = time.perf_counter()
    # First, while this process is idle: no BLAS threads left spinning by a previous row.
    startups = [bench_startup(b.name, *startup, repeats, quick, log) for b in backends
                ] if startup else []
    on_cpu = [b for b in backends if b.runs_on_cpu]
    shared = bench_contention(on_cpu[0].name, *contention[:2], quick, contention[2], log
                              ) if contention and on_cpu else []
    rows, limits = [], {}
    for backend in backends:
        for dtype in dtypes:
            data = to_device_data(backend, mnist, dtype, limit=5000 if quick else None)
            limits[f"{backend.label} {dtype}"] = limit = measure_limit(backend, dtype, repeats,
                                                                      quick)
            rows += [(r, limit) for r in bench_backend(backend, data, batch_sizes, repeats,
                                                       per_image_images, log)]
            # A quick run on the CPU stops at 32 models; a GPU's sweeps are cheap, and the large
            # ones are what the GPU check must measure.
            models = tuple(m for m in sweep_models
                           if not (quick and backend.runs_on_cpu and m > 32))
            if models:
                rows += [(r, limit) for r in bench_sweeps(backend, data, models, repeats,
                                                          per_image_images, log)]
            if cnn:
                rows += [(r, limit) for r in bench_cnn(backend, data, repeats,
                                                       256 if quick else 1024, log=log)]
            del data
            if fast:
                rows += [(r, limit) for r in bench_fast(backend, mnist, dtype, fast_images, log)]
    if peers:
        small = mnist if not quick else type(mnist)(mnist.train_images[:5000],
                                                    mnist.train_labels[:5000],
                                                    mnist.test_images, mnist.test_labels)
        gpu = any(not b.runs_on_cpu for b in backends)
        for dtype in dtypes:
            # Every row is scored against the device it ran on: the peers on the CPU against
            # the CPU's limit (measured here if no NumPy rows were asked for).
            key = f"numpy {dtype}"
            if key not in limits:
                limits[key] = measure_limit(get_backend("numpy"), dtype, repeats, quick)
            cpu_limit = limits[key]
            rows += [(r, cpu_limit) for r in bench_naive_numpy(small, dtype, batch_sizes, repeats,
                                                                per_image_images, log)]
            torch_rows, torch_limit = bench_torch(small, dtype, batch_sizes, repeats,
                                                  per_image_images, "cuda" if gpu else "cpu",
                                                  quick, log)
            if torch_limit is not None:
                limits[f"torch cuda {dtype}"] = torch_limit
            rows += [(r, torch_limit or cpu_limit) for r in torch_rows]
            if cnn:
                rows += [(r, torch_limit or cpu_limit) for r in bench_torch_cnn(
                    mnist, dtype, repeats, 256 if quick else 1024,
                    device="cuda" if gpu else "cpu", log=log)]
            if fast:
                rows += [(r, torch_limit or cpu_limit) for r in bench_torch_fast(
                    mnist, dtype, fast_images, "cuda" if gpu else "cpu", log)]
    return {
        "machine": describe_machine(backends),
        "settings": {"repeats": repeats, "quick": quick, "dtypes": list(dtypes),
                     "batch_sizes": list(batch_sizes), "per_image_images": per_image_images,
                     "sweep_models": list(sweep_models)},
        "limits": limits,
        "rows": [r.to_json(limit) for r, limit in rows],
        "startup": startups,
        "contention": shared,
        "peak_host_memory_bytes": peak_host_memory_bytes(),
        "seconds": time.perf_counter() - started,
    }


def format_table(report: dict) -> str:
    lines = [f"machine: {report['machine']['cpu']}, {report['machine']['cpu_threads']} threads, "
             f"NumPy {report['machine']['numpy']}"]
    for backend in report["machine"]["backends"]:
        if backend.get("gpu"):
            lines.append(f"GPU: {backend['gpu']}, " + ", ".join(
                f"{label} {backend[key]}" for key, label in
                (("cupy", "CuPy"), ("torch", "PyTorch"), ("cuda_runtime", "CUDA runtime"),
                 ("rocm", "ROCm"), ("cuda_driver", "driver")) if backend.get(key)))
    for key, limit in report["limits"].items():
        lines.append(f"limit {key}: copy {limit['copy_gbytes_per_s']:.1f} GB/s, "
                     f"GEMM {limit['gemm_gflops']:.1f} GFLOP/s")
    width = max([26] + [len(r["name"]) + 2 for r in report["rows"]])
    header = (f"{'backend':<14}{'dtype':<9}{'configuration':<{width}}{'images/s':>13}"
              f"{'median s':>11}{'min-max s':>19}{'GFLOP/s':>9}{'%GEMM':>8}{'%BW':>8}")
    lines += [header, "-" * len(header)]
    above = []
    for r in report["rows"]:
        spread = f"{r['min_s']:.4f}-{r['max_s']:.4f}"
        extra = ""
        if "gflops" in r:
            marks = ["*" if r[f] > 1 else " "
                     for f in ("fraction_of_gemm_peak", "fraction_of_bandwidth")]
            extra = (f"{r['gflops']:>9.2f}{100 * r['fraction_of_gemm_peak']:>7.1f}%"
                     f"{marks[0]}{100 * r['fraction_of_bandwidth']:>6.1f}%{marks[1]}")
            if "*" in marks:
                above.append(r)
        lines.append(f"{r['backend']:<14}{r['dtype']:<9}{r['name']:<{width}}"
                     f"{r['images_per_second']:>13,.0f}{r['median_s']:>11.4f}{spread:>19}{extra}")
    lines += above_the_limit_notes(above, report["machine"].get("last_level_cache_bytes"))
    peers = {r["backend"] for r in report["rows"] if r["kind"] == "peer"}
    if peers and not any(p.startswith("torch") for p in peers):
        lines.append("no PyTorch peer: PyTorch is not installed")
    lines.append(f"peak host memory: {report['peak_host_memory_bytes'] / 2**20:.0f} MiB")
    for record in report.get("startup", ()):
        lines += format_startup(record)
    lines += format_contention(report.get("contention", ()))
    for r in report["rows"]:
        if r.get("device_memory_rise") is not None:
            lines.append(f"  {r['backend']} {r['dtype']} {r['name']}: device memory rose "
                         f"{r['device_memory_rise'] / 2**20:.1f} MiB over the resident set")
    return "\n".join(lines)


def above_the_limit_notes(rows, cache_bytes: int | None) -> list[str]:
    """Why a row marked * passed a measured limit. The work is counted as done (never credited
    with skipped work), so the only way past the copy limit, measured by streaming hundreds of
    MiB through main memory, is a working set that stays in the caches between repeats."""
    notes = []
    for r in rows:
        megabytes = r["bytes"] / 2**20
        if r["fraction_of_bandwidth"] > 1:
            where = (f"within the {cache_bytes / 2**20:.0f} MiB last-level cache"
                     if cache_bytes and r["bytes"] <= cache_bytes else "partly in the caches")
            notes.append(f"* {r['backend']} {r['dtype']} {r['name']}: reads {megabytes:.1f} MiB "
                         f"per run, {where}, so it runs faster than the copy limit, which "
                         "streams through main memory")
        if r["fraction_of_gemm_peak"] > 1:
            notes.append(f"* {r['backend']} {r['dtype']} {r['name']}: above the GEMM rate "
                         "measured on this device, which was then measured low (noise): rerun")
    return notes


# Our rows against the peers', side by side (ours, the peer's backend, the peer's row).
PEER_PAIRS = (
    ("per-image fused", "naive numpy", "naive per-image loop"),
    ("per-image array", "naive numpy", "naive per-image loop"),
    ("mini-batch 1024", "naive numpy", "naive mini-batch 1024"),
    ("mini-batch 1024", "torch", "torch mini-batch 1024"),
    ("mini-batch 1024 fused", "naive numpy", "naive mini-batch 1024"),
    ("mini-batch 1024 fused", "torch", "torch mini-batch 1024"),
    ("inference fused", "naive numpy", "single numpy matmul"),
    ("inference array", "naive numpy", "single numpy matmul"),
    ("inference array", "torch", "torch inference"),
)
# A single run on new images also pays for listing their lit pixels: (ours, its listing, the
# peer's backend, the peer's row).
LISTED_PAIRS = (
    ("inference fused", "lit-pixel listing (test set)", "naive numpy", "single numpy matmul"),
    ("mini-batch 1024 fused", "lit-pixel listing (training set)", "naive numpy",
     "naive mini-batch 1024"),
    ("mini-batch 1024 fused", "lit-pixel listing (training set)", "torch",
     "torch mini-batch 1024"),
)


def ratios(report: dict) -> list[str]:
    """Side-by-side ratios (same run) for the targets in docs/performance.md."""
    find = _finder(report)
    out = [f"startup {r['backend']}: warm mnist-gpu train takes {r['warm_to_import']:.2f}x the "
           f"time of importing NumPy and Numba (cold: {r['cold_to_import']:.2f}x)"
           for r in report.get("startup", ())]
    out += [f"a shared machine: {r['name']} takes {r['ratio']:.2f}x its quiet time"
            for r in report.get("contention", ())]
    for dtype in report["settings"]["dtypes"]:
        for backend in sorted({r["backend"] for r in report["rows"] if r["kind"] != "peer"}):
            for ours, peer_backend, peer in PEER_PAIRS:
                a, b = find(backend, dtype, ours), find(peer_backend, dtype, peer)
                if a and b:
                    out.append(f"{backend} {dtype}: {ours} is {b / a:.2f}x the speed of {peer}")
            out += _sweep_ratios(report, find, backend, dtype)
            out += _cnn_ratios(find, backend, dtype)
            out += fast_ratios(report, find, backend, dtype)
            for ours, listing, peer_backend, peer in LISTED_PAIRS:
                a, cost, b = (find(backend, dtype, ours), find(backend, dtype, listing),
                              find(peer_backend, dtype, peer))
                if a and cost and b:
                    out.append(f"{backend} {dtype}: {ours} with its {listing} is "
                               f"{b / (a + cost):.2f}x the speed of {peer}")
    return out


def _finder(report: dict):
    """``find(backend prefix, dtype, row name)``: that row's seconds per image, or None."""
    def find(backend_prefix, dtype, name):
        for r in report["rows"]:
            if (r["backend"].startswith(backend_prefix) and r["dtype"] == dtype
                    and r["name"] == name):
                return r["median_s"] / r["images"]
        return None
    return find


def _sweep_ratios(report: dict, find, backend: str, dtype: str) -> list[str]:
    """What M models side by side cost against one model trained alone by the same path (its
    own row, else the sweep of one), per image."""
    out = []
    sweeps = [r for r in report["rows"] if r["kind"] == "sweep"
              and r["backend"] == backend and r["dtype"] == dtype]
    for r in sweeps:
        kernel, batch = r["name"].rsplit(" ", 1)[1], r["batch_size"]
        alone = {("fused", True): "per-image fused", ("array", True): "per-image array",
                 ("fused", False): f"mini-batch {batch} fused",
                 ("array", False): f"mini-batch {batch}"}[kernel, batch == 1]
        one = find(backend, dtype, alone) or next(
            (o["median_s"] / o["images"] for o in sweeps if o["models"] == 1
             and o["batch_size"] == batch and o["name"].endswith(f" {kernel}")), None)
        if r["models"] > 1 and one:
            cost = r["models"] * (r["median_s"] / r["images"]) / one
            line = (f"{backend} {dtype}: {r['name']} costs {cost:.2f}x the time of one model "
                    f"({alone})")
            if cost < 1:  # M models by one path do one model's work and more: never less
                line += (": less than one model's own work, which cannot be; the timings were "
                         "noise (other work on this machine?): rerun")
            out.append(line)
    return out


def _cnn_ratios(find, backend: str, dtype: str) -> list[str]:
    """The CNN against PyTorch's same model, and its matrix products' share of its time."""
    out = []
    cnn_train = find(backend, dtype, "cnn training")
    products = find(backend, dtype, "cnn matrix products of training")
    torch_train = find("torch", dtype, "torch cnn training")
    if cnn_train and products:
        out.append(f"{backend} {dtype}: the CNN's matrix products take "
                   f"{products / cnn_train:.0%} of its training time")
    if cnn_train and torch_train:
        out.append(f"{backend} {dtype}: cnn training is {torch_train / cnn_train:.2f}x the speed "
                   "of torch cnn training")
    cnn_infer, torch_infer = (find(backend, dtype, "cnn inference"),
                              find("torch", dtype, "torch cnn inference"))
    if cnn_infer and torch_infer:
        out.append(f"{backend} {dtype}: cnn inference is {torch_infer / cnn_infer:.2f}x the speed "
                   "of torch cnn inference")
    return out
