"""Training: data on the device once, one loop with its checkpoints and divergence handling
(``runner.py``), and what it trains: the tutorial's network, one model or a stack
(``tutorial.py``), and the deeper networks (``network.py``)."""

from .config import KERNELS, TUTORIAL_CHECKPOINTS, MLPConfig, TrainConfig, config_from_preset
from .device_data import DTYPES, DeviceData, DeviceOutOfMemory, to_device_data
from .network import train_mlp
from .results import Checkpoint, Curve, MLPResult, TrainingDiverged, TrainResult
from .tutorial import evaluate_weights, kernel_name, kernel_note, train, train_models

__all__ = ["DTYPES", "KERNELS", "TUTORIAL_CHECKPOINTS", "Checkpoint", "Curve", "DeviceData",
           "DeviceOutOfMemory", "MLPConfig", "MLPResult", "TrainConfig", "TrainResult",
           "TrainingDiverged", "config_from_preset", "evaluate_weights", "kernel_name",
           "kernel_note", "to_device_data", "train", "train_mlp", "train_models"]
