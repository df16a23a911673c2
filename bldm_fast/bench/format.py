"""The human-readable report of a :func:`~bldm_fast.bench.report.run_bench` result: header, one table
per case, headline summary."""

from __future__ import annotations

__all__ = ["format_report"]


def _fmt_time(s: float) -> str:
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_rate(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f} "


def _fmt_x(x: float) -> str:
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _table(headers: list, rows: list, align: str) -> list:
    """Lines of a plain-text table: header, dashes, rows; ``align`` has one ``l`` / ``r`` per column."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join(("-" if h else " ") * w for h, w in zip(headers, widths)).rstrip()
    return [line(headers), sep, *(line(r) for r in rows)]


def _header_lines(res: dict) -> list:
    m, v, st = res["machine"], res["versions"], res["settings"]
    lines = []
    mode = "quick" if st["quick"] else "full"
    lines.append(f"bldm_fast benchmark ({mode})  {res['date']}")
    cap = f", {m['cpu_capability']}" if m.get("cpu_capability") else ""
    lines.append(
        f"machine : {m['cpu']}{cap}; {m['cores']} cores ({m['cores_usable']} usable); "
        f"torch threads {m['torch_threads']}; device {m['device']}" + (f" ({m['gpu']})" if m.get("gpu") else "")
    )
    if m.get("load_avg_1m_before") is not None:
        lines.append(
            f"load    : 1-min load average {m['load_avg_1m_before']:.2f} before, {m['load_avg_1m_after']:.2f} after"
        )
    lines.append(
        "versions: "
        + ", ".join(
            f"{k} {v[k] if v[k] is not None else 'n/a'}" for k in ("python", "torch", "numpy", "bldm_fast", "triton")
        )
    )
    min_ms = st["min_time_per_sample_s"] * 1e3
    lines.append(
        f"timing  : median of {st['repeats']} interleaved repeats, each >= {min_ms:.0f} ms of back-to-back calls; "
        "warm-up and compilation excluded"
    )
    used = ", ".join(st["backends"]) or "(none)"
    avail = ", ".join(st["available_backends"]) or "(none)"
    lines.append(f"backends: {used} (available: {avail})")
    lines.append(
        "units   : elem/s counts unpacked bits; GB/s = bytes the row's interface must move / time "
        "(N = B*L*C bits, P = B*L*ceil(C/8) packed bytes)"
    )
    for note in res.get("notes", []):
        lines.append(f"note    : {note}")
    return lines


def _row_cells(r: dict, base_keys: list) -> list:
    if "median_s" not in r:
        why = r["reason"] or r["status"]
        return [r["impl"], r["status"], "", "", ""] + [""] * len(base_keys) + [f"({why})"]
    spread = f"±{100 * r['iqr_s'] / r['median_s'] / 2:.0f}%"
    cells = [r["impl"], _fmt_time(r["median_s"]), spread, _fmt_rate(r["elements_per_s"]), f"{r['gb_per_s']:.2f}"]
    for k in base_keys:
        sp = r.get("speedup", {}).get(k)
        cells.append(_fmt_x(sp) if sp is not None else "")
    tail = []
    if r["kind"] == "reference_point":
        tail.append("(reference point)")
    if r["reason"]:
        tail.append(f"({r['reason']})")
    return cells + [" ".join(tail)]


def _case_lines(case: dict) -> list:
    star = "  [headline]" if case["headline"] else ""
    lines = ["", f"== {case['name']}  ({case['elements']:,} elements){star}"]
    base_keys = []
    for r in case["rows"]:
        if r["kind"] == "baseline" and r["baseline"] not in base_keys:
            base_keys.append(r["baseline"])
    headers = ["implementation", "time", "spread", "elem/s", "GB/s"] + [f"vs {k}" for k in base_keys] + [""]
    align = "l" + "r" * (len(headers) - 2) + "l"
    lines.extend(_table(headers, [_row_cells(r, base_keys) for r in case["rows"]], align))
    lines.append(
        f"bytes: {case['bytes_formula']}"
        + (f"; philox: {case['philox_bytes_formula']}" if "philox_bytes_formula" in case else "")
    )
    for be, ratio in case.get("noise_over_philox", {}).items():
        verdict = "meets" if ratio <= 2.0 else "misses"
        lines.append(
            f"noise / bare Philox over the same {case['elements']:,} words [{be}]: {ratio:.2f}x "
            f"({verdict} the <= 2x target)"
        )
    lines.extend(case["notes"])
    return lines


def _headline_lines(summ: dict) -> list:
    if not summ.get("headline_step"):
        return []
    lines = ["", "headline (step, fp32 logits + guidance, B=64 L=256 C=64):"]
    for impl, d in summ["headline_step"].items():
        sp = ", ".join(f"{_fmt_x(x)} vs {k}" for k, x in d["speedup"].items())
        lines.append(f"  {impl}: {_fmt_time(d['median_s'])}" + (f" ({sp})" if sp else ""))
    return lines


def format_report(res: dict) -> str:
    """Returns the human-readable report of a :func:`~bldm_fast.bench.report.run_bench` result as one
    string (no trailing newline): machine header, a table per case with its notes, the headline."""
    lines = _header_lines(res)
    for case in res["cases"]:
        lines.extend(_case_lines(case))
    lines.extend(_headline_lines(res.get("summary", {})))
    lines.append(f"total wall time {res.get('elapsed_s', 0):.1f} s")
    return "\n".join(lines)
