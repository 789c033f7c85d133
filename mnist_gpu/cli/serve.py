"""``mnist-gpu serve``: a local web page where the tutorial's network learns as the reader
watches, and a canvas to draw a digit on (``mnist_gpu/serve``, ``docs/serve.md``).

It needs the ``serve`` extra; nothing of it is imported before this command runs."""

from __future__ import annotations

import importlib.util
import webbrowser

from .common import UsageError, backend_and_mnist, log
from .evaluate import load_model_or_usage_error
from .train import training_data

# What the extra installs, by the names it is imported as.
EXTRA = ("starlette", "uvicorn", "websockets", "PIL")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def run(args) -> int:
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"serve needs the serve extra ({', '.join(missing)} not installed): "
                         "pip install 'mnist-gpu[serve]'")
    from ..serve import app, live, server

    saved = None
    if args.weights:
        arch, params = load_model_or_usage_error(args.weights)
        saved = (args.weights, arch, params)
    init = saved[2][0][0] if saved and saved[1].is_tutorial else None
    backend, mnist = backend_and_mnist(args)
    data = training_data(args, backend, mnist)
    try:
        sock = server.bind(args.host, args.port)
    except OSError as err:
        raise UsageError(f"--host {args.host} --port {args.port}: cannot listen there "
                         f"({err.strerror or err})") from None
    port = sock.getsockname()[1]
    url = server.address(args.host, port)
    note = "" if args.host in LOOPBACK else (
        f"listening on {args.host} (--host): other machines can open this page")
    run = live.LiveRun(data, seed=args.seed, kernel=args.kernel, init=init)
    application = app.create_app(run, args.host, port, saved, note)
    if note:
        log(f"warning: {note}")
    print(f"serving on {url} (Ctrl-C to stop)", flush=True)
    run.start()
    if args.open:
        webbrowser.open(url)
    return server.serve(application, sock, on_stop=run.close)
