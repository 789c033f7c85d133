"""Sweeps: every model of a stack is its own `train` run, on every backend and compute path; a
model's neighbours never change it; a diverging model is isolated; chunks change nothing; bad
grids are one line and status 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from conftest import data_flags, kernel_params, REPO, run_cli

from mnist_gpu import cli
from mnist_gpu.model import tutorial
from mnist_gpu.sweep import (
    Member, bytes_per_model, grid, parse_alphas, parse_seeds, plan_chunks, run_sweep,
)
from mnist_gpu.training import TrainConfig, to_device_data, train, train_models

ALPHAS, SEEDS = (0.003, 0.01), (0, 5)


def cpu_fused_stack(configs):
    """The CPU's fused stack passes (CUDA's one-block-per-model pass has its GPU tests)."""
    return [p for p in kernel_params(configs) if p.values[0] == "numpy"]
CHECKPOINTS = (0, 100, 400)


def _small(mnist):
    return type(mnist)(mnist.train_images[:400], mnist.train_labels[:400],
                       mnist.test_images[:300], mnist.test_labels[:300])


def _tolerance(dtype):
    # float64: the 1e-9; float32: the parity suite's relative 1e-5 (tests/test_parity.py).
    return {"float64": dict(rtol=0, atol=1e-9), "float32": dict(rtol=1e-5, atol=1e-6)}[dtype]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("backend, kernel, batch_size",
                         kernel_params([("array", 1), ("array", 32), ("fused", 1),
                                        ("fused", 32)]), indirect=["backend"])
def test_each_model_equals_its_own_train_run(backend, mnist, dtype, batch_size, kernel):
    config = TrainConfig(batch_size=batch_size, epochs=2, shuffle=True, data_seed=3,
                         checkpoints=CHECKPOINTS + (800,), kernel=kernel)
    data = to_device_data(backend, _small(mnist), dtype)
    result = run_sweep(data, grid(ALPHAS, SEEDS), config)
    assert result.kernel == kernel and len(result.models) == 4
    for index, model in enumerate(result.models):
        alone = train(data, replace(config, alpha=model.alpha, seed=model.seed))
        np.testing.assert_allclose(result.weights[index], alone.weights, **_tolerance(dtype))
        assert [c.images_seen for c in model.curve] == [c.images_seen for c in alone.curve]
        np.testing.assert_allclose([c.accuracy for c in model.curve],
                                   [c.accuracy for c in alone.curve], atol=2 / 300)


def test_fused_per_image_models_are_their_own_runs_bit_for_bit(numpy_backend, mnist):
    data = to_device_data(numpy_backend, _small(mnist), "float32")
    config = TrainConfig(checkpoints=CHECKPOINTS, kernel="fused")
    result = run_sweep(data, grid((0.001, 0.003, 0.01), (0, 1, 2)), config)
    for index, model in enumerate(result.models):
        alone = train(data, replace(config, alpha=model.alpha, seed=model.seed))
        assert np.array_equal(result.weights[index], alone.weights)
        assert [c.accuracy for c in model.curve] == [c.accuracy for c in alone.curve]


@pytest.mark.parametrize("backend, kernel, batch_size",
                         kernel_params([("array", 1), ("array", 50)])
                         + cpu_fused_stack([("fused", 1), ("fused", 50)]),
                         indirect=["backend"])
def test_a_models_neighbours_never_change_it(backend, mnist, batch_size, kernel):
    data = to_device_data(backend, _small(mnist), "float32")
    config = TrainConfig(batch_size=batch_size, checkpoints=CHECKPOINTS, kernel=kernel)
    first = run_sweep(data, [Member(0.01, 0), Member(0.003, 1), Member(0.001, 2)], config)
    second = run_sweep(data, [Member(0.01, 0), Member(0.02, 1), Member(0.001, 2)], config)
    for index in (0, 2):
        assert np.array_equal(first.weights[index], second.weights[index])
    assert not np.array_equal(first.weights[1], second.weights[1])


@pytest.mark.parametrize("backend, kernel, batch_size",
                         kernel_params([("array", 1)]) + cpu_fused_stack([("fused", 1)]),
                         indirect=["backend"])
def test_a_diverging_model_is_isolated(backend, mnist, kernel, batch_size):
    data = to_device_data(backend, _small(mnist), "float32")
    config = TrainConfig(checkpoints=CHECKPOINTS, kernel=kernel)
    sane = run_sweep(data, [Member(0.01, 0), Member(0.003, 1), Member(0.001, 2)], config)
    wild = run_sweep(data, [Member(0.01, 0), Member(5.0, 1), Member(0.001, 2)], config)
    bad = wild.models[1]
    assert bad.diverged and bad.diverged.startswith("at step ") and bad.final_accuracy is None
    step = int(bad.diverged.split()[2].replace(",", ""))
    assert 0 < step <= 400
    # Frozen at its last finite step; the others exactly as without it, curves included.
    assert np.all(np.isfinite(wild.weights[1]))
    for index in (0, 2):
        assert np.array_equal(sane.weights[index], wild.weights[index])
        assert sane.models[index].curve == wild.models[index].curve
    # The same model alone is a diverged `train` run.
    from mnist_gpu.training import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=f"at step {step:,} "):
        train(data, replace(config, alpha=5.0, seed=1))


def _per_image_loop(mnist, alpha, seed, images, dtype):
    """The tutorial's loop in plain NumPy: the weights after ``images`` images."""
    W = tutorial.init_weights(seed, dtype)
    X = (mnist.train_images[:images].reshape(images, -1) / 255).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        for x, label in zip(X, mnist.train_labels[:images]):
            delta = x @ W - np.eye(10, dtype=dtype)[label]
            W -= W.dtype.type(alpha) * np.outer(x, delta)
    return W


