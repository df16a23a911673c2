"""`bldm-fast bench` sections: the flag wiring, the JSON they add, and the errors."""

import json
import subprocess
import sys
import types

import pytest

from bldm_fast import cli
from bldm_fast.bench import sections


def test_unknown_section_is_a_value_error():
    with pytest.raises(ValueError, match="unknown bench section 'bogus'"):
        sections.section_runner("bogus")


def test_every_section_names_a_callable():
    for name in sections.SECTIONS:
        assert callable(sections.section_runner(name))


def test_no_ops_without_a_section_is_one_line_exit_1():
    proc = subprocess.run([sys.executable, "-m", "bldm_fast", "bench", "--no-ops"], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bldm-fast bench: error: --no-ops leaves nothing to measure")


def test_a_section_prints_its_table_and_lands_in_json(monkeypatch, tmp_path, capsys):
    calls = []

    def run(quick, device):
        calls.append((quick, device))
        return {"rows": [{"x": 1}], "table": "fake section table"}

    module = types.ModuleType("bldm_fast.bench.fake_section")
    module.run = run
    monkeypatch.setitem(sys.modules, "bldm_fast.bench.fake_section", module)
    monkeypatch.setitem(sections.SECTIONS, "fake", ("fake_section", "run", "a test section"))
    out = tmp_path / "res.json"
    assert cli.main(["bench", "--no-ops", "--fake", "--quick", "--json", str(out), "-q"]) == 0
    assert calls == [(True, "cpu")]
    assert "fake section table" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["sections"]["fake"]["rows"] == [{"x": 1}]
