"""`import bldm_fast` stays light (issue 16 item 6): it loads no torch._dynamo, bldm_fast.cli
imports without torch, and every public name still resolves. Import time itself is a benchmark
row (benchmarks/import_time.py), not a timed test."""

import subprocess
import sys

import pytest

import bldm_fast as bf


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_loads_no_dynamo():
    assert _run("import sys, bldm_fast; print('torch._dynamo' in sys.modules)") == "False"


def test_cli_imports_without_torch():
    assert _run("import sys, bldm_fast.cli; print('torch' in sys.modules)") == "False"


@pytest.mark.parametrize("name", sorted(n for n in bf.__all__ if n != "save_image_grid"))
def test_every_public_name_resolves(name):
    assert getattr(bf, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        bf.no_such_name  # noqa: B018
