"""Every Triton kernel variant compiles for an sm_90 GPU where CI runs (no GPU): the Triton
counterpart of test_cuda_sources_compile.py. Triton's interpreter, which runs the kernels in the
other tests here, accepts code that the GPU compiler rejects; tests/triton_sm90_compile.py runs
Triton's real compiler on a representative call of every kernel and flag."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ptxas_available() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    from triton.backends.nvidia import compiler

    try:
        return compiler.get_ptxas(90).path is not None
    except Exception:  # noqa: BLE001  (any failure to locate ptxas means: cannot compile here)
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _ptxas_available(), reason="needs the triton package with its CUDA backend (ptxas)")
def test_triton_kernels_compile_for_sm90(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRITON_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "triton_sm90_compile.py")], capture_output=True,
                         text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    compiled = run.stdout.splitlines()
    for kernel in ("_pack_kernel", "_unpack_kernel", "_noise_kernel", "_step_kernel", "_flip_bce_kernel",
                   "_binarize_kernel", "_quantize_kernel", "_fill_kernel"):
        assert any(line.startswith(kernel) for line in compiled), (kernel, compiled)
    assert any("ALIGNED=True" in line for line in compiled) and any("ALIGNED=False" in line for line in compiled)
