"""Loading bldm_fast._C: the real error when it is corrupt or missing (never "circular import"), one
warning at the first op that falls back to the reference, the build's torch checked at import, and
``backend_status()`` giving each backend's reason.

Each broken case runs in a subprocess on a copy of the package in a temporary folder, so the
installed package is never touched.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import bldm_fast
from bldm_fast import _native

PKG = os.path.dirname(os.path.abspath(bldm_fast.__file__))
EXT = glob.glob(os.path.join(PKG, "_C*.so"))

# Imports the copy (first on sys.path); the developer's editable-install finder is dropped so a
# missing _C in the copy cannot be found in the source tree instead. Two ops on CPU tensors.
PROBE = textwrap.dedent("""
    import json, sys, warnings
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        import bldm_fast as bf
        from bldm_fast import _native
        at_import = len(caught)
        packed = bf.pack_bits(torch.tensor([[1, 0, 1, 1, 0, 0, 0, 1]], dtype=torch.uint8))
        bits = bf.unpack_bits(packed, 8, torch.uint8)
        sched = bf.BernoulliSchedule(8)
        bf.sample_step(torch.zeros(1, 4, 8), bf.pack_bits(torch.ones(1, 4, 8)), 5, 3, sched, seed=1, offset=0)
    print(json.dumps({
        "file": bf.__file__, "backends": bf.available_backends(), "status": _native.backend_status(),
        "loaded": "bldm_fast._C" in sys.modules, "at_import": at_import, "packed": packed.tolist(),
        "roundtrip": bits.tolist(),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
    }))
""")


def _copy_package(tmp_path, ext: bytes | None, build_info: dict | None) -> str:
    """A copy of bldm_fast under ``tmp_path`` whose extension file holds ``ext`` (None: no file) and
    whose build record is ``build_info`` (None: none). Returns the copy's extension path."""
    dst = tmp_path / "bldm_fast"
    shutil.copytree(PKG, dst, ignore=shutil.ignore_patterns("__pycache__", "assets", "_C*.so", "_C_build.json"))
    path = str(dst / (os.path.basename(EXT[0]) if EXT else "_C.cpython-311-x86_64-linux-gnu.so"))
    if ext is not None:
        with open(path, "wb") as f:
            f.write(ext)
    if build_info is not None:
        (dst / _native.BUILD_INFO_FILE).write_text(json.dumps(build_info))
    return path


def _probe(tmp_path, **env) -> dict:
    run_env = {k: v for k, v in os.environ.items() if k != "BLDM_FAST_BACKEND"} | env
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=run_env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["file"] == str(tmp_path / "bldm_fast" / "__init__.py")  # the copy, not the installed package
    assert got["packed"] == [[0x8D]] and got["roundtrip"] == [[1, 0, 1, 1, 0, 0, 0, 1]]  # the reference works
    return got


needs_ext = pytest.mark.skipif(not EXT, reason="needs the built extension bldm_fast/_C*.so to copy")


def test_corrupt_extension_warns_once_with_the_real_error(tmp_path):
    path = _copy_package(tmp_path, b"this is not a shared library", None)
    got = _probe(tmp_path)
    assert "cpu" not in got["backends"] and not got["loaded"]
    assert got["at_import"] == 0 and len(got["warnings"]) == 1, got["warnings"]
    msg = got["warnings"][0]
    assert f"ImportError: {path}:" in msg  # the dynamic loader's own message, with the file
    assert "slower" in msg and "pip install --no-build-isolation" in msg and "circular import" not in msg
    assert path in got["status"]["cpu"] and got["status"]["reference"] is None


def test_missing_extension_says_it_is_not_built(tmp_path):
    _copy_package(tmp_path, None, None)
    got = _probe(tmp_path)
    assert "cpu" not in got["backends"] and len(got["warnings"]) == 1
    assert "ModuleNotFoundError: bldm_fast._C is not built" in got["warnings"][0]
    assert "circular import" not in got["warnings"][0] and "not built" in got["status"]["cpu"]


def test_explicit_reference_backend_is_not_warned_about(tmp_path):
    _copy_package(tmp_path, b"junk", None)
    got = _probe(tmp_path, BLDM_FAST_BACKEND="reference")
    assert got["warnings"] == []
    assert got["status"]["cpu"] is not None  # still reported as unavailable


@needs_ext
def test_extension_built_for_another_torch_is_not_loaded(tmp_path):
    with open(EXT[0], "rb") as f:
        real = f.read()
    _copy_package(tmp_path, real, {"torch": "2.1.2", "cuda": None, "cpu_arch": "native", "debug": False})
    got = _probe(tmp_path)
    assert not got["loaded"] and "cpu" not in got["backends"]
    assert got["at_import"] == 1 and len(got["warnings"]) == 1  # at import, and not again at the first op
    msg = got["warnings"][0]
    assert "torch 2.1.2" in msg and f"torch {torch.__version__}" in msg and "pip install --no-build-isolation" in msg
    assert "2.1.2" in got["status"]["cpu"]


@needs_ext
def test_matching_build_record_loads_without_a_warning(tmp_path):
    with open(EXT[0], "rb") as f:
        real = f.read()
    _copy_package(tmp_path, real, {"torch": torch.__version__, "cuda": None, "cpu_arch": "native", "debug": False})
    got = _probe(tmp_path)
    assert got["loaded"] and "cpu" in got["backends"] and got["warnings"] == [] and got["status"]["cpu"] is None


def test_backend_status_agrees_with_available_backends():
    status = _native.backend_status()
    assert list(status) == ["reference", "cpu", "triton", "cuda"]
    for name, reason in status.items():
        assert (reason is None) == (name in bldm_fast.available_backends()), (name, reason)
        assert reason is None or (isinstance(reason, str) and reason)
    info = _native.native_info()
    assert info["loaded"] == bldm_fast.native_available()
    assert (info["error"] is None) == info["loaded"]
