"""The compiled loops' cache (``kernels/numba_cache.py``): keyed on everything the loops are made
of, so that an edit to any of their sources (a comment will do) compiles them afresh and a change
to the pixel scale changes the result; a damaged entry (a truncated ``.nbc``, an empty ``.nbi``)
named in one line, compiled again and replaced; Numba's private names checked on the Numba
installed; and this session compiling into a cache of its own.

The edits are made to a copy of the package, each run in a fresh process on a cache of the test's
own; a run reports whether it loaded the per-image loop from the cache (Numba's own count of
cache hits) and the weights it computed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

pytest.importorskip("numba")

from mnist_gpu.kernels import numba_cache  # noqa: E402

ONE_PASS = textwrap.dedent("""
    import hashlib
    import numpy as np
    from mnist_gpu.kernels import cpu_loops
    # Two images of uint8 pixels, as the passes list them: each pixel scaled by the table.
    indptr = np.array([0, 3, 5], dtype=np.int64)
    indices = np.array([0, 7, 700, 3, 9], dtype=np.int16)
    values = np.array([255, 128, 1, 64, 200], dtype=np.uint8)
    W16 = np.zeros((784, 16), dtype=np.float32)
    order = np.zeros(1, dtype=np.int64)
    cpu_loops.per_image_pass(W16, indptr, indices, values, np.array([3, 8], np.uint8),
                              np.float32(0.5), 0, 2, order, False)
    hits = sum(cpu_loops.per_image_pass.stats.cache_hits.values())
    print("loaded" if hits else "compiled", hashlib.sha256(W16.tobytes()).hexdigest())
