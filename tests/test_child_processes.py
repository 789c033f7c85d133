"""The benchmark's child processes end with it and its temporary folders go, on SIGTERM, on
Ctrl-C (SIGINT) and when it is killed outright (its children then die by the kernel's hand).

Linux only: the children are found through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds the children through Linux's /proc")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":  # its parent; not a zombie
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # dead, waiting for its parent to reap it


def _wait_for(condition, seconds: float, what: str):
    """Poll ``condition`` (a cheap check of /proc or a folder) until it is true or ``seconds``
    have passed; the value it returned."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"waited {seconds} s for {what}")


def _bench(mnist_dir_path, tmp_path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu.cli", "bench", "--backend", "numpy", "--quick",
         "--repeats", "1", "--batch-sizes", "1", "--no-peers", "--no-sweeps", "--no-cnn",
         "--no-contention", "--data-dir", str(mnist_dir_path), "--offline"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _stop(process):
    if process.poll() is None:
        process.kill()
    process.wait()


@pytest.mark.parametrize("sig, status, line", [(signal.SIGTERM, 143, "mnist-gpu: terminated"),
                                               (signal.SIGINT, 130, "mnist-gpu: interrupted")])
def test_a_signal_stops_the_child_and_removes_the_cold_folder(mnist_dir_path, tmp_path, sig,
                                                              status, line):
    bench = _bench(mnist_dir_path, tmp_path)
    try:
        # The cold run: a child `train` with caches in a temporary folder of the benchmark's.
        folder = _wait_for(lambda: next(tmp_path.glob("mnist-gpu-cold-*"), None), 240,
                           "the cold run's folder")
        [child] = _wait_for(lambda: _children(bench.pid), 30, "the cold run's process")
        bench.send_signal(sig)
        _, err = bench.communicate(timeout=30)
    finally:
        _stop(bench)
    assert bench.returncode == status
    assert err.strip().splitlines() == [line]
    assert _gone(child)
    assert not folder.exists() and not list(tmp_path.glob("mnist-gpu-*"))


def test_children_die_with_a_benchmark_killed_outright(mnist_dir_path, tmp_path):
    bench = _bench(mnist_dir_path, tmp_path)
    try:
        [child] = _wait_for(lambda: _children(bench.pid), 120, "the first child")
        bench.kill()  # SIGKILL: no handler, no finally, in the benchmark
        bench.wait()
        _wait_for(lambda: _gone(child), 10, "the child to die with its parent")
    finally:
        _stop(bench)
