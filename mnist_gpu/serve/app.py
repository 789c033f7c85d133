"""The web application (Starlette): the page, its one WebSocket, and the guards every request
passes.

* ``/`` serves the page and ``/app.js``, ``/style.css`` its script and style (package data; no
  other site is ever named), each with a Content-Security-Policy that allows nothing else.
* ``/socket`` is the page's WebSocket: JSON messages checked by ``protocol.parse``; frames
  pulled by the page at its own drawing rate (``LiveRun.frame``), so that a hidden tab, which
  draws nothing, asks for nothing, and a closed one is forgotten with its socket.
* Every request whose ``Host`` is not an address of this server is refused (400), so that a
  site whose name an attacker points at 127.0.0.1 (DNS rebinding) reads nothing; a WebSocket
  from a page of another origin is refused before it opens (403).
"""

from __future__ import annotations

import asyncio
import json
import socket
from importlib import resources
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..model.presets import PRESETS
from ..viz import digits
from ..viz.figures import TUTORIAL_POINTS
from . import live as live_run
from . import protocol, snapshot

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
# How long a page waits for a frame before it is told the run is busy.
FRAME_TIMEOUT = 5.0
WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str) -> set[str]:
    """The names a request may give in ``Host`` for a server bound to ``host``: that address, and
    the loopback names when it is a loopback or wildcard one; a wildcard adds this machine's
    name and addresses (a user who listens on every interface means to be reached by them)."""
    names = {host.strip("[]").lower()}
    loopback = {"127.0.0.1", "localhost", "::1"}
    if host in loopback or host in WILDCARDS:
        names |= loopback
    if host in WILDCARDS:
        machine = socket.gethostname().lower()
        names |= {machine, socket.getfqdn().lower()}
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(machine, None)}
        except OSError:
            pass
    return names - {""}


