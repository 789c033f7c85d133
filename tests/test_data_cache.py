"""The data cache: verified content kept in the user's cache directory, memory-mapped later, every
damaged entry named in one line and rebuilt, never a reason for a run to fail."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import gz, idx_bytes

from mnist_gpu.data import FileSpec, load_mnist
from mnist_gpu.data.cache import HEADER_BYTES, DataCache


def _tiny_set(directory, arrays):
    """The tiny set written as .gz files, and FileSpecs that identify it."""
    specs = []
    for name, array in arrays.items():
        raw = idx_bytes(array)
        packed = gz(raw)
        (directory / f"{name}.gz").write_bytes(packed)
        specs.append(FileSpec(name, "images" if array.ndim == 3 else "labels",
                              hashlib.sha256(raw).hexdigest(), len(packed),
                              hashlib.sha256(packed).hexdigest()))
    return specs


@pytest.fixture
def tiny(tmp_path, tiny_mnist_arrays):
    """(data directory, specs, cache directory) of the tiny set, the cache still empty."""
    data = tmp_path / "data"
    data.mkdir()
    return data, _tiny_set(data, tiny_mnist_arrays), tmp_path / "cache"


def _load(tiny, **options):
    data, specs, cache = tiny
    said = []
    loaded = load_mnist(data, offline=True, files=specs, cache=options.pop("cache", cache),
                        log=said.append, **options)
    return loaded, said


def _entry(cache, spec):
    return cache / f"{spec.name}.{spec.raw_sha256}.idx"


def _same_arrays(a, b):
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_a_later_load_maps_the_cache_without_the_data_directory(tiny, tiny_mnist_arrays):
    data, specs, cache = tiny
    listing = sorted(p.name for p in data.iterdir())
    first, said = _load(tiny)
    assert said == []
    assert sorted(p.name for p in data.iterdir()) == listing  # nothing added to ./data
    for spec in specs:
        assert _entry(cache, spec).is_file()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]
    for path in data.iterdir():  # the later load needs none of them
        path.unlink()
    second, said = _load(tiny)
    assert said == []
    _same_arrays(first, second)
    np.testing.assert_array_equal(second.train_images.reshape(12, 28, 28),
                                  tiny_mnist_arrays["train-images-idx3-ubyte"])
    assert not second.train_images.flags.writeable and not second.test_labels.flags.writeable


def _flip_a_byte(path):
    blob = bytearray(path.read_bytes())
    blob[HEADER_BYTES + (len(blob) - HEADER_BYTES) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _garbage(path):
    path.write_bytes(b"<html>not an entry</html>" * 10)


def _damaged_header(path):
    blob = bytearray(path.read_bytes())
    start = blob.index(b'"size"')
    blob[start:start + 6] = b'"s1ze"'
    path.write_bytes(bytes(blob))


FAULTS = {
    "a flipped bit": (_flip_a_byte, "damaged: the CRC-32 of its bytes does not match"),
    "truncated": (_truncate, "truncated: "),
    "not an entry": (_garbage, "not a mnist-gpu cache entry"),
    "damaged header": (_damaged_header, "its header is damaged"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_bad_entry_is_named_in_one_line_and_rebuilt(tiny, fault):
    spoil, message = FAULTS[fault]
    data, specs, cache = tiny
    good, _ = _load(tiny)
    entry = _entry(cache, specs[0])
    spoil(entry)
    again, said = _load(tiny)
    assert len(said) == 1, said
    assert str(entry) in said[0] and message in said[0], said[0]
    assert "replacing it from the verified source" in said[0]
    _same_arrays(good, again)
    third, said = _load(tiny)  # the rebuilt entry is sound
    assert said == []
    _same_arrays(good, third)


def test_a_foreign_entry_is_named_and_rebuilt(tiny):
    data, specs, cache = tiny
    good, _ = _load(tiny)
    # The test images' entry copied over the training images': a sound entry, not this one.
    _entry(cache, specs[0]).write_bytes(_entry(cache, specs[2]).read_bytes())
    again, said = _load(tiny)
    assert len(said) == 1 and f"holds '{_entry(cache, specs[2]).name}', not this entry" in said[0]
    _same_arrays(good, again)
    assert _load(tiny)[1] == []


def test_the_full_check_finds_what_the_quick_one_cannot(tiny, monkeypatch):
    """An entry rewritten whole with other content (its CRC-32 made to match) passes the quick
    check; the SHA-256 of the full check refuses it, on demand by argument or variable."""
    data, specs, cache = tiny
    _load(tiny)
    entry = _entry(cache, specs[1])
    forged = DataCache(cache)
    content = np.frombuffer(forged.load(entry.name)["content"], np.uint8).copy()
    content[-1] = (content[-1] + 1) % 10  # another valid label
    forged.store(entry.name, {"content": content})
    quick, said = _load(tiny)
    assert said == [] and quick.train_labels[-1] == content[-1]
    for options, env in (({"verify_cache": True}, None), ({}, "1")):
        forged.store(entry.name, {"content": content})
        if env:
            monkeypatch.setenv("MNIST_GPU_VERIFY_CACHE", env)
        full, said = _load(tiny, **options)
        assert len(said) == 1 and "wrong SHA-256 of its content" in said[0], said
        assert full.train_labels[-1] != content[-1]  # the verified source's
        monkeypatch.delenv("MNIST_GPU_VERIFY_CACHE", raising=False)


def test_an_unwritable_cache_still_loads_with_one_line(tiny, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # no directory can be made in a file, even by root
    first, said = _load(tiny, cache=blocker / "cache")
    assert len(said) == 1, said
    assert f"the data cache {blocker / 'cache'} cannot be written" in said[0]
    assert "running without it" in said[0]
    second, _ = _load(tiny, cache=False)
    _same_arrays(first, second)


def test_an_unwritable_cache_still_trains_with_one_line(mnist_dir_path, tmp_path, monkeypatch,
                                                       capsys):
    from mnist_gpu import cli

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert cli.main(["train", "--backend", "numpy", "--data-dir", str(mnist_dir_path),
                     "--offline", "--quiet", "--limit", "2000"]) == 0
    out, err = capsys.readouterr()
    assert "final test accuracy" in out
    lines = [line for line in err.splitlines() if "cache" in line]
    assert len(lines) == 1 and "cannot be written" in lines[0] and "running without it" in lines[0]


# A child that imports everything, says so, then waits for the word to load and train.
RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from mnist_gpu import cli
    import mnist_gpu.kernels.cpu
    go = Path(sys.argv[1])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    sys.exit(cli.main(sys.argv[2:]))
""")