@pytest.mark.parametrize("kernel", ["array", "fused"])
def test_a_model_whose_mse_explodes_is_diverged_and_frozen_there(backend, mnist, kernel):
    if kernel == "fused" and backend.name != "numpy":
        pytest.skip("the fused stack passes run on the CPU (and CUDA, in the GPU tests)")
    # Alpha 0.03 (the README's grid): after 400 images the weights are still finite (near 1e5)
    # but the test MSE is thousands of times its start; with --limit 400, the sweep used to call
    # it "ok".
    data = to_device_data(backend, _small(mnist), "float32")
    config = TrainConfig(checkpoints=CHECKPOINTS, kernel=kernel)
    sane = run_sweep(data, [Member(0.01, 0), Member(0.003, 1), Member(0.001, 2)], config)
    wild = run_sweep(data, [Member(0.01, 0), Member(0.03, 1), Member(0.001, 2)], config)
    bad = wild.models[1]
    assert bad.diverged.startswith("at 400 images seen (test MSE ")
    assert bad.diverged.endswith(f"over 1,000 times its {bad.curve[0].mse:,.4g} at 0 images)")
    assert bad.diverged_at == 400 and bad.final_accuracy is None
    assert [c.images_seen for c in bad.curve] == [0, 100]
    # Frozen at that checkpoint, as it was there; the others exactly as without it.
    frozen = wild.weights[1]
    assert np.all(np.isfinite(frozen)) and np.abs(frozen).max() > 1e4
    # (to the rounding of another summation order, which the blow-up amplifies; the weights at
    # 100 images are a thousand times smaller.)
    expected = _per_image_loop(mnist, 0.03, 1, 400, "float32")
    assert np.linalg.norm(frozen - expected) < 1e-4 * np.linalg.norm(expected)
    for index in (0, 2):
        assert np.array_equal(sane.weights[index], wild.weights[index])
        assert sane.models[index].curve == wild.models[index].curve
    # Alone, it is a diverged `train` run, with the same kind of message as a non-finite one.
    from mnist_gpu.training import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"^the test MSE reached \S+ at 400 images seen, "
                       r"over 1,000 times its [\d,]+ at 0 images: the weights blew up \(alpha = "
                       r"0.03\); try a smaller --alpha$"):
        train(data, replace(config, alpha=0.03, seed=1))


def test_the_start_is_scored_when_zero_is_not_a_checkpoint(numpy_backend, mnist):
    from mnist_gpu.training import TrainingDiverged

    data = to_device_data(numpy_backend, _small(mnist), "float32")
    with pytest.raises(TrainingDiverged, match="at 400 images seen"):
        train(data, TrainConfig(alpha=0.03, checkpoints=(400,)))
    # A healthy run's curve is still the checkpoints asked for, its weights those of the
    # run with a checkpoint at 0.
    healthy = train(data, TrainConfig(checkpoints=(100, 400)))
    assert [c.images_seen for c in healthy.curve] == [100, 400]
    with_zero = train(data, TrainConfig(checkpoints=CHECKPOINTS))
    assert np.array_equal(healthy.weights, with_zero.weights)


def test_the_loss_bound_counts_from_the_start_or_from_one():
    from mnist_gpu.training import runner

    assert runner.loss_bound(2933.27) == pytest.approx(2.93327e6)
    assert runner.loss_bound(0.1) == runner.loss_bound(1.0) == 1000.0


