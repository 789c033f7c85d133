"""The project's CUDA source compiles with nvcc (present on CI machines, which have no GPU)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mnist_gpu.kernels.cuda import COMPILE_OPTIONS, KERNEL_SOURCE


@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
def test_kernel_source_compiles_with_nvcc(tmp_path, arch):
    nvcc = shutil.which("nvcc") or next(
        (p for p in ("/usr/local/cuda/bin/nvcc",) if shutil.os.path.exists(p)), None)
    if nvcc is None:
        pytest.skip("nvcc not found")
    source = tmp_path / "fused_pass.cu"
    source.write_text(KERNEL_SOURCE.read_text())
    out = subprocess.run(
        [nvcc, f"-arch={arch}", *COMPILE_OPTIONS, "-Xptxas", "-v", "-c", str(source),
         "-o", str(tmp_path / "fused_pass.o")],
        capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # Both kernels are there, and neither spills registers to local memory.
    assert "per_image_pass_float32" in out.stderr and "per_image_pass_float64" in out.stderr
    assert "0 bytes spill stores" in out.stderr and " bytes spill stores" in out.stderr
    assert all(line.strip().startswith("0 bytes stack frame, 0 bytes spill stores")
               for line in out.stderr.splitlines() if "spill stores" in line)


# The kernel indexes its lists unchecked: the host-side checks run on any array library, so they
# are exercised here on NumPy arrays standing in for CuPy's.
def _lists(n_images=4):
    import numpy as np

    from mnist_gpu.kernels.lit import LitPixels

    indptr = np.arange(n_images + 1, dtype=np.int64)
    return LitPixels(indptr, np.zeros(n_images, np.int32), np.ones(n_images, np.float32),
                     np.arange(784, dtype=np.int32), np.zeros(784, np.int64))


@pytest.mark.parametrize("start, stop, order, message", [
    (0, 5, None, r"positions 0:5 outside 0:4"),
    (-1, 2, None, r"positions -1:2 outside 0:4"),
    (0, 3, [0, 1], r"positions 0:3 outside 0:2"),
    (0, 2, [0, 4], r"the order holds image 4, outside 0:4"),
    (0, 2, [-1, 0], r"the order holds image -1, outside 0:4"),
    (0, 2, [0.0, 1.0], r"1-d array of integers"),
    (0, 2, [[0, 1]], r"1-d array of integers"),
    (1.0, 2, None, r"positions 1.0:2 outside 0:4"),
])
def test_positions_and_order_are_checked_on_the_host(start, stop, order, message):
    import numpy as np

    from mnist_gpu.kernels.cuda import check_positions

    order = None if order is None else np.asarray(order)
    with pytest.raises(ValueError, match=message):
        check_positions(_lists(), np.zeros(4, np.uint8), start, stop, order)


def test_good_positions_pass_and_labels_must_match():
    import numpy as np

    from mnist_gpu.kernels.cuda import check_positions

    check_positions(_lists(), np.zeros(4, np.uint8), 0, 4, None)
    check_positions(_lists(), np.zeros(4, np.uint8), 1, 3, np.array([3, 2, 1, 0]))
    check_positions(_lists(), np.zeros(4, np.uint8), 2, 2, np.array([9, 9]))  # nothing read
    with pytest.raises(ValueError, match="labels for 4 images"):
        check_positions(_lists(), np.zeros(3, np.uint8), 0, 1, None)
