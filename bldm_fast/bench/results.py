"""The JSON-serialisable result of a timed case (rows, statistics, speed-ups) and of the whole run's summary."""

from __future__ import annotations

import statistics

from .cases import BYTES_FORMULA, Case, Impl

__all__ = ["case_result", "summary"]


def _row(im: Impl, elements: int) -> dict:
    row = {
        "impl": im.label,
        "kind": im.kind,
        "backend": im.backend,
        "baseline": im.key,
        "status": im.status,
        "reason": im.reason,
        "bytes": im.nbytes,
    }
    if im.samples:
        med = statistics.median(im.samples)
        qs = statistics.quantiles(im.samples, n=4) if len(im.samples) >= 2 else [med, med, med]
        row.update(
            median_s=med,
            min_s=min(im.samples),
            iqr_s=qs[2] - qs[0],
            samples_s=list(im.samples),
            calls_per_sample=im.calls,
            elements_per_s=elements / med,
            gb_per_s=im.nbytes / med / 1e9,
        )
    return row


def _noise_over_philox(rows: list) -> dict:
    """Per backend: noise time over the bare Philox stream of the same words (same backend)."""
    philox = {}
    for r in rows:
        if r["kind"] == "reference_point" and "median_s" in r:
            philox.setdefault(r["backend"], r)
    return {
        r["backend"]: r["median_s"] / philox[r["backend"]]["median_s"]
        for r in rows
        if r["kind"] == "bldm_fast" and "median_s" in r and r["backend"] in philox
    }


def case_result(case: Case) -> dict:
    """Returns the case as a dict: its description, ``rows`` (one per implementation, with
    ``median_s``, ``iqr_s``, ``elements_per_s``, ``gb_per_s`` and ``speedup`` over each baseline
    where it was timed), ``notes`` and, for noise, ``noise_over_philox`` per backend."""
    rows = [_row(im, case.elements) for im in case.impls]
    bases = [r for r in rows if r["kind"] == "baseline" and "median_s" in r]
    for r in rows:  # bldm_fast rows: the headline numbers; baseline rows: e.g. compile over eager
        if r["kind"] in ("bldm_fast", "baseline") and "median_s" in r:
            r["speedup"] = {b["baseline"]: b["median_s"] / r["median_s"] for b in bases if b is not r}
    res = {
        "op": case.op,
        "name": case.name,
        "shape": list(case.shape),
        "elements": case.elements,
        "params": case.params,
        "headline": case.headline,
        "bytes_formula": BYTES_FORMULA[case.op],
        "rows": rows,
        "notes": list(case.notes),
    }
    if case.op == "noise":
        res["noise_over_philox"] = _noise_over_philox(rows)
        res["philox_bytes_formula"] = BYTES_FORMULA["philox"]
    return res


def summary(cases: list) -> dict:
    """Returns ``{"headline_step": {impl: {"median_s", "speedup"}}, "noise_over_philox": {...}}`` from
    the :func:`case_result` dicts (each key only where its case ran)."""
    s = {}
    head = next((c for c in cases if c["op"] == "step" and c["headline"]), None)
    if head:
        s["headline_step"] = {
            r["impl"]: {"median_s": r["median_s"], "speedup": r.get("speedup", {})}
            for r in head["rows"]
            if r["kind"] == "bldm_fast" and "median_s" in r
        }
    noise = next((c for c in cases if c["op"] == "noise"), None)
    if noise:
        s["noise_over_philox"] = noise.get("noise_over_philox", {})
    return s
