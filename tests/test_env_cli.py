"""``bldm-fast env`` and the bench command's consistency: ``--json PATH`` with ``-`` meaning stdout
(no file named "-"), bad arguments rejected as one line with exit code 1 before any work, a bench
that could measure nothing it was asked for exits 1, ``-q``. Every command runs as a subprocess the
way a user types it."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import bldm_fast
from bldm_fast import _native


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bldm_fast", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _one_line_error(res: subprocess.CompletedProcess, cmd: str, text: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"bldm-fast {cmd}: error: ") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_env_reports_every_backend_with_its_reason(tmp_path):
    res = _cli("env", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    status = _native.backend_status()
    for name, reason in status.items():
        want = "available" if reason is None else f"unavailable: {reason}"
        assert f"  {name:<10} {want}" in res.stdout
    assert f"bldm_fast    {bldm_fast.__version__}" in res.stdout and "cpu features" in res.stdout
    assert ("extension    loaded from" in res.stdout) == bldm_fast.native_available()


def test_env_json_to_stdout_and_to_a_file(tmp_path):
    res = _cli("env", "--json", "-", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["backends"] == _native.backend_status() and info["native"]["loaded"] == bldm_fast.native_available()
    assert "backends" in res.stderr  # the report went to stderr
    assert list(tmp_path.iterdir()) == []  # no file named "-"
    res = _cli("env", "--json", "missing/env.json", cwd=tmp_path)
    _one_line_error(res, "env", "does not exist")
    assert res.stdout == ""
    res = _cli("env", "--json", "env.json", cwd=tmp_path)
    assert res.returncode == 0 and json.loads((tmp_path / "env.json").read_text())["versions"]["torch"]


@pytest.mark.parametrize("kwargs,error,text", [
    ({"backends": ["bogus"]}, ValueError, "backends: unknown ['bogus']"),
    ({"ops": ["bogus"]}, ValueError, "ops: unknown ['bogus']"),
    ({"baselines": ["bogus"]}, ValueError, "baselines: unknown ['bogus']"),
    ({"repeats": 0}, ValueError, "repeats must be >= 1, got 0"),
    ({"repeats": 2.0}, TypeError, "repeats must be an int"),
    ({"threads": -2}, ValueError, "threads must be >= 1"),
    ({"min_time": 0.0}, ValueError, "min_time must be a finite number of seconds > 0"),
    ({"compile_timeout": float("nan")}, ValueError, "compile_timeout must be a finite number"),
    ({"device": "bogus"}, ValueError, "device: expected 'cpu' or 'cuda'"),
    ({"device": "meta"}, ValueError, "device: expected 'cpu' or 'cuda'"),
])
def test_run_bench_rejects_bad_arguments_before_any_work(kwargs, error, text):
    from bldm_fast.bench import report

    with pytest.raises(error, match=re.escape(text)):
        report.run_bench(quick=True, progress=False, **{"ops": ["pack"], **kwargs})


@pytest.mark.parametrize("args,text", [
    (["--backends", "bogus"], "backends: unknown ['bogus']"),
    (["--repeats", "0"], "repeats must be >= 1, got 0"),
    (["--json", "."], "--json: . is a folder"),
])
def test_bench_command_rejects_bad_arguments_in_one_line(tmp_path, args, text):
    res = _cli("bench", "--ops", "pack", *args, cwd=tmp_path)
    _one_line_error(res, "bench", text)
    assert res.stdout == "" and list(tmp_path.iterdir()) == []


def test_bench_of_a_backend_that_cannot_run_exits_1(tmp_path):
    """cuda without a CUDA build or GPU; triton on CPU tensors (it runs in Triton's interpreter at best)."""
    for backend in ("cuda", "triton"):
        if backend == "cuda" and _native.backend_status()["cuda"] is None:
            continue  # a GPU machine: the CPU bench skips it as a CUDA-tensor backend, checked below for triton
        res = _cli("bench", "--backends", backend, "--ops", "pack", "--json", "r.json", cwd=tmp_path)
        _one_line_error(res, "bench", f"nothing to measure: backend {backend!r} ")
        reason = _native.backend_status()[backend]
        assert (reason or "runs on CUDA tensors (use --device cuda)") in res.stderr
        assert list(tmp_path.iterdir()) == []


def test_bench_json_dash_is_stdout_and_quiet_prints_no_progress(tmp_path):
    if not bldm_fast.native_available():
        pytest.skip("needs the cpu backend (bldm_fast._C) to have a bldm_fast row to time")
    res = _cli("bench", "--quick", "--ops", "pack", "--no-compile", "--baselines", "numpy", "--repeats", "1",
               "--min-time", "0.001", "--backends", "cpu", "-q", "--json", "-", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["settings"]["backends"] == ["cpu"] and out["backend_status"] == _native.backend_status()
    assert out["native"]["loaded"] and out["notes"][0].startswith("extension: bldm_fast._C")
    assert all(r["status"] == "ok" for c in out["cases"] for r in c["rows"] if r["kind"] == "bldm_fast")
    assert res.stderr.startswith("bldm_fast benchmark (quick)")  # the report, and no progress bar nor "saved"
    assert "bench:" not in res.stderr and "saved" not in res.stderr
    for name, reason in _native.backend_status().items():
        if reason is not None:
            assert f"note    : backend {name!r} unavailable: {reason}" in res.stderr
    assert list(tmp_path.iterdir()) == []  # no file named "-"
