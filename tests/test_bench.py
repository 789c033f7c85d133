"""The benchmark's smoke run: its JSON schema and its plot (never its speed)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import REPO, backend_or_skip

from mnist_gpu import cli
from mnist_gpu.bench import cnn, report, timing, work
from mnist_gpu.bench import rows as bench_rows
from mnist_gpu.training import to_device_data

ROW_KEYS = {"backend", "dtype", "kind", "name", "batch_size", "images", "seconds", "flops",
            "bytes", "median_s", "min_s", "max_s", "images_per_second"}


def test_quick_bench_writes_a_complete_report(mnist_dir_path, tmp_path, capsys):
    report_path, plot_path = tmp_path / "bench.json", tmp_path / "bench.png"
    # The startup rows run fresh processes for seconds: their record is tested on its own
    # (tests/test_startup.py).
    status = cli.main(["bench", "--backend", "numpy", "--quick", "--repeats", "2",
                       "--batch-sizes", "1,32,1024", "--data-dir", str(mnist_dir_path),
                       "--offline", "--json", str(report_path), "--plot", str(plot_path),
                       "--no-startup", "--no-contention"])
    assert status == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "naive per-image loop" in out
    report = json.loads(report_path.read_text())
    assert set(report) >= {"machine", "settings", "limits", "rows", "peak_host_memory_bytes",
                           "startup"}
    assert report["startup"] == []
    assert report["machine"]["cpu_threads"] >= 1 and report["machine"]["numpy"]
    limit = report["limits"]["numpy float32"]
    # Rates of a real machine, in the units named (a slip of 1e9 or 1e3 would leave these).
    assert 0.1 < limit["copy_gbytes_per_s"] < 1e4 and 1 < limit["gemm_gflops"] < 1e6
    assert limit["copy_bytes"] == 2 * 64 * 2**20 and limit["gemm_side"] == 1024  # --quick
    names = {r["name"] for r in report["rows"]}
    assert {"per-image fused", "per-image array", "mini-batch 1", "mini-batch 32",
            "mini-batch 1024", "mini-batch 1 fused", "mini-batch 32 fused",
            "mini-batch 1024 fused", "inference array", "inference fused",
            "lit-pixel listing (training set)", "lit-pixel listing (test set)",
            "naive per-image loop",
            "single numpy matmul"} <= names
    # The fast recipe, trained once to the end of its epoch by each, its accuracy beside.
    fast = {r["name"]: r for r in report["rows"] if "fast recipe" in r["name"]}
    assert set(fast) == {"fast recipe, one epoch", "torch fast recipe, one epoch"}
    assert all(r["images"] == 2560 and 0.5 < r["accuracy"] <= 1 for r in fast.values())
    # On as many threads each: ours the shards of the rule, PyTorch's set to as many.
    shards = report["machine"]["threads"]["shards"]
    assert [r["threads"] for r in fast.values()] == [shards, shards]
    assert re.search(r"numpy float32: the fast recipe is \d+\.\d\dx the speed of PyTorch's "
                     r"\(.*; \d+ threads? against \d+ threads?\)", out)
    for row in report["rows"]:
        assert ROW_KEYS <= set(row)
        assert len(row["seconds"]) == (1 if row in fast.values() else 2)
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert 0 < row["fraction_of_gemm_peak"] and 0 < row["fraction_of_bandwidth"]
        # Every row, peers included, is scored against the CPU it ran on (no GPU here).
        assert row["limit"] == limit["device"] == "numpy on cpu"
        if row["name"].endswith("fused") or "fused " in row["name"]:
            # Counted as the work done on the lit pixels, with the dense figure beside it.
            assert row["flops"] < row["dense_flops"]
    sweeps = {r["name"]: r for r in report["rows"] if r["kind"] == "sweep"}
    assert {"sweep of 1 model, per-image fused", "sweep of 32 models, per-image fused",
            "sweep of 8 models, mini-batch 1024 array"} <= set(sweeps)
    assert sweeps["sweep of 32 models, per-image fused"]["models"] == 32
    assert "numpy float32: sweep of 32 models, per-image fused costs" in out
    assert "numpy float32: the CNN's matrix products take" in out
    png = plot_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    image = np.asarray(Image.open(plot_path).convert("L"))
    assert image.shape == (960, 1400) and image.std() > 10  # four panels drawn, not blank


def test_bench_rows_on_pytorch_tensors_beside_pytorchs_own(request, mnist_dir_path, tmp_path,
                                                          capsys):
    """``--backend torch``: our rows on PyTorch's tensors, each scored against the limits that
    PyTorch measures on its device, beside the peer rows of PyTorch's own loop."""
    torch = backend_or_skip(request, "torch")
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "--backend", "torch", "--quick", "--repeats", "1", "--batch-sizes",
                     "1,1024", "--no-sweeps", "--no-cnn", "--no-contention", "--no-fast",
                     "--data-dir",
                     str(mnist_dir_path), "--offline", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    limit = report["limits"][f"{torch.label} float32"]
    assert limit["device"].startswith(f"{torch.label} on ") and limit["gemm_gflops"] > 0
    ours = [r for r in report["rows"] if r["kind"] != "peer"]
    assert {r["name"] for r in ours} == {"per-image array", "mini-batch 1", "mini-batch 1024",
                                         "inference array"}
    assert all(r["backend"] == torch.label and r["limit"] == limit["device"] for r in ours)
    assert {r["name"] for r in report["rows"] if r["kind"] == "peer"} >= {
        "torch per-image", "torch mini-batch 1024", "torch inference"}
    assert f"{torch.label} float32: mini-batch 1024 is" in out and "torch mini-batch 1024" in out


