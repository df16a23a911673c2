"""Runtime CPU dispatch of the C++ kernels (kernels/cpu/dispatch.cpp, kernels/cpu/isa/).

* The op equivalence tests of the cpu backend (step, noise, packing, binarize, philox, flip_bce)
  run in a subprocess once per CPU path, forced with BLDM_FAST_CPU_CAPABILITY; a path this CPU
  cannot execute is skipped and says so (the avx512 path needs an x86-64-v4 CPU).
* BLDM_FAST_CPU_CAPABILITY naming a path the CPU lacks, or no path at all, warns and runs the best
  path (never an illegal instruction).
* The object code: the three translation units of kernels/cpu/isa/ are compiled here with
  setup.py's flags and disassembled: the baseline holds no AVX/AVX2/AVX-512 instruction, the AVX2
  one no AVX-512 instruction, and each exports only its table (no weak symbol the linker could
  merge across paths, no code run at load).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import bldm_fast
from bldm_fast import _native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATHS = ("avx512", "avx2", "default")
# The op equivalence tests that exercise every table entry (philox, packing, float loads/stores of
# float32/float16/bfloat16, the step's posterior/final/mask loops, noise, BCE, binarize/quantize).
EQUIVALENCE_FILES = ("test_step.py", "test_noise.py", "test_packing.py", "test_binarize.py", "test_philox.py",
                     "test_flip_bce.py")
ENV = "BLDM_FAST_CPU_CAPABILITY"

needs_native = pytest.mark.skipif(not bldm_fast.native_available(),
                                  reason=f"bldm_fast._C did not load: {_native.load_error_text()}")


def _dispatching_build() -> bool:
    return (_native.BUILD_INFO or {}).get("cpu_arch") == "dispatch"


def _python(code: str, path: str | None) -> subprocess.CompletedProcess:
    """Run ``python -c code`` with BLDM_FAST_CPU_CAPABILITY=path (unset where path is None)."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if path is not None:
        env[ENV] = path
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)


# Imports bldm_fast with warnings recorded; prints the path in use and the warnings as JSON.
_REPORT = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from bldm_fast import _native
    path, paths = _native.cpu_capability()
