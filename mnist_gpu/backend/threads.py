"""How many threads the CPU's libraries run: one rule, fixed by the machine, never by its load.

OpenBLAS (NumPy's matrix products) starts a thread per CPU. On a machine whose cores other work
also wants, each product split over every core waits for the slice whose core was taken (a
2-core machine beside one busy process ran ``--preset mlp`` 2.2 times slower with two BLAS
threads, and 1.0 times with one). The rule, for the BLAS:

    threads = half the CPUs this process may run on (its affinity mask), at least 1

so that one other busy process per thread still finds a core. It depends on the machine alone,
not on its load of the moment: the same command on the same machine runs the same threads and
gives the same weights, busy or quiet (OpenBLAS's sums, split over another thread count, differ
in the last bits).

A network's training step on the CPU that runs compiled layer passes (the convolutions') takes
the rule's count too, as **shards**: each batch split into that many parts by its images, each
part's forward and backward passes on a thread of its own (its products on one BLAS thread, its
compiled convolution loops on that thread), their gradients added in order (a dense network's
step, products alone, leaves its threads to the BLAS). A shard waits for no other until its
batch is done, where a product split over threads waits at every product: the threads of a step
meet once, not a hundred times. The count of shards is part of what fixes the weights (a batch's
gradient summed in parts), so it too is the machine's alone. Numba's other loops (the
tutorial's and the sweeps' fused passes, split once per pass) keep a thread per CPU: they give
the same weights on any count (tests/test_fused_minibatch.py) and scale with the cores.

``--threads N`` sets all three; the variables users already know set the library that reads
them: ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` the BLAS (which then
runs as it says), ``NUMBA_NUM_THREADS`` Numba.

``limited_threads`` applies a choice for the length of a call (the command's own), and puts the
libraries' previous settings back after it: a caller's settings are never changed for good.
"""

from __future__ import annotations

import contextlib
import os
import sys

BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
NUMBA_VARIABLE = "NUMBA_NUM_THREADS"
RULE = ("BLAS and a convolutional network's batch shards: half the CPUs this process may run on, "
        "at least 1; Numba's fused passes: one per CPU (the same weights on any count)")

NUMBA_DEFAULT = "one per CPU, Numba's own"

_chosen = None  # the choice in force (``limited_threads``), for ``thread_record``
_numba = {"pending": None, "restore": None}  # the count for Numba, and what to put back


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def rule_threads(cpus: int) -> int:
    """The rule's thread count for a process that may run on ``cpus`` CPUs."""
    return max(1, cpus // 2)


def choose_threads(requested: int | None = None, environ=None) -> dict:
    """What each library runs: ``{"blas": n or None, "numba": n or None, ...}``, None meaning
    "as the library's own variable says"; with the rule and where each count came from."""
    environ = os.environ if environ is None else environ
    cpus = usable_cpus()
    rule = rule_threads(cpus)
    choice = {"rule": RULE, "cpus": cpus, "rule_threads": rule}
    if requested is not None:
        return {**choice, "blas": requested, "numba": requested, "shards": requested,
                "blas_source": "--threads", "numba_source": "--threads",
                "shards_source": "--threads"}
    blas_set = next((v for v in BLAS_VARIABLES if environ.get(v, "").strip()), None)
    numba_set = NUMBA_VARIABLE if environ.get(NUMBA_VARIABLE, "").strip() else None
    return {**choice, "blas": None if blas_set else rule, "numba": None, "shards": rule,
            "blas_source": blas_set or "rule", "numba_source": numba_set or NUMBA_DEFAULT,
            "shards_source": "rule"}


def shards_in_force() -> int:
    """How many shards a network's training step on the CPU splits each batch into: the
    command's choice (``limited_threads``), else the rule's."""
    return (_chosen or choose_threads())["shards"]


@contextlib.contextmanager
def limited_threads(choice: dict):
    """Run the block with ``choice``'s thread counts (``choose_threads``); the libraries'
    previous settings are restored after it."""
    global _chosen
    previous_choice = _chosen
    with contextlib.ExitStack() as stack:
        if choice["blas"] is not None:
            stack.enter_context(_blas_limited(choice["blas"]))
        if choice["numba"] is not None:
            stack.enter_context(_numba_limited(choice["numba"]))
        _chosen = choice
        try:
            yield choice
        finally:
            _chosen = previous_choice


def single_threaded_blas():
    """A context in which the BLAS runs each product on the calling thread alone (a shard's)."""
    return _blas_limited(1)


@contextlib.contextmanager
def _blas_limited(count: int):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it, the BLAS runs as its variables say
        yield
        return
    with threadpool_limits(limits=count, user_api="blas"):
        yield


@contextlib.contextmanager
def _numba_limited(count: int):
    # Numba sizes its pool once, from NUMBA_NUM_THREADS, when it is imported, and refuses a
    # variable changed after: the count is set through ``set_num_threads``, now if Numba is
    # loaded, else when the kernels load it (``apply_to_numba``).
    _numba["pending"], _numba["restore"] = count, None
    try:
        apply_to_numba()
        yield
    finally:
        numba = sys.modules.get("numba")
        if _numba["restore"] is not None and numba is not None:
            numba.set_num_threads(_numba["restore"])
        _numba["pending"], _numba["restore"] = None, None


def apply_to_numba() -> None:
    """Give Numba, once loaded, the count of the command in force (if any): called by the
    kernels after they import it."""
    numba, count = sys.modules.get("numba"), _numba["pending"]
    if numba is None or count is None or _numba["restore"] is not None:
        return
    _numba["restore"] = numba.get_num_threads()
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


def thread_record() -> dict:
    """The threads in force, for a machine record: the rule, where each count came from and
    the counts the libraries report (the BLAS through threadpoolctl when installed)."""
    choice = _chosen or choose_threads()
    record = {key: choice[key] for key in ("rule", "cpus", "rule_threads", "blas_source",
                                           "numba_source", "shards", "shards_source")}
    record["blas"] = _blas_threads()
    numba = sys.modules.get("numba")
    if (numba is not None and _numba["pending"] is None) or _numba["restore"] is not None:
        record["numba"] = numba.get_num_threads()
    elif _numba["pending"] is not None:  # not loaded yet: what it will run when it is
        record["numba"] = _numba["pending"]
    else:
        text = os.environ.get(NUMBA_VARIABLE, "").strip()
        record["numba"] = int(text) if text.isdigit() else usable_cpus()
    return record


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None
