"""``bldm-fast bench``: every backend and every baseline, measured side by side in one process.

For each case (one op at one shape / dtype) the report times every available ``bldm_fast``
backend (each op called with ``backend=name``) and the baselines of :mod:`bldm_fast.bench.baselines`
(the official eager op chain, its ``torch.compile``, numpy for bit packing), then prints one table
per case: implementation, median time, spread, elements/s, GB/s and the speed-up of each
``bldm_fast`` backend over each baseline.

Method
------
* Warm-up (and ``torch.compile`` compilation) happens before timing and is never timed.
* Each implementation is first calibrated to a number of back-to-back calls ``n`` that lasts at
  least ``min_time``; one *sample* is the mean time of those ``n`` calls.
* Repeats are interleaved: repeat ``r`` times every implementation once, in an order rotated by
  ``r`` (and reversed on odd ``r``), so slow drift of a shared, noisy machine hits all rows alike.
* The reported time is the median of the samples; "spread" is half their inter-quartile range over the
  median. Python's garbage collector is off while timing. ``torch.set_num_threads`` is left at
  torch's default unless ``threads`` is given.

Bytes (the GB/s column)
-----------------------
The byte count of a row is the traffic its own interface cannot avoid: every input read once and
every output written once, intermediates not counted. With ``N = B*L*C`` bits and
``P = B*L*ceil(C/8)`` packed bytes:

* pack:    ``N * itemsize(bits) + P``                (bits in, packed out)
* unpack:  ``P + N * itemsize(dtype)``               (packed in, unpacked out)
* noise:   bldm_fast ``2 * P`` (packed x_0 in, packed x_t out);
           official ``4N + 4N`` (float32 x_0 in, float32 Bernoulli draw out)
* philox:  ``4N`` (float32 uniforms out, nothing in)
* step:    bldm_fast ``N * itemsize(logits) * (2 if guidance else 1) + 2 * P``
           (+ ``N * itemsize(out_dtype)`` when it also writes the next model input);
           official ``N * itemsize(logits) * (2 if guidance else 1) + 4N + 4N``
           (float32 x_t in, float32 x_{t-1} out)
The per-sample tables (``t``, thresholds; ``B`` values) are negligible and not counted.

Modules
-------
This module runs the benchmark (:func:`run_bench`) and prints or saves its result; the work is done by
:mod:`~bldm_fast.bench.cases` (the cases, their inputs and byte counts), :mod:`~bldm_fast.bench.checks`
(correctness of the outputs), :mod:`~bldm_fast.bench.timing` (warm-up and measurement),
:mod:`~bldm_fast.bench.results` (the JSON numbers), :mod:`~bldm_fast.bench.format` (the text report)
and :mod:`~bldm_fast.bench.machine` (machine and versions).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import torch

from . import baselines as bl
from .cases import BYTES_FORMULA, NUM_STEPS, OPS, SEED, build_cases
from .format import format_report
from .machine import load_average, machine_info, native_summary
from .results import case_result, summary
from .timing import (
    COMPILE_TIMEOUT_FULL,
    COMPILE_TIMEOUT_QUICK,
    FULL,
    QUICK,
    compiling_in_background,
    measure,
    timer,
    warm_up,
)

__all__ = [
    "run_bench",
    "format_report",
    "print_report",
    "save_json",
    "check_json_path",
    "machine_info",
    "OPS",
    "BYTES_FORMULA",
]

_BASELINES = ("official", "compile", "numpy", "torch")


def run_bench(
    quick: bool = False,
    backends=None,
    ops=None,
    *,
    device: str = "cpu",
    baselines=None,
    compile: bool = True,
    repeats: int | None = None,
    min_time: float | None = None,
    compile_timeout: float | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict:
    """Run the benchmark and return every number as a JSON-serialisable dict.

    Args:
        quick: few repeats and short samples; ``torch.compile`` only for the headline step case
            (fp32 logits with guidance, B=64 L=256 C=64). Aims at under a minute on 2 cores.
        backends: ``bldm_fast`` backends to time (default: ``bf.available_backends()`` that can
            run on ``device``); a named one that cannot run here is skipped with a note.
        ops: subset of ``("pack", "unpack", "noise", "step")`` (default all).
        device: where the tensors live ("cpu"; "cuda" times the GPU backends with synchronisation).
        baselines: subset of ``{"official", "compile", "numpy", "torch"}`` (default all).
        compile: False skips every ``torch.compile`` row.
        repeats, min_time: override the interleaved repeat count and the minimum seconds per sample.
        compile_timeout: seconds a torch.compile warm-up may take before its row is skipped.
        progress: show a tqdm bar over the cases on stderr.
        threads: ``torch.set_num_threads(threads)`` for the run (restored afterwards); default
            None leaves torch's default. On a shared, busy machine ``threads=1`` avoids the
            stalls of parallel regions whose second thread is descheduled.

    Returns:
        ``{"machine", "versions", "date", "settings", "cases": [...], "summary"}``; each case has
        ``rows`` with ``median_s``, ``elements_per_s``, ``gb_per_s`` and, for bldm_fast rows,
        ``speedup`` over each baseline.

    Raises:
        TypeError: ``repeats``/``threads`` not an int, ``min_time``/``compile_timeout`` not a number.
        ValueError: an unknown op, baseline or backend name, an empty list, a device that is not
            ``cpu``/``cuda`` (or CUDA without a GPU), a count < 1 or a time <= 0. All raised before
            any measuring.
        RuntimeError: ``backends`` were named and none of them can run here on ``device``.
    """
    import bldm_fast as bf

    t_start = time.perf_counter()
    load_before = load_average()
    ops = list(OPS) if ops is None else [o.strip() for o in ops if o.strip()]
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise ValueError(f"ops: unknown {bad}; choose from {list(OPS)}" if bad else "ops: empty list")
    if baselines is not None:
        baselines = {b.strip() for b in baselines if b.strip()}
        unknown = baselines - set(_BASELINES)
        if unknown:
            raise ValueError(f"baselines: unknown {sorted(unknown)}; choose from {', '.join(_BASELINES)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA is not available")
    _check_count(repeats, "repeats")
    _check_count(threads, "threads")
    _check_seconds(min_time, "min_time")
    _check_seconds(compile_timeout, "compile_timeout")

    available, run_backends, global_notes = _select_backends(bf, backends, dev)
    reps, mt = QUICK if quick else FULL
    reps = repeats if repeats is not None else reps
    mt = min_time if min_time is not None else mt
    ctimeout = compile_timeout if compile_timeout is not None else (COMPILE_TIMEOUT_QUICK if quick else
                                                                     COMPILE_TIMEOUT_FULL)
    ok, why = bl.compile_supported()
    do_compile = compile and ok
    reason = "disabled (--no-compile)" if not compile else why
    run = timer(torch.cuda.synchronize if dev.type == "cuda" else None)

    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cases = build_cases(
            bf, ops, run_backends, dev, quick=quick, do_compile=do_compile, compile_reason=reason, baselines=baselines
        )
        results = _run_cases(cases, reps, mt, ctimeout, run, progress)
        out = machine_info(str(dev))  # while the thread count of the run is in force
    finally:
        torch.set_num_threads(threads_before)

    global_notes.insert(0, "extension: " + native_summary(out["native"]))
    out["machine"]["load_avg_1m_before"] = load_before
    out["machine"]["load_avg_1m_after"] = load_average()
    cores = out["machine"]["cores_usable"] or 1
    if load_before is not None and load_before > 0.25 * cores:
        global_notes.append(
            f"1-min load average {load_before:.2f} on {cores} cores when the run started: the machine was not idle, "
            "so absolute times (and the spread) may be inflated; ratios measured side by side hold better"
        )
    out["settings"] = {
        "quick": quick,
        "repeats": reps,
        "min_time_per_sample_s": mt,
        "interleaved": True,
        "statistic": "median",
        "threads": threads,
        "compile": do_compile,
        "compile_timeout_s": ctimeout,
        "backends": run_backends,
        "available_backends": available,
        "ops": ops,
        "seed": SEED,
        "num_steps": NUM_STEPS,
    }
    out["cases"] = results
    out["notes"] = global_notes
    out["summary"] = summary(results)
    out["elapsed_s"] = time.perf_counter() - t_start
    return out


def _check_count(value, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def _check_seconds(value, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value}")


def _select_backends(bf, backends, dev: torch.device) -> tuple[list, list, list]:
    """``(available, to run, notes)``: the requested backends (default: all available) that exist and
    suit ``dev``; a note for each backend this install cannot run, with the reason, and for each
    requested one left out.

    Raises:
        ValueError: a requested name is not a backend.
        RuntimeError: backends were requested and none of them can run here on ``dev`` (the message
            gives each one's reason), so nothing that was asked for could be measured.
    """
    from .._backends import KNOWN
    from .._native import backend_status

    status = backend_status()
    available = list(bf.available_backends())
    notes = [f"backend {name!r} unavailable: {reason}" for name, reason in status.items() if reason is not None]
    if backends is not None:
        backends = [b.strip() for b in backends if b.strip()]
        unknown = [b for b in backends if b not in KNOWN]
        if unknown or not backends:
            raise ValueError(f"backends: unknown {unknown}; choose from {list(KNOWN)}" if unknown
                             else "backends: empty list")
    requested = available if backends is None else backends
    run_backends, why_not = [], {}
    for be in requested:
        if be not in available:
            why_not[be] = f"not available: {status.get(be) or 'see bldm-fast env'}"
        elif dev.type == "cpu" and be in ("triton", "cuda"):
            why_not[be] = "runs on CUDA tensors (use --device cuda)"
        elif dev.type == "cuda" and be == "cpu":
            why_not[be] = "runs on CPU tensors (use --device cpu)"
        else:
            run_backends.append(be)
    if backends is not None:
        if not run_backends:
            raise RuntimeError("nothing to measure: " + "; ".join(f"backend {b!r} {w}" for b, w in why_not.items()))
        notes += [f"backend {b!r} skipped: {w}" for b, w in why_not.items() if status.get(b) is None]
    return available, run_backends, notes


def _run_cases(cases: list, repeats: int, min_time: float, compile_timeout: float, run, progress: bool) -> list:
    """Warm up, check and time each case in turn (tqdm bar over the cases on stderr); returns their results."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cases), file=sys.stderr, desc="bench", unit="case", disable=not progress, leave=False)
    results = []
    try:
        for case in cases:
            bar.set_postfix_str(case.name[:48])
            t_case = time.perf_counter()
            warm_up(case, compile_timeout)
            t_warm = time.perf_counter()
            if compiling_in_background():
                case.notes.append(
                    "note: a timed-out torch.compile was still compiling in the background while this case was "
                    "timed (times inflated)"
                )
            measure(case, repeats, min_time, run)
            res = case_result(case)
            res["warmup_s"] = t_warm - t_case
            res["elapsed_s"] = time.perf_counter() - t_case
            results.append(res)
            bar.update(1)
    finally:
        bar.close()
    return results


def print_report(res: dict, file=None) -> None:
    """Print :func:`format_report` of ``res`` to ``file`` (default stdout); returns None."""
    print(format_report(res), file=file or sys.stdout)


def check_json_path(path: str) -> None:
    """Check before a run that :func:`save_json` can write ``path`` (``"-"``: stdout, always fine).

    Raises:
        ValueError: ``path`` is a folder, or the nearest existing folder above it is not a writable folder.
    """
    if path == "-":
        return
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ValueError(f"--json: {path} is a folder, expected a file path")
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise ValueError(f"--json: cannot create {path}: {parent} is not a writable folder")


def save_json(res: dict, path: str) -> None:
    """Write all numbers plus machine info to ``path`` (parent folders are created), or to stdout
    when ``path`` is ``"-"``; returns None.

    Raises:
        OSError: the file cannot be written.
    """
    if path == "-":
        json.dump(res, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2, default=str)
        f.write("\n")
