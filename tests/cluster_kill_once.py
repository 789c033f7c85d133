"""A Dask worker preload for tests/test_cluster.py: each worker's first task dies at its start,
once per flag file (``$MNIST_GPU_TEST_KILL_WORKER_ONCE``), the way a worker lost mid-chunk
dies. Only the test that asks for it loads this, through Dask's configuration."""

import os
from pathlib import Path

FLAG_VARIABLE = "MNIST_GPU_TEST_KILL_WORKER_ONCE"


def dask_setup(worker):
    from mnist_gpu.sweep import cluster

    train_chunk = cluster.train_chunk

    def dying_once(*args, **kwargs):
        flag = Path(os.environ[FLAG_VARIABLE])
        try:
            flag.touch(exist_ok=False)  # only the first task of all the workers' claims it
        except FileExistsError:
            return train_chunk(*args, **kwargs)
        os._exit(1)

    cluster.train_chunk = dying_once
