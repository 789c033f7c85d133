"""The documentation holds: every ``mnist-gpu ...`` command line in the README and docs/ is one the
command accepts, the README stays short, and examples/tutorial.py runs and prints the tutorial's
figures."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

from mnist_gpu.cli.parser import build_parser

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMANDS = ("train", "sweep", "bench", "curve", "eval", "predict", "serve")


def command_lines(text: str) -> list[str]:
    """The ``mnist-gpu ...`` command lines of a page: in code blocks, and in inline code."""
    found = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S):
        found += [line.split("#", 1)[0] for line in block.splitlines()
                  if line.lstrip().startswith("mnist-gpu ")]
    found += re.findall(r"`(mnist-gpu [^`]*)`", text)
    return [line.strip().split("&&")[0].strip() for line in found]


def _words(line: str) -> list[str]:
    """The words of the line's ``mnist-gpu`` command: up to a pipe, a redirection or a list
    operator, which hand its output to the shell (``mnist-gpu train --json | python -c ...``)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word and set(word) <= set("|&;<>"):
            break
        words.append(word)
    return words


def _accepts(line: str) -> str | None:
    """None if the parser accepts the line, else why not. A command named alone is a mention,
    not a command line; placeholders stand for any value (``...`` for more flags, ``IMAGE...`` for
    pictures, ``COMMAND`` for each command)."""
    tokens = [{"IMAGE...": "digit.png"}.get(t, t) for t in _words(line)[1:] if t != "..."]
    if len(tokens) <= 1 and all(t in COMMANDS for t in tokens):
        return None
    if tokens[0] == "COMMAND":
        return next(filter(None, (_accepts(" ".join(["mnist-gpu", c, *tokens[1:]]))
                                  for c in COMMANDS)), None)
    if tokens[0] not in COMMANDS and not tokens[0].startswith("-"):  # --help, --version
        return f"unknown command {tokens[0]!r}"
    try:
        build_parser().parse_args(tokens)
    except SystemExit as stop:
        return None if stop.code == 0 else f"exit status {stop.code}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_line_is_accepted(page, capsys):
    lines = command_lines(page.read_text())
    wrong = {line: why for line in lines if (why := _accepts(line))}
    capsys.readouterr()
    assert not wrong, f"{page.name}: command lines the CLI refuses: {wrong}"


def test_the_pages_hold_command_lines_and_a_wrong_one_is_caught(capsys):
    assert sum(len(command_lines(p.read_text())) for p in PAGES) > 30
    assert _accepts("mnist-gpu train --no-such-flag") is not None
    assert _accepts("mnist-gpu trian") is not None
    assert _accepts("mnist-gpu train --batch-size 100 --alpha 0.02") is None
    assert _accepts("mnist-gpu train --json | python -c 'import sys'") is None
    assert _accepts("mnist-gpu train --no-such-flag > out.txt") is not None
    assert _accepts("mnist-gpu --help") is None
    assert _accepts("mnist-gpu --no-such-flag") is not None
    capsys.readouterr()


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_every_page_the_readme_names_exists():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target


def test_the_example_prints_the_tutorials_figures(mnist_dir_path):
    env = {**os.environ, "MNIST_GPU_DATA": str(mnist_dir_path), "MNIST_GPU_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "tutorial.py")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # The fused per-image and mini-batch passes give the same bits on every CPU.
    assert "      60,000        68.15%" in done.stdout
    assert "   1,200,000        80.49%" in done.stdout
