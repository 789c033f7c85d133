"""A model saved by ``mnist-gpu train --save`` or ``sweep --save``, read back: its architecture
(from the file's metadata; none means the tutorial's) and its parameters, every shape checked."""

from __future__ import annotations

from ..io.weights import WeightsFileError, load_arrays
from .architecture import Architecture
from .network import params_from_arrays

class SweepFileError(WeightsFileError):
    """A file of a sweep's many models where one model is needed and none was chosen."""

    def __init__(self, message: str, models: int):
        super().__init__(message)
        self.models = models


def load_model(path, model: int | None = None) -> tuple[Architecture, list]:
    """The architecture (from the file's metadata; none means the tutorial's) and parameters of a
    file written by ``mnist-gpu train --save``, or of a plain (784, 10) ``.npy``/``.npz``; of a
    file written by ``mnist-gpu sweep --save``, those of its model number ``model``."""
    arch, params, _ = load_model_info(path, model)
    return arch, params


def load_model_info(path, model: int | None = None) -> tuple[Architecture, list, dict]:
    """``load_model``'s architecture and parameters, and what the file records of a sweep's
    model (its ``alpha``, ``seed``, ``final_accuracy`` and ``diverged``; {} for other files)."""
    arrays, metadata = load_arrays(path)
    sweep_models = metadata.get("models") if "sweep" in metadata else None
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
        info = sweep_models[model] if isinstance(sweep_models[model], dict) else {}
    elif model not in (None, 0):
        raise WeightsFileError(f"{path}: --model {model}, but it holds one model (0)")
    described = (metadata.get("config") or {}).get("arch")
    try:
        arch = Architecture.from_json(described) if described else Architecture()
        return arch, params_from_arrays(arrays, arch, str(path)), info
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, WeightsFileError):
            raise
        raise WeightsFileError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
