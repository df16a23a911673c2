"""pytest-benchmark suites of bldm_fast (run: ``python -m pytest benchmarks --benchmark-only``).

They live outside ``tests/`` so ``python -m pytest tests`` never runs them. Useful options:
``--benchmark-min-rounds 3`` (quick), ``-m "not compile"`` (skip the torch.compile baselines,
whose first call compiles for seconds; the compilation itself is never timed),
``-k step`` (one op), ``--benchmark-json out.json`` / ``--benchmark-save NAME`` (keep the numbers).
Every benchmark sets ``benchmark.group`` to its op and shape, so each table compares all
implementations of one case, and ``benchmark.extra_info`` to its element and byte counts (the byte
formulas are documented in ``bldm_fast/bench/report.py``).
"""

import importlib.util

if importlib.util.find_spec("pytest_benchmark") is None:  # without the plugin there is nothing to run
    collect_ignore_glob = ["test_bench_*.py"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "compile: a torch.compile baseline (compiles on first use; deselect with -m 'not compile')"
    )
    config.addinivalue_line(
        "markers", "baseline: a baseline implementation (official eager chain, torch.compile, numpy)"
    )
    # torch.compile's import chain warns about its own use of torch.jit; not ours to fix
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add what the bldm-fast report header records (CPU model, threads, library versions)."""
    from bldm_fast.bench.report import machine_info as bench_machine_info

    info = bench_machine_info("cpu")
    machine_info["bldm_fast"] = {**info["machine"], "versions": info["versions"]}
    try:
        import bldm_fast as bf

        machine_info["bldm_fast"]["available_backends"] = list(bf.available_backends())
    except Exception as exc:  # noqa: BLE001 - informational only
        machine_info["bldm_fast"]["available_backends"] = f"unavailable: {exc}"