def test_work_is_counted_exactly():
    # One epoch of 100 images in batches of 32: 4 steps (the last of 4 images).
    flops, traffic = work.train_work(100, 32, 4)
    assert flops == 4 * 100 * 7840 + 100 * 10 + 2 * 4 * 7840
    assert traffic == (100 * 794 + 2 * 7840) * 4
    assert work.inference_work(10, 8) == (2 * 10 * 7840, (10 * 784 + 7840) * 8)


def test_fused_work_is_counted_on_the_lit_pixels():
    # 3 images with 10 lit pixels in all, per image: the arithmetic on the lit pixels only, and
    # the bytes of their lists (value + int32 index each, an int64 pointer per image + 1, a uint8
    # label per image) and of the weights, read and written once.
    flops, traffic = work.train_work(3, 1, 4, lit=10)
    assert flops == 4 * 10 * 10 + 3 * 10 + 2 * 10 * 10
    assert traffic == 10 * (4 + 4) + 4 * 8 + 3 + 2 * 7840 * 4
    # Mini-batches: the update still covers every row of weights, once per step.
    flops, _ = work.train_work(100, 32, 4, lit=1000)
    assert flops == 4 * 1000 * 10 + 100 * 10 + 2 * 4 * 7840
    assert work.inference_work(10, 8, lit=50) == (2 * 50 * 10, 50 * 12 + 11 * 8 + 7840 * 8)
    assert work.listing_work(10, 4, lit=50) == (7840, 10 * 784 * 4 + 50 * 8 + 11 * 8)
    # Skipping the unlit pixels is never credited as work done.
    assert work.train_work(100, 1, 4, lit=100 * 150)[1] < work.train_work(100, 1, 4)[1]


def _report_with(row, limit):
    return {"machine": {"cpu": "cpu", "cpu_threads": 2, "numpy": "2", "backends": [],
                        "last_level_cache_bytes": 32 * 2**20},
            "limits": {"numpy float32": limit}, "rows": [row], "peak_host_memory_bytes": 0}


def test_a_row_above_a_measured_limit_is_marked_and_explained():
    limit = {"device": "numpy on cpu", "copy_gbytes_per_s": 10.0, "gemm_gflops": 100.0}
    fast = timing.Row("numpy", "float32", "inference", "inference fused", None, 10_000,
                     [0.001], *work.inference_work(10_000, 4, lit=1_500_000))
    row = fast.to_json(limit)
    assert row["fraction_of_bandwidth"] > 1 and row["limit"] == "numpy on cpu"
    table = report.format_table(_report_with(row, limit))
    assert "%*" in table
    assert "reads 11.6 MiB per run, within the 32 MiB last-level cache" in table
    slow = timing.Row("numpy", "float32", "inference", "inference fused", None, 10_000,
                     [1.0], *work.inference_work(10_000, 4, lit=1_500_000)).to_json(limit)
    assert slow["fraction_of_bandwidth"] < 1
    assert "*" not in report.format_table(_report_with(slow, limit))


def test_bench_code_is_backend_agnostic(backend, mnist):
    """Every benchmarked path runs on the stand-in device too (no NumPy-only call)."""
    small = type(mnist)(mnist.train_images[:300], mnist.train_labels[:300],
                        mnist.test_images[:200], mnist.test_labels[:200])
    data = to_device_data(backend, small, "float32")
    rows = bench_rows.bench_backend(backend, data, (1, 64), repeats=1, per_image_images=50)
    assert {r.name for r in rows} >= {"per-image array", "mini-batch 64", "inference array"}
    assert all(len(r.seconds) == 1 and r.images_per_second == r.images / r.seconds[0]
               for r in rows)
    limit = timing.measure_limit(backend, "float32", repeats=1, quick=True)
    assert 1 < limit["gemm_gflops"] < 1e6
    cnn_rows = {r.name: r for r in cnn.bench_cnn(backend, data, repeats=1, images=64, batch=32)}
    assert set(cnn_rows) == {"cnn training", "cnn matrix products of training", "cnn inference"}
    from mnist_gpu.model import presets

    flops = presets.network("cnn").training_flops(32, 64)
    assert cnn_rows["cnn training"].flops == cnn_rows["cnn matrix products of training"].flops
    assert cnn_rows["cnn training"].flops == pytest.approx(flops)
    assert all(len(r.seconds) == 1 for r in cnn_rows.values())


