"""``mnist-gpu serve``'s web page: the tutorial's network learning as a reader watches, and a
canvas to draw a digit on. A top layer beside the CLI (only ``cli/serve.py`` imports it), which
needs the ``serve`` extra: ``live.py`` (the run, in a thread of its own), ``snapshot.py`` (what a
frame shows), ``protocol.py`` (the messages a page may send), ``app.py`` (the page, its
WebSocket and the guards), ``server.py`` (the socket, uvicorn and the signals), ``static/`` (the
page itself: HTML, CSS and script, no library)."""
