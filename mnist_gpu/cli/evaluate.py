"""``mnist-gpu eval``: saved weights scored on the test set: accuracy, per class and the
confusion matrix, printed and drawn, and the weights themselves as maps."""

from __future__ import annotations

import json

from ..io.weights import WeightsFileError
from ..training import DTYPES, to_device_data
from .common import UsageError, backend_and_mnist, check_outputs, require_plotting, save_figure


def load_model_or_usage_error(path, model=None):
    from ..model.saved import load_model

    try:
        return load_model(path, model)
    except WeightsFileError as err:
        raise UsageError(f"--weights {err}") from None


def run(args) -> int:
    from ..model import network
    from ..viz import figures

    check_outputs(args, "plot", "weight-map")
    if args.plot or args.weight_map:
        require_plotting("--plot" if args.plot else "--weight-map")
    arch, host_params = load_model_or_usage_error(args.weights, args.model)
    backend, mnist = backend_and_mnist(args)
    saved = str(host_params[0][0].dtype)
    dtype = saved if saved in DTYPES and saved in backend.dtypes else "float32"
    data = to_device_data(backend, mnist, dtype, limit=1)
    with backend.activate():
        params = [(backend.to_device(W.astype(dtype)),
                   None if b is None else backend.to_device(b.astype(dtype)))
                  for W, b in host_params]
        plan = network.ConvPlan(arch, backend) if arch.conv else None
        predictions = backend.to_host(network.classify(params, data.test_x, arch, backend.xp,
                                                   plan=plan))
    labels = mnist.test_labels
    matrix = figures.confusion_matrix(labels, predictions)
    per_class = matrix.diagonal() / matrix.sum(axis=1)
    accuracy = float(matrix.trace() / matrix.sum())
    if args.json:
        print(json.dumps({"weights": args.weights, "architecture": arch.describe(),
                          "accuracy": accuracy, "per_class_accuracy": per_class.tolist(),
                          "confusion_matrix": matrix.tolist()}))
    else:
        print(f"{args.weights}: {arch.describe()}")
        print(f"test accuracy: {accuracy:.2%} ({matrix.trace():,} of {matrix.sum():,})")
        print("per class:  " + "  ".join(f"{d}: {a:.1%}" for d, a in enumerate(per_class)))
        print("confusion matrix (rows: true digit, columns: predicted):")
        print("      " + "".join(f"{d:>6}" for d in range(10)))
        for d, row in enumerate(matrix):
            print(f"{d:>6}" + "".join(f"{c:>6}" for c in row))
    if args.plot:
        save_figure(figures.plot_confusion(matrix, title=f"{arch.describe()}: {accuracy:.2%}"),
                    args.plot)
    if args.weight_map:
        directions = figures.image_directions(mnist.train_images)
        save_figure(figures.plot_weight_maps(host_params[0][0], directions=directions),
                    args.weight_map)
    return 0
