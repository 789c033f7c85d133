"""The ``fast`` preset on a reduced budget: its recipe (Adam, the one-cycle rate, batches of 256)
trained on 10,000 images for one epoch reaches what it reliably does there (96.3-96.6% over
seeds 0-2 on a 2-core AMD EPYC; the full run's figures are docs/networks.md's)."""

from __future__ import annotations

from mnist_gpu import cli
from mnist_gpu.training.config import config_from_preset

REDUCED = ["--limit", "10000", "--epochs", "1"]
REACHED = 0.955


def test_the_preset_is_the_recipe():
    config = config_from_preset("fast")
    assert (config.optimizer, config.settings, config.schedule) == (
        "adam", {"betas": (0.7, 0.9)}, "one-cycle-lr")
    assert (config.lr, config.batch_size, config.net.loss) == (0.01, 256, "ce")


def test_the_fast_preset_learns_on_a_reduced_budget(mnist, mnist_dir_path, capsys):
    assert cli.main(["train", "--preset", "fast", *REDUCED, "--seed", "0", "--backend",
                     "numpy", "--data-dir", str(mnist_dir_path), "--offline", "--quiet",
                     "--min-accuracy", str(REACHED)]) == 0
    assert "betas (0.7, 0.9)" in capsys.readouterr().out
