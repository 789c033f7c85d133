"""What the compiled kernels raise when a pass cannot run (its own module, so that every kernel
module can raise it without importing the registry)."""

from __future__ import annotations

from ..backend import BackendUnavailable


class KernelUnavailable(BackendUnavailable):
    """No compiled pass of the kind asked for on this backend, or one that cannot run here (it
    did not compile or launch); the message says why."""
