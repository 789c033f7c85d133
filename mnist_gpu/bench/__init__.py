"""Throughput benchmarks: where the time goes, against the peers and the machine's own limit.

For each backend and dtype, after a warm-up, over ``repeats`` timed runs (the device synchronised
before every clock read; CUDA events on CuPy), median and min-max: our rows (``rows.py``: per
image, mini-batches, inference, the listing of lit pixels, sweeps; ``cnn.py``: the CNN), the
peers (``peers.py``: the naive NumPy loop, PyTorch), each device's limit (``timing.py``), the work
each row does (``work.py``), and the report (``report.py``, ``plot.py``).
"""

# The default sizes of the rows (the command's flags read them without importing the benchmark).
BATCH_SIZES = (1, 8, 32, 128, 1024, 8192, 60000)
SWEEP_MODELS = (1, 8, 32, 128, 1024)
