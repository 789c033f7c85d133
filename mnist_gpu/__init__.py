"""mnist-gpu: the classic one-layer MNIST network, from scratch, on NumPy, CuPy or PyTorch.

The Python API, for notebooks::

    import mnist_gpu as mg

    mnist = mg.load_mnist()                   # verified files from ./data or $MNIST_GPU_DATA
    backend = mg.get_backend("auto")          # CuPy, PyTorch on a GPU, or NumPy
    data = mg.to_device_data(backend, mnist)  # uploaded once, scaled and one-hot on the device
    result = mg.train(data, mg.TrainConfig(alpha=0.01))
    result.final_accuracy, result.weights     # a float, and a NumPy (784, 10) array
    result                                    # in a notebook: its curve, as a table

    mlp = mg.train_mlp(data, mg.config_from_preset("mlp"))   # a documented deeper network

``notebooks/tutorial.ipynb`` tells the tutorial step by step with it.
Importing this package imports no optional library (CuPy, PyTorch, Numba, array_api_strict).
"""

__version__ = "0.1.0"

from .backend import Backend, BackendUnavailable, get_backend
from .data import MNIST, DataError, load_mnist
from .io.weights import load_weights, save_weights
from .model.tutorial import init_weights
from .training import (
    Checkpoint, Curve, DeviceData, MLPConfig, MLPResult, TrainConfig, TrainingDiverged,
    TrainResult, config_from_preset, evaluate_weights, to_device_data, train, train_mlp,
)

__all__ = [
    "Backend", "BackendUnavailable", "Checkpoint", "Curve", "DataError", "DeviceData", "MLPConfig",
    "MLPResult", "MNIST", "TrainConfig", "TrainResult", "TrainingDiverged", "config_from_preset",
    "evaluate_weights", "get_backend", "init_weights", "load_mnist", "load_weights",
    "save_weights", "to_device_data", "train", "train_mlp",
]
