"""A model saved by ``mnist-gpu train --save`` or ``sweep --save``, read back: its network (from
the file's metadata: a layer list, or an older file's settings; none means the tutorial's) and its
parameters, every shape checked."""

from __future__ import annotations

from ..io.weights import WeightsFileError, load_arrays
from .architecture import network_from_json
from .network import Network, params_from_arrays


class SweepFileError(WeightsFileError):
    """A file of a sweep's many models where one model is needed and none was chosen."""

    def __init__(self, message: str, models: int):
        super().__init__(message)
        self.models = models


def load_model(path, model: int | None = None) -> tuple[Network, list]:
    """The network (from the file's metadata; none means the tutorial's) and parameters of a
    file written by ``mnist-gpu train --save``, or of a plain (784, 10) ``.npy``/``.npz``; of a
    file written by ``mnist-gpu sweep --save``, those of its model number ``model``."""
    arch, params, _ = load_model_info(path, model)
    return arch, params


def load_model_info(path, model: int | None = None) -> tuple[Network, list, dict]:
    """``load_model``'s network and parameters, and what the file records of a sweep's
    model (its ``alpha``, ``seed``, ``final_accuracy`` and ``diverged``; {} for other files)."""
    arrays, metadata = load_arrays(path)
    sweep_models, described = _described(metadata, path)
    info = {}
    if sweep_models is not None:
        count = len(sweep_models)
        if model is None:
            raise SweepFileError(f"{path}: holds the {count} models of a sweep: choose one "
                                 f"with --model K (0 to {count - 1})", count)
        if not 0 <= model < count:
            raise WeightsFileError(f"{path}: --model {model} is not one of its {count} models "
                                   f"(0 to {count - 1})")
        if any(a.ndim == 0 or a.shape[0] != count for a in arrays.values()):
            raise WeightsFileError(f"{path}: its arrays do not hold {count} models")
        arrays = {key: a[model] for key, a in arrays.items()}
        info = sweep_models[model]
    elif model not in (None, 0):
        raise WeightsFileError(f"{path}: --model {model}, but it holds one model (0)")
    try:
        net = network_from_json(described) if described else Network.tutorial()
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        what = f"lacks {err}" if isinstance(err, KeyError) else err
        raise WeightsFileError(f"{path}: its metadata's network is not one mnist-gpu "
                               f"reads ({what})") from None
    try:
        return net, params_from_arrays(arrays, net, str(path)), info
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, WeightsFileError):
            raise
        raise WeightsFileError(str(err) if str(path) in str(err) else f"{path}: {err}") from None


def _described(metadata, path) -> tuple[list | None, dict | None]:
    """(a sweep file's list of its models' records, else None; the architecture's description,
    else None) from a file's metadata, its structure checked: what ``save_weights`` wrote for
    ``train --save`` or ``sweep --save``, or nothing. Any other JSON is one line naming the
    file and what is wrong (never an AttributeError on a list, a KeyError on a number)."""
    def wrong(what):
        return WeightsFileError(f"{path}: its metadata is not what mnist-gpu writes: {what}")

    if not isinstance(metadata, dict):
        raise wrong(f"{_json_kind(metadata)}, not an object")
    models = None
    if "sweep" in metadata:
        models = metadata.get("models")
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise wrong(f"'models' is {_json_kind(models)}, not a list of objects")
        if not models:
            raise wrong("'models' lists no model")
    config = metadata.get("config")
    if config is None:
        return models, None
    if not isinstance(config, dict):
        raise wrong(f"'config' is {_json_kind(config)}, not an object")
    key = "net" if "net" in config else "arch"  # "arch": written before layer lists
    described = config.get(key)
    if described is not None and not isinstance(described, dict):
        raise wrong(f"'config.{key}' is {_json_kind(described)}, not an object")
    return models, described


def _json_kind(value) -> str:
    """What a JSON value is, in words: "a list", "the number 5", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"
