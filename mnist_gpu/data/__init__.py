"""MNIST on the host: find the four files, verify every byte, download what is missing.

Nothing here knows about devices: the loader returns uint8 arrays exactly as the files hold them
(``mnist.py``), read by a strict IDX reader (``idx.py``), with the published hashes
(``published.py``) and the mirrors (``download.py``).
"""

from .cache import SettingError
from .idx import IMAGE_SIDE, N_CLASSES, N_PIXELS, DataError, parse_idx, read_idx
from .mnist import MNIST, load_mnist, offline_from_environment, resolve_data_dir
from .published import MNIST_FILES, FileSpec

__all__ = ["IMAGE_SIDE", "MNIST", "MNIST_FILES", "N_CLASSES", "N_PIXELS", "DataError",
           "FileSpec", "SettingError", "load_mnist", "offline_from_environment", "parse_idx",
           "read_idx", "resolve_data_dir"]
