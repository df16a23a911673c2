"""benchmarks/sass_counts.py produces its SASS table from the current sources (nvcc and Triton's
compiler for sm_90, no GPU), run as a user runs it; and the counts obey what the kernels' math
fixes: Philox4x32-10 takes 10 rounds of 2 multiplies per 4 words (19 once the first round's
multiply by the zero counter word folds), a guided step reads a second logits tensor, the final
step draws no random numbers."""

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _triton_ptxas() -> bool:
    if importlib.util.find_spec("triton") is None:
        return False
    from triton.backends.nvidia import compiler

    try:
        return compiler.get_ptxas(90).path is not None
    except Exception:  # noqa: BLE001  (any failure to locate ptxas means: cannot compile here)
        return False


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed: no CUDA SASS here"),
              pytest.mark.skipif(not _triton_ptxas(), reason="needs the triton package with its CUDA backend")]

LOGIT_BITS = {"float32": 32, "bfloat16": 16}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sass")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sass_counts.py"), "--out", str(tmp / "t.md"),
                           "--json", str(tmp / "t.json")], capture_output=True, text=True, timeout=900)
    return proc, tmp


def _rows(run):
    proc, tmp = run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {(r["op"], r["variant"], r["backend"]): r for r in json.loads((tmp / "t.json").read_text())["rows"]}


def test_table_has_every_kernel_variant(run):
    proc, tmp = run
    rows = _rows(run)
    variants = {("step", v)
                for v in ("float32", "float32 +guidance", "bfloat16", "bfloat16 +guidance", "float32 final")}
    variants |= {("noise", "packed"), ("noise", "packed +flip"), ("philox", "uniform float32"),
                 ("philox", "words int64")}
    # the Triton step branches on the final-step flag at run time: one kernel, no final row of its own
    assert set(rows) == {(op, v, be) for op, v in variants for be in ("cuda", "triton")} - {
        ("step", "float32 final", "triton")}
    table = (tmp / "t.md").read_text()
    assert table == proc.stdout and "release 13" in table
    for (op, variant, be), r in rows.items():
        assert r["instructions"] > 0 and r["elements"] > 0 and r["regs"] > 0, (op, variant, be)
        assert f"| {op} | {variant} | {be} | {r['regs']} | {r['instructions']} | {r['elements']} |" in table


def test_philox_multiplies_per_element(run):
    for (op, variant, be), r in _rows(run).items():
        multiplies = (r["imad_hi"] + r["imad_wide"]) / r["elements"]
        if variant.endswith("final"):
            assert multiplies < 1, (op, variant, be, multiplies)  # no Philox in the final step
        else:
            assert multiplies >= 19 / 4, (op, variant, be, multiplies)


def test_guided_step_reads_the_second_logits(run):
    rows = _rows(run)

    def load_bits(r):
        return sum(int(w) * k for w, k in r["loads"].items())

    for dtype, bits in LOGIT_BITS.items():
        for be in ("cuda", "triton"):
            plain, guided = rows[("step", dtype, be)], rows[("step", f"{dtype} +guidance", be)]
            assert load_bits(guided) - load_bits(plain) >= bits * plain["elements"], (dtype, be)
            assert guided["instructions"] > plain["instructions"]


def test_final_step_is_cheaper_and_every_store_is_counted(run):
    rows = _rows(run)
    final, posterior = rows[("step", "float32 final", "cuda")], rows[("step", "float32", "cuda")]
    assert final["instructions"] < posterior["instructions"] / 2
    for be in ("cuda", "triton"):
        # one packed byte (8 elements) stored per byte; the flip variant stores a second byte
        plain, flip = rows[("noise", "packed", be)], rows[("noise", "packed +flip", be)]
        assert plain["stores"] == {"8": plain["elements"] // 8} or plain["stores"] == {"32": plain["elements"] // 32}
        assert sum(flip["stores"].values()) == 2 * sum(plain["stores"].values())


def test_missing_tool_is_one_line_error(tmp_path):
    env = {"PATH": str(tmp_path), "PYTHONPATH": str(ROOT)}  # no nvcc on this PATH
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sass_counts.py")], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 1 and proc.stderr.strip() == "sass_counts: error: nvcc not found on PATH"
