"""The source distribution builds a working wheel: every header and source the build needs is in the
sdist; a wheel built from the unpacked sdist in a clean folder installs into a fresh venv, imports
from outside the source tree, runs a fused op on the ``cpu`` backend, is stripped, records its torch
and requires that torch's major.minor; breaking its extension there gives the fallback warning.

One slow test (the wheel compiles the C++ kernels: ~1-3 min on 2 cores); CI runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_INPUTS = (".h", ".cpp", ".cu", ".cuh")

# Run inside the venv, from a folder outside the source tree. The developer's editable install of
# bldm_fast (a meta-path finder in the system site-packages the venv shares) is dropped first, so
# the wheel's own files are the only bldm_fast this process can find.
PROBE = textwrap.dedent("""
    import json, sys, warnings
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        import bldm_fast as bf
        from bldm_fast import _native
        s = bf.BernoulliSchedule(16, "cos")
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(2, 16, 12, generator=g)
        xt = bf.pack_bits(torch.rand(2, 16, 12, generator=g) < 0.5)
        fused = bf.sample_step(logits, xt, 9, 5, s, seed=3, offset=7).packed
        ref = bf.sample_step(logits, xt, 9, 5, s, seed=3, offset=7, backend="reference").packed
    print(json.dumps({
        "file": bf.__file__, "backends": bf.available_backends(), "status": _native.backend_status(),
        "native": _native.native_info(), "same_bits": bool(torch.equal(fused, ref)),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    }))
""")


def _run(cmd, cwd, env=None, timeout=1800):
    """Run ``cmd``; on a timeout its whole process group goes (the compilers pip spawned too)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{out[-4000:]}\n{err[-4000:]}"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _probe(python, cwd) -> dict:
    return json.loads(_run([python, "-c", PROBE], cwd).stdout.strip().splitlines()[-1])


def _sections(path) -> set[str]:
    out = _run(["readelf", "-S", "-W", path], os.path.dirname(path)).stdout
    return {tok for line in out.splitlines() for tok in line.replace("]", "] ").split() if tok.startswith(".")}


@pytest.mark.slow
def test_sdist_builds_a_wheel_that_installs_imports_and_runs(tmp_path):
    env = {**os.environ, "MAX_JOBS": "2"}
    env.pop("BLDM_FAST_NO_EXT", None)
    env.pop("BLDM_FAST_DEBUG", None)

    # 1. the sdist holds every file the build compiles or includes
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path / "dist"), ROOT],
         ROOT, env)
    (sdist,) = (tmp_path / "dist").glob("bldm_fast-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        members = {n.split("/", 1)[1] for n in names if "/" in n}
        tar.extractall(tmp_path / "src", filter="data")
    needed = {os.path.relpath(os.path.join(d, f), ROOT) for d, _, files in os.walk(os.path.join(ROOT, "kernels"))
              for f in files if f.endswith(BUILD_INPUTS)}
    assert {"kernels/include/bldm_fast/philox.h", "kernels/op_checks.h", "kernels/cpu/bits_cpu.h",
            "kernels/ops.cpp", "kernels/cuda/step.cu", "kernels/cuda/device_utils.cuh"} <= needed
    assert needed - members == set(), "sources missing from the sdist"
    for name in ("setup.py", "pyproject.toml", "LICENSE", "CITATION.cff", "CHANGELOG.md", "README.md",
                 "bldm_fast/py.typed", "bldm_fast/assets/digits_denoiser.pt"):
        assert name in members, f"{name} missing from the sdist"
    assert not any(m.endswith(".so") or "_C_build.json" in m for m in members), "build outputs in the sdist"

    # 2. a wheel from the unpacked sdist, in a folder of its own
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheels"),
          str(tmp_path / "src" / top)], tmp_path, env)
    (wheel,) = (tmp_path / "wheels").glob("bldm_fast-*.whl")

    # 3. a fresh venv sharing this interpreter's torch; the wheel installed without its dependencies
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], tmp_path)
    python = str(tmp_path / "venv" / "bin" / "python")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], tmp_path)
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    pkg = os.path.join(site, "bldm_fast")

    # 4. imported from outside the source tree: the fused op runs on cpu and matches the reference
    work = tmp_path / "elsewhere"
    work.mkdir()
    got = _probe(python, work)
    assert got["file"] == os.path.join(pkg, "__init__.py")
    assert "cpu" in got["backends"] and got["status"]["cpu"] is None and got["same_bits"]
    assert got["warnings"] == []
    assert got["native"]["path"].startswith(pkg)
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    assert got["native"]["build"]["torch"] == torch.__version__ and got["native"]["build"]["debug"] is False

    # the installed metadata requires the torch the extension was built for; py.typed is shipped
    dist_info = next(p for p in os.listdir(site) if p.startswith("bldm_fast-") and p.endswith(".dist-info"))
    with open(os.path.join(site, dist_info, "METADATA")) as f:
        requires = [line.split(":", 1)[1].strip() for line in f if line.startswith("Requires-Dist:")]
    assert f"torch<{major}.{int(minor) + 1},>={major}.{minor}" in requires, requires
    assert os.path.exists(os.path.join(pkg, "py.typed"))

    # the release extension is stripped: no symbol table, no debug sections
    (ext,) = [os.path.join(pkg, n) for n in os.listdir(pkg) if n.startswith("_C") and n.endswith(".so")]
    sections = _sections(ext)
    assert ".text" in sections and ".symtab" not in sections and not any(s.startswith(".debug") for s in sections)

    # the console script of the wheel runs
    env_out = _run([str(tmp_path / "venv" / "bin" / "bldm-fast"), "env"], work).stdout
    assert "cpu        available" in env_out

    # 5. a corrupt extension, then a missing one: one warning naming the real error, and the reference's bits
    with open(ext, "wb") as f:
        f.write(b"not a shared library")
    got = _probe(python, work)
    assert "cpu" not in got["backends"] and got["same_bits"]
    assert len(got["warnings"]) == 1 and ext in got["warnings"][0] and "slower" in got["warnings"][0]
    assert ext in got["status"]["cpu"]
    os.remove(ext)
    got = _probe(python, work)
    assert len(got["warnings"]) == 1 and "bldm_fast._C is not built" in got["warnings"][0]
    assert "circular import" not in got["warnings"][0]