def test_two_processes_filling_the_cache_at_once_both_succeed(mnist_dir_path, tmp_path, mnist):
    home, go = tmp_path / "home", tmp_path / "go"
    env = {**os.environ, "XDG_CACHE_HOME": str(home)}
    argv = ["train", "--backend", "numpy", "--data-dir", str(mnist_dir_path), "--offline",
            "--quiet"]
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(go), *argv], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for racer in racers:
        assert racer.stdout.readline().strip() == "ready"
    go.touch()  # both load, verify, list and store at the same moment
    outs = [racer.communicate(timeout=300) for racer in racers]
    for racer, (out, err) in zip(racers, outs):
        assert racer.returncode == 0, err
        assert "final test accuracy: 68.15%" in out
        assert "cache" not in err
    cache = home / "mnist-gpu" / "mnist"
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 6 and not [n for n in names if n.endswith(".part")], names
    said = []
    again = load_mnist(mnist_dir_path, offline=True, cache=cache, log=said.append)
    assert said == []  # one valid entry of each
    _same_arrays(again, mnist)
    lit = [DataCache(cache).load(n) for n in names if not n.endswith(".idx")]
    assert all(entry is not None for entry in lit)


def test_the_same_weights_bit_for_bit_with_and_without_the_cache(mnist_dir_path, tmp_path):
    from mnist_gpu import get_backend, to_device_data, train
    from mnist_gpu.training import TrainConfig

    backend = get_backend("numpy")
    # (training images, config): the fused passes on the full set (its lists cached too), the
    # array path on the scaled copy of a prefix of the mapped pixels.
    configs = [(None, TrainConfig()), (None, TrainConfig(batch_size=100, alpha=0.02, shuffle=True)),
               (5000, TrainConfig(kernel="array", batch_size=100))]
    runs = []
    for cache in (False, tmp_path / "cache", tmp_path / "cache"):  # none, filled, mapped
        mnist = load_mnist(mnist_dir_path, offline=True, cache=cache)
        runs.append([train(to_device_data(backend, mnist, limit=limit), config).weights
                     for limit, config in configs])
    assert len(list((tmp_path / "cache").iterdir())) == 6  # the data and both lists
    for weights in runs[1:]:
        for ours, reference in zip(weights, runs[0]):
            np.testing.assert_array_equal(ours, reference)
