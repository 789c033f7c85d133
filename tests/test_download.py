"""The download path against a local HTTP server on 127.0.0.1: fallback and the final error, two
processes downloading into one folder, and a full disk (nothing partial left).

Every load here says ``offline=False``: CI sets MNIST_GPU_OFFLINE=1 for everything else.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import http.server
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import REPO, gz, idx_bytes

from mnist_gpu.data import MNIST_FILES, DataError, FileSpec, load_mnist


class Server:
    """Serves ``routes[path] = (status, body)``; records every request path."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                status, body = server.routes.get(self.path, (404, b"<html>404</html>"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def mirror(self, name):
        return f"{self.base}/{name}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def published(tiny_mnist_arrays):
    """(specs, {name: gz bytes}) for a tiny data set standing in for the published files."""
    specs, blobs = [], {}
    for name, array in tiny_mnist_arrays.items():
        raw = idx_bytes(array)
        packed = gz(raw)
        blobs[name] = packed
        specs.append(FileSpec(name, "images" if array.ndim == 3 else "labels",
                              hashlib.sha256(raw).hexdigest(), len(packed),
                              hashlib.sha256(packed).hexdigest()))
    return specs, blobs


def serve_all(server, mirror, blobs, spoil=lambda name, blob: (200, blob)):
    for name, blob in blobs.items():
        server.routes[f"/{mirror}/{name}.gz"] = spoil(name, blob)


def no_part_files(directory):
    return not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_downloads_verified_files_into_place(tmp_path, server, published):
    specs, blobs = published
    serve_all(server, "good", blobs)
    data = load_mnist(tmp_path / "cache", offline=False, mirrors=[server.mirror("good")],
                      files=specs)
    assert data.train_images.shape == (12, 784)
    for spec in specs:
        assert (tmp_path / "cache" / f"{spec.name}.gz").read_bytes() == blobs[spec.name]
    assert no_part_files(tmp_path / "cache")
    # A second load trusts the stored, verified files and asks nothing of the network.
    server.requests.clear()
    load_mnist(tmp_path / "cache", offline=False, mirrors=[server.mirror("good")],
                      files=specs)
    assert server.requests == []


