"""A write killed outright (SIGKILL, a power cut) leaves its hidden ``.part`` file: the next write
of that data-cache entry removes it, and never the ``.part`` of a write still going on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_gpu.data.cache import DataCache
from mnist_gpu.io.files import remove_stale_parts

REPO = Path(__file__).resolve().parents[1]
ARRAYS = {"a": np.arange(10_000, dtype=np.int32)}

# A process that writes a cache entry and stops, for good, in the middle of the write: after
# its bytes, before it renames the file into place.
WRITER = """
import os, sys, time
from mnist_gpu.data.cache import DataCache
import numpy as np

def stop(fd):
    print("writing", flush=True)
    time.sleep(600)

os.fsync = stop
DataCache(sys.argv[1]).store("entry", {"a": np.arange(10_000, dtype=np.int32)})
"""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")


@pytest.fixture
def writer(tmp_path):
    """A writer stopped in the middle of writing entry ``entry`` in ``tmp_path``; killed at the
    end of the test."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], env=env,
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "writing\n"  # the event: its .part is on disk
        yield process
    finally:
        process.kill()
        process.wait()


def _parts(directory):
    return sorted(p for p in Path(directory).iterdir() if p.name.endswith(".part"))


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_part_a_killed_write_left_is_removed_by_the_next_write(tmp_path, writer):
    [part] = _parts(tmp_path)
    assert str(writer.pid) in part.name
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    _age(part, 120)
    said = []
    cache = DataCache(tmp_path, log=said.append)
    cache.store("entry", ARRAYS)
    assert _parts(tmp_path) == []
    assert said == [f"removed {part}, a partial write of this entry that never finished"]
    np.testing.assert_array_equal(cache.load("entry")["a"], ARRAYS["a"])


def test_a_part_a_live_process_is_writing_is_kept(tmp_path, writer):
    [part] = _parts(tmp_path)
    _age(part, 2 * 60)  # a live writer, however long it has not written
    DataCache(tmp_path).store("entry", ARRAYS)
    assert _parts(tmp_path) == [part]


def test_a_dead_writers_part_written_just_now_is_kept_a_while(tmp_path, writer):
    """A writer on another machine sharing the folder has a process id this machine does not
    know: its .part is kept while it is still growing."""
    [part] = _parts(tmp_path)
    writer.kill()
    writer.wait()
    assert remove_stale_parts(tmp_path, "entry") == []
    assert remove_stale_parts(tmp_path, "entry", now=time.time() + 61) == [part]


def test_an_abandoned_part_is_removed_whoever_wrote_it(tmp_path):
    old = tmp_path / ".entry.x7f3k2.part"  # no process id in its name: an older writer's
    old.write_bytes(b"x" * 100)
    other = tmp_path / ".other.1-abc.part"  # another entry's: not this write's to remove
    other.write_bytes(b"x")
    _age(old, 3600)
    _age(other, 3600)
    assert remove_stale_parts(tmp_path, "entry") == [old]
    assert _parts(tmp_path) == [other]
