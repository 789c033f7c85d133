"""`mnist-gpu predict` on the pictures a careless or hostile user gives it: every bad file is one
line naming it (exit 2 alone, exit 1 among good ones), every readable mode gives the digit its
plain version gives, and a photo-sized picture is predicted in bounded memory."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
from conftest import REPO

Image = pytest.importorskip("PIL.Image")

from mnist_gpu import cli  # noqa: E402
from mnist_gpu.viz import digits as visual  # noqa: E402
from mnist_gpu.backend import get_backend  # noqa: E402
from mnist_gpu.training import TrainConfig, to_device_data, train  # noqa: E402
from mnist_gpu.io.weights import save_weights  # noqa: E402


@pytest.fixture(scope="module")
def weights(mnist, tmp_path_factory):
    """The tutorial's network trained by mini-batches (about 80%), saved as train --save does."""
    data = to_device_data(get_backend("numpy"), mnist, "float32")
    result = train(data, TrainConfig(alpha=0.02, batch_size=100, epochs=3))
    path = tmp_path_factory.mktemp("model") / "w.npz"
    save_weights(path, result.weights, result.to_json())
    return path


@pytest.fixture(scope="module")
def digit(mnist, weights, tmp_path_factory):
    """A test image (dark ink on white, 4x, with a margin, as drawn) whose plain PNG the network
    reads as its label: the reference for every other way of storing it."""
    folder = tmp_path_factory.mktemp("digit")
    for index in range(50):
        ink = 255 - np.pad(mnist.test_images[index].reshape(28, 28), 10)
        picture = Image.fromarray(ink).resize((192, 192), Image.Resampling.BILINEAR)
        picture.save(folder / "plain.png")
        if _predicted(weights, folder / "plain.png") == mnist.test_labels[index]:
            return picture, int(mnist.test_labels[index])
    raise AssertionError("no test image read correctly")


def _predicted(weights, path):
    out = subprocess_free_predict([str(path)], weights)
    return out["predictions"][0].get("digit")


def subprocess_free_predict(paths, weights):
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(io.StringIO()):
        cli.main(["predict", *paths, "--weights", str(weights), "--json"])
    return json.loads(buffer.getvalue())


# --------------------------------------------------------------------------- readable pictures


def _rgba_on_transparent(picture):
    ink = 255 - np.asarray(picture)  # how much ink, 0 on the background
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., 3] = ink  # black ink, opaque where drawn; the canvas transparent (and black)
    return Image.fromarray(rgba, "RGBA")


def _palette_on_transparent(picture):
    """A GIF's way: every colour of the palette black, index 0 (the background) transparent."""
    ink = 255 - np.asarray(picture)
    indexed = Image.fromarray(np.where(ink > 64, 1, 0).astype(np.uint8), "P")
    indexed.putpalette([0, 0, 0] * 256)
    indexed.info["transparency"] = 0
    return indexed


WAYS = {
    "rgba on transparent.png": _rgba_on_transparent,
    "la on transparent.png": lambda p: _rgba_on_transparent(p).convert("LA"),
    "16-bit.png": lambda p: Image.fromarray(np.asarray(p).astype(np.uint16) * 257),
    "palette.png": lambda p: p.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE),
    "palette with transparency.gif": lambda p: _palette_on_transparent(p),
    "cmyk.jpg": lambda p: p.convert("CMYK"),
    "rgb.jpg": lambda p: p.convert("RGB"),
    "float.tif": lambda p: Image.fromarray(np.asarray(p).astype(np.float32) / 255),
    "bilevel.png": lambda p: p.point(lambda v: 255 if v > 128 else 0).convert("1"),
}


@pytest.mark.parametrize("name", list(WAYS))
def test_every_readable_mode_gives_the_digit(name, digit, weights, tmp_path):
    picture, label = digit
    path = tmp_path / name
    WAYS[name](picture).save(path)
    assert _predicted(weights, path) == label


# --------------------------------------------------------------------------- bad files