def test_the_fused_stack_follows_the_array_path(numpy_backend, mnist):
    data = to_device_data(numpy_backend, _small(mnist), "float64")
    members = grid(ALPHAS, SEEDS)
    for batch_size in (1, 32):
        config = TrainConfig(batch_size=batch_size, checkpoints=CHECKPOINTS)
        fused = run_sweep(data, members, replace(config, kernel="fused"))
        array = run_sweep(data, members, replace(config, kernel="array"))
        np.testing.assert_allclose(fused.weights, array.weights, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["array", "fused"])
def test_chunked_sweeps_equal_unchunked_ones(numpy_backend, mnist, kernel):
    data = to_device_data(numpy_backend, _small(mnist), "float64")
    members = grid((0.001, 0.003, 0.01), (0, 1))
    config = TrainConfig(checkpoints=CHECKPOINTS, kernel=kernel)
    whole = run_sweep(data, members, config)
    chunked = run_sweep(data, members, config, chunk_models=4)
    assert chunked.chunks == 2 and whole.chunks == 1
    np.testing.assert_allclose(chunked.weights, whole.weights, rtol=0, atol=1e-12)
    if kernel == "fused":  # the per-image pass: each model's arithmetic, whatever its company
        assert np.array_equal(chunked.weights, whole.weights)
        assert [m.curve for m in chunked.models] == [m.curve for m in whole.models]


def test_chunks_are_planned_from_the_memory():
    assert plan_chunks(10, 100, None) == [range(0, 10)]
    assert plan_chunks(10, 100, 450) == [range(0, 4), range(4, 8), range(8, 10)]
    assert plan_chunks(3, 100, 10**9, chunk_models=2) == [range(0, 2), range(2, 3)]
    with pytest.raises(ValueError, match="one model needs about"):
        plan_chunks(3, 2**20, 2**19)
    assert bytes_per_model(1024, 4, fused=False) > bytes_per_model(1, 4, fused=False)


def test_models_of_a_stack_start_from_their_own_seeds(numpy_backend, mnist):
    data = to_device_data(numpy_backend, _small(mnist), "float32")
    host_w = np.concatenate([tutorial.init_weights(s, "float32") for s in (4, 9)], axis=1)
    run = train_models(data, TrainConfig(checkpoints=(0,)), [0.0001, 0.0001], host_w)
    assert len(run.curves) == 2 and run.curves[0][0].images_seen == 0
    assert run.curves[0][0].accuracy != run.curves[1][0].accuracy


@pytest.mark.parametrize("text, parsed", [("0-3", (0, 1, 2, 3)), ("0,3,7", (0, 3, 7)),
                                          ("0-1,10", (0, 1, 10))])
def test_seed_lists(text, parsed):
    assert parse_seeds(text) == parsed


def test_alpha_lists():
    assert parse_alphas("0.001, 0.01,1e-1") == (0.001, 0.01, 0.1)


