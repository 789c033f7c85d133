"""How a sweep reaches its cluster: a scheduler's address checked before Dask is asked, and the
cluster's own processes started out of reach of a terminal's Ctrl-C (the client stops them)."""

from __future__ import annotations

import signal
import threading
from urllib.parse import urlsplit


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message says why, in one line."""


def scheduler_address(spec: str) -> str:
    """``tcp://HOST:PORT`` checked (a host, a port from 1 to 65535), or one ``ClusterError``
    line saying what is wrong, before Dask is asked."""
    expected = f"--cluster {spec}: expected tcp://HOST:PORT (a running scheduler's address)"
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as err:
        raise ClusterError(f"{expected}: {err}") from None
    if parts.scheme != "tcp":
        raise ClusterError(f"{expected}, not {parts.scheme or 'a schemeless'}://...")
    if not parts.hostname:
        raise ClusterError(f"{expected}: no host")
    if port is None or port == 0:
        raise ClusterError(f"{expected}: no port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ClusterError(f"{expected}: only a host and a port")
    return f"tcp://{parts.netloc}"


def dask_setup(worker) -> None:
    """Run by each worker of a cluster started here, as it starts (Dask's ``preload`` of this
    module): it ignores SIGINT. A terminal's Ctrl-C reaches every process of the terminal's
    group; the workers would each print a traceback and die while the client shuts them down
    (and the shutdown then waits on them), where the client alone is interrupted and stops
    them."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
