"""``mnist-gpu serve`` without a browser: the protocol through Starlette's test client (controls,
refusals, Host and Origin, two pages, disconnects, the weights of ``train``), and the command
itself in a subprocess (its line, its signals, its port). The page in a real browser:
``test_serve_browser.py``."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install "
                                        "'mnist-gpu[serve]')")
pytest.importorskip("PIL", reason="Pillow (the serve extra) is not installed")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from mnist_gpu import cli  # noqa: E402
from mnist_gpu.backend import get_backend  # noqa: E402
from mnist_gpu.model import network  # noqa: E402
from mnist_gpu.serve.app import create_app  # noqa: E402
from mnist_gpu.serve.live import LiveRun, Setup  # noqa: E402
from mnist_gpu.training import TrainConfig, config_from_preset, to_device_data  # noqa: E402
from mnist_gpu.training import train, train_mlp  # noqa: E402

PORT = 8000
BASE = f"http://127.0.0.1:{PORT}"
ORIGIN = {"origin": BASE}
SOCKET = f"ws://127.0.0.1:{PORT}/socket"
LIMIT = 2_000


@pytest.fixture(scope="module")
def data(mnist):
    return to_device_data(get_backend("numpy"), mnist, "float32", limit=LIMIT)


@pytest.fixture
def live(data):
    run = LiveRun(data)
    run.start()
    assert run.wait_for(lambda s: s["status"] == "ready", 60)
    yield run
    run.close()


@pytest.fixture
def client(live):
    with TestClient(create_app(live, "127.0.0.1", PORT), base_url=BASE) as test_client:
        yield test_client


@pytest.fixture
def page(client):
    """``page()``: a connected page, its hello read; all closed at the end of the test."""
    with contextlib.ExitStack() as stack:
        def connect(test_client=client):
            ws = stack.enter_context(test_client.websocket_connect(SOCKET, headers=ORIGIN))
            hello = ws.receive_json()
            assert hello["type"] == "hello" and "tutorial" in hello["presets"]
            return ws
        yield connect


def ask(ws, **message):
    ws.send_text(json.dumps(message))
    return ws.receive_json()


def frame(ws, have=None):
    run, version = have or (None, None)
    reply = ask(ws, type="frame", run=run, version=version)
    assert reply["type"] == "frame"
    return reply


def maps(reply) -> bytes:
    return base64.b64decode(reply["snapshot"]["maps"]["data"])


def test_the_first_frame_has_the_ten_maps_and_the_first_image(page, client):
    ws = page()
    reply = frame(ws)
    snap, state = reply["snapshot"], reply["state"]
    assert state["seen"] == 0 and state["status"] == "ready" and not state["playing"]
    assert snap["maps"]["count"] == 10 and len(maps(reply)) == 10 * 784
    current = snap["current"]
    assert current["index"] == 0 and len(current["pred"]) == 10
    np.testing.assert_allclose(np.array(current["delta"]),
                               np.array(current["pred"]) - np.eye(10)[current["label"]])
    np.testing.assert_allclose(current["error"], np.array(current["delta"]) ** 2)


def test_step_play_pause(page, client, live):
    ws = page()
    first = frame(ws)
    assert ask(ws, type="control", action="step")["type"] == "ok"
    assert live.wait_for(lambda s: s["seen"] == 1)
    stepped = frame(ws, (first["snapshot"]["run"], first["snapshot"]["version"]))
    assert stepped["snapshot"]["seen"] == 1 and maps(stepped) != maps(first)
    ask(ws, type="pace", value=500)
    ask(ws, type="control", action="play")
    assert live.wait_for(lambda s: s["seen"] >= 50)
    ask(ws, type="control", action="pause")
    assert live.wait_for(lambda s: s["status"] == "paused")
    paused = frame(ws)
    have = (paused["snapshot"]["run"], paused["snapshot"]["version"])
    again = frame(ws, have)
    assert again["snapshot"] is None and again["state"]["seen"] == paused["snapshot"]["seen"]
    ask(ws, type="control", action="reset")
    assert live.wait_for(lambda s: s["seen"] == 0 and s["status"] == "ready")


@pytest.mark.parametrize("message, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"type": "launch"}', "unknown message type"),
    ('{"type": "control", "action": "explode"}', "control action"),
    ('{"type": "alpha", "value": 0}', "positive finite"),
    ('{"type": "alpha", "value": -0.5}', "positive finite"),
    ('{"type": "alpha", "value": NaN}', "positive finite"),
    ('{"type": "alpha", "value": 1e400}', "positive finite"),
    ('{"type": "alpha", "value": "0.1"}', "must be a number"),
    ('{"type": "alpha", "value": true}', "must be a number"),
    ('{"type": "pace", "value": 0}', "pace must be"),
    ('{"type": "setup", "preset": "cnn"}', "preset must be"),
    ('{"type": "setup", "preset": "mlp", "batch_size": 0}', "batch_size"),
    ('{"type": "draw", "width": 600, "height": 600, "pixels": ""}', "width"),
    ('{"type": "draw", "width": 10, "height": 10, "pixels": "AAAA"}', "needs 100 pixels"),
    ('{"type": "draw", "width": 2, "height": 2, "pixels": "' + "A" * 5000 + '"}',
     "more than 4 pixels"),
    ('{"type": "draw", "width": 2, "height": 2, "pixels": "!!!!"}', "not base64"),
])
def test_a_bad_message_is_refused_with_a_reason_and_the_run_untouched(page, client, live, message,
                                                                     reason):
    ws = page()
    before = live.state()
    ws.send_text(message)
    reply = ws.receive_json()
    assert reply["type"] == "refused" and reason in reply["reason"], reply
    after = live.state()
    assert {k: after[k] for k in ("run", "seen", "alpha", "pace", "preset", "playing")} == \
        {k: before[k] for k in ("run", "seen", "alpha", "pace", "preset", "playing")}
    assert frame(ws)["state"]["status"] == "ready"  # the connection goes on


def test_a_binary_message_is_refused(page, client):
    ws = page()
    ws.send_bytes(b"\x00\x01")
    assert ws.receive_json()["type"] == "refused"


def test_a_foreign_host_is_refused_dns_rebinding(client):
    assert client.get("/").status_code == 200
    refused = client.get("/", headers={"host": f"attacker.example:{PORT}"})
    assert refused.status_code == 400 and "refused" in refused.text
    assert client.get("/", headers={"host": "127.0.0.1:9999"}).status_code == 400
    assert client.get("/", headers={"host": f"localhost:{PORT}"}).status_code == 200
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect(SOCKET, headers={"host": f"attacker.example:{PORT}"}):
            pass


@pytest.mark.parametrize("origin", ["http://attacker.example", f"http://evil.test:{PORT}",
                                    "http://127.0.0.1:9999", f"https://127.0.0.1:{PORT}",
                                    "null"])
def test_a_websocket_from_another_origin_is_refused(client, origin):
    with pytest.raises(WebSocketDisconnect):
        with client.websocket_connect(SOCKET, headers={"origin": origin}):
            pass


def test_every_response_carries_the_security_headers(client):
    for path in ("/", "/app.js", "/style.css"):
        response = client.get(path)
        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "http" not in client.get("/").text.replace(BASE, "")  # nothing from another site


def test_two_pages_share_one_run(page, client, live):
    one = page()
    two = page()
    ask(one, type="alpha", value=0.005)
    ask(one, type="control", action="step")
    assert live.wait_for(lambda s: s["seen"] == 1)
    state = frame(two)["state"]
    assert state["alpha"] == 0.005 and state["seen"] == 1 and state["pages"] == 2


def test_closed_pages_are_forgotten(page, client):
    app = client.app
    page()  # one that stays
    tracemalloc.start()
    for round_ in range(2):
        for _ in range(150):
            with client.websocket_connect(SOCKET, headers=ORIGIN) as ws:
                ws.receive_json()
                frame(ws)
        if round_ == 0:
            before = tracemalloc.take_snapshot()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(app.pages.sockets) == 1
    assert grown < 512 * 1024, f"{grown:,} bytes more after 150 more pages came and went"


def test_paced_and_paused_run_gives_the_weights_of_train(page, client, live, data):
    ws = page()
    ask(ws, type="pace", value=2_000)
    ask(ws, type="control", action="play")
    assert live.wait_for(lambda s: s["seen"] >= 300)
    ask(ws, type="control", action="pause")
    for _ in range(3):
        ask(ws, type="control", action="step")
    ask(ws, type="pace", value=None)
    ask(ws, type="control", action="play")
    assert live.wait_for(lambda s: s["status"] == "done", 60)
    snap = live.frame().result(10)
    expected = train(data, TrainConfig()).weights
    assert snap.seen == LIMIT and np.array_equal(snap.params[0][0], expected)
    assert [seen for seen, _ in live.state()["checkpoints"]] == [0, 100, 1000, LIMIT]


def test_mlp_with_mini_batches_gives_the_weights_of_train(live, data):
    live.reset(Setup("mlp", batch_size=50, epochs=1))
    assert live.wait_for(lambda s: s["status"] == "ready" and s["preset"] == "mlp", 60)
    live.set_pace(20)
    live.play()
    assert live.wait_for(lambda s: s["seen"] >= 100)
    live.pause()
    live.step()
    live.set_pace(None)
    live.play()
    assert live.wait_for(lambda s: s["status"] == "done", 120)
    snap = live.frame().result(10)
    assert snap.maps["count"] == 100 and snap.maps["units"] == 256
    expected = train_mlp(data, config_from_preset("mlp", batch_size=50, epochs=1)).params
    assert len(network.flat(snap.params)) == len(network.flat(expected)) == 4
    assert all(np.array_equal(a, b)
               for a, b in zip(network.flat(snap.params), network.flat(expected)))


def test_alpha_changes_without_a_reset(page, client, live):
    ws = page()
    ask(ws, type="control", action="step")
    assert live.wait_for(lambda s: s["seen"] == 1)
    assert ask(ws, type="alpha", value=0.5)["state"]["alpha"] == 0.5
    ask(ws, type="control", action="step")
    assert live.wait_for(lambda s: s["seen"] == 2)
    assert live.trainee.rates.alphas == [0.5] and live.state()["run"] == 0


def drawing(image28: np.ndarray, scale: int = 10) -> np.ndarray:
    """A 28x28 digit as a page draws it: dark ink on white, ``scale`` times larger."""
    big = np.kron(image28.reshape(28, 28).astype(np.float64), np.ones((scale, scale)))
    return (255 - big).astype(np.uint8)


def draw(ws, gray, model="live"):
    return ask(ws, type="draw", width=gray.shape[1], height=gray.shape[0], model=model,
               pixels=base64.b64encode(gray.tobytes()).decode())


def test_a_drawing_is_scored_as_predict_scores_the_same_picture(data, mnist, tmp_path, capsys):
    from PIL import Image

    weights = tmp_path / "w.npz"
    assert cli.main(["train", "--limit", "2000", "--quiet", "--offline", "--save",
                     str(weights)]) == 0
    from mnist_gpu.model.saved import load_model

    arch, params = load_model(weights)
    run = LiveRun(data)
    app = create_app(run, "127.0.0.1", PORT, saved=(str(weights), arch, params))
    with TestClient(app, base_url=BASE) as client, \
            client.websocket_connect(SOCKET, headers=ORIGIN) as ws:
        assert ws.receive_json()["type"] == "hello"
        gray = drawing(mnist.test_images[0])
        reply = draw(ws, gray, "saved")
        Image.fromarray(gray).save(tmp_path / "drawing.png")
        capsys.readouterr()
        assert cli.main(["predict", str(tmp_path / "drawing.png"), "--weights", str(weights),
                         "--json"]) == 0
        predicted = json.loads(capsys.readouterr().out)["predictions"][0]
        assert reply.get("digit") == predicted["digit"], reply
        np.testing.assert_allclose(reply["scores"], predicted["scores"], rtol=1e-6)
        assert draw(ws, np.full((280, 280), 255, np.uint8), "saved") == \
            {"type": "scores", "empty": True}
        for shape in _shapes():
            reply = draw(ws, shape, "saved")
            assert reply["type"] == "scores" and not reply["empty"]
            assert all(np.isfinite(reply["scores"]))


def _shapes():
    """A dot, a scribble that fills the canvas, a thin stroke and a thick one."""
    dot = np.full((280, 280), 255, np.uint8)
    dot[140:143, 140:143] = 0
    filled = np.full((280, 280), 255, np.uint8)
    filled[5:275:2, 3:277] = 0
    thin = np.full((280, 280), 255, np.uint8)
    thin[40:240, 139] = 0
    thick = np.full((280, 280), 255, np.uint8)
    thick[30:250, 100:180] = 0
    return dot, filled, thin, thick


# --------------------------------------------------------------------------- the command


def test_without_the_extra_the_command_names_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mnist-gpu[serve]'" in err[0]


def test_mnist_gpu_and_its_other_commands_import_nothing_of_the_server():
    code = ("import sys, mnist_gpu\n"
            "from mnist_gpu import cli\n"
            "cli.build_parser()\n"
            "assert cli.main(['train', '--limit', '500', '--quiet', '--offline']) == 0\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in "
            "('starlette', 'uvicorn', 'websockets', 'anyio', 'h11') or "
            "m.startswith('mnist_gpu.serve')]\n"
            "print(loaded)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def start_server(*flags):
    process = subprocess.Popen([sys.executable, "-m", "mnist_gpu.cli", "serve", "--port", "0",
                                "--limit", "1000", "--offline", *flags],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("serving on http://127.0.0.1:"), (line, process.stderr.read())
    assert line.rstrip().endswith("/ (Ctrl-C to stop)")
    return process, int(line.split(":")[2].split("/")[0])


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_one_signal_stops_it_within_3_s_with_pages_open(sig, status):
    from websockets.sync.client import connect

    process, port = start_server()
    try:
        with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"
            ws.send(json.dumps({"type": "frame"}))
            assert json.loads(ws.recv(timeout=30))["type"] == "frame"
            began = time.monotonic()
            process.send_signal(sig)
            assert process.wait(timeout=10) == status
            took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
    err = process.stderr.read()
    assert took < 3.0, f"stopped in {took:.1f} s"
    assert "Traceback" not in err, err
    again = socket.socket()
    again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    again.bind(("127.0.0.1", port))  # the port is free at once
    again.close()


def test_a_port_in_use_is_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        done = subprocess.run([sys.executable, "-m", "mnist_gpu.cli", "serve", "--port",
                               str(taken.getsockname()[1]), "--limit", "100", "--offline"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"})
    finally:
        taken.close()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("mnist-gpu: error: --host 127.0.0.1")


def test_listening_beyond_the_loopback_is_said_and_still_guarded(live):
    from mnist_gpu.serve.app import allowed_hosts

    assert {"127.0.0.1", "localhost"} <= allowed_hosts("0.0.0.0")
    assert "attacker.example" not in allowed_hosts("0.0.0.0")
    note = "listening on 0.0.0.0 (--host): other machines can open this page"
    app = create_app(live, "0.0.0.0", PORT, note=note)
    with TestClient(app, base_url=BASE) as client:
        assert client.get("/", headers={"host": f"attacker.example:{PORT}"}).status_code == 400
        with client.websocket_connect(SOCKET, headers=ORIGIN) as ws:
            assert ws.receive_json()["note"] == note


def test_a_page_that_asks_for_nothing_costs_no_copy_of_the_weights(page, live):
    ws = page()  # connected, but hidden: it asks for no frame
    frame(ws)
    copies = live.copies
    ask(ws, type="setup", preset="tutorial", epochs=3)
    assert live.wait_for(lambda s: s["status"] == "ready" and s["epochs"] == 3)
    ask(ws, type="pace", value=None)
    ask(ws, type="control", action="play")
    assert live.wait_for(lambda s: s["status"] == "done", 60)
    assert live.copies == copies  # the whole run trained without one frame made
    frame(ws)
    assert live.copies == copies + 1


def test_open_opens_the_printed_address_in_the_browser(tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nimport sys\nopen({str(opened)!r}, 'w')"
                       ".write(sys.argv[1])\n")
    browser.chmod(0o755)
    process = subprocess.Popen([sys.executable, "-m", "mnist_gpu.cli", "serve", "--port", "0",
                                "--limit", "100", "--offline", "--open"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "BROWSER": str(browser)})
    try:
        url = process.stdout.readline().split()[2]
        deadline = time.monotonic() + 30
        while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)  # the browser is another process: its file is the only event
        assert opened.read_text() == url
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
