"""Run notebooks/tutorial.ipynb top to bottom in a fresh kernel and write it back with its outputs.

    python notebooks/refresh.py              # rewrites notebooks/tutorial.ipynb
    python notebooks/refresh.py --check      # runs it, writes nothing, says whether it is fresh

Run it after any change that shows in the notebook's outputs (a message, a result's table, the
training itself), and commit the notebook with them: tests/test_notebook.py fails when the
committed outputs are not what a fresh run prints. It needs the `test` extra (nbclient, nbformat,
ipykernel) and the data (the repository's data/ folder or $MNIST_GPU_DATA). The kernel runs in
notebooks/, as Jupyter runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "tutorial.ipynb"


def execute(path=NOTEBOOK, probes=(), timeout: int = 600):
    """The notebook at ``path`` (a path, or a notebook read by nbformat) run top to bottom in a
    fresh ``python3`` kernel started in the notebook's folder, its outputs in place (without
    timing metadata, and with each cell's consecutive prints to one stream kept as one output,
    however the kernel happened to flush them, so that a rerun changes only what it prints).
    ``probes``: code run in the same kernel after the last cell, not kept in the notebook;
    returns (notebook, each probe's outputs)."""
    import nbformat
    from nbclient import NotebookClient

    if isinstance(path, (str, Path)):
        folder, notebook = Path(path).resolve().parent, nbformat.read(path, as_version=4)
    else:
        folder, notebook = HERE, path
    cells = len(notebook.cells)
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in probes]
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                   coalesce_streams=True, kernel_manager_class=this_python(),
                   resources={"metadata": {"path": str(folder)}}).execute()
    probed = [cell.outputs for cell in notebook.cells[cells:]]
    del notebook.cells[cells:]
    return notebook, probed


def this_python():
    """A kernel manager that starts this very interpreter's kernel: a ``python3`` kernel that a
    user installed for another environment (``ipykernel install --user``) would run another
    Python, with another mnist-gpu or none."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPython(AsyncKernelManager):
        @property
        def kernel_spec(self):
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f",
                                    "{connection_file}"], display_name="Python 3",
                              language="python")
    return ThisPython


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="run it and compare with the committed outputs; write nothing")
    args = parser.parse_args(argv)
    import nbformat

    started = time.perf_counter()
    notebook, _ = execute()
    seconds = time.perf_counter() - started
    if args.check:
        sys.path.insert(0, str(HERE.parent / "tests"))
        from notebook_outputs import differences

        found = differences(nbformat.read(NOTEBOOK, as_version=4), notebook)
        for line in found:
            print(line)
        print(f"ran in {seconds:.0f} s: {'stale' if found else 'fresh'}")
        return 1 if found else 0
    from mnist_gpu.io.files import write_atomically

    write_atomically(NOTEBOOK, (nbformat.writes(notebook).rstrip("\n") + "\n").encode())
    print(f"ran in {seconds:.0f} s; wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
