"""The floor of each GPU kernel, computed from the same benchmark run, and its ratio to it.

An op's floor is max(its Philox words at the noise kernel's rate, its bytes at copy bandwidth):
- the Philox rate is the best words/s of the fused noise kernels at the same element count (any
  GPU backend; noising moves 2 bits per element, so its time is its Philox work), from GPU-busy
  seconds; by this definition the fastest noise kernel sits at 1.0x its floor, the other backend's
  ratio is the gap between the two;
- copy bandwidth is the run's device-to-device copy (``copy_bytes_per_s``), and bytes are each
  row's ``bytes`` (what must move: inputs read once, outputs written once).
Words per element: one for a (non-final) sample_step, bernoulli_noise and the bare stream; none
for flip_bce and pack/unpack. The targets (issue 14, item 1) are ratios of GPU-busy time to the
floor; philox_uniform is held to torch.rand's GPU time on the same element count instead.

``floor_rows(result)`` and ``floors_table(result)`` read the dict gpu_bench.py saves as
gpu_bench.json; ``philox_vs_rand_rows`` measures the philox_uniform / torch.rand case.
"""

import re

# (case prefix, implementation prefix) -> highest ratio to the floor that meets the target.
TARGETS = {("step", "cuda"): 1.25, ("step", "triton"): 1.5, ("noise", "cuda"): 1.1, ("noise", "triton"): 1.1,
           ("flip_bce", "cuda"): 1.3, ("flip_bce", "triton"): 1.3}
RAND_CASE = "philox vs torch.rand"
_N = re.compile(r"N=([\d,]+)")


def elements(case: str) -> int:
    """The element count N of a case name ("... N=16,777,216").

    Raises:
        ValueError: the name holds no ``N=<count>``.
    """
    m = _N.search(case)
    if m is None:
        raise ValueError(f"case {case!r}: expected 'N=<count>' in the name")
    return int(m.group(1).replace(",", ""))


def words_per_element(case: str, impl: str) -> int:
    """Philox words an implementation draws per element in a case (see the module docstring)."""
    if case.startswith(("step", "noise", RAND_CASE)) and impl not in ("official eager", "torch.compile(official)"):
        return 1
    return 0


def _busy(row: dict) -> float | None:
    return row.get("gpu_seconds") or row.get("seconds")


def philox_rate(result: dict, n: int) -> float | None:
    """Best Philox words/s of the fused noise kernels at ``n`` elements (None: no such row)."""
    rates = [n / _busy(r) for c in result["cases"] if c["case"].startswith("noise") and elements(c["case"]) == n
             for r in c["rows"] if r["impl"] in ("cuda", "triton") and _busy(r)]
    return max(rates, default=None)


def _target(case: str, impl: str) -> float | None:
    for (case_prefix, impl_prefix), limit in TARGETS.items():
        if case.startswith(case_prefix) and impl == impl_prefix:
            return limit
    return None


def floor_rows(result: dict) -> list[dict]:
    """One dict per measured row of a GPU backend: case, impl, busy_s, bytes_floor_s, philox_floor_s
    (None without a rate), floor_s, bound ("bytes" or "Philox"), ratio, target (None: no target)
    and met (None: no target). philox_uniform rows of the RAND_CASE get torch.rand's GPU time as
    their floor (target 1.0).

    Raises:
        ValueError: ``result`` lacks a positive ``copy_bytes_per_s`` or a case name lacks N.
    """
    copy = result.get("copy_bytes_per_s")
    if not copy or copy <= 0:
        raise ValueError(f"result: expected a positive copy_bytes_per_s, got {copy!r}")
    out = []
    for case in result["cases"]:
        name, n = case["case"], elements(case["case"])
        rate = philox_rate(result, n)
        rand = next((_busy(r) for r in case["rows"] if r["impl"] == "torch.rand"), None)
        for r in case["rows"]:
            busy = _busy(r)
            if busy is None or not r["impl"].startswith(("cuda", "triton")):
                continue
            bytes_s = r["bytes"] / copy
            words = words_per_element(name, r["impl"]) * n
            philox_s = words / rate if words and rate else None
            if name.startswith(RAND_CASE):
                floor, bound, target = rand, "torch.rand", 1.0
            else:
                floor = max(bytes_s, philox_s or 0.0)
                bound = "Philox" if philox_s and philox_s > bytes_s else "bytes"
                target = _target(name, r["impl"])
            ratio = busy / floor if floor else None
            out.append(dict(case=name, impl=r["impl"], busy_s=busy, bytes_floor_s=bytes_s, philox_floor_s=philox_s,
                            floor_s=floor, bound=bound, ratio=ratio, target=target,
                            met=None if target is None or ratio is None else ratio <= target))
    return out


def floors_table(result: dict) -> str:
    """The rows of :func:`floor_rows` as a markdown table, with the Philox rates it used."""
    rates = sorted({elements(c["case"]) for c in result["cases"] if c["case"].startswith("noise")})
    head = ", ".join(f"N={n:,}: {philox_rate(result, n) / 1e9:.0f} G words/s" for n in rates if philox_rate(result, n))
    lines = [f"Floors: max(Philox words at the noise kernel's rate ({head or 'no noise rows'}), bytes at "
             f"{result['copy_bytes_per_s'] / 1e9:.0f} GB/s copy bandwidth); ratio = GPU busy / floor.", "",
             "| case | implementation | GPU busy (us) | bytes floor (us) | Philox floor (us) | floor | ratio | target "
             "| pass/miss |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in floor_rows(result):
        philox = f"{r['philox_floor_s'] * 1e6:.1f}" if r["philox_floor_s"] else ""
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else ""
        target = "" if r["target"] is None else (">= torch.rand" if r["case"].startswith(RAND_CASE)
                                                  else f"<= {r['target']}x")
        verdict = "" if r["met"] is None else ("pass" if r["met"] else "MISS")
        lines.append(f"| {r['case']} | {r['impl']} | {r['busy_s'] * 1e6:.1f} | {r['bytes_floor_s'] * 1e6:.1f} "
                     f"| {philox} | {r['bound']} | {ratio} | {target} | {verdict} |")
    return "\n".join(lines)


def philox_vs_rand_rows(device, bench, n: int, measured, backends: list[str]) -> list[dict]:
    """The RAND_CASE rows: ``torch.rand(n)`` and ``bf.philox_uniform`` of each backend, the same
    n float32 outputs. ``measured(bench, fn, moved, impl)`` is gpu_bench.py's row function."""
    import torch

    import bldm_fast as bf

    rows = [measured(bench, lambda: torch.rand(n, device=device), 4 * n, "torch.rand")]
    rows += [measured(bench, lambda be=be: bf.philox_uniform(1, 0, n, device=device, backend=be), 4 * n,
                      f"{be} philox_uniform") for be in backends]
    return rows