def test_ratios_pair_ours_with_the_peers():
    rows = [
        {"backend": "numpy", "dtype": "float32", "kind": "mini-batch", "name": "mini-batch 1024",
         "images": 100, "median_s": 1.0},
        {"backend": "naive numpy", "dtype": "float32", "kind": "peer",
         "name": "naive mini-batch 1024", "images": 100, "median_s": 2.0},
    ]
    lines = report.ratios({"settings": {"dtypes": ["float32"]}, "rows": rows})
    assert lines == ["numpy float32: mini-batch 1024 is 2.00x the speed of naive mini-batch 1024"]


def test_ratios_cost_a_single_run_with_its_listing():
    def row(backend, kind, name, seconds, images=10):
        return {"backend": backend, "dtype": "float32", "kind": kind, "name": name,
                "images": images, "median_s": seconds}

    rows = [row("numpy", "inference", "inference fused", 1.0),
            row("numpy", "listing", "lit-pixel listing (test set)", 3.0),
            row("naive numpy", "peer", "single numpy matmul", 2.0),
            # per image: 0.01 s fused, 0.03 s listing, 0.08 s PyTorch
            row("numpy", "mini-batch", "mini-batch 1024 fused", 1.0, images=100),
            row("numpy", "listing", "lit-pixel listing (training set)", 6.0, images=200),
            row("torch cpu", "peer", "torch mini-batch 1024", 8.0, images=100)]
    lines = report.ratios({"settings": {"dtypes": ["float32"]}, "rows": rows})
    assert lines == [
        "numpy float32: mini-batch 1024 fused is 8.00x the speed of torch mini-batch 1024",
        "numpy float32: inference fused is 2.00x the speed of single numpy matmul",
        "numpy float32: inference fused with its lit-pixel listing (test set) is 0.50x the "
        "speed of single numpy matmul",
        "numpy float32: mini-batch 1024 fused with its lit-pixel listing (training set) is "
        "2.00x the speed of torch mini-batch 1024",
    ]


@pytest.mark.parametrize("args", [["--batch-sizes", "0"], ["--backend", "tpu"],
                                  ["--dtype", "float16"], ["--repeats", "0"]])
def test_bad_bench_arguments(args, capsys):
    status = None
    try:
        status = cli.main(["bench", "--offline", *args])
    except SystemExit as exit:
        status = exit.code
    assert status == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bench_plot_gives_each_kind_of_row_its_own_panel():
    from mnist_gpu.bench.plot import plot

    results = REPO / "bench" / "results"
    report = json.loads((results / "cpu-2core-cnn-2026-11-29.json").read_text())
    sweeps = json.loads((results / "cpu-2core-sweeps-2026-11-28.json").read_text())
    report["rows"] += [r for r in sweeps["rows"] if r["kind"] == "sweep"]
    one = next(r for r in report["rows"] if r["name"] == "mini-batch 1024")
    report["rows"].append({**one, "name": "mini-batch 1", "batch_size": 1,
                           "images_per_second": 123_456.0})  # beside the per-image loop
    panels = {ax.get_title(): ax for ax in plot(report).axes if ax.get_title()}
    training = panels["training the tutorial's network (784-10)"]
    assert training.get_ylabel() == "training images/s"
    cnn_rates = {r["images_per_second"] for r in report["rows"] if "cnn" in r["name"]}
    sweep_rates = {r["images_per_second"] for r in report["rows"] if r["kind"] == "sweep"}
    for line in training.get_lines():
        xs, ys = line.get_xdata(), line.get_ydata()
        assert len(set(xs)) == len(xs)  # no vertical stacks of other rows at one batch size
        assert 128 not in xs and not (set(ys) & (cnn_rates | sweep_rates))
    per_image = {r["images_per_second"] for r in report["rows"] if "per-image" in r["name"]
                 and r["kind"] != "sweep"}
    stars = {float(y) for points in training.collections for _, y in points.get_offsets()}
    assert stars == per_image
    sweep = panels["sweeps: many tutorial models at once"]
    assert "model-images/s" in sweep.get_ylabel() and "models" in sweep.get_xlabel()
    assert {x for line in sweep.get_lines() for x in line.get_xdata()} == {1, 8, 32, 128, 1024}
    cnn = next(ax for title, ax in panels.items() if title.startswith("the CNN"))
    assert "batches of 128" in cnn.get_title() and len(cnn.patches) == len(cnn_rates)
    inference = next(ax for title, ax in panels.items() if title.startswith("inference"))
    assert inference.get_xlabel().startswith("images/s")