@pytest.mark.parametrize("argv, message", [
    (["--alpha", ""], "no learning rate given"),
    (["--alpha", " "], "no learning rate given"),
    (["--alpha", "0.01,,0.1"], "not a number: ''"),
    (["--alpha", "0.01,-0.1"], "positive"),
    (["--alpha", "0.01,nan"], "positive"),
    (["--alpha", "0.01,0.01"], "listed twice"),
    (["--seed", "5-2"], "the range 5-2 is empty"),
    (["--seed", ""], "no seed given"),
    (["--seed", "-1"], "not a seed"),
    (["--seed", "a-b"], "not a seed"),
])
def test_bad_grids_are_one_line_and_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["sweep", *argv, "--offline"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_sweep_command_writes_table_json_weights_and_plot(mnist_dir_path, tmp_path, capsys):
    paths = {k: tmp_path / f"sweep.{k}" for k in ("json", "npz", "png")}
    status = cli.main(["sweep", "--alpha", "0.003,0.01,5", "--seed", "0-1", "--limit", "1000",
                       "--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline",
                       "--quiet", "--json", str(paths["json"]), "--save", str(paths["npz"]),
                       "--plot", str(paths["png"])])
    assert status == 0
    out = capsys.readouterr().out
    assert "sweep of 6 models (3 learning rate(s) x 2 seed(s))" in out
    assert "all 2 diverged" in out and "model-images/s" in out
    report = json.loads(paths["json"].read_text())
    assert [(m["alpha"], m["seed"]) for m in report["models"]] == [
        (0.003, 0), (0.003, 1), (0.01, 0), (0.01, 1), (5.0, 0), (5.0, 1)]
    assert report["models"][4]["diverged"].startswith("at step")
    assert report["summaries"][1]["alpha"] == 0.01 and report["seconds"] > 0
    from mnist_gpu.io.weights import load_arrays

    arrays, metadata = load_arrays(paths["npz"])
    assert arrays["weights"].shape == (6, 784, 10) and len(metadata["models"]) == 6
    # One model of the file is what `train` with its settings saves.
    assert cli.main(["eval", "--weights", str(paths["npz"]), "--model", "2", "--backend",
                     "numpy", "--data-dir", str(mnist_dir_path), "--offline", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == report["models"][2]["final_accuracy"]
    assert cli.main(["eval", "--weights", str(paths["npz"]), "--backend", "numpy",
                     "--data-dir", str(mnist_dir_path), "--offline"]) == 2
    assert "choose one with --model K (0 to 5)" in capsys.readouterr().err
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_deeper_network_sweeps_model_after_model(mnist_dir_path, tmp_path, capsys):
    status = cli.main(["sweep", "--hidden", "16", "--bias", "--loss", "ce", "--alpha",
                       "0.1,1e6", "--seed", "0", "--batch-size", "100", "--limit", "2000",
                       "--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline",
                       "--quiet", "--save", str(tmp_path / "deep.npz")])
    assert status == 0
    out = capsys.readouterr().out
    assert "dense16+bias,relu,dense10+bias" in out and "all 1 diverged" in out
    assert cli.main(["eval", "--weights", str(tmp_path / "deep.npz"), "--model", "0",
                     "--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline"]) == 0
    assert "dense16+bias,relu,dense10+bias; softmax" in capsys.readouterr().out


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
    status, out, err = run_cli(capsys, "sweep", "--seed", "0-99999999", "--backend", "numpy",
                            "--data-dir", tmp_path, "--offline")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "a grid of 100,000,000 models" in err
    assert "more than the" in err and "sweep fewer models" in err


def test_a_sweep_fills_its_weights_chunk_by_chunk(numpy_backend, mnist):
    from mnist_gpu.sweep import grid, run_sweep
    from mnist_gpu.training import TrainConfig, to_device_data

    data = to_device_data(numpy_backend, mnist, "float32", limit=50)
    members = grid((0.01,), range(6))
    config = TrainConfig(checkpoints=(0,))
    chunked = run_sweep(data, members, config, chunk_models=4)
    whole = run_sweep(data, members, config)
    assert chunked.chunks == 2 and np.array_equal(chunked.weights, whole.weights)


def test_forced_chunks_are_not_called_a_device_limit(mnist_dir_path, capsys):
    status, _, err = run_cli(capsys, "sweep", "--seed", "0-2", "--limit", "100", "--chunk-models",
                          "1", "--backend", "numpy", "--quiet", *data_flags(mnist_dir_path))
    assert status == 0
    assert "do not fit" not in err
    assert "training the grid's 3 models in 3 chunks of up to 1, one after another " \
           "(--chunk-models)" in err


def test_eval_of_a_diverged_sweep_model_says_so(mnist_dir_path, tmp_path, capsys):
    saved = tmp_path / "sweep.npz"
    status, _, _ = run_cli(capsys, "sweep", "--alpha", "0.01,5", "--seed", "3", "--limit", "300",
                           "--backend", "numpy", "--quiet", "--save", saved,
                           *data_flags(mnist_dir_path))
    assert status == 0
    common = ["eval", "--weights", saved, "--backend", "numpy", *data_flags(mnist_dir_path)]
    status, out, _ = run_cli(capsys, *common, "--model", "1")
    assert status == 0
    assert "model 1 of the sweep: alpha 5.0, seed 3; it DIVERGED at step" in out
    status, out, _ = run_cli(capsys, *common, "--model", "1", "--json")
    assert json.loads(out)["model"]["diverged"].startswith("at step")
    status, out, _ = run_cli(capsys, *common, "--model", "0")
    assert "model 0 of the sweep: alpha 0.01, seed 3\n" in out and "DIVERGED" not in out


def test_a_lazy_grid_is_small_however_many_members_it_has():
    from mnist_gpu.sweep import grid, parse_seeds

    tracemalloc.start()
    members = grid((0.01,), parse_seeds("0-99999999"))
    chunk = [members[i] for i in range(5_000_000, 5_000_100)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20 and chunk[0].seed == 5_000_000
