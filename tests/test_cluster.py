"""Sweeps on a Dask cluster (LocalCluster, 2 worker processes): the same results as in one
process, bit for bit, even when a worker dies mid-chunk or the run is resumed; one-line errors
for an unreachable scheduler or a missing Dask; nothing left running afterwards."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from conftest import live_processes  # noqa: E402

from mnist_gpu import cli  # noqa: E402
from mnist_gpu.sweep import cluster  # noqa: E402
from mnist_gpu.backend import get_backend  # noqa: E402
from mnist_gpu.sweep import grid, run_sweep  # noqa: E402
from mnist_gpu.training import TrainConfig, to_device_data  # noqa: E402

ALPHAS, SEEDS = (0.001, 0.003, 0.01, 1.0), (0, 1, 2)  # 12 models, 3 of them diverging
LIMIT = 3000


def _sweep_argv(mnist_dir_path, json_path, *more):
    return ["sweep", "--alpha", ",".join(map(str, ALPHAS)), "--seed", "0-2", "--limit",
            str(LIMIT), "--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline",
            "--quiet", "--json", str(json_path), *more]


@pytest.fixture(scope="module")
def in_process(mnist):
    """The same sweep in one process: what every distributed run must equal."""
    data = to_device_data(get_backend("numpy", log=None), mnist, "float32", limit=LIMIT)
    config = TrainConfig(data_seed=0)
    return run_sweep(data, grid(ALPHAS, SEEDS), config)


def _assert_same(report_path, weights_path, expected):
    report = json.loads(Path(report_path).read_text())
    for got, want in zip(report["models"], expected.models):
        assert (got["alpha"], got["seed"]) == (want.alpha, want.seed)
        assert got["curve"] == [c.__dict__ for c in want.curve]
        assert got["diverged"] == want.diverged
    from mnist_gpu.io.weights import load_arrays

    arrays, _ = load_arrays(weights_path)
    assert np.array_equal(arrays["weights"], expected.weights, equal_nan=True)


def _no_children_left():
    """No worker or nanny process outlives the command. (Python's multiprocessing resource
    tracker, started once per process by the first worker spawned, stays until this process
    exits, as it does after any use of multiprocessing: it is not counted.)"""
    assert multiprocessing.active_children() == []
    children = [f"{pid}: {command[:120]}" for pid, parent, _, command in live_processes()
                if parent == os.getpid() and "resource_tracker" not in command]
    assert children == [], f"processes left running: {children}"


def test_a_distributed_sweep_equals_the_in_process_one(mnist_dir_path, tmp_path, in_process,
                                                       capsys):
    import copy

    import dask

    before = copy.deepcopy(dask.config.config)
    json_path, weights = tmp_path / "s.json", tmp_path / "s.npz"
    assert cli.main(_sweep_argv(mnist_dir_path, json_path, "--cluster", "local:2",
                                "--chunk-models", "3", "--save", str(weights))) == 0
    assert dask.config.config == before  # the caller's settings, untouched
    out = capsys.readouterr().out
    assert "sweep of 12 models" in out and "all 3 diverged" in out
    _assert_same(json_path, weights, in_process)
    lines = cluster.results_path(json_path).read_text().splitlines()
    assert len(lines) == 12  # one line per model, appended as the chunks finished
    if sys.platform == "linux":
        _no_children_left()


def test_a_worker_killed_mid_chunk_still_gives_identical_results(
        mnist_dir_path, tmp_path, in_process, monkeypatch, capsys):
    import dask
    from cluster_kill_once import FLAG_VARIABLE

    flag = tmp_path / "killed-once"
    monkeypatch.setenv(FLAG_VARIABLE, str(flag))
    json_path, weights = tmp_path / "s.json", tmp_path / "s.npz"
    preload = str(Path(__file__).with_name("cluster_kill_once.py"))
    with dask.config.set({"distributed.worker.preload": [preload]}):
        assert cli.main(_sweep_argv(mnist_dir_path, json_path, "--cluster", "local:2",
                                    "--chunk-models", "4", "--save", str(weights))) == 0
    assert flag.exists()  # a worker did die, in its first task
    _assert_same(json_path, weights, in_process)
    if sys.platform == "linux":
        _no_children_left()


def test_resume_trains_only_what_is_missing(mnist_dir_path, tmp_path, in_process, capsys):
    json_path, weights = tmp_path / "s.json", tmp_path / "s.npz"
    argv = _sweep_argv(mnist_dir_path, json_path, "--cluster", "local:2", "--chunk-models", "3",
                       "--save", str(weights))
    assert cli.main(argv) == 0
    results = cluster.results_path(json_path)
    lines = results.read_text().splitlines()
    # As if the run had been stopped after some chunks, the last line torn by the crash.
    kept = sorted(lines, key=lambda line: json.loads(line)["index"])[:7]
    results.write_text("\n".join(kept) + "\n" + kept[-1][:40])
    capsys.readouterr()
    assert cli.main([*argv, "--resume"]) == 0
    out, err = capsys.readouterr()
    assert "--resume: 7 of 12 models already in" in err
    assert "trained 2 of 4 chunks" in err  # models 6-8 (one missing) and 9-11
    # The summary counts what this run trained (models 6 to 11), not the resumed ones.
    assert "this run trained 6 of the 12 models" in out
    assert "of the others, 6 came from the results file of an earlier run" in out
    report = json.loads(json_path.read_text())
    assert report["models_trained"] == 6 and report["models_resumed"] == 6
    _assert_same(json_path, weights, in_process)


def test_a_local_cluster_leaves_nothing_in_the_temporary_folder(mnist_dir_path, tmp_path,
                                                                monkeypatch, capsys):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the workers' processes
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # this one's (the scheduler)
    argv = ["sweep", "--seed", "0-1", "--limit", "200", "--backend", "numpy", "--data-dir",
            str(mnist_dir_path), "--offline", "--quiet", "--json", str(tmp_path / "s.json"),
            "--cluster", "local:1"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    left = sorted(str(p.relative_to(scratch)) for p in scratch.rglob("*"))
    assert left == []  # no dask-scratch-space/global.lock, purge.lock, worker folders


def test_an_unreachable_scheduler_is_one_line(mnist_dir_path, tmp_path, capsys):
    status = cli.main(_sweep_argv(mnist_dir_path, tmp_path / "s.json", "--cluster",
                                  "tcp://127.0.0.1:9"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the scheduler" in err
    assert not cluster.results_path(tmp_path / "s.json").exists()


def test_a_missing_dask_is_one_line(mnist_dir_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    status = cli.main(_sweep_argv(mnist_dir_path, tmp_path / "s.json", "--cluster", "local:2"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'mnist-gpu[cluster]'" in err


@pytest.mark.parametrize("argv, message", [
    (["--cluster", "local:2"], "--cluster needs --json"),
    (["--cluster", "local:2", "--json"], "--cluster needs --json PATH, a file"),
    (["--resume"], "--resume continues a --cluster sweep"),
    (["--cluster", "somewhere", "--json", "x.json"], "expected local:N, cuda or tcp://"),
    (["--cluster", "local:0", "--json", "x.json"], "N must be at least 1"),
])
def test_cluster_flags_are_checked(argv, message, capsys):
    assert cli.main(["sweep", "--offline", "--data-dir", "/nonexistent", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_without_cluster_nothing_imports_dask(mnist_dir_path, tmp_path):
    import subprocess

    code = ("import sys\nfrom mnist_gpu import cli\n"
            f"cli.main(['sweep', '--limit', '100', '--backend', 'numpy', '--data-dir', "
            f"{str(mnist_dir_path)!r}, '--offline', '--quiet'])\n"
            "print('dask' in sys.modules, 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "False False", done.stderr


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
