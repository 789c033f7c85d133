"""The compiled loops' cache lives outside the installed package (issue: a Numba cache left in
``site-packages/mnist_gpu/__pycache__`` survived a reinstall and hid the package).

Each case imports a copy of the package, made read-only, in a fresh process, compiles one loop
and checks where its cache went. The tests run as root in CI, where a read-only mode does not
stop a write: so each case also compares the copy's files before and after, which any write
would change.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

pytest.importorskip("numba")

COMPILE_ONE_LOOP = textwrap.dedent("""
    import numpy as np
    from mnist_gpu.kernels import cpu_loops, numba_cache
    cpu_loops.lit_pixels(np.eye(3, 784, dtype=np.float32))   # compiles (or loads) one loop
    print(numba_cache.cache_dir())
""")


def _read_only_copy(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    shutil.copytree(REPO / "mnist_gpu", root / "mnist_gpu",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return root


def _listing(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


def _run(root: Path, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1", **env_changes)
    before = _listing(root)
    done = subprocess.run([sys.executable, "-c", COMPILE_ONE_LOOP], env=env, cwd=root.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _listing(root) == before, "the run wrote inside the package"
    return done.stdout.strip()


def _cache_files(directory: Path):
    return sorted(p.name for p in directory.rglob("*.nb[ic]"))


def test_default_cache_is_the_user_cache_dir_not_the_package(tmp_path):
    root = _read_only_copy(tmp_path)
    cache_home = tmp_path / "cache-home"
    printed = _run(root, XDG_CACHE_HOME=str(cache_home))
    assert Path(printed) == cache_home / "mnist-gpu" / "numba"
    assert any(name.startswith("cpu_loops.lit_pixels") for name in _cache_files(Path(printed)))
    # A second process loads what the first one cached (and still writes nothing in the package).
    assert _run(root, XDG_CACHE_HOME=str(cache_home)) == printed


def test_numba_cache_dir_is_honoured(tmp_path):
    root = _read_only_copy(tmp_path)
    chosen = tmp_path / "chosen"
    printed = _run(root, NUMBA_CACHE_DIR=str(chosen), XDG_CACHE_HOME=str(tmp_path / "unused"))
    assert Path(printed) == chosen
    assert _cache_files(chosen)
    assert not (tmp_path / "unused").exists()


def test_an_unwritable_cache_compiles_without_one(tmp_path):
    root = _read_only_copy(tmp_path)
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    # The cache home is a file, so no directory can be made in it (even by root).
    assert _run(root, XDG_CACHE_HOME=str(not_a_directory)) == "None"


LOOP_MODULE = textwrap.dedent("""
    import numpy as np
    from mnist_gpu.kernels.numba_cache import compiled

    @compiled()
    def ramp(n, step):                       # an array made and returned: Numba's runtime
        return np.arange(n) * step
""")

LOAD_THEN_COMPILE = textwrap.dedent("""
    import sys
    import numba
    import tiny_loop

    first = tiny_loop.ramp(3, 1).sum()       # compiled by the first run, loaded by the second

    @numba.njit
    def twice(x):                            # compiled afresh, after that load
        return 2 * x

    # In the second run, a new signature of the loaded loop: compiled, on a context the load
    # did not refresh.
    other = tiny_loop.ramp(3, 1.25).sum() if sys.argv[1:] else 3.75
    print(first, other, twice(21), sum(tiny_loop.ramp.stats.cache_hits.values()))
""")


def test_a_loop_loaded_from_the_cache_leaves_numba_able_to_compile(tmp_path):
    (tmp_path / "tiny_loop.py").write_text(LOOP_MODULE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    outputs = [subprocess.run([sys.executable, "-c", LOAD_THEN_COMPILE, *extra], env=env,
                              cwd=tmp_path, text=True, capture_output=True, timeout=300)
               for extra in ([], ["a new signature"])]
    for done in outputs:
        assert done.returncode == 0, done.stderr
    first, second = (done.stdout.split() for done in outputs)
    assert first[:3] == second[:3] == ["3", "3.75", "42"]
    assert first[3] == "0" and second[3] == "1"  # the second process loaded from the cache
