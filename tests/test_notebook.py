"""The tutorial notebook as its readers run it: in a Jupyter kernel (started by nbclient), top to
bottom, on the real data, its committed outputs what a fresh run prints; and every plotting
function of the library called in a kernel, each shown as a picture, the kernel's matplotlib
backend left as it was (the inline one)."""

from __future__ import annotations

import copy
import importlib.util
import inspect

import nbformat
import pytest
from conftest import REPO
from notebook_outputs import differences

import mnist_gpu.bench.plot
import mnist_gpu.viz.figures

NOTEBOOK = REPO / "notebooks" / "tutorial.ipynb"
INLINE = "module://matplotlib_inline.backend_inline"
# Run in the kernel after the cells: its backend, and whether anything imported pyplot.
PROBE = ("import sys, matplotlib\n"
         "print(matplotlib.get_backend())\n"
         "print('matplotlib.pyplot' in sys.modules)")
# The pictures the notebook must show inline, by the call that draws them.
PICTURES = ("plot_digits", "plot_curves", "plot_weight_maps", "plot_confusion", "plot_sweep")


def _refresh_module():
    spec = importlib.util.spec_from_file_location("refresh", REPO / "notebooks" / "refresh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refresh = _refresh_module()


def _probed(outputs) -> list[str]:
    return "".join(o.text for o in outputs if o.output_type == "stream").split()


def _pictures(notebook) -> dict[str, int]:
    """For each of PICTURES, how many cells that call it show a PNG."""
    return {name: sum(1 for cell in notebook.cells if cell.cell_type == "code"
                      and f"figures.{name}(" in cell.source
                      and any("image/png" in o.get("data", {}) for o in cell.outputs))
            for name in PICTURES}


@pytest.mark.slow
def test_the_notebook_runs_and_its_committed_outputs_are_fresh(mnist_dir_path, monkeypatch):
    monkeypatch.setenv("MNIST_GPU_DATA", str(mnist_dir_path))
    committed = nbformat.read(NOTEBOOK, as_version=4)
    fresh, (probe,) = refresh.execute(copy.deepcopy(committed), probes=[PROBE])
    errors = [f"{o.ename}: {o.evalue}" for cell in fresh.cells
              for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert _probed(probe) == [INLINE, "False"]
    for notebook in (committed, fresh):  # it reads on a repository page, and shows them now
        assert all(_pictures(notebook).values()), _pictures(notebook)
    from mnist_gpu.backend import probe_cupy

    if probe_cupy()[0] is not None:
        pytest.skip("the committed outputs are NumPy's on the CPU, and auto chose CuPy here")
    stale = differences(committed, fresh)
    assert not stale, ("the committed outputs are stale: run `python notebooks/refresh.py`\n"
                       + "\n".join(stale))


# Each plotting function of the library, called as a reader's cell would (small inputs).
SETUP = """\
import numpy as np
import mnist_gpu as mg
from mnist_gpu.sweep import ModelResult, SweepResult
from mnist_gpu.viz import figures
import mnist_gpu.bench.plot
rng = np.random.default_rng(0)
curve = [mg.Checkpoint(0, 0.1, 3.0), mg.Checkpoint(100, 0.4, 1.0), mg.Checkpoint(1000, 0.6, 0.5)]
"""
CALLS = {
    "mnist_gpu.viz.figures.plot_digits":
        "figures.plot_digits(rng.integers(0, 256, (12, 784), dtype=np.uint8), np.arange(12) % 10,"
        " np.arange(12) % 3)",
    "mnist_gpu.viz.figures.plot_curves":
        "figures.plot_curves({'one run': mg.Curve(curve), 'seeds': [curve, curve],"
        " 'arrays': ([0, 100, 1000], [[0.1, 0.5, 0.7]])})",
    "mnist_gpu.viz.figures.plot_sweep":
        "figures.plot_sweep(SweepResult({}, {}, 'fused', [ModelResult(0.01, 0, curve),"
        " ModelResult(0.01, 1, curve), ModelResult(0.1, 0, curve[:1], 'at step 122', 100)],"
        " None, 1.0, 1000))",
    "mnist_gpu.viz.figures.plot_weight_maps":
        "figures.plot_weight_maps(rng.random((784, 10)))",
    "mnist_gpu.viz.figures.plot_conv_kernels":
        "figures.plot_conv_kernels(rng.standard_normal((25, 12)), 5)",
    "mnist_gpu.viz.figures.plot_confusion":
        "figures.plot_confusion(figures.confusion_matrix(np.arange(100) % 10,"
        " np.arange(100) % 7))",
    "mnist_gpu.bench.plot.plot":
        "mnist_gpu.bench.plot.plot({'rows': ["
        "{'kind': 'per-image', 'name': 'per-image fused', 'batch_size': 1, 'backend': 'numpy',"
        " 'dtype': 'float32', 'images_per_second': 3e6},"
        "{'kind': 'mini-batch', 'name': 'mini-batch', 'batch_size': 100, 'backend': 'numpy',"
        " 'dtype': 'float32', 'images_per_second': 1e6},"
        "{'kind': 'mini-batch', 'name': 'mini-batch', 'batch_size': 1000, 'backend': 'numpy',"
        " 'dtype': 'float32', 'images_per_second': 2e6}]})",
}


def _plotting_functions() -> set[str]:
    """Every public function of the library's picture modules that draws a figure."""
    found = set()
    for module in (mnist_gpu.viz.figures, mnist_gpu.bench.plot):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module.__name__ and name.startswith("plot"):
                found.add(f"{module.__name__}.{name}")
    return found


def test_every_plotting_function_shows_inline_and_leaves_the_backend_alone():
    assert set(CALLS) == _plotting_functions()  # a new plotting function needs its call here
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)] + [
        nbformat.v4.new_code_cell(call) for call in CALLS.values()])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    ran, (probe,) = refresh.execute(notebook, probes=[PROBE])
    for name, cell in zip(CALLS, ran.cells[1:]):
        kinds = [sorted(o.get("data", {})) or o.output_type for o in cell.outputs]
        assert kinds == [["image/png", "text/plain"]], (name, cell.outputs)
    assert _probed(probe) == [INLINE, "False"]


