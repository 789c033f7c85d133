"""The project's CUDA source compiles with nvcc (present on CI machines, which have no GPU)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mnist_gpu.fused_cuda import COMPILE_OPTIONS, KERNEL_SOURCE


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
