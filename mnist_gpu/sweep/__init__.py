"""Sweeps: a grid of learning rates x seeds (``grid.py``) trained together as one stack of models
on one device (``run.py``), or in chunks on a Dask cluster (``cluster.py``, imported only when a
cluster is asked for)."""

from .grid import Grid, Member, Seeds, grid, parse_alphas, parse_seeds
from .run import (
    ModelResult, SweepResult, bytes_per_model, grid_problem, plan_chunks, run_mlp_sweep,
    run_sweep,
)

__all__ = ["Grid", "Member", "ModelResult", "Seeds", "SweepResult", "bytes_per_model", "grid",
           "grid_problem", "parse_alphas", "parse_seeds", "plan_chunks", "run_mlp_sweep",
           "run_sweep"]
