"""``python -m mnist_gpu.cli``: the ``mnist-gpu`` command."""

import sys

from . import console

sys.exit(console())
