"""The server's life: a socket bound before anything is printed (``--port 0`` names the port the
system chose), uvicorn serving the application in a thread of its own, and the main thread
waiting for Ctrl-C or SIGTERM, which stop everything within ``STOP_SECONDS``.

uvicorn runs outside the main thread so that the signals are this module's: uvicorn neither
installs handlers nor raises the signal again after its shutdown. The listening socket has
``SO_REUSEADDR``, so the port can be bound again the moment the server is gone, whatever its
closed connections still wait for.
"""

from __future__ import annotations

import signal
import socket
import threading

import uvicorn

from .protocol import MAX_MESSAGE_BYTES

# Open connections are closed (the pages are told: 1012, the service restarts) and waited for
# this long at most; the whole stop stays within 3 seconds.
STOP_SECONDS = 1.5
SIGTERM_STATUS = 128 + signal.SIGTERM


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def address(host: str, port: int) -> str:
    """The page's URL for a server bound to ``host``:``port``."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app, sock: socket.socket, on_stop=None) -> int:
    """Serve ``app`` on ``sock`` until SIGTERM (returns 143) or Ctrl-C (``KeyboardInterrupt``
    goes on up, as in every command: 130); 1 if the server stopped by itself. ``on_stop()``
    runs first when it stops (it ends the training thread)."""
    config = uvicorn.Config(app, ws="websockets-sansio", ws_max_size=MAX_MESSAGE_BYTES + 4096,
                            lifespan="off", log_level="error", access_log=False,
                            timeout_graceful_shutdown=STOP_SECONDS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="mnist-gpu server", daemon=True)
    terminated = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.set())
    try:
        thread.start()
        while thread.is_alive() and not terminated.is_set():
            terminated.wait(0.25)  # Ctrl-C raises KeyboardInterrupt here
    finally:
        if on_stop:
            on_stop()
        server.should_exit = True
        thread.join(STOP_SECONDS + 0.5)
        sock.close()
        signal.signal(signal.SIGTERM, previous)
    return SIGTERM_STATUS if terminated.is_set() else 1