SPOILERS = {
    "404": lambda name, blob: (404, b"<html>Not Found</html>"),
    "500": lambda name, blob: (500, b"oops"),
    "html page": lambda name, blob: (200, b"<!DOCTYPE html><html>moved</html>"),
    "truncated": lambda name, blob: (200, blob[: len(blob) // 2]),
    "wrong file": lambda name, blob: (200, gz(b"\x00\x00\x08\x01" + bytes(8))),
    "same size, other bytes": lambda name, blob: (200, blob[:-1] + bytes([blob[-1] ^ 0xFF])),
}


@pytest.mark.parametrize("fault", SPOILERS, ids=list(SPOILERS))
def test_a_bad_mirror_falls_back_to_the_next(tmp_path, server, published, fault):
    specs, blobs = published
    serve_all(server, "bad", blobs, SPOILERS[fault])
    serve_all(server, "good", blobs)
    data = load_mnist(tmp_path, offline=False,
                      mirrors=[server.mirror("bad"), server.mirror("good")], files=specs)
    assert data.test_images.shape == (5, 784)
    assert any(r.startswith("/bad/") for r in server.requests)
    for spec in specs:
        assert (tmp_path / f"{spec.name}.gz").read_bytes() == blobs[spec.name]
    assert no_part_files(tmp_path)


def test_when_every_mirror_fails_one_error_says_how_to_place_the_files(tmp_path, server,
                                                                         published):
    specs, blobs = published
    serve_all(server, "html", blobs, SPOILERS["html page"])
    serve_all(server, "short", blobs, SPOILERS["truncated"])
    mirrors = [server.mirror("html"), server.mirror("short"), server.mirror("missing")]
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, offline=False, mirrors=mirrors, files=specs)
    message = str(info.value)
    for fault in ("starts like an HTML page", "truncated", "HTTP 404"):
        assert fault in message
    for spec in specs:
        assert spec.name in message and spec.gz_sha256 in message
    assert str(tmp_path) in message and "MNIST_GPU_DATA" in message
    assert not any(p.name.endswith(".gz") for p in tmp_path.iterdir())  # nothing half-trusted
    assert no_part_files(tmp_path)


def test_a_wrong_stored_file_is_replaced_by_a_verified_download(tmp_path, server, published):
    specs, blobs = published
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>cached error page</html>")
    serve_all(server, "good", blobs)
    load_mnist(tmp_path, offline=False, mirrors=[server.mirror("good")], files=specs)
    assert (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes() == blobs[
        "train-labels-idx1-ubyte"]


def test_offline_never_touches_the_network(tmp_path, server, published):
    specs, blobs = published
    serve_all(server, "good", blobs)
    with pytest.raises(DataError, match="downloads are off"):
        load_mnist(tmp_path, offline=True, mirrors=[server.mirror("good")], files=specs)
    assert server.requests == []


def test_real_published_files_download_and_verify(tmp_path, server, mnist_dir_path):
    """The genuine manifest, on the two small files whose shared copies are the published .gz."""
    specs = [s for s in MNIST_FILES if s.kind == "labels"]
    for spec in specs:
        server.routes[f"/m/{spec.name}.gz"] = (200, (mnist_dir_path / f"{spec.name}.gz")
                                               .read_bytes())
    from mnist_gpu.data.download import download

    for spec in specs:
        content, failures = download(spec, tmp_path, [server.mirror("m")])
        assert failures == [] and hashlib.sha256(content).hexdigest() == spec.raw_sha256


def test_a_corrupt_stored_copy_is_set_aside_and_replaced_online(server, published, tmp_path):
    specs, blobs = published
    serve_all(server, "m", blobs)
    for name, blob in blobs.items():
        (tmp_path / f"{name}.gz").write_bytes(blob)
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"<!DOCTYPE html><html>Moved</html>")
    said = []
    load_mnist(tmp_path, offline=False, mirrors=[server.mirror("m")], files=specs,
               log=said.append)
    assert bad.read_bytes() == blobs["t10k-labels-idx1-ubyte"]  # the published file now
    kept = tmp_path / "t10k-labels-idx1-ubyte.gz.rejected"
    assert kept.read_bytes().startswith(b"<!DOCTYPE")  # the bad copy kept, not deleted
    assert any("not gzip: starts like an HTML page" in line and "set aside as "
               "t10k-labels-idx1-ubyte.gz.rejected" in line for line in said), said
    assert server.requests == ["/m/t10k-labels-idx1-ubyte.gz"]


def test_two_processes_downloading_into_one_directory(tmp_path, tiny_mnist_arrays):
    server = Server()
    try:
        specs, blobs = [], {}
        for name, array in tiny_mnist_arrays.items():
            raw = idx_bytes(array)
            packed = gzip.compress(raw, mtime=0)
            blobs[name] = packed
            specs.append(FileSpec(name, "images" if array.ndim == 3 else "labels",
                                  hashlib.sha256(raw).hexdigest(), len(packed),
                                  hashlib.sha256(packed).hexdigest()))
        serve_all(server, "m", blobs)
        code = textwrap.dedent(f"""
            import sys
            from mnist_gpu.data import FileSpec, load_mnist
            specs = [FileSpec(*s) for s in {[tuple(vars(s).values()) for s in specs]!r}]
            for _ in range(20):
                data = load_mnist({str(tmp_path)!r}, offline=False,
                                  mirrors=[{server.mirror("m")!r}], files=specs)
                assert data.train_images.shape == (12, 784)
            print("ok")
        """)
        procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        server.close()
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and out.strip() == "ok", err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    for spec in specs:
        assert (tmp_path / f"{spec.name}.gz").read_bytes() == blobs[spec.name]


def test_a_full_disk_leaves_nothing_behind(tmp_path, monkeypatch, tiny_mnist_arrays):
    from mnist_gpu.io import files as data_module

    raw = idx_bytes(tiny_mnist_arrays["t10k-labels-idx1-ubyte"])
    packed = gzip.compress(raw, mtime=0)
    spec = FileSpec("t10k-labels-idx1-ubyte", "labels", hashlib.sha256(raw).hexdigest(),
                    len(packed), hashlib.sha256(packed).hexdigest())
    server = Server()
    server.routes[f"/m/{spec.name}.gz"] = (200, packed)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data_module.os, "fsync", full)
    try:
        with pytest.raises(DataError, match="No space left on device"):
            load_mnist(tmp_path, offline=False, mirrors=[server.mirror("m")], files=[spec])
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []
