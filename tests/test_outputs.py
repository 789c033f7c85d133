"""Where the outputs go, as a careful user meets them: every output path checked before any work,
written atomically with the user's umask (a crash or a failed rename keeps the previous file),
through symbolic links (the link stays),
into devices and FIFOs (written in place, never renamed over), onto a full disk or device (one
line, exit status 1, nothing partial left), to a full or closed stdout (one line; quietly), and
``--json`` with one meaning on every command (alone: stdout; with a PATH: a file).

Device nodes are made with ``mknod`` in a temporary folder when running as root, and the full
disk is a small tmpfs, mounted as root; elsewhere those cases are skipped, saying why (the real
``/dev/full`` serves as the full device when not root: it cannot be renamed over then).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from mnist_gpu import cli
from mnist_gpu.io.files import output_problem, write_atomically
from mnist_gpu.io.weights import load_weights, save_weights

STORED_REPORT = REPO / "bench" / "results" / "cpu-2core-cnn-2026-11-29.json"


def _run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def files(mnist_dir_path, tmp_path, monkeypatch):
    """What the commands read: tutorial weights, a picture of a digit; and the bench's
    measurements replaced by a stored report (what is tested is the writing, not the timing)."""
    from PIL import Image

    from mnist_gpu.bench import report

    weights = tmp_path / "in" / "w.npz"
    weights.parent.mkdir()
    save_weights(weights, np.random.default_rng(0).random((784, 10)) - 0.5)
    picture = tmp_path / "in" / "digit.png"
    canvas = np.zeros((60, 60), np.uint8)
    canvas[10:50, 27:33] = 255  # a 1
    Image.fromarray(canvas).save(picture)
    stored = json.loads(STORED_REPORT.read_text())
    monkeypatch.setattr(report, "run_benchmark", lambda *args, **kwargs: stored)
    return {"weights": weights, "picture": picture, "data": mnist_dir_path}


def _command(files, flag, target):
    """A quick run of a command that writes ``flag`` to ``target``."""
    data = ["--data-dir", files["data"], "--offline"]
    command, flag = flag.split(" ", 1)
    return {
        "train": ["train", "--backend", "numpy", "--limit", "100", "--quiet", *data],
        "sweep": ["sweep", "--backend", "numpy", "--limit", "100", "--seed", "0-1", "--quiet",
                  *data],
        "curve": ["curve", "--backend", "numpy", "--seeds", "1", "--checkpoints", "0,100",
                  "--quiet", *data],
        "eval": ["eval", "--weights", files["weights"], "--backend", "numpy", *data],
        "predict": ["predict", files["picture"], "--weights", files["weights"]],
        "bench": ["bench", "--backend", "numpy", *data],
    }[command] + [flag, target]


EVERY_OUTPUT = ["train --save", "train --json", "sweep --save", "sweep --json", "sweep --plot",
                "curve --plot", "curve --json", "eval --plot", "eval --weight-map", "eval --json",
                "predict --show", "predict --json", "bench --json", "bench --plot"]


# --------------------------------------------------------------------------- places to write


def _device_node(tmp_path, name, minor):
    """A character device made here (1, minor: 3 is null, 7 full), or a skip saying why."""
    if not hasattr(os, "mknod") or os.geteuid() != 0:
        pytest.skip("making a device node needs root (mknod)")
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        os.close(os.open(path, os.O_WRONLY))
    except OSError as err:
        pytest.skip(f"no usable device node here (a nodev mount?): {err}")
    return path


@pytest.fixture
def null_device(tmp_path):
    return _device_node(tmp_path, "null", 3)


@pytest.fixture
def full_device(tmp_path):
    """A device that is always full: a node made here as root, else the system's /dev/full
    (which a user who is not root cannot rename over, whatever the code does)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return _device_node(tmp_path, "full", 7)
    if os.access("/dev/full", os.W_OK):
        return Path("/dev/full")
    pytest.skip("no /dev/full here")


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a small tmpfs filled to the last byte (mounted as root on Linux)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk is a small tmpfs, which needs root on Linux to mount")
    place = tmp_path / "full-disk"
    place.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(place)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        fd = os.open(place / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, bytes(4096))
        except OSError:
            pass
        finally:
            os.close(fd)
        yield place
    finally:
        subprocess.run(["umount", str(place)], check=True)


# --------------------------------------------------------------------------- 1. links, devices


def test_a_save_through_a_symbolic_link_replaces_its_target_and_keeps_the_link(
        files, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "w.npz"
    save_weights(target, np.zeros((784, 10)), {"note": "previous"})
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    status, _, err = _run(capsys, *_command(files, "train --save", link))
    assert status == 0, err
    assert link.is_symlink() and link.resolve() == target.resolve()
    weights, metadata = load_weights(link)
    assert metadata["config"]["n_train"] == 100 and not np.all(weights == 0)
    # Written beside the target (where the rename is atomic), and nothing left there.
    assert sorted(p.name for p in elsewhere.iterdir()) == ["w.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "in", "link.npz"]


def test_a_link_to_a_file_not_yet_written_creates_it(tmp_path):
    link = tmp_path / "report.json"
    (tmp_path / "out").mkdir()
    link.symlink_to(tmp_path / "out" / "real.json")
    assert output_problem(link) is None
    write_atomically(link, b"{}")
    assert link.is_symlink() and (tmp_path / "out" / "real.json").read_bytes() == b"{}"


@pytest.mark.parametrize("flag", ["train --save", "sweep --json", "sweep --save", "sweep --plot",
                                  "eval --plot", "predict --show", "bench --json"])
def test_an_output_into_a_device_writes_to_it_and_never_replaces_it(files, null_device, flag,
                                                                    capsys):
    status, _, err = _run(capsys, *_command(files, flag, null_device))
    assert status == 0, err
    assert stat.S_ISCHR(os.stat(null_device).st_mode)  # still the device, not a file
    # Written into it, not beside it (``--save null`` once meant a new ``null.npz``).
    assert sorted(p.name for p in null_device.parent.iterdir()) == ["in", "null"]


def test_a_full_device_is_one_line_and_stays_a_device(files, full_device, capsys):
    status, _, err = _run(capsys, *_command(files, "sweep --json", full_device))
    assert status == 1
    assert err == f"mnist-gpu: error: cannot write --json {full_device}: No space left on device\n"
    assert stat.S_ISCHR(os.stat(full_device).st_mode)


def test_a_fifo_is_written_into_not_replaced(files, tmp_path, capsys):
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    status, _, err = _run(capsys, *_command(files, "train --json", fifo))
    reader.join(timeout=30)
    assert status == 0, err
    assert json.loads(received[0])["images_trained"] == 100
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# --------------------------------------------------------------------------- 4. a full disk


@pytest.mark.parametrize("flag", EVERY_OUTPUT)
def test_every_write_on_a_full_disk_is_one_line_and_leaves_nothing(files, full_disk, flag,
                                                                   capsys):
    name = "w.npz" if flag.endswith("--save") else "out.png" if "json" not in flag else "o.json"
    target = full_disk / name
    status, _, err = _run(capsys, *_command(files, flag, target))
    assert status == 1
    option = flag.split(" ", 1)[1]
    assert err == f"mnist-gpu: error: cannot write {option} {target}: No space left on device\n"
    assert [p.name for p in full_disk.iterdir()] == ["filler"]  # no .part, no torn file


# --------------------------------------------------------------------------- 2. stdout


def _cli_process(files, *argv, stdout):
    env = {**os.environ, "MNIST_GPU_DATA": str(files["data"]), "MNIST_GPU_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "mnist_gpu.cli", *map(str, argv)], cwd=REPO,
                            env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)


COMMANDS = {
    "train": ["train", "--backend", "numpy", "--limit", "100"],
    "train --json": ["train", "--backend", "numpy", "--limit", "100", "--json"],
    "sweep": ["sweep", "--backend", "numpy", "--limit", "100", "--seed", "0-1"],
    "eval --json": ["eval", "--weights", "{weights}", "--backend", "numpy", "--json"],
}


def _argv(files, name):
    return [str(files["weights"]) if a == "{weights}" else a for a in COMMANDS[name]]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_full_stdout_is_one_line_and_status_1(files, name):
    with open("/dev/full", "w") as full:
        process = _cli_process(files, *_argv(files, name), stdout=full)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert err == "mnist-gpu: error: cannot write to stdout: No space left on device\n"


@pytest.mark.skipif(sys.platform == "win32", reason="Unix pipes")
@pytest.mark.parametrize("name", ["train", "sweep", "eval --json"])
def test_a_closed_stdout_ends_quietly(files, name):
    process = _cli_process(files, *_argv(files, name), stdout=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line (`| head -0`)
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 141 and err == ""


# --------------------------------------------------------------------------- 9. --json


JSON_COMMANDS = ["train", "sweep", "curve", "eval", "predict", "bench"]


@pytest.mark.parametrize("command", JSON_COMMANDS)
def test_json_alone_is_one_object_on_stdout_and_with_a_path_a_file(files, tmp_path, command,
                                                                  capsys):
    argv = _command(files, f"{command} --json", "-")[:-1]  # --json alone, last
    status, out, err = _run(capsys, *argv)
    assert status == 0, err
    on_stdout = json.loads(out)  # the whole of stdout: one object, nothing else
    assert isinstance(on_stdout, dict)
    path = tmp_path / "out.json"
    status, out, err = _run(capsys, *argv, path)
    assert status == 0, err
    in_file = json.loads(path.read_text())
    assert set(in_file) == set(on_stdout)
    assert out.strip() and f"wrote {path}" in out  # the table (or lines) as without --json


def test_predict_never_takes_a_picture_for_the_json_path(files, capsys):
    other = files["picture"].with_name("other.png")
    other.write_bytes(files["picture"].read_bytes())
    before = other.read_bytes()
    with pytest.raises(SystemExit) as exit:
        cli.main(["predict", str(files["picture"]), "--json", str(other), "--weights",
                  str(files["weights"])])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a picture, not where the JSON goes" in err
    assert other.read_bytes() == before


def test_cluster_needs_a_json_file_not_stdout(capsys):
    assert cli.main(["sweep", "--cluster", "local:1", "--offline", "--json"]) == 2
    assert "--cluster needs --json PATH, a file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [
    (["train", "--save", "{missing}/w.npz"], "--save"),
    (["predict", "x.png", "--weights", "none.npz", "--show", "{missing}/seen.png"], "--show"),
    (["curve", "--plot", "{missing}/c.png"], "--plot"),
    (["eval", "--weights", "none.npz", "--plot", "{missing}/m.png"], "--plot"),
    (["eval", "--weights", "none.npz", "--weight-map", "{missing}/w.png"], "--weight-map"),
    (["bench", "--json", "{missing}/b.json"], "--json"),
    (["bench", "--plot", "{missing}/b.png"], "--plot"),
    (["bench", "--json", "{dir}"], "--json"),
    (["curve", "--plot", "{dir}"], "--plot"),
])
def test_every_output_path_is_checked_before_any_work(argv, flag, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nodir", dir=tmp_path) for a in argv]
    # No data at all: a command that started working would fail on that instead.
    options = [] if argv[0] == "predict" else ["--data-dir", str(tmp_path / "no-data"),
                                                "--offline"]
    assert cli.main([*argv, *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag} " in err
    assert "does not exist" in err or "is a directory" in err


def test_outputs_are_written_atomically_with_the_users_umask(run, tmp_path):
    png = tmp_path / "c.png"
    old = os.umask(0o022)
    try:
        status, _, _ = run("curve", "--backend", "numpy", "--seeds", "1", "--checkpoints",
                           "0,100", "--plot", str(png))
        assert status == 0
        status, _, _ = run("train", "--backend", "numpy", "--limit", "100",
                           "--save", str(tmp_path / "w.npz"))
    finally:
        os.umask(old)
    assert png.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "w.npz").stat().st_mode & 0o777 == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_a_failure_just_before_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    save_weights(path, np.ones((784, 10)), {"version": 1})

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "injected failure")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="injected"):
        save_weights(path, np.zeros((784, 10)), {"version": 2})
    monkeypatch.undo()
    weights, meta = load_weights(path)
    assert meta == {"version": 1} and np.all(weights == 1)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_a_process_killed_during_a_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "w.npz"
    save_weights(path, np.ones((784, 10)), {"version": 1})
    code = textwrap.dedent(f"""
        import os, numpy as np
        from mnist_gpu.io.weights import save_weights
        os.replace = lambda src, dst: os._exit(9)  # killed between the write and the rename
        save_weights({str(path)!r}, np.zeros((784, 10)), {{"version": 2}})
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO)
    assert proc.returncode == 9
    weights, meta = load_weights(path)
    assert meta == {"version": 1} and np.all(weights == 1)