def _png_claiming(width, height):
    """A tiny valid PNG whose header claims width x height (the CRC fixed to match)."""
    import io

    buffer = io.BytesIO()
    Image.new("L", (1, 1), 255).save(buffer, "PNG")
    blob = bytearray(buffer.getvalue())
    ihdr = blob.index(b"IHDR")
    blob[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(blob[ihdr:ihdr + 17])) & 0xFFFFFFFF
    blob[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(blob)


def _make_bad(kind, tmp_path, picture):
    path = tmp_path / f"{kind}.png"
    if kind == "bomb":
        path.write_bytes(_png_claiming(20000, 20000))
    elif kind == "over the cap":
        path.write_bytes(_png_claiming(10000, 8000))  # 80 MP: under Pillow's limit, over ours
    elif kind == "truncated":
        picture.save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif kind == "two frames":
        path = tmp_path / "two.gif"
        picture.save(path, save_all=True, append_images=[picture.rotate(90)])
    elif kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "not an image":
        path.write_text("<html><body>404</body></html>")
    elif kind == "empty folder":
        path = tmp_path / "empty"
        path.mkdir()
    elif kind == "missing":
        path = tmp_path / "nowhere.png"
    return path


BAD = {
    "bomb": "400,000,000 pixels, more than the 64,000,000 accepted",
    "over the cap": "10000x8000 is 80,000,000 pixels, more than the 64,000,000 accepted",
    "truncated": "cannot read the image",
    "two frames": "2 frames",
    "zero bytes": "empty file (0 bytes)",
    "not an image": "not an image Pillow can read",
    "empty folder": "a folder with no pictures",
    "missing": "No such file or directory",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_file_is_one_line_naming_it_with_status_2(kind, digit, weights, tmp_path, capsys):
    path = _make_bad(kind, tmp_path, digit[0])
    assert cli.main(["predict", str(path), "--weights", str(weights)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert str(path) in captured.err and BAD[kind] in captured.err
    assert "Traceback" not in captured.err


def test_one_bad_file_among_good_ones_is_reported_and_the_rest_predicted(
        digit, weights, tmp_path, capsys):
    picture, label = digit
    picture.save(tmp_path / "a.png")
    bad = _make_bad("truncated", tmp_path, picture)
    picture.convert("RGB").save(tmp_path / "b.jpg")
    argv = ["predict", str(tmp_path / "a.png"), str(bad), str(tmp_path / "b.jpg"),
            "--weights", str(weights)]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "a.png"),
                                                       str(tmp_path / "b.jpg")]
    assert all(line.split(": ")[1].split()[0] == str(label) for line in lines)
    assert captured.err.count("\n") == 1 and str(bad) in captured.err

    assert cli.main([*argv, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    files = [p["file"] for p in report["predictions"]]
    assert files == [str(tmp_path / "a.png"), str(bad), str(tmp_path / "b.jpg")]
    assert report["predictions"][0]["digit"] == label and len(report["predictions"][0]["scores"])
    assert "cannot read" in report["predictions"][1]["error"]


def test_a_folder_is_read_picture_by_picture(digit, weights, tmp_path, capsys):
    picture, label = digit
    folder = tmp_path / "digits"
    folder.mkdir()
    picture.save(folder / "one.png")
    picture.convert("RGB").save(folder / "two.JPG")
    (folder / "notes.txt").write_text("not a picture")
    assert cli.main(["predict", str(folder), "--weights", str(weights), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [os.path.basename(p["file"]) for p in report["predictions"]] == ["one.png", "two.JPG"]
    assert {p["digit"] for p in report["predictions"]} == {label}


def test_show_takes_one_image(digit, weights, tmp_path, capsys):
    digit[0].save(tmp_path / "a.png")
    argv = ["predict", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--weights",
            str(weights), "--show", str(tmp_path / "seen.png")]
    assert cli.main(argv) == 2
    assert "--show" in capsys.readouterr().err and not (tmp_path / "seen.png").exists()


# --------------------------------------------------------------------------- memory


# The peak resident size of the process's own memory (VmHWM), read at its end. Not ru_maxrss:
# on Linux a child started by a large process (pytest holding MNIST) inherits its parent's.
MEASURE = textwrap.dedent("""
    import sys
    from mnist_gpu import cli
    status = cli.main(["predict", sys.argv[1], "--weights", sys.argv[2]])
    peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
    print("peak_kib", peak[0], "status", status)
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's VmHWM")
def test_a_photo_sized_picture_is_predicted_in_bounded_memory(digit, weights, tmp_path):
    picture, label = digit
    photo = Image.new("RGB", (6000, 8000), (250, 248, 240))
    photo.paste(picture.convert("RGB").resize((3000, 3000), Image.Resampling.BILINEAR),
                (1500, 2500))
    path = tmp_path / "photo.jpg"
    photo.save(path, quality=90)
    del photo
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(weights)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    words = done.stdout.split()
    assert done.returncode == 0, done.stderr
    assert f"digit: {label}" in done.stdout
    peak_mib = int(words[words.index("peak_kib") + 1]) / 1024
    assert peak_mib < 200, f"peak resident size {peak_mib:.0f} MiB"


def test_reading_reduces_a_large_picture_before_any_float_conversion(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (4000, 300), 255).save(path)
    gray = visual.read_gray(path)
    assert max(gray.shape) <= 2 * visual.WORKING_SIDE and gray.dtype == np.float64


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _shape(kind):
    """Dark ink on white, 200x200: a top-heavy 7, a left-heavy L, a heavy lower right."""
    ink = np.zeros((200, 200), bool)
    if kind == "top-heavy 7":
        ink[20:70, 30:170] = True  # a thick bar
        for row in range(70, 190):  # and a thin stem
            column = 165 - (row - 70) * 80 // 120
            ink[row, column - 3:column + 3] = True
    elif kind == "left-heavy L":
        ink[20:180, 20:90] = True
        ink[170:180, 90:180] = True
    else:  # a thin corner, and most of the ink in a blob at the other end
        ink[20, 20:180] = True
        ink[20:180, 20] = True
        ink[120:180, 120:180] = True
    return np.where(ink, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["top-heavy 7", "left-heavy L", "heavy lower right"])
def test_centring_never_cuts_ink_off(kind, tmp_path, monkeypatch):
    from PIL import Image

    from mnist_gpu.viz import digits

    path = tmp_path / "digit.png"
    Image.fromarray(_shape(kind)).save(path)
    image = digits.mnist_style(path)
    with monkeypatch.context() as unshifted:
        unshifted.setattr(digits, "_shift", lambda canvas, dy, dx: canvas)
        whole = digits.mnist_style(path)
    assert image.sum() == whole.sum()  # every bit of ink is still in the frame
    rows, columns = np.nonzero(image)
    assert max(np.ptp(rows), np.ptp(columns)) + 1 == 20  # the 20x20 box, whole
    # Moved towards the centre of mass as far as the frame allows.
    assert abs((image.sum(axis=1) * np.arange(28)).sum() / image.sum() - 14) < abs(
        (whole.sum(axis=1) * np.arange(28)).sum() / whole.sum() - 14) + 1e-9


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_predict_says_a_fifo_and_dev_zero_are_not_regular_files(tmp_path, capsys):
    weights = tmp_path / "w.npz"
    save_weights(weights, np.zeros((784, 10)))
    fifo = tmp_path / "digit.png"
    os.mkfifo(fifo)
    for path, kind in [(fifo, "a FIFO"), ("/dev/zero", "a character device")]:
        if not os.path.exists(path):
            continue
        status, _, err = _run(capsys, "predict", path, "--weights", weights)
        assert status == 2
        assert err == (f"mnist-gpu: error: {path}: not a regular file ({kind}); give a "
                       "picture's file\n")


def test_predict_show_is_scaled_up_to_be_seen(tmp_path, capsys):
    from PIL import Image

    weights = tmp_path / "w.npz"
    save_weights(weights, np.zeros((784, 10)))
    picture, shown = tmp_path / "one.png", tmp_path / "seen.png"
    canvas = np.full((60, 60), 255, np.uint8)
    canvas[10:50, 27:33] = 0
    Image.fromarray(canvas).save(picture)
    status, out, _ = _run(capsys, "predict", picture, "--weights", weights, "--show", shown)
    assert status == 0
    assert Image.open(shown).size == (280, 280)
    assert "each pixel drawn 10x10: 280x280" in out
