"""The time to a result: ``mnist-gpu train`` from process start to exit, and its peak resident
memory, warm (the user's caches filled) and cold (empty caches), beside the import of NumPy and
Numba measured in the same run; and the README's sweep, warm.

Each figure is a fresh process (``python -m mnist_gpu.cli``), timed from its start to its exit and
measured by the system (the peak resident set of that one child, from ``os.wait4``). The warm
runs and the imports take turns, round after round, so that a machine busy with other work slows
both alike and their ratio holds; medians over the rounds. A cold run has empty data, Numba and
CuPy caches of its own (temporary ``XDG_CACHE_HOME``, ``NUMBA_CACHE_DIR``, ``CUPY_CACHE_DIR``): it
decompresses and verifies the files and compiles the loops it runs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import children

IMPORT = "import numpy and numba"
WARM = "mnist-gpu train, warm"
COLD = "mnist-gpu train, cold"
SWEEP = "mnist-gpu sweep (the README's grid), warm"
SWEEP_ARGS = ("--alpha", "0.001,0.003,0.01,0.03,0.1", "--seed", "0-4")


def startup_runs(repeats: int, quick: bool) -> dict:
    """How many processes of each kind: rounds of a warm run beside an import (``repeats``, at
    least 3; 3 in a quick run), cold runs (each compiles the loops: seconds), and sweeps (none in
    a quick run)."""
    if quick:
        return {"rounds": 3, "cold": 1, "sweep": 0}
    return {"rounds": max(3, repeats), "cold": 3, "sweep": 3}


def bench_startup(backend: str, data_dir, offline: bool, repeats: int, quick: bool,
                  log=None, commands=None) -> dict:
    """The startup record for ``mnist-gpu train --backend backend`` (see the module's notes).
    ``commands`` replaces the measured command lines (for a test of the record's form)."""
    runs = startup_runs(repeats, quick)
    data = ["--data-dir", str(data_dir)] + (["--offline"] if offline else [])
    cli = [sys.executable, "-m", "mnist_gpu.cli"]
    commands = commands or {
        IMPORT: [sys.executable, "-c", "import numpy, numba"],
        WARM: [*cli, "train", "--backend", backend, "--quiet", *data],
        SWEEP: [*cli, "sweep", *SWEEP_ARGS, "--backend", backend, "--quiet", *data],
    }
    measured = {name: [] for name in (IMPORT, WARM, COLD, SWEEP)}
    _run(commands[WARM])  # fills the caches the warm runs find: what a second run sees
    for _ in range(runs["rounds"]):
        measured[IMPORT].append(_run(commands[IMPORT]))
        measured[WARM].append(_run(commands[WARM]))
    for _ in range(runs["cold"]):
        with tempfile.TemporaryDirectory(prefix="mnist-gpu-cold-") as empty:
            measured[COLD].append(_run(commands[WARM], _empty_caches(Path(empty))))
    for _ in range(runs["sweep"]):
        measured[SWEEP].append(_run(commands[SWEEP]))
    rows = [_row(name, commands[WARM if name == COLD else name], samples)
            for name, samples in measured.items() if samples]
    record = {"backend": backend, "runs": runs, "rows": rows}
    base = rows[0]["median_s"]
    record["warm_to_import"] = rows[1]["median_s"] / base
    record["cold_to_import"] = rows[2]["median_s"] / base
    if log:
        log(f"startup: {WARM} {rows[1]['median_s']:.3f} s, {record['warm_to_import']:.2f}x "
            f"the time of importing NumPy and Numba ({base:.3f} s)")
    return record


def _empty_caches(root: Path) -> dict:
    env = dict(os.environ)
    for variable, folder in (("XDG_CACHE_HOME", "xdg"), ("NUMBA_CACHE_DIR", "numba"),
                             ("CUPY_CACHE_DIR", "cupy")):
        env[variable] = str(root / folder)
    return env


def _run(command, env=None) -> tuple[float, int | None]:
    """(seconds from start to exit, peak resident bytes or None) of one process; a failure
    raises ``RuntimeError`` with the end of what it printed."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        # A child that ends with this process: on Ctrl-C or SIGTERM here it is killed, not left
        # running (children.py).
        with children.running(command, stdout=subprocess.DEVNULL, stderr=errors,
                              env=env) as process:
            if hasattr(os, "wait4"):
                _, status, usage = os.wait4(process.pid, 0)
                seconds = time.perf_counter() - started
                process.returncode = os.waitstatus_to_exitcode(status)
                # ru_maxrss: KiB on Linux, bytes on macOS.
                peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
            else:  # Windows: no per-process peak from the system
                process.wait()
                seconds, peak = time.perf_counter() - started, None
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"{' '.join(map(str, command))} exited with status "
                               f"{process.returncode}: {' '.join(tail)}")
    return seconds, peak


def _row(name: str, command, samples) -> dict:
    seconds = [s for s, _ in samples]
    peaks = [p for _, p in samples if p is not None]
    return {"name": name, "command": " ".join(map(str, command[1:])), "seconds": seconds,
            "median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "peak_rss_bytes": peaks,
            "median_peak_rss_bytes": statistics.median(peaks) if peaks else None}


def format_startup(record: dict) -> list[str]:
    """The startup rows as table lines."""
    lines = [f"startup ({record['backend']}; fresh processes, median of "
             f"{record['runs']['rounds']} warm rounds beside as many imports; peak resident "
             "memory):"]
    base = record["rows"][0]["median_s"]
    for row in record["rows"]:
        memory = (f"{row['median_peak_rss_bytes'] / 2**20:7.0f} MiB"
                  if row["median_peak_rss_bytes"] is not None else "")
        ratio = "" if row["name"] == IMPORT else f"  {row['median_s'] / base:.2f}x the import"
        spread = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
        lines.append(f"  {row['name']:<44}{row['median_s']:>8.3f} s {spread:>13}"
                     f"{memory}{ratio}")
    return lines
