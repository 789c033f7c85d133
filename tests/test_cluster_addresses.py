"""``sweep --cluster``: an address that is not a scheduler's is one line and exit status 2 before
any work; Ctrl-C (to the terminal's whole process group) and SIGTERM (to the command) end a
running ``--cluster local:2`` sweep with one line, within 3 s, leaving no process and no
temporary folder behind. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from conftest import live_processes  # noqa: E402

from mnist_gpu import cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("address", ["tcp://", "tcp://127.0.0.1:notaport", "foo://bar",
                                     "tcp://[::1", "inproc://", "ucx://127.0.0.1:1",
                                     "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000",
                                     "tcp://127.0.0.1:8786/path"])
def test_a_bad_address_is_one_line_before_any_work(address, tmp_path, monkeypatch, capsys):
    import distributed

    def no_client(*args, **kwargs):
        raise AssertionError("Dask was asked to connect")

    monkeypatch.setattr(distributed, "Client", no_client)
    status = cli.main(["sweep", "--alpha", "0.01", "--seed", "0", "--limit", "100",
                       "--backend", "numpy", "--json", str(tmp_path / "s.json"), "--cluster",
                       address])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith(f"mnist-gpu: error: --cluster {address}: ")
    assert "expected tcp://HOST:PORT" in err
    assert not (tmp_path / "s.json").exists()


def _in_session(session: int) -> list[str]:
    """The live processes of ``session``, with their command lines."""
    return [f"{pid}: {command[:160]}" for pid, _, in_session, command in live_processes()
            if in_session == session]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("sig, whom, status, line", [
    (signal.SIGINT, "group", 130, "mnist-gpu: interrupted"),
    (signal.SIGTERM, "command", 143, "mnist-gpu: terminated")])
def test_an_interrupted_cluster_sweep_ends_in_one_line_within_3_s(mnist_dir_path, tmp_path, sig,
                                                                  whom, status, line):
    env = {**os.environ, "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    json_path = tmp_path / "s.json"
    # A sweep of many one-model chunks: still running when its first results are written.
    sweep = subprocess.Popen(
        [sys.executable, "-m", "mnist_gpu.cli", "sweep", "--alpha", "0.001,0.01,0.1", "--seed",
         "0-59", "--limit", "3000", "--chunk-models", "1", "--backend", "numpy", "--quiet",
         "--data-dir", str(mnist_dir_path), "--offline", "--json", str(json_path),
         "--cluster", "local:2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # a terminal's process group of its own
    try:
        results = Path(str(json_path) + ".results.jsonl")
        deadline = time.monotonic() + 180
        while not results.exists():  # the event: the workers have finished a chunk
            assert sweep.poll() is None, sweep.stderr.read()
            assert time.monotonic() < deadline, "no chunk finished in 180 s"
            time.sleep(0.05)
        assert list(tmp_path.glob("mnist-gpu-dask-*"))  # the cluster's scratch folder
        sent = time.monotonic()
        if whom == "group":
            os.killpg(sweep.pid, sig)  # Ctrl-C: every process of the terminal's group
        else:
            sweep.send_signal(sig)
        _, err = sweep.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
    assert sweep.returncode == status, err
    assert err.strip().splitlines() == [line]
    assert took < 3, f"{took:.1f} s from the signal to the exit"
    assert not list(tmp_path.glob("mnist-gpu-dask-*"))
    # No worker left running: one killed may still be exiting (its memory being freed) for a
    # moment after the command has exited.
    deadline = time.monotonic() + 5
    while _in_session(sweep.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _in_session(sweep.pid) == []
