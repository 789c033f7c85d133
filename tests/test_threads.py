"""The CPU's threads on a shared machine (backend/threads.py): one rule fixed by the machine, shown
in the JSON's machine record, overridden by --threads or the libraries' own variables, applied to
the command only; and the benchmark's shared-machine row (bench/contention.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_gpu import cli
from mnist_gpu.backend import threads
from mnist_gpu.bench import children, contention

REPO = Path(__file__).resolve().parents[1]
VARIABLES = (*threads.BLAS_VARIABLES, threads.NUMBA_VARIABLE)


def _environment(**extra):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def _train_json(mnist_dir_path, *flags, **variables) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "mnist_gpu.cli", "train", "--backend", "numpy", "--limit", "300",
         "--checkpoints", "300", "--data-dir", str(mnist_dir_path), "--offline", "--json", "-",
         *flags], capture_output=True, text=True, env=_environment(**variables), timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_rule_depends_on_the_cpus_alone():
    assert [threads.rule_threads(n) for n in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    choice = threads.choose_threads(environ={})
    assert choice["blas"] == threads.rule_threads(threads.usable_cpus())
    assert choice["numba"] is None  # Numba's own count: a thread per CPU
    assert choice["blas_source"] == "rule" and choice["numba_source"] == threads.NUMBA_DEFAULT
    # A network's batch shards by the same rule; --threads sets them with the rest.
    assert choice["shards"] == choice["blas"] and choice["shards_source"] == "rule"
    assert threads.choose_threads(3, environ={})["shards"] == 3


def test_the_json_machine_record_shows_the_threads_the_rule_gives(mnist_dir_path):
    record = _train_json(mnist_dir_path)["backend"]["threads"]
    expected = threads.rule_threads(threads.usable_cpus())
    assert record["rule"] == threads.RULE and record["cpus"] == threads.usable_cpus()
    assert record["blas_source"] == "rule" and record["numba_source"] == threads.NUMBA_DEFAULT
    assert record["numba"] == threads.usable_cpus()
    assert record["shards"] == expected and record["shards_source"] == "rule"
    if record["blas"] is not None:  # None: threadpoolctl cannot see the BLAS
        assert record["blas"] == expected


@pytest.mark.parametrize("flags, variables, blas, source", [
    (["--threads", "2"], {}, 2, "--threads"),
    ([], {"OPENBLAS_NUM_THREADS": "2"}, 2, "OPENBLAS_NUM_THREADS"),
    ([], {"OMP_NUM_THREADS": "2"}, 2, "OMP_NUM_THREADS"),
])
def test_threads_flag_and_the_known_variables_override_the_rule(mnist_dir_path, flags,
                                                                variables, blas, source):
    record = _train_json(mnist_dir_path, *flags, **variables)["backend"]["threads"]
    assert record["blas_source"] == source
    if record["blas"] is not None:
        assert record["blas"] == blas


def test_numba_threads_from_its_variable(mnist_dir_path):
    record = _train_json(mnist_dir_path, NUMBA_NUM_THREADS="1")["backend"]["threads"]
    assert record["numba_source"] == "NUMBA_NUM_THREADS" and record["numba"] == 1


def test_a_command_run_in_process_leaves_the_callers_threads(mnist_dir_path, tmp_path):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=3, user_api="blas"):
        before = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"]
        if not before:
            pytest.skip("threadpoolctl finds no BLAS in this process")
        assert cli.main(["train", "--backend", "numpy", "--limit", "200", "--checkpoints", "200",
                         "--threads", "1", "--data-dir", str(mnist_dir_path), "--offline",
                         "--quiet", "--json", str(tmp_path / "r.json")]) == 0
        after = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                 if p["user_api"] == "blas"]
    assert after == before
    recorded = json.loads((tmp_path / "r.json").read_text())["backend"]["threads"]
    assert recorded["blas"] in (1, None) and recorded["blas_source"] == "--threads"
    assert recorded["numba"] == 1


def test_bad_threads_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--threads", "0"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_same_weights_busy_or_quiet(mnist_dir_path, tmp_path):
    """The thread count is the machine's, not its load's: a deeper network (whose products go
    through the BLAS) trains to the same weights beside a busy process as without."""
    def weights(name):
        path = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "mnist_gpu.cli", "train", "--backend", "numpy", "--hidden",
             "64", "--batch-size", "128", "--limit", "1000", "--data-dir", str(mnist_dir_path),
             "--offline", "--quiet", "--save", str(path)], capture_output=True, text=True,
            env=_environment(), timeout=120)
        assert done.returncode == 0, done.stderr
        with np.load(path) as saved:
            return saved["weights"].copy()

    quiet = weights("quiet.npz")
    with children.busy_process():
        busy = weights("busy.npz")
    np.testing.assert_array_equal(quiet, busy)


def test_contention_row_has_both_figures_and_the_ratio_and_stops_its_busy_process(
        tmp_path, monkeypatch):
    pid_file = tmp_path / "busy.pid"
    monkeypatch.setattr(children, "BUSY", (
        sys.executable, "-c",
        f"import os, time; open({str(pid_file)!r}, 'a').write(f'{{os.getpid()}}\\n'); "
        "time.sleep(600)"))
    fake = [sys.executable, "-c", "import json; print(json.dumps({'seconds': 0.5, 'backend': "
            "{'threads': {'blas': 1, 'blas_source': 'rule'}}}))"]
    records = contention.bench_contention("numpy", tmp_path, True, quick=True,
                                          commands={"mlp": fake, "cnn-fast": fake})
    assert [r["name"] for r in records] == ["--preset mlp beside one busy process",
                                            "--preset cnn-fast beside one busy process"]
    for record in records:
        assert len(record["quiet_s"]) == len(record["busy_s"]) == 2
        assert record["quiet_median_s"] == record["busy_median_s"] == 0.5
        assert record["ratio"] == 1.0 and record["threads"]["blas"] == 1
    pids = [int(line) for line in pid_file.read_text().split()]
    assert len(pids) == 4  # one busy process per busy run, each stopped and reaped
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    lines = contention.format_contention(records)
    assert "1.00x" in lines[1] and "BLAS threads 1" in lines[1]
