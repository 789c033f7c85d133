"""Every ``--json`` output is JSON a strict parser reads: a number that is not finite is null,
the reason beside it; NumPy's overflow warnings never reach the user; a run that fails on its
own terms (diverged) still prints its JSON, saying so; a closed stdout is said before the work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from mnist_gpu.io import strict_json
from mnist_gpu.io.weights import save_weights


def strict(text):
    """``json.loads`` refusing what is not JSON (Python's NaN, Infinity, -Infinity)."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_null_with_the_reason_beside():
    document = {"rate": float("inf"), "ok": 1.5, "scores": [1.0, float("nan"), -float("inf")],
                "model": {"loss": float("nan")}, "rows": [[0.0, float("inf")]]}
    parsed = strict(strict_json.dumps(document))
    assert parsed["rate"] is None and parsed["rate_not_finite"] == "inf"
    assert parsed["ok"] == 1.5 and "ok_not_finite" not in parsed
    assert parsed["scores"] == [1.0, None, None]
    assert parsed["scores_not_finite"] == {"nan": [1], "-inf": [2]}
    assert parsed["model"] == {"loss": None, "loss_not_finite": "nan"}
    assert parsed["rows_not_finite"] == {"0": {"inf": [1]}}


def _cli(*argv, cwd, stdout=subprocess.PIPE, **options):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "mnist_gpu.cli", *map(str, argv)], cwd=cwd,
                          env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=120, **options)


def test_scores_that_overflow_are_strict_json_and_warn_about_nothing(tmp_path):
    from PIL import Image

    # Finite weights whose scores overflow float32.
    save_weights(tmp_path / "big.npz", np.full((784, 10), 3e38, np.float32))
    picture = np.zeros((28, 28), np.uint8)
    picture[5:20, 12:16] = 255
    Image.fromarray(picture).save(tmp_path / "one.png")
    done = _cli("predict", "one.png", "--weights", "big.npz", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "RuntimeWarning: overflow encountered in matmul"
    prediction = strict(done.stdout)["predictions"][0]
    assert prediction["scores"] == [None] * 10
    assert prediction["scores_not_finite"] == {"inf": list(range(10))}


def test_a_sweep_over_no_time_is_strict_json():
    from mnist_gpu.sweep.run import SweepResult

    result = SweepResult({"alphas": [1.0], "seeds": [0]}, {}, "array", [], np.zeros((0,)), 0.0,
                         100)
    parsed = strict(strict_json.dumps(result.to_json()))
    assert parsed["model_images_per_second"] is None
    assert parsed["model_images_per_second_not_finite"] == "inf"


def test_a_diverged_train_still_prints_its_json(run):
    status, out, err = run("train", "--backend", "numpy", "--alpha", "1e6", "--limit", "5",
                           "--checkpoints", "0,1", "--json")
    assert status == 1 and err.count("\n") == 1 and "blew up" in err
    document = strict(out)
    assert "1 image seen" in document["diverged"]
    assert document["config"]["alpha"] == 1e6 and document["curve"][0]["images_seen"] == 0


def test_a_diverged_curve_still_prints_its_json(run):
    status, out, err = run("curve", "--backend", "numpy", "--alpha", "1e6", "--seeds", "2",
                           "--checkpoints", "0,1", "--json")
    assert status == 1 and err.count("\n") == 1
    document = strict(out)
    assert "diverged" in document["diverged"] and document["seeds"] == 2


@pytest.mark.skipif(sys.platform == "win32", reason="Unix descriptors")
def test_a_closed_stdout_is_said_before_the_work(tmp_path):
    # `mnist-gpu train >&-`: the full per-image pass would take seconds; it must not start.
    done = _cli("train", "--backend", "numpy", "--data-dir", tmp_path, "--offline",
                cwd=tmp_path, preexec_fn=lambda: os.close(1), stdout=None)
    assert done.returncode == 1
    assert done.stderr == ("mnist-gpu: error: stdout is closed: nothing could be printed (run it "
                           "with an open stdout, or >/dev/null)\n")
