"""A shared machine: ``mnist-gpu train --preset mlp`` (and ``cnn-fast``) timed quiet, then beside
one busy process that the benchmark starts itself (``python -c "while True: pass"``) and always
stops, turn about, round after round; both figures and their ratio.

Each run is a fresh process (``python -m mnist_gpu.cli train --preset NAME --epochs 1 --limit N
--json -``), so it runs the threads a user's command runs (``backend/threads.py``: the rule,
``--threads`` or the variables); the figure is its training time (its JSON's ``seconds``), the
process's start and data loading apart. The quiet and busy runs take turns, so that other work
on the machine slows both alike and the ratio holds: a ratio near 1 is a run that takes no more
than its share of a shared machine; one near 2 or above, threads that wait for each other.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile

from . import children

# (preset, images of one epoch): about a second of training each on a 2-core CPU (long enough
# that a step's noise and the first batches' allocations do not make the ratio).
WORKLOADS = (("mlp", 40_000), ("cnn-fast", 6_000))
QUICK_WORKLOADS = (("mlp", 10_000), ("cnn-fast", 1_500))


def bench_contention(backend: str, data_dir, offline: bool, quick: bool, threads=None,
                     log=None, commands=None) -> list[dict]:
    """A record per workload: quiet and busy seconds (each round), their medians and the ratio.
    ``commands`` replaces the measured command lines, by preset (for a test of the form)."""
    rounds = 2 if quick else 3
    records = []
    for preset, images in QUICK_WORKLOADS if quick else WORKLOADS:
        command = (commands or {}).get(preset) or [
            sys.executable, "-m", "mnist_gpu.cli", "train", "--preset", preset, "--epochs", "1",
            "--limit", str(images), "--backend", backend, "--quiet", "--json", "-",
            "--data-dir", str(data_dir), *(["--offline"] if offline else []),
            *(["--threads", str(threads)] if threads else [])]
        quiet, busy, record_threads = [], [], None
        _train_seconds(command)  # a warm-up: the caches and the compiled loops filled
        for _ in range(rounds):
            seconds, record_threads = _train_seconds(command)
            quiet.append(seconds)
            with children.busy_process():
                busy.append(_train_seconds(command)[0])
        record = {"name": f"--preset {preset} beside one busy process",
                  "command": " ".join(map(str, command[1:])), "images": images,
                  "quiet_s": quiet, "busy_s": busy,
                  "quiet_median_s": statistics.median(quiet),
                  "busy_median_s": statistics.median(busy), "threads": record_threads}
        record["ratio"] = record["busy_median_s"] / record["quiet_median_s"]
        records.append(record)
        if log:
            log(f"shared machine: {record['name']}: {record['busy_median_s']:.2f} s against "
                f"{record['quiet_median_s']:.2f} s quiet ({record['ratio']:.2f}x)")
    return records


def _train_seconds(command) -> tuple[float, dict | None]:
    """(training seconds, the threads it ran) of one ``train --json -`` process; a failure
    raises ``RuntimeError`` with the end of what it printed."""
    with tempfile.TemporaryFile() as errors:
        with children.running(command, stdout=subprocess.PIPE, stderr=errors) as process:
            out, _ = process.communicate()
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"{' '.join(map(str, command))} exited with status "
                               f"{process.returncode}: {' '.join(tail)}")
    document = json.loads(out)
    return float(document["seconds"]), document.get("backend", {}).get("threads")


def format_contention(records) -> list[str]:
    """The records as table lines."""
    if not records:
        return []
    lines = ["a shared machine (fresh processes, training time, median of quiet and busy runs "
             "taken in turn):"]
    for r in records:
        threads = r["threads"] or {}
        lines.append(f"  {r['name']:<44}{r['quiet_median_s']:>8.3f} s quiet "
                     f"{r['busy_median_s']:>8.3f} s busy  {r['ratio']:.2f}x  (BLAS threads "
                     f"{threads.get('blas')}, shards {threads.get('shards')}, "
                     f"{threads.get('blas_source')})")
    return lines