print(json.dumps({"path": path, "paths": paths, "warnings": [str(w.message) for w in caught]}))
"""


def _report(value: str | None) -> dict:
    res = _python(_REPORT, value)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@needs_native
def test_capability_is_reported():
    path, paths = _native.cpu_capability()
    assert paths[-1] == "default" and path in paths and set(paths) <= set(PATHS)
    info = _native.native_info()
    assert info["cpu_capability"] == path and info["cpu_capabilities"] == paths
    json.dumps(info)
    best = _report(None)
    assert best["path"] == best["paths"][0] == paths[0] and best["warnings"] == []
    if _dispatching_build() and sys.platform == "linux" and os.uname().machine == "x86_64":
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
        assert ("avx2" in paths) == ({"avx2", "fma", "f16c", "bmi1", "bmi2", "abm", "movbe"} <= flags)
        assert ("avx512" in paths) == ({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags)


@needs_native
def test_env_prints_the_path():
    res = subprocess.run([sys.executable, "-m", "bldm_fast", "env"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, ENV: "default"})
    assert res.returncode == 0, res.stderr
    line = next(line for line in res.stdout.splitlines() if line.startswith("cpu path"))
    assert line.split()[2] == "default" and f"{ENV}=default" in line


@needs_native
@pytest.mark.parametrize("path", PATHS)
def test_equivalence_on_each_path(path):
    """The cpu backend's equivalence tests with the path forced; the subprocess first checks that the
    forced path is the one in use."""
    if path not in _native.cpu_capability()[1]:
        pytest.skip(f"this CPU or build cannot run the {path} path (it runs {_native.cpu_capability()[1]})")
    files = [os.path.join("tests", f) for f in EQUIVALENCE_FILES]
    code = (f"import sys, pytest, torch\nfrom bldm_fast import _native\n"
            f"assert _native.cpu_capability()[0] == {path!r}, _native.cpu_capability()\n"
            f"sys.exit(pytest.main({files!r} + ['-k', 'cpu', '-q', '-x', '-p', 'no:cacheprovider']))")
    res = _python(code, path)
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-15:])
    assert res.returncode == 0, tail
    assert re.search(r"\b[1-9]\d* passed", res.stdout), tail


@needs_native
def test_forcing_a_path_the_cpu_lacks_warns_and_runs_the_best():
    have = _native.cpu_capability()[1]
    missing = [p for p in PATHS if p not in have]
    if not missing:
        pytest.skip("this CPU runs every path of this build: no path to ask for that it lacks")
    got = _report(missing[0])
    assert got["path"] == have[0]
    assert any(f"{ENV}={missing[0]} asks for a path this CPU cannot run" in w and f"using {have[0]}" in w
               for w in got["warnings"]), got["warnings"]


@needs_native
def test_unknown_path_name_warns_and_runs_the_best():
    got = _report("sse9")
    assert got["path"] == got["paths"][0]
    assert any(f"{ENV}=sse9 is not a CPU path of this build" in w for w in got["warnings"]), got["warnings"]
    assert _report("AVX2" if "avx2" in _native.cpu_capability()[1] else "DEFAULT")["warnings"] == []


def _setup_flags() -> list[str]:
    spec = importlib.util.spec_from_file_location("bldm_fast_setup", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    old = os.environ.pop("BLDM_FAST_CPU_ARCH", None)  # the flags of the default, dispatching build
    try:
        spec.loader.exec_module(module)  # defines the flags; setup() runs only under __main__
    finally:
        if old is not None:
            os.environ["BLDM_FAST_CPU_ARCH"] = old
    return list(module.CXX_FLAGS)


@pytest.fixture(scope="module")
def isa_objects(tmp_path_factory):
    """{path name: (disassembly, defined symbols, section names)} of the three isa/*.cpp objects."""
    tools = [shutil.which(t) for t in ("g++", "objdump", "nm")]
    if os.uname().machine != "x86_64" or None in tools:
        pytest.skip("needs an x86-64 machine with g++, objdump and nm (binutils)")
    out = tmp_path_factory.mktemp("isa")
    objects = {}
    for path, source in (("avx512", "avx512"), ("avx2", "avx2"), ("default", "baseline")):
        obj = str(out / f"{source}.o")
        cmd = ["g++", *_setup_flags(), "-fPIC", "-c", os.path.join(ROOT, "kernels", "cpu", "isa", f"{source}.cpp"),
               "-I", os.path.join(ROOT, "kernels", "include"), "-I", os.path.join(ROOT, "kernels"), "-o", obj]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True,
                             check=True).stdout
        syms = subprocess.run(["nm", "-C", "--defined-only", obj], capture_output=True, text=True,
                              check=True).stdout
        sections = subprocess.run(["objdump", "-h", obj], capture_output=True, text=True, check=True).stdout
        objects[path] = (asm, syms, sections)
    return objects


def _mnemonics(asm: str) -> list[str]:
    """The instruction mnemonics of an objdump -d listing (with their operands)."""
    return [line.split("\t", 1)[1].strip() for line in asm.splitlines() if re.match(r"^\s+[0-9a-f]+:\t", line)]


def test_baseline_object_has_no_avx(isa_objects):
    insns = _mnemonics(isa_objects["default"][0])
    assert len(insns) > 1000  # the loops are there
    avx = [i for i in insns if i.startswith("v") or re.search(r"%[xyz]mm(1[6-9]|2\d|3[01])\b|%[yz]mm|%k[0-7]", i)]
    assert avx == [], avx[:10]


def test_avx2_object_has_no_avx512(isa_objects):
    insns = _mnemonics(isa_objects["avx2"][0])
    assert sum("%ymm" in i for i in insns) > 500  # vectorised at 256 bits
    evex = [i for i in insns if re.search(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2\d|3[01])\b|\{%k", i)]
    assert evex == [], evex[:10]


def test_avx512_object_uses_zmm(isa_objects):
    assert sum("%zmm" in i for i in _mnemonics(isa_objects["avx512"][0])) > 500


@pytest.mark.parametrize("path,namespace", [("avx512", "cpu_avx512"), ("avx2", "cpu_avx2"),
                                            ("default", "cpu_baseline")])
def test_each_path_exports_only_its_table(isa_objects, path, namespace):
    _, syms, sections = isa_objects[path]
    exported = [line.split(None, 2)[2] for line in syms.splitlines()
                if len(line.split(None, 2)) == 3 and line.split()[1] not in "tbdrn"]  # lower case: local
    assert exported == [f"bldm_fast::cpu::{namespace}::kTable"], exported
    assert ".init_array" not in sections and ".ctors" not in sections  # no code runs at load