""")


@pytest.fixture
def package_copy(tmp_path):
    """(a writable copy of the package, a function running ONE_PASS on it in a fresh process
    with a cache of its own that returns ("loaded" or "compiled", the weights' digest))."""
    root = tmp_path / "copy"
    shutil.copytree(REPO / "mnist_gpu", root / "mnist_gpu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1",
           "NUMBA_CACHE_DIR": str(tmp_path / "loops")}

    def run():
        done = subprocess.run([sys.executable, "-c", ONE_PASS], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return tuple(done.stdout.split())
    return root / "mnist_gpu", run


# The sources of the per-image pass, and a module they reach only through another: the loops,
# their row operations, the LLVM IR those are built from, the module that computes the pixel
# table, the cache itself.
SOURCES = ["kernels/cpu_loops.py", "kernels/cpu_rows.py", "kernels/cpu_ir.py",
           "model/tutorial.py", "kernels/numba_cache.py"]


def test_an_edit_to_any_source_of_the_loops_compiles_them_afresh(package_copy):
    package, run = package_copy
    state, weights = run()
    assert state == "compiled"
    assert run() == ("loaded", weights), (
        "a second process compiled the loop again: does Numba still read the cache that "
        "numba_cache.numba_private_api attaches?")
    for source in SOURCES:
        with open(package / source, "a") as edited:
            edited.write("# a comment, and nothing else\n")
        assert run() == ("compiled", weights), f"an edit to {source} ran the cached loop"
        assert run() == ("loaded", weights)


def test_a_planted_change_to_the_pixel_scale_changes_the_result(package_copy):
    package, run = package_copy
    state, weights = run()
    tutorial = package / "model" / "tutorial.py"
    source = tutorial.read_text()
    assert source.count("xp.astype(images_u8, dtype) / 255") == 1
    tutorial.write_text(source.replace("xp.astype(images_u8, dtype) / 255",
                                       "xp.astype(images_u8, dtype) / 127.5"))
    state, planted = run()
    assert state == "compiled" and planted != weights  # the table baked into the IR changed
    assert run() == ("loaded", planted)


def test_the_sources_are_found_by_rule():
    from mnist_gpu.kernels import cpu_loops

    found = numba_cache.sources(cpu_loops.__name__)
    for module in ("kernels.cpu_loops", "kernels.cpu_rows", "kernels.cpu_ir",
                   "kernels.numba_cache", "model.tutorial"):
        assert f"mnist_gpu.{module}" in found
    assert all(path.is_file() and path.suffix == ".py" for path in found.values())
    assert "mnist_gpu.cli" not in found and "mnist_gpu.kernels.cuda" not in found


def test_numbas_private_names_are_what_the_loop_cache_expects():
    """On a Numba that renamed or removed them, this fails saying which: the loops then run
    uncached (compiled in every process) until ``numba_private_api`` is brought up to date."""
    try:
        numba_cache.numba_private_api()
    except numba_cache.NumbaChanged as err:
        pytest.fail(f"the installed Numba changed a private name the loop cache needs: {err}; "
                    "update numba_private_api in mnist_gpu/kernels/numba_cache.py")


def test_a_numba_without_those_names_is_named(monkeypatch):
    from numba.core.compiler import CompileResult

    monkeypatch.delattr(CompileResult, "_rebuild")
    with pytest.raises(numba_cache.NumbaChanged, match=r"has no CompileResult\._rebuild: the "
                       "compiled loops' cache"):
        numba_cache.numba_private_api()


def test_this_session_compiles_into_a_cache_of_its_own():
    from mnist_gpu.io.files import user_cache_dir

    chosen = numba_cache.chosen_dir()
    assert chosen == Path(os.environ["NUMBA_CACHE_DIR"])
    assert chosen.is_relative_to(tempfile.gettempdir()) and "mnist-gpu-test-loops-" in chosen.name
    assert chosen != user_cache_dir() / "numba"


# --------------------------------------------------------------------------- damaged entries


def _truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _empty(path):
    path.write_bytes(b"")


def _garbage(path):
    path.write_bytes(b"not a pickle at all\n" * 10)


DAMAGE = {
    "a truncated .nbc": ("per_image_pass-*.1.nbc", _truncate, "damaged (UnpicklingError"),
    "an empty .nbi": ("inference_pass-*.nbi", _empty, "empty"),
    "a garbled .nbi": ("per_image_pass-*.nbi", _garbage, "damaged ("),
}
TRAIN = [sys.executable, "-m", "mnist_gpu.cli", "train", "--backend", "numpy", "--kernel",
         "fused", "--limit", "500", "--offline"]


@pytest.fixture(scope="module")
def warm_loops(tmp_path_factory, mnist_dir_path):
    """A cache holding the loops of ``TRAIN``, and the output of the run that filled it."""
    cache = tmp_path_factory.mktemp("warm-loops")
    out = _train(cache, mnist_dir_path)
    assert out.returncode == 0, out.stderr
    return cache, out.stdout


def _train(cache, data):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "MNIST_GPU_DATA": str(data)}
    return subprocess.run(TRAIN, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("fault", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_entry_is_named_compiled_again_and_replaced(fault, warm_loops, tmp_path,
                                                             mnist_dir_path):
    pattern, spoil, problem = DAMAGE[fault]
    cache = tmp_path / "loops"
    shutil.copytree(warm_loops[0], cache)
    [entry] = cache.glob(f"*/cpu_loops.{pattern}")
    spoil(entry)
    out = _train(cache, mnist_dir_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    said = [line for line in out.stderr.splitlines() if "compiled-loop cache" in line]
    assert len(said) == 1, out.stderr
    assert said[0].startswith(f"mnist-gpu: compiled-loop cache entry {entry}: {problem}")
    assert said[0].endswith("; compiling it again")
    assert _table(out.stdout) == _table(warm_loops[1])
    again = _train(cache, mnist_dir_path)  # replaced: the next run loads it, saying nothing
    assert again.returncode == 0 and "compiled-loop cache" not in again.stderr, again.stderr
    assert _table(again.stdout) == _table(warm_loops[1])


def _table(out):
    """The run's output less its timings."""
    return [line for line in out.splitlines() if "images/s" not in line]
