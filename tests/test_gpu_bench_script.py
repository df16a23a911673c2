"""benchmarks/gpu_bench.py (run by benchmarks/gpu_check.sh on a GPU machine) works end to end:
its --smoke mode runs every case at a tiny size on this machine and writes both result files."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import bldm_fast as bf

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif("triton" not in bf.available_backends(), reason="needs the triton backend (or TRITON_INTERPRET=1)")
def test_gpu_bench_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_bench.py"), "--smoke", "--no-compile",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_bench.json").read_text())
    cases = [c["case"] for c in result["cases"]]
    assert sum(c.startswith("step") for c in cases) == 4 and any(c.startswith("noise") for c in cases)
    assert all(r["seconds"] > 0 for c in result["cases"] for r in c["rows"])
    assert "targets" in (tmp_path / "gpu_bench.md").read_text()
