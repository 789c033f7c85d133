"""The code passes the linter configured in pyproject.toml (pyflakes, pycodestyle, pyupgrade)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason="ruff is not installed (it comes with the test extra)")
def test_code_passes_ruff():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