def split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (an IPv6 address in brackets) as (lower-case host, port or None)."""
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return "", None


class Guard:
    """ASGI middleware: refuse a foreign ``Host`` (and a WebSocket's foreign ``Origin``); add
    the security headers to every HTTP response."""

    def __init__(self, app, hosts: set[str], port: int):
        self.app, self.hosts, self.port = app, hosts, port

    def host_ok(self, value: str) -> bool:
        name, port = split_host(value)
        return name in self.hosts and (port or 80) == self.port

    def origin_ok(self, value: str | None) -> bool:
        if value is None:  # not a browser: no page of another site is behind it
            return True
        parts = urlsplit(value)
        return parts.scheme == "http" and self.host_ok(parts.netloc)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if scope["type"] == "websocket":
            if not (self.host_ok(host) and self.origin_ok(headers.get("origin"))):
                await send({"type": "websocket.close", "code": 1008})
                return
            return await self.app(scope, receive, send)
        if not self.host_ok(host):
            response = PlainTextResponse(f"refused: Host {host[:80]!r} is not this server's "
                                         "address\n", status_code=400)
            return await response(scope, receive, send)

        async def secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", []))
                           + [(k.encode(), v.encode()) for k, v in _security_headers(host)]}
            await send(message)
        return await self.app(scope, receive, secured)


def _security_headers(host: str) -> list[tuple[str, str]]:
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              f"connect-src 'self' ws://{host}; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return [("content-security-policy", policy), ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"), ("cache-control", "no-store"),
            ("x-frame-options", "DENY")]


def presets() -> dict:
    """The presets a page offers, with their settings and figures."""
    return {name: {"settings": PRESETS[name].settings, "measured": PRESETS[name].measured}
            for name in live_run.LIVE_PRESETS}


class Pages:
    """The pages connected now (a set: a closed one is dropped with its socket)."""

    def __init__(self):
        self.sockets: set[WebSocket] = set()


def create_app(live: live_run.LiveRun, host: str, port: int, saved=None, note: str = ""):
    """The application for ``live``, served on ``host``:``port``. ``saved``: (name,
    architecture, parameters) of ``--weights``, which the drawing is scored with; ``note``: what
    the page says about where it listens (empty on the loopback address)."""
    pages = Pages()
    static = resources.files(__package__) / "static"
    files = {path: ((static / name).read_bytes(), kind) for path, (name, kind) in STATIC.items()}
    about = {"presets": presets(), "tutorial_points": TUTORIAL_POINTS,
             "saved": saved[0] if saved else None, "note": note,
             "limits": {"max_side": protocol.MAX_SIDE, "min_pace": protocol.MIN_PACE,
                        "max_pace": protocol.MAX_PACE}}
    encoded = {}  # the JSON of the latest snapshot, made once for every page

    async def page(request):
        body, kind = files[request.url.path]
        return Response(body, media_type=kind)

    def snapshot_json(snap) -> str:
        key = (snap.run_id, snap.version)
        if key not in encoded:
            encoded.clear()
            encoded[key] = json.dumps(snap.message())
        return encoded[key]

    async def frame(websocket, command):
        future = live.frame(command["run"], command["version"])
        try:
            snap = await asyncio.wait_for(asyncio.wrap_future(future), FRAME_TIMEOUT)
        except asyncio.TimeoutError:
            snap = None
        state = json.dumps({**live.state(), "pages": len(pages.sockets)})
        shown = snapshot_json(snap) if snap is not None else "null"
        await websocket.send_text(f'{{"type": "frame", "state": {state}, "snapshot": {shown}}}')

    async def draw(websocket, command):
        if command["model"] == "saved" and saved:
            arch, params = saved[1], saved[2]
        else:
            snap = await asyncio.wrap_future(live.frame())
            if snap is None:
                raise protocol.Refused("the run has no weights yet")
            arch, params = snap.arch, snap.params
        reply = await anyio.to_thread.run_sync(_score_drawing, command["gray"], arch, params)
        await websocket.send_text(json.dumps({"type": "scores", **reply}))

    def control(command):
        action = command["action"]
        {"play": live.play, "pause": live.pause, "step": live.step, "reset": live.reset}[action]()

    handlers = {"frame": frame, "draw": draw}
    acts = {"control": control, "alpha": lambda c: live.set_alpha(c["value"]),
            "pace": lambda c: live.set_pace(c["value"]),
            "setup": lambda c: live.reset(live_run.Setup(c["preset"], c["batch_size"],
                                                         c["epochs"]))}

    async def socket_endpoint(websocket: WebSocket):
        await websocket.accept()
        pages.sockets.add(websocket)
        try:
            await websocket.send_text(json.dumps({"type": "hello", **about}))
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await _answer(websocket, message.get("text"))
        except WebSocketDisconnect:
            pass
        finally:
            pages.sockets.discard(websocket)

    async def _answer(websocket, text):
        try:
            if text is None:
                raise protocol.Refused("binary messages are not read: send JSON text")
            command = protocol.parse(text, live_run.LIVE_PRESETS)
            if command["type"] in handlers:
                await handlers[command["type"]](websocket, command)
            else:
                acts[command["type"]](command)
                await websocket.send_text(json.dumps({"type": "ok", "state": live.state()}))
        except protocol.Refused as err:
            await websocket.send_text(json.dumps({"type": "refused", "reason": str(err)}))

    routes = [Route(path, page) for path in STATIC] + [WebSocketRoute("/socket", socket_endpoint)]
    guard = Guard(Starlette(routes=routes), allowed_hosts(host), port)
    guard.pages = pages
    return guard


def _score_drawing(gray, arch, params) -> dict:
    """A drawing prepared as ``predict`` prepares a file (``digits.prepare_digit``) and scored;
    an empty one (no ink) says so instead."""
    try:
        image = digits.prepare_digit(gray, "the drawing")
    except digits.ImageReadError:
        return {"empty": True}
    scores = snapshot.scores(params, arch, image)
    return {"empty": False, "image": snapshot.encode(image.reshape(784)), "scores": scores,
            "digit": int(max(range(10), key=lambda d: scores[d]))}
