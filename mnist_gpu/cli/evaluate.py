"""``mnist-gpu eval``: saved weights scored on the test set: accuracy, per class and the
confusion matrix, printed and drawn, and the weights themselves as maps."""

from __future__ import annotations

from ..io.weights import WeightsFileError
from ..model.conv import Conv
from ..training import DTYPES, to_device_data
from .common import (
    UsageError, backend_and_mnist, check_outputs, emit_json, json_on_stdout, require_plotting,
    save_figure, say,
)


def load_model_or_usage_error(path, model=None, flag="--weights"):
    """The architecture and host parameters of a saved model (the one loader of ``eval``,
    ``predict`` and ``train --init``), a fault being one line naming ``flag``."""
    arch, params, _ = load_model_info_or_usage_error(path, model, flag)
    return arch, params


def load_model_info_or_usage_error(path, model=None, flag="--weights"):
    from ..model.saved import load_model_info

    try:
        return load_model_info(path, model)
    except WeightsFileError as err:
        raise UsageError(f"{flag} {err}") from None


def sweep_model_line(index, info, arch) -> str | None:
    """What a sweep file says of its model ``index``: its settings, and whether it diverged."""
    if not info:
        return None
    line = f"model {index} of the sweep: alpha {info.get('alpha')}, seed {info.get('seed')}"
    if info.get("diverged"):
        kept = ("the file holds its weights at its last finite step" if arch.is_tutorial else
                "the file holds zeros in its place")
        line += f"; it DIVERGED {info['diverged']}, and {kept}"
    return line


def run(args) -> int:
    from ..model import network
    from ..model.layer import Context
    from ..viz import figures

    check_outputs(args, "plot", "weight-map", "json")
    if args.plot or args.weight_map:
        require_plotting("--plot" if args.plot else "--weight-map")
    arch, host_params, info = load_model_info_or_usage_error(args.weights, args.model)
    backend, mnist = backend_and_mnist(args)
    saved = str(network.flat(host_params)[0].dtype)
    dtype = saved if saved in DTYPES and saved in backend.dtypes else "float32"
    data = to_device_data(backend, mnist, dtype, limit=1)
    with backend.activate():
        params = network.to_device(backend, [[p.astype(dtype) for p in layer]
                                             for layer in host_params])
        ctx = Context(backend, dtype)
        predictions = backend.to_host(network.classify(arch, params, data.test_x, ctx))
    labels = mnist.test_labels
    matrix = figures.confusion_matrix(labels, predictions)
    per_class = matrix.diagonal() / matrix.sum(axis=1)
    accuracy = float(matrix.trace() / matrix.sum())
    about_model = sweep_model_line(args.model, info, arch)
    if not json_on_stdout(args):
        print(f"{args.weights}: {arch.describe()}")
        if about_model:
            print(about_model)
        print(f"test accuracy: {accuracy:.2%} ({matrix.trace():,} of {matrix.sum():,})")
        print("per class:  " + "  ".join(f"{d}: {a:.1%}" for d, a in enumerate(per_class)))
        print("confusion matrix (rows: true digit, columns: predicted):")
        print("      " + "".join(f"{d:>6}" for d in range(10)))
        for d, row in enumerate(matrix):
            print(f"{d:>6}" + "".join(f"{c:>6}" for c in row))
    if args.json:
        document = {"weights": args.weights, "architecture": arch.describe(),
                    "accuracy": accuracy, "per_class_accuracy": per_class.tolist(),
                    "confusion_matrix": matrix.tolist()}
        if info:
            document["model"] = {"index": args.model, **info}
        emit_json(args, document)
    if args.plot:
        save_figure(figures.plot_confusion(matrix, title=f"{arch.describe()}: {accuracy:.2%}"),
                    args.plot)
        say(args, f"wrote {args.plot} (the confusion matrix)")
    if args.weight_map:
        save_figure(weight_map(arch, host_params, mnist, figures), args.weight_map,
                    "--weight-map")
        i, first = arch.parametrised()[0]
        what = (f"the first convolution's {first.filters} kernels" if isinstance(first, Conv)
                else "the weights per output digit" if len(host_params[i][0].T) == 10 else
                "the first layer's units")
        say(args, f"wrote {args.weight_map} ({what})")
    return 0


def weight_map(arch, host_params, mnist, figures):
    """The picture of what the first layer learned: a CNN's first kernels as K x K images, a
    dense first layer's units as 28x28 maps, as the images see them."""
    i, first = arch.parametrised()[0]
    if isinstance(first, Conv):
        return figures.plot_conv_kernels(host_params[i][0], first.k)
    directions = figures.image_directions(mnist.train_images)
    return figures.plot_weight_maps(host_params[i][0], directions=directions)
