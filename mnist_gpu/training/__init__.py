"""Training: data on the device once, one loop with its checkpoints and divergence handling
(``runner.py``) around what it trains, a ``Trainee`` (``trainee.py``): the tutorial's network,
one model or a stack (``tutorial.py``, the entry points; ``stack_trainee.py``, the stack the loop
trains; ``scoring.py``; ``divergence.py``, what a diverged model is told), computed as
``kernel_choice.py`` chooses once per run, and the deeper networks (``network.py``)."""

from .config import KERNELS, TUTORIAL_CHECKPOINTS, MLPConfig, TrainConfig, config_from_preset
from .device_data import DTYPES, DeviceData, DeviceOutOfMemory, to_device_data
from .kernel_choice import KernelChoice, choose_kernel
from .network import train_mlp
from .results import Checkpoint, Curve, MLPResult, TrainingDiverged, TrainResult
from .trainee import Trainee
from .tutorial import evaluate_weights, train, train_models

__all__ = ["DTYPES", "KERNELS", "TUTORIAL_CHECKPOINTS", "Checkpoint", "Curve", "DeviceData",
           "DeviceOutOfMemory", "KernelChoice", "MLPConfig", "MLPResult", "TrainConfig",
           "TrainResult", "Trainee", "TrainingDiverged", "choose_kernel", "config_from_preset",
           "evaluate_weights", "to_device_data", "train", "train_mlp", "train_models"]