def _ran(*cells):
    """A notebook of code cells, each given as (source, tags, outputs)."""
    notebook = nbformat.v4.new_notebook()
    for source, tags, outputs in cells:
        cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
        notebook.cells.append(cell)
    return notebook


def _printed(text):
    return {"output_type": "stream", "name": "stdout", "text": text}


def _shown(text, png=False):
    data = {"text/plain": text, **({"image/png": "iVBORw0KGgo="} if png else {})}
    return {"output_type": "execute_result", "data": data, "metadata": {}, "execution_count": 1}


def test_stale_outputs_are_found_and_timings_are_not():
    committed = _ran(("train", [], [_printed("68.15% after 60,000 images in 0.016 s "
                                             "(3,773,616 images/s)\n")]),
                     ("mlp", ["blas"], [_shown("98.24%  0.0618  in 6.9 s")]),
                     ("plot", [], [_shown("<Figure>", png=True)]))
    same = _ran(("train", [], [_printed("68.15% after 60,000 images in 0.051 s "
                                        "(1,185,307 images/s)\n")]),
                ("mlp", ["blas"], [_shown("98.20%  0.0621  in 83.4 s")]),
                ("plot", [], [_shown("<Figure>", png=True)]))
    assert differences(committed, same) == []
    stale = _ran(("train", [], [_printed("68.14% after 60,000 images in 0.016 s "
                                         "(3,773,616 images/s)\n")]),
                 ("mlp", ["blas"], [_shown("97.80%  0.0618  in 6.9 s")]),
                 ("plot", [], [_shown("<Figure>")]))
    found = differences(committed, stale)
    assert len(found) == 3
    assert found[0].startswith("cell 0 (train), stdout: committed ...'68.15%")
    assert "98.24% committed, 97.8% now (tolerance 0.3 points)" in found[1]
    assert "cell 2 (plot): outputs" in found[2]  # the picture is gone
    worded = _ran(("train", [], same.cells[0].outputs), ("mlp", ["blas"], [_shown(
        "98.20%  0.0621  in 83.4 s, diverged")]), ("plot", [], same.cells[2].outputs))
    assert len(differences(committed, worded)) == 1  # the words around BLAS figures are exact
    # Why auto chose NumPy depends on what the machine has installed; that it did, does not.
    why = "mnist-gpu: backend auto: using NumPy on the CPU because CuPy is not installed{}\n"
    here = _ran(("backend", [], [_printed(why.format(""))]))
    elsewhere = _ran(("backend", [], [_printed(why.format(", and PyTorch is a CPU-only build"))]))
    assert differences(here, elsewhere) == []
    assert differences(here, _ran(("backend", [], [_printed("backend cupy\n")]))) != []
