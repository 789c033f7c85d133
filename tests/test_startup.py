"""What a command loads at start (only what it uses), and the benchmark's startup record (its form,
never its speed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from mnist_gpu.bench import startup

# Optional libraries and our heavy benchmark modules: none is for `--help` or `train`.
OPTIONAL = ("matplotlib", "PIL", "dask", "distributed", "torch", "cupy", "array_api_strict",
            "tqdm", "mnist_gpu.bench.rows", "mnist_gpu.bench.report", "mnist_gpu.bench.timing",
            "mnist_gpu.bench.peers", "mnist_gpu.bench.cnn", "mnist_gpu.bench.work",
            "mnist_gpu.bench.plot", "mnist_gpu.bench.startup", "mnist_gpu.viz.figures",
            "mnist_gpu.viz.digits", "mnist_gpu.sweep.cluster")

LOADED_AFTER = textwrap.dedent("""
    import json, sys
    from mnist_gpu import cli
    try:
        status = cli.main(sys.argv[1:])
    except SystemExit as done:  # --help
        status = done.code
    print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
""")


def _loaded_after(*argv):
    done = subprocess.run([sys.executable, "-c", LOADED_AFTER, *argv], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, done.stderr
    return set(report["modules"])


def _present(modules, names):
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_help_loads_no_optional_library_nor_numba_nor_the_network():
    modules = _loaded_after("--help")
    assert _present(modules, OPTIONAL) == []
    assert _present(modules, ("numba", "llvmlite", "urllib.request", "http.client")) == []


def test_train_loads_only_what_it_uses(mnist_dir_path):
    modules = _loaded_after("train", "--backend", "numpy", "--data-dir", str(mnist_dir_path),
                            "--offline", "--quiet", "--limit", "1000")
    assert _present(modules, OPTIONAL) == []
    # The data were verified (or mapped from the cache) without the downloader's libraries.
    assert _present(modules, ("urllib.request", "http.client")) == []
    assert "numba" in modules  # the fused pass it trains with


def _fake_commands(tmp_path):
    child = [sys.executable, "-c", "import sys; sys.exit(0)"]
    return {startup.IMPORT: child, startup.WARM: child, startup.SWEEP: child}


def test_the_startup_record_has_every_row_with_its_memory(tmp_path):
    record = startup.bench_startup("numpy", tmp_path, True, repeats=1, quick=True,
                                   commands=_fake_commands(tmp_path))
    names = [row["name"] for row in record["rows"]]
    assert names == [startup.IMPORT, startup.WARM, startup.COLD]  # a quick run: no sweep
    runs = startup.startup_runs(1, True)
    assert record["runs"] == runs and runs["rounds"] >= 3
    for row in record["rows"]:
        expected = runs["cold"] if row["name"] == startup.COLD else runs["rounds"]
        assert len(row["seconds"]) == expected
        assert 0 < row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["command"].startswith("-c ")
        if sys.platform != "win32":
            assert len(row["peak_rss_bytes"]) == expected
            assert row["median_peak_rss_bytes"] > 2**20  # a Python process: megabytes
    assert record["warm_to_import"] > 0 and record["cold_to_import"] > 0
    lines = startup.format_startup(record)
    assert lines[0].startswith("startup (numpy;") and len(lines) == 4
    assert "x the import" in lines[2] and "MiB" in lines[2]


def test_the_full_run_measures_the_sweep_and_more_cold_runs():
    quick, full = startup.startup_runs(5, True), startup.startup_runs(5, False)
    assert quick["sweep"] == 0 and full["sweep"] >= 3 and full["cold"] > quick["cold"] >= 1


def test_a_failing_command_is_named_with_its_last_line(tmp_path):
    commands = _fake_commands(tmp_path)
    commands[startup.WARM] = [sys.executable, "-c",
                              "import sys; print('first', file=sys.stderr); sys.exit('it broke')"]
    with pytest.raises(RuntimeError, match="exited with status 1: it broke"):
        startup.bench_startup("numpy", tmp_path, True, 1, True, commands=commands)


def test_the_report_prints_the_startup_rows_and_their_ratio(tmp_path):
    from mnist_gpu.bench import report

    record = startup.bench_startup("numpy", tmp_path, True, repeats=1, quick=True,
                                   commands=_fake_commands(tmp_path))
    measured = {"machine": {"cpu": "cpu", "cpu_threads": 2, "numpy": "2", "backends": []},
                "settings": {"dtypes": ["float32"]}, "limits": {}, "rows": [],
                "peak_host_memory_bytes": 0, "startup": [record]}
    table = report.format_table(measured)
    assert f"  {startup.WARM}" in table and "x the import" in table
    assert any(line.startswith("startup numpy: warm mnist-gpu train takes ")
               and "the time of importing NumPy and Numba (cold: " in line
               for line in report.ratios(measured))
    json.dumps(measured)  # the record is JSON as it stands
