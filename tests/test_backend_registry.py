"""The backend registry: a backend is found by its name (``get_backend``), ``auto`` tries
``AUTO_ORDER`` and nothing else, and what the command line offers is read from the registry. A
backend added to it, here a stand-in registered for one test, is found with no other edit."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mnist_gpu import backend as backend_layer
from mnist_gpu.backend import (
    AUTO_ORDER, BACKEND_CHOICES, BACKENDS, Backend, BackendUnavailable, Registration, get_backend,
)
from mnist_gpu.cli.parser import build_parser


class Abacus(Backend):
    """A backend of a library of its own, with no float64."""

    name = "abacus"
    dtypes = ("float32",)
    xp = np

    def to_device(self, host_array):
        return np.array(host_array, copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)


def _register(monkeypatch, answers: bool, first: bool = False):
    """Register the abacus (first in ``auto``'s order if ``first``); it runs if ``answers``."""
    def open_abacus(device=None, log=None):
        if not answers:
            raise BackendUnavailable("--backend abacus: no beads")
        return Abacus()

    def for_auto(device=None, dtype=None):
        return (Abacus(), "the abacus") if answers else (None, "the abacus has no beads")

    monkeypatch.setitem(BACKENDS, "abacus", Registration(open_abacus, for_auto, "beads"))
    if first:
        monkeypatch.setattr(backend_layer, "AUTO_ORDER", ("abacus", *AUTO_ORDER))


def test_a_registered_backend_is_found_by_its_name(monkeypatch):
    _register(monkeypatch, answers=True)
    backend = get_backend("abacus")
    assert isinstance(backend, Abacus) and backend.to_host(backend.to_device([1, 2]))[1] == 2
    # The one dtype check of every backend: its device's dtypes.
    with pytest.raises(BackendUnavailable, match="--dtype float64: the abacus device has no"):
        get_backend("abacus", dtype="float64")


def test_a_registered_backend_that_cannot_run_says_why_in_one_line(monkeypatch):
    _register(monkeypatch, answers=False)
    with pytest.raises(BackendUnavailable) as info:
        get_backend("abacus")
    assert str(info.value) == "--backend abacus: no beads"


def test_auto_tries_its_order_and_says_why_it_passed_each(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    _register(monkeypatch, answers=False, first=True)
    lines = []
    assert get_backend("auto", log=lines.append).name == "numpy"
    assert len(lines) == 1 and lines[0].startswith(
        "backend auto: using NumPy on the CPU because the abacus has no beads, CuPy is not "
        "installed")
    assert lines[0].count(", and ") == 1 and "PyTorch is not installed" in lines[0]


def test_auto_takes_the_first_of_its_order_silently(monkeypatch):
    _register(monkeypatch, answers=True, first=True)
    lines = []
    assert get_backend("auto", log=lines.append).name == "abacus" and lines == []


def test_auto_never_takes_a_backend_outside_its_order(monkeypatch):
    _register(monkeypatch, answers=True)
    assert get_backend("auto", log=None).name != "abacus"


def test_auto_with_nothing_that_runs_is_one_line(monkeypatch):
    _register(monkeypatch, answers=False)
    monkeypatch.setattr(backend_layer, "AUTO_ORDER", ("abacus",))
    with pytest.raises(BackendUnavailable) as info:
        get_backend("auto", log=None)
    assert str(info.value) == "backend auto: no backend runs here: the abacus has no beads"


def test_auto_order_is_registered_and_ends_where_everything_runs():
    assert set(AUTO_ORDER) <= set(BACKENDS)
    assert all(BACKENDS[name].for_auto is not None for name in AUTO_ORDER)
    assert all(BACKENDS[name].in_auto for name in AUTO_ORDER)
    backend, _ = BACKENDS[AUTO_ORDER[-1]].for_auto(None, None)
    assert backend is not None and backend.runs_on_cpu


def test_the_command_line_offers_the_registrys_backends(capsys):
    offered = [name for name, entry in BACKENDS.items() if entry.summary]
    assert BACKEND_CHOICES == ("auto", *offered) and "array_api_strict" not in BACKEND_CHOICES
    parser = build_parser()
    for name in BACKEND_CHOICES:
        assert parser.parse_args(["train", "--backend", name]).backend == name
        assert parser.parse_args(["bench", "--backend", name]).backend == (name,)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--backend", "array_api_strict"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in offered:
        assert f"{name} ({' '.join(BACKENDS[name].summary.split())})" in help_text
    auto = ", else ".join(BACKENDS[name].in_auto for name in AUTO_ORDER)
    assert f"auto ({' '.join(auto.split())})" in help_text


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendUnavailable) as info:
        get_backend("abacus")
    assert str(info.value) == (f"unknown backend 'abacus' (choose from "
                               f"{', '.join(BACKEND_CHOICES)})")
