"""What a careful user hit, each reproduced (issue 26): a CNN's weight map, huge seed ranges and
Ctrl-C while they are parsed, the benchmark's picture, ink cut off by predict's centring,
misleading messages and JSON keys, one loader for every weights file, figures that name their
machine, and the small annoyances (no "wrote" line, the first layer saved twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from dataclasses import asdict

import numpy as np
import pytest
from conftest import REPO

from mnist_gpu import cli
from mnist_gpu.io.weights import load_arrays, save_weights
from mnist_gpu.model import network
from mnist_gpu.model.architecture import Architecture


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _data(mnist_dir_path):
    return ["--data-dir", str(mnist_dir_path), "--offline"]


# --------------------------------------------------------------------------- 3. CNN weight map


def _saved_cnn(path, channels=4):
    arch = Architecture(conv=(channels,), conv_size=5, bias=True, loss="ce")
    arrays = network.params_to_arrays(network.init_params(arch.network(), 0, "float32"))
    save_weights(path, arrays.pop("W0"), {"config": {"arch": asdict(arch)}}, **arrays)
    return path


def test_a_cnn_weight_map_draws_its_first_kernels(mnist_dir_path, tmp_path, capsys):
    weights = _saved_cnn(tmp_path / "cnn.npz")
    picture, confusion = tmp_path / "kernels.png", tmp_path / "confusion.png"
    status, out, err = _run(capsys, "eval", "--weights", weights, "--backend", "numpy",
                            "--weight-map", picture, "--plot", confusion,
                            *_data(mnist_dir_path))
    assert status == 0 and "Traceback" not in err, err
    assert f"wrote {picture} (the first convolution's 4 kernels)" in out
    assert f"wrote {confusion} (the confusion matrix)" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_conv_kernels_are_drawn_as_small_images():
    from mnist_gpu.viz.figures import plot_conv_kernels

    W = np.arange(25 * 6, dtype=np.float32).reshape(25, 6)
    figure = plot_conv_kernels(W, 5)
    shown = [ax.images[0].get_array() for ax in figure.axes if ax.images]
    assert len(shown) == 6 and all(image.shape == (5, 5) for image in shown)
    np.testing.assert_array_equal(shown[2], W[:, 2].reshape(5, 5))  # rows in (dy, dx) order


# --------------------------------------------------------------------------- 5. seed ranges


def test_a_huge_seed_range_is_parsed_in_bounded_memory_and_linear_time():
    # In a process of its own, under 1.5 GiB of address space: a list of the hundred million
    # seeds (4 GB and more) cannot be built there, and 100,000 seeds listed one by one, checked
    # for repeats pair by pair, would take minutes, not the timeout.
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
        from mnist_gpu.sweep import grid, parse_seeds
        seeds = parse_seeds("0-99999999")
        members = grid((0.001, 0.01, 0.1), seeds)
        assert len(members) == 300_000_000 and members[-1].seed == 99_999_999
        assert members[100_000_000].alpha == 0.01 and members[100_000_005].seed == 5
        assert len(parse_seeds(",".join(map(str, range(100_000))))) == 100_000
        try:
            parse_seeds("0-99999999,5")
        except ValueError as err:
            print(err)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "seed 5 is listed twice"


def test_an_absurd_grid_is_refused_before_any_work(tmp_path, capsys):
    # No data: a command that started working would fail on that instead.
    status, out, err = _run(capsys, "sweep", "--seed", "0-99999999", "--backend", "numpy",
                            "--data-dir", tmp_path, "--offline")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "a grid of 100,000,000 models" in err
    assert "more than the" in err and "sweep fewer models" in err


def test_ctrl_c_while_the_flags_are_parsed_is_an_interruption(monkeypatch, capsys):
    import importlib

    def interrupted(text):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("mnist_gpu.sweep.grid"), "parse_seeds",
                        interrupted)
    status, _, err = _run(capsys, "sweep", "--seed", "0-99999999")
    assert status == 130 and err == "mnist-gpu: interrupted\n"


def test_ctrl_c_during_a_large_sweep(mnist_dir_path):
    env = {**os.environ, "MNIST_GPU_DATA": str(mnist_dir_path), "MNIST_GPU_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu.cli", "sweep", "--seed", "0-9999", "--limit", "100",
         "--chunk-models", "5", "--backend", "numpy", "--quiet"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # past start-up, inside the 2,000 chunks
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "mnist-gpu: interrupted" and "Traceback" not in err


def test_a_sweep_fills_its_weights_chunk_by_chunk(numpy_backend, mnist):
    from mnist_gpu.sweep import grid, run_sweep
    from mnist_gpu.training import TrainConfig, to_device_data

    data = to_device_data(numpy_backend, mnist, "float32", limit=50)
    members = grid((0.01,), range(6))
    config = TrainConfig(checkpoints=(0,))
    chunked = run_sweep(data, members, config, chunk_models=4)
    whole = run_sweep(data, members, config)
    assert chunked.chunks == 2 and np.array_equal(chunked.weights, whole.weights)


# --------------------------------------------------------------------------- 6. bench --plot


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


# --------------------------------------------------------------------------- 7. centring


def _shape(kind):
    """Dark ink on white, 200x200: a top-heavy 7, a left-heavy L, a heavy lower right."""
    ink = np.zeros((200, 200), bool)
    if kind == "top-heavy 7":
        ink[20:70, 30:170] = True  # a thick bar
        for row in range(70, 190):  # and a thin stem
            column = 165 - (row - 70) * 80 // 120
            ink[row, column - 3:column + 3] = True
    elif kind == "left-heavy L":
        ink[20:180, 20:90] = True
        ink[170:180, 90:180] = True
    else:  # a thin corner, and most of the ink in a blob at the other end
        ink[20, 20:180] = True
        ink[20:180, 20] = True
        ink[120:180, 120:180] = True
    return np.where(ink, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["top-heavy 7", "left-heavy L", "heavy lower right"])
def test_centring_never_cuts_ink_off(kind, tmp_path, monkeypatch):
    from PIL import Image

    from mnist_gpu.viz import digits

    path = tmp_path / "digit.png"
    Image.fromarray(_shape(kind)).save(path)
    image = digits.mnist_style(path)
    with monkeypatch.context() as unshifted:
        unshifted.setattr(digits, "_shift", lambda canvas, dy, dx: canvas)
        whole = digits.mnist_style(path)
    assert image.sum() == whole.sum()  # every bit of ink is still in the frame
    rows, columns = np.nonzero(image)
    assert max(np.ptp(rows), np.ptp(columns)) + 1 == 20  # the 20x20 box, whole
    # Moved towards the centre of mass as far as the frame allows.
    assert abs((image.sum(axis=1) * np.arange(28)).sum() / image.sum() - 14) < abs(
        (whole.sum(axis=1) * np.arange(28)).sum() / whole.sum() - 14) + 1e-9


# --------------------------------------------------------------------------- 8. messages


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_says_a_fifo_and_dev_zero_are_not_regular_files(tmp_path, capsys):
    weights = tmp_path / "w.npz"
    save_weights(weights, np.zeros((784, 10)))
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    for path, kind in [(fifo, "a FIFO"), ("/dev/zero", "a character device")]:
        if not os.path.exists(path):
            continue
        status, _, err = _run(capsys, "predict", path, "--weights", weights)
        assert status == 2
        assert err == (f"mnist-gpu: error: {path}: not a regular file ({kind}); give a "
                       "picture's file\n")


def test_forced_chunks_are_not_called_a_device_limit(mnist_dir_path, capsys):
    status, _, err = _run(capsys, "sweep", "--seed", "0-2", "--limit", "100", "--chunk-models",
                          "1", "--backend", "numpy", "--quiet", *_data(mnist_dir_path))
    assert status == 0
    assert "do not fit" not in err
    assert "training the grid's 3 models in 3 chunks of up to 1, one after another " \
           "(--chunk-models)" in err


def test_a_resumed_sweep_counts_only_what_it_trained(numpy_backend, mnist, capsys):
    from mnist_gpu.cli.tables import print_sweep
    from mnist_gpu.sweep import cluster, grid, run_sweep
    from mnist_gpu.training import TrainConfig, to_device_data

    data = to_device_data(numpy_backend, mnist, "float32", limit=100)
    members = grid((0.01,), range(4))
    config = TrainConfig(data_seed=0)
    lines = {}
    for chunk in ([0, 1], [2, 3]):  # two chunks, as two tasks would train them
        result = run_sweep(data, [members[i] for i in chunk], config)
        for index, model, weights in zip(chunk, result.models, result.weights):
            lines[index] = cluster._model_line("f", chunk[0], index, model, weights, result)
    lines[2]["seconds"] = lines[3]["seconds"] = 7.0  # this run's chunk
    lines[0]["seconds"] = lines[1]["seconds"] = 1000.0  # the earlier run's
    merged = cluster._merge(members, lines, asdict(config), "float32", earlier={0, 1})
    assert merged.models_trained == 2 and merged.resumed == 2 and merged.seconds == 7.0
    print_sweep(merged, 1, 4)
    out = capsys.readouterr().out
    assert "this run trained 2 of the 4 models x 100 images in 7.000 s" in out
    assert "of the others, 2 came from the results file of an earlier run" in out
    document = merged.to_json()
    assert document["models_trained"] == 2 and document["models_resumed"] == 2


def test_eval_of_a_diverged_sweep_model_says_so(mnist_dir_path, tmp_path, capsys):
    saved = tmp_path / "sweep.npz"
    status, _, _ = _run(capsys, "sweep", "--alpha", "0.01,5", "--seed", "3", "--limit", "300",
                        "--backend", "numpy", "--quiet", "--save", saved, *_data(mnist_dir_path))
    assert status == 0
    common = ["eval", "--weights", saved, "--backend", "numpy", *_data(mnist_dir_path)]
    status, out, _ = _run(capsys, *common, "--model", "1")
    assert status == 0
    assert "model 1 of the sweep: alpha 5.0, seed 3; it DIVERGED at step" in out
    status, out, _ = _run(capsys, *common, "--model", "1", "--json")
    assert json.loads(out)["model"]["diverged"].startswith("at step")
    status, out, _ = _run(capsys, *common, "--model", "0")
    assert "model 0 of the sweep: alpha 0.01, seed 3\n" in out and "DIVERGED" not in out


def test_a_deeper_networks_json_names_its_loss_and_has_the_tutorials_keys(run):
    status, out, _ = run("train", "--backend", "numpy", "--hidden", "8", "--bias", "--loss",
                         "ce", "--batch-size", "100", "--limit", "500", "--json")
    assert status == 0
    deep = json.loads(out)
    assert all(set(point) == {"images_seen", "accuracy", "cross_entropy"}
               for point in deep["curve"])
    status, out, _ = run("train", "--backend", "numpy", "--limit", "100", "--json")
    tutorial = json.loads(out)
    assert set(tutorial["curve"][0]) == {"images_seen", "accuracy", "mse"}
    assert set(tutorial) <= set(deep)  # evaluation, prepare_seconds and the rest
    assert deep["evaluation"] == "array" and deep["prepare_seconds"] == 0.0
    status, out, _ = run("sweep", "--backend", "numpy", "--hidden", "8", "--bias", "--loss",
                         "ce", "--batch-size", "100", "--limit", "500", "--json")
    swept = json.loads(out)["models"][0]
    assert set(swept["curve"][0]) == set(swept["best"]) == {"images_seen", "accuracy",
                                                            "cross_entropy"}


# --------------------------------------------------------------------------- 9. one loader


@pytest.mark.parametrize("content", ["int64", "no weights", "nan"])
def test_init_and_eval_refuse_the_same_files_in_the_same_words(run, mnist_dir_path, tmp_path,
                                                              capsys, content):
    if content == "int64":
        path = tmp_path / "w.npy"
        np.save(path, np.ones((784, 10), dtype=np.int64))
    elif content == "no weights":
        path = tmp_path / "w.npz"
        np.savez(path, W=np.ones((784, 10)))
    else:
        path = tmp_path / "w.npz"
        save_weights(path, np.full((784, 10), np.nan))
    status, _, init_error = run("train", "--backend", "numpy", "--init", str(path))
    assert status == 2 and init_error.startswith(f"mnist-gpu: error: --init {path}: ")
    status, _, eval_error = _run(capsys, "eval", "--weights", path, *_data(mnist_dir_path))
    assert status == 2 and eval_error.startswith(f"mnist-gpu: error: --weights {path}: ")
    assert init_error.split(f"{path}: ", 1)[1] == eval_error.split(f"{path}: ", 1)[1]
    assert "W0" not in init_error and "layer 0" not in init_error
    expected = {"int64": "weights must be floating-point numbers, not int64",
                "no weights": "no array named 'weights' (found: W)",
                "nan": "weights contains NaN or infinite values"}[content]
    assert init_error.endswith(f": {expected}\n")


def test_init_refuses_a_deeper_network(run, tmp_path):
    path = _saved_cnn(tmp_path / "cnn.npz")
    status, _, err = run("train", "--backend", "numpy", "--init", str(path))
    assert status == 2 and "holds a conv4x5+bias,pool2,relu,dense10+bias" in err
    assert "--init takes the tutorial's" in err


# --------------------------------------------------------------------------- 10. machines


def test_measured_figures_name_their_machine(capsys):
    from mnist_gpu.model.presets import MEASURED_ON, PRESETS

    with pytest.raises(SystemExit):
        cli.main(["train", "--preset", "list"])
    listed = capsys.readouterr().out
    assert listed.startswith("measured on a 2-core AMD EPYC with AVX-512") and MEASURED_ON in listed
    assert "98.24%" in PRESETS["mlp"].measured and "AVX2 machine 98.20%" in PRESETS["mlp"].measured
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert f"a CNN: {PRESETS['cnn'].accuracy} on a 2-core AVX-512 CPU" in help_text
    assert PRESETS["cnn"].accuracy == "99.38%" and "99.2%" not in help_text


# --------------------------------------------------------------------------- 11. small ones


def test_a_deeper_network_stores_its_first_layer_once(run, tmp_path):
    path = tmp_path / "mlp.npz"
    status, _, _ = run("train", "--backend", "numpy", "--hidden", "8", "--bias", "--batch-size",
                       "100", "--limit", "200", "--save", str(path))
    assert status == 0
    arrays, _ = load_arrays(path)
    assert sorted(arrays) == ["W1", "b0", "b1", "weights"]


def test_a_file_in_the_old_layout_still_loads(mnist_dir_path, tmp_path, capsys):
    arch = Architecture(hidden=(8,), bias=True)
    params = network.init_params(arch.network(), 0, "float32")
    arrays = network.params_to_arrays(params)  # W0 as well as weights: written before
    path = tmp_path / "old.npz"
    save_weights(path, arrays["W0"], {"config": {"arch": asdict(arch)}}, **arrays)
    status, out, err = _run(capsys, "eval", "--weights", path, "--backend", "numpy",
                            *_data(mnist_dir_path))
    assert status == 0, err
    assert "dense8+bias,relu,dense10+bias; squared error" in out


def test_predict_show_is_scaled_up_to_be_seen(tmp_path, capsys):
    from PIL import Image

    weights = tmp_path / "w.npz"
    save_weights(weights, np.zeros((784, 10)))
    picture, shown = tmp_path / "one.png", tmp_path / "seen.png"
    canvas = np.full((60, 60), 255, np.uint8)
    canvas[10:50, 27:33] = 0
    Image.fromarray(canvas).save(picture)
    status, out, _ = _run(capsys, "predict", picture, "--weights", weights, "--show", shown)
    assert status == 0
    assert Image.open(shown).size == (280, 280)
    assert "each pixel drawn 10x10: 280x280" in out


def test_a_lazy_grid_is_small_however_many_members_it_has():
    from mnist_gpu.sweep import grid, parse_seeds

    tracemalloc.start()
    members = grid((0.01,), parse_seeds("0-99999999"))
    chunk = [members[i] for i in range(5_000_000, 5_000_100)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20 and chunk[0].seed == 5_000_000
