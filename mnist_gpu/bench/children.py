"""The benchmark's child processes, which end with it: on its normal exit, on an exception, on
Ctrl-C or SIGTERM (raised in the parent as an exception, so that each ``finally`` stops its child
and removes its temporary folder), and on Linux even when the parent is killed outright (the
kernel sends the child SIGKILL when its parent dies: ``PR_SET_PDEATHSIG``)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys

# Busy work for a core: what a shared machine's other processes do to ours.
BUSY = (sys.executable, "-c", "while True: pass")
_PR_SET_PDEATHSIG = 1


def _death_signal():
    """The function to run in a child between fork and exec, asking the kernel for SIGKILL when
    the parent dies (Linux's ``prctl``; None elsewhere, where the parent's own ``finally`` is
    what stops it). The C library is loaded here, in the parent: after a fork, in a process
    that has threads, the child may only call what is already loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def start(command, **popen) -> subprocess.Popen:
    """A child process that dies with this one (see the module's notes)."""
    return subprocess.Popen(list(map(str, command)), preexec_fn=_death_signal(), **popen)


def stop(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait()


@contextlib.contextmanager
def running(command, **popen):
    """The block with ``command`` running as a child, stopped (killed and reaped) after it
    however it ends."""
    process = start(command, **popen)
    try:
        yield process
    finally:
        stop(process)


def busy_process():
    """A child process that keeps one core busy for the length of the block. In a session of
    its own, as another terminal's process is: where the system shares the CPU out by session
    first (Linux's autogroups), a busy child in this session would halve this session's share on
    a machine loaded by others, and the ratio would measure that, not the threads."""
    return running(BUSY, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True)
