"""``python -m mnist_gpu.cli``: the ``mnist-gpu`` command."""

import sys

from . import main

sys.exit(main())
