"""Benchmarks of ``bldm_fast`` against the official eager op chain, ``torch.compile`` and numpy.

``python -m bldm_fast bench [--quick] [--json PATH]`` runs :func:`run_bench` and prints
:func:`format_report`; ``benchmarks/`` holds the pytest-benchmark suites built on the same
baselines (:mod:`bldm_fast.bench.baselines`). :mod:`bldm_fast.bench.report` describes the method
and the modules behind it.
"""

from .cases import OPS
from .format import format_report
from .machine import machine_info
from .report import print_report, run_bench, save_json

__all__ = ["OPS", "run_bench", "format_report", "print_report", "save_json", "machine_info"]
