"""A model saved by ``mnist-gpu train --save`` or ``sweep --save``, read back: its network (from
the file's metadata: a layer list, or an older file's settings; none means the tutorial's) and its
parameters, every shape checked."""

from __future__ import annotations

from ..io.weights import WeightsFileError, load_arrays
from .architecture import network_from_json
from .network import Network, params_from_arrays

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
    sweep_models = metadata.get("models") if "sweep" in metadata else None
    info = {}
    if sweep_models is not None:
        count = len(sweep_models)
        if model is None:
            raise WeightsFileError(f"{path}: holds the {count} models of a sweep: choose one "
                                   f"with --model K (0 to {count - 1})")
        if not 0 <= model < count:
            raise WeightsFileError(f"{path}: --model {model} is not one of its {count} models "
                                   f"(0 to {count - 1})")
        if any(a.ndim == 0 or a.shape[0] != count for a in arrays.values()):
            raise WeightsFileError(f"{path}: its arrays do not hold {count} models")
        arrays = {key: a[model] for key, a in arrays.items()}
        info = sweep_models[model] if isinstance(sweep_models[model], dict) else {}
    elif model not in (None, 0):
        raise WeightsFileError(f"{path}: --model {model}, but it holds one model (0)")
    config = metadata.get("config") or {}
    described = config.get("net") or config.get("arch")  # "arch": written before layer lists
    try:
        net = network_from_json(described) if described else Network.tutorial()
        return net, params_from_arrays(arrays, net, str(path)), info
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, WeightsFileError):
            raise
        raise WeightsFileError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
