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
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from . import baselines as bl

__all__ = ["run_bench", "format_report", "print_report", "save_json", "machine_info", "OPS", "BYTES_FORMULA"]

OPS = ("pack", "unpack", "noise", "step")

BYTES_FORMULA = {
    "pack": "N*itemsize(bits) + P",
    "unpack": "P + N*itemsize(dtype)",
    "noise": "bldm_fast: 2P; official: 4N + 4N (float32 x0 in, float32 x_t out)",
    "philox": "4N (float32 uniforms out)",
    "step": "bldm_fast: N*itemsize(logits)*(2 if guidance else 1) + 2P [+ N*itemsize(out_dtype)]; "
    "official: N*itemsize(logits)*(2 if guidance else 1) + 4N + 4N",
}

# timing settings: (repeats, min seconds per sample)
_QUICK = (7, 0.02)
_FULL = (11, 0.1)
_MAX_CALLS = 100_000
# torch.compile warm-up budget per case (seconds); past it the row is reported as skipped
_COMPILE_TIMEOUT_QUICK = 30.0
_COMPILE_TIMEOUT_FULL = 180.0

HEADLINE = dict(B=64, L=256, C=64)
SMALL = dict(B=8, L=256, C=64)
NUM_STEPS = 256  # T of the schedule the step / noise cases use (linear, as the official default)
STEP_T, STEP_T_PREV = 128, 124  # a mid-trajectory step that skips 4 steps (256 -> 64 sampling steps)
GUIDANCE = 2.0
TEMPERATURE = 1.0
SEED = 1234


# ---------------------------------------------------------------------------------------------
# data model
# ---------------------------------------------------------------------------------------------


@dataclass
class Impl:
    label: str
    kind: str  # "bldm_fast" | "baseline" | "reference_point"
    fn: Callable[[], Any] | None
    nbytes: int
    backend: str | None = None
    key: str | None = None  # short baseline name used in the speed-up columns
    compile: bool = False  # warm up under a time limit (torch.compile)
    status: str = "ok"  # ok | skipped | error
    reason: str = ""
    calls: int = 0
    samples: list = field(default_factory=list)
    out: Any = None  # output of the warm-up call, for the sanity checks

    def skip(self, reason: str, status: str = "skipped") -> None:
        self.status, self.reason, self.fn = status, reason, None


@dataclass
class Case:
    op: str
    name: str
    shape: tuple
    elements: int
    params: dict
    impls: list
    headline: bool = False
    check: Callable[["Case"], list] | None = None
    notes: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# machine / versions
# ---------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(mod_name: str) -> str | None:
    try:
        mod = __import__(mod_name)
    except Exception:
        return None
    v = getattr(mod, "__version__", None)
    if v is None:
        try:
            from importlib.metadata import version

            v = version(mod_name)
        except Exception:
            v = "unknown"
    return str(v)


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info(device: str = "cpu") -> dict:
    """Machine, library versions and date, as recorded in every report."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = None
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": capability,
        "platform": platform.platform(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "bldm_fast": _version("bldm_fast"),
        "triton": _version("triton"),
    }
    now = _dt.datetime.now(_dt.timezone.utc).astimezone()
    return {"machine": info, "versions": versions, "date": now.isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _packed_bytes(shape: tuple) -> int:
    *lead, c = shape
    return math.prod(lead) * ((c + 7) // 8)


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _to_cpu_tensor(out):
    out = _first(out)
    if isinstance(out, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(out))
    if isinstance(out, torch.Tensor):
        return out.detach().cpu()
    return None


def _dtype_name(dtype: torch.dtype) -> str:
    return {
        torch.float32: "fp32",
        torch.float16: "fp16",
        torch.bfloat16: "bf16",
        torch.uint8: "u8",
        torch.bool: "bool",
    }.get(dtype, str(dtype).replace("torch.", ""))


def _shape_str(shape) -> str:
    b, l, c = shape
    return f"B={b} L={l} C={c}"


class _Ctx:
    def __init__(self, bf, backends, device, quick, do_compile, baselines, compile_reason):
        self.bf = bf
        self.backends = backends
        self.device = torch.device(device)
        self.quick = quick
        self.do_compile = do_compile
        self.compile_reason = compile_reason
        self.baselines = baselines
        self.schedule = bf.BernoulliSchedule(NUM_STEPS, "linear")
        k, b, beta = bl.official_tables(self.schedule)
        self.k, self.b, self.beta = (x.to(self.device) for x in (k, b, beta))
        self.gen = torch.Generator(device="cpu").manual_seed(SEED)

    def want(self, key: str) -> bool:
        return self.baselines is None or key in self.baselines

    def compiled_impl(self, label, key, fn, nbytes, headline) -> Impl:
        im = Impl(label, "baseline", fn, nbytes, key=key, compile=True)
        if not self.do_compile:
            im.skip(self.compile_reason)
        elif self.quick and not headline:
            im.skip("--quick compiles only the headline step case")
        return im

    def bits(self, shape, dtype=torch.uint8):
        x = torch.randint(0, 2, shape, generator=self.gen, dtype=torch.uint8)
        return x.to(dtype).to(self.device)

    def randn(self, shape, dtype=torch.float32, scale=3.0):
        return (torch.randn(shape, generator=self.gen) * scale).to(dtype).to(self.device)


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


def _check_equal_to(ref_label: str):
    def check(case: Case) -> list:
        ref = next((im.out for im in case.impls if im.label == ref_label and im.out is not None), None)
        notes = []
        if ref is None:
            return notes
        for im in case.impls:
            if im.kind == "bldm_fast" and im.out is not None:
                got = im.out
                if got.shape != ref.shape or not torch.equal(got.to(ref.dtype), ref):
                    notes.append(f"CHECK FAILED: {im.label} output differs from {ref_label}")
        return notes

    return check


def _agree(rows: list, elements: int, exact: bool) -> list:
    """Notes on how the outputs of ``rows`` (Impls, first = reference) differ from the first one."""
    outs = [(im.label, im.out) for im in rows if im.out is not None]
    notes = []
    if len(outs) < 2:
        return notes
    ref_label, ref = outs[0]
    for label, got in outs[1:]:
        if got.shape != ref.shape:
            notes.append(f"CHECK FAILED: {label} shape {tuple(got.shape)} != {ref_label} {tuple(ref.shape)}")
        elif torch.equal(got, ref):
            continue
        elif exact:
            notes.append(f"CHECK FAILED: {label} differs from {ref_label} (contract: bit-exact)")
        else:
            nbits = int(np.unpackbits((got ^ ref).numpy().reshape(-1)).sum())
            notes.append(
                f"note: {label} and {ref_label} differ in {nbits} of {elements} bits "
                "(allowed only inside the 1e-5 guard band around prob)"
            )
    return notes


def _pack_case(ctx: _Ctx, shape, dtype) -> Case:
    bf = ctx.bf
    bits = ctx.bits(shape, dtype)
    n = math.prod(shape)
    nbytes = n * bits.element_size() + _packed_bytes(shape)
    impls = [
        Impl(f"bldm_fast[{be}]", "bldm_fast", (lambda be=be: bf.pack_bits(bits, backend=be)), nbytes, backend=be)
        for be in ctx.backends
    ]
    if ctx.device.type == "cpu" and ctx.want("numpy"):
        a = bits.numpy()
        if dtype in (torch.uint8, torch.bool):
            fn, label = (lambda: bl.numpy_pack(a)), "numpy.packbits"
        else:  # np.packbits takes integers/bools only: a user would compare with 0 first
            fn, label = (lambda: bl.numpy_pack(a != 0)), "numpy.packbits(a != 0)"
        impls.append(Impl(label, "baseline", fn, nbytes, key="numpy"))
    if ctx.want("torch"):
        impls.append(Impl("torch eager (shift+or)", "baseline", lambda: bl.torch_pack(bits), nbytes, key="torch eager"))
    if ctx.want("compile"):
        cfn = bl.compiled(bl.torch_pack)
        impls.append(ctx.compiled_impl("torch.compile(shift+or)", "torch.compile", lambda: cfn(bits), nbytes, False))
    ref_label = next((im.label for im in impls if im.key == "numpy"), "torch eager (shift+or)")
    return Case(
        "pack",
        f"pack {_dtype_name(dtype)} bits -> packed u8, {_shape_str(shape)}",
        shape,
        n,
        {"dtype": str(dtype)},
        impls,
        check=_check_equal_to(ref_label),
    )


def _unpack_case(ctx: _Ctx, shape, dtype) -> Case:
    bf = ctx.bf
    c = shape[-1]
    packed = bl.torch_pack(ctx.bits(shape))
    n = math.prod(shape)
    nbytes = _packed_bytes(shape) + n * torch.empty((), dtype=dtype).element_size()
    impls = [
        Impl(
            f"bldm_fast[{be}]",
            "bldm_fast",
            (lambda be=be: bf.unpack_bits(packed, c, dtype=dtype, backend=be)),
            nbytes,
            backend=be,
        )
        for be in ctx.backends
    ]
    if ctx.device.type == "cpu" and ctx.want("numpy"):
        a = packed.numpy()
        np_dtype = {
            torch.float32: np.float32,
            torch.uint8: np.uint8,
            torch.float64: np.float64,
            torch.bool: np.bool_,
        }.get(dtype)
        if np_dtype is not None:
            label = "numpy.unpackbits" + ("" if np_dtype is np.uint8 else f"+astype({np.dtype(np_dtype).name})")
            impls.append(Impl(label, "baseline", lambda: bl.numpy_unpack(a, c, np_dtype), nbytes, key="numpy"))
    if ctx.want("torch"):
        impls.append(
            Impl(
                "torch eager (shift+and)",
                "baseline",
                lambda: bl.torch_unpack(packed, c, dtype),
                nbytes,
                key="torch eager",
            )
        )
    if ctx.want("compile"):
        cfn = bl.compiled(bl.torch_unpack)
        impls.append(
            ctx.compiled_impl("torch.compile(shift+and)", "torch.compile", lambda: cfn(packed, c, dtype), nbytes, False)
        )
    ref = next((im.label for im in impls if im.kind == "baseline" and not im.compile), None)
    return Case(
        "unpack",
        f"unpack packed u8 -> {_dtype_name(dtype)}, {_shape_str(shape)}",
        shape,
        n,
        {"dtype": str(dtype)},
        impls,
        check=_check_equal_to(ref) if ref else None,
    )


def _noise_case(ctx: _Ctx, shape) -> Case:
    bf = ctx.bf
    b, _, c = shape
    n = math.prod(shape)
    x0 = ctx.bits(shape)
    x0_packed = bl.torch_pack(x0)
    x0_float = x0.float()
    t = torch.randint(1, NUM_STEPS + 1, (b,), generator=ctx.gen, dtype=torch.long).to(ctx.device)
    sched = ctx.schedule
    p = _packed_bytes(shape)
    impls = []
    for be in ctx.backends:
        impls.append(
            Impl(
                f"bldm_fast[{be}]",
                "bldm_fast",
                (lambda be=be: bf.bernoulli_noise(x0_packed, t, sched, c, seed=SEED, offset=0, backend=be)),
                2 * p,
                backend=be,
            )
        )
    if ctx.want("official"):
        impls.append(
            Impl(
                "official eager",
                "baseline",
                lambda: bl.official_noise(x0_float, t, ctx.k, ctx.b),
                8 * n,
                key="official eager",
            )
        )
    if ctx.want("compile"):
        cfn = bl.compiled(bl.official_noise)
        impls.append(
            ctx.compiled_impl(
                "torch.compile(official)", "torch.compile", lambda: cfn(x0_float, t, ctx.k, ctx.b), 8 * n, False
            )
        )
    if hasattr(bf, "philox_uniform"):
        for be in ctx.backends:
            impls.append(
                Impl(
                    f"bare philox_uniform[{be}]",
                    "reference_point",
                    (lambda be=be: bf.philox_uniform(SEED, 0, n, device=ctx.device, backend=be)),
                    4 * n,
                    backend=be,
                )
            )
    return Case(
        "noise",
        f"noise (q_sample + Bernoulli), per-sample t in 1..{NUM_STEPS}, {_shape_str(shape)}",
        shape,
        n,
        {"num_steps": NUM_STEPS, "philox_words": n},
        impls,
        check=_noise_check,
    )


def _noise_check(case: Case) -> list:
    """Noising and the bare Philox stream are bit-exact across backends (DESIGN.md section 5)."""
    notes = _agree([im for im in case.impls if im.kind == "bldm_fast"], case.elements, exact=True)
    philox = [im for im in case.impls if im.kind == "reference_point" and im.out is not None]
    for im in philox[1:]:
        if not torch.equal(im.out, philox[0].out):
            notes.append(f"CHECK FAILED: {im.label} differs from {philox[0].label} (contract: bit-exact)")
    return notes


def _step_case(
    ctx: _Ctx, shape, dtype, guided: bool, t: int, t_prev: int, headline=False, with_out_dtype=False
) -> Case:
    bf = ctx.bf
    n = math.prod(shape)
    cond = ctx.randn(shape, dtype)
    uncond = ctx.randn(shape, dtype) if guided else None
    g = GUIDANCE if guided else 0.0
    xt_bits = ctx.bits(shape)
    xt_packed = bl.torch_pack(xt_bits)
    xt_float = xt_bits.float()
    sched = ctx.schedule
    logit_bytes = n * cond.element_size() * (2 if guided else 1)
    p = _packed_bytes(shape)
    impls = []

    def bf_step(be, out_dtype=None):
        kw = dict(seed=SEED, offset=0, temperature=TEMPERATURE, backend=be)
        if guided:
            kw.update(guidance=g, uncond_logits=uncond)
        if out_dtype is not None:
            kw["out_dtype"] = out_dtype
        return lambda: bf.sample_step(cond, xt_packed, t, t_prev, sched, **kw)

    for be in ctx.backends:
        impls.append(Impl(f"bldm_fast[{be}]", "bldm_fast", bf_step(be), logit_bytes + 2 * p, backend=be))
    if with_out_dtype:
        for be in ctx.backends:
            impls.append(
                Impl(
                    f"bldm_fast[{be}] +fp32 model input",
                    "bldm_fast",
                    bf_step(be, torch.float32),
                    logit_bytes + 2 * p + 4 * n,
                    backend=be,
                )
            )
    off_guid = GUIDANCE if guided else None
    args = (cond, uncond, xt_float, t, t_prev, ctx.k, ctx.b, ctx.beta, TEMPERATURE, off_guid, True)
    if ctx.want("official"):
        impls.append(
            Impl(
                "official eager", "baseline", lambda: bl.official_step(*args), logit_bytes + 8 * n, key="official eager"
            )
        )
    if ctx.want("compile"):
        cfn = bl.compiled(bl.official_step)
        impls.append(
            ctx.compiled_impl(
                "torch.compile(official)", "torch.compile", lambda: cfn(*args), logit_bytes + 8 * n, headline
            )
        )
    desc = f"guidance g={g:g}" if guided else "no guidance"
    final = t_prev == 0
    when = f"t={t}->{t_prev}" + (" (final threshold)" if final else "")
    name = f"step {_dtype_name(dtype)} logits, {desc}, {when}, {_shape_str(shape)}"

    def check(case: Case) -> list:
        rows = [im for im in case.impls if im.kind == "bldm_fast" and "+" not in im.label]
        notes = _agree(rows, case.elements, exact=final)
        if final:  # the final step is deterministic: compare with the official threshold
            off = next((im.out for im in case.impls if im.label == "official eager" and im.out is not None), None)
            if off is not None:
                ref = bl.torch_pack(off.reshape(shape))
                for im in rows:
                    if im.out is not None and not torch.equal(im.out, ref):
                        nb = int(np.unpackbits((im.out ^ ref).numpy().reshape(-1)).sum())
                        notes.append(f"note: {im.label} final threshold differs from official in {nb} bits")
        return notes

    return Case(
        "step",
        name,
        shape,
        n,
        {
            "dtype": str(dtype),
            "guidance": g,
            "t": t,
            "t_prev": t_prev,
            "num_steps": NUM_STEPS,
            "temperature": TEMPERATURE,
        },
        impls,
        headline=headline,
        check=check,
    )


def _build_cases(ctx: _Ctx, ops) -> list:
    H = (HEADLINE["B"], HEADLINE["L"], HEADLINE["C"])
    S = (SMALL["B"], SMALL["L"], SMALL["C"])
    q = ctx.quick
    cases = []
    if "pack" in ops:
        cases.append(_pack_case(ctx, H, torch.uint8))
        if not q:
            cases.append(_pack_case(ctx, H, torch.float32))
            cases.append(_pack_case(ctx, S, torch.uint8))
    if "unpack" in ops:
        cases.append(_unpack_case(ctx, H, torch.float32))
        if not q:
            cases.append(_unpack_case(ctx, H, torch.uint8))
            cases.append(_unpack_case(ctx, S, torch.float32))
    if "noise" in ops:
        cases.append(_noise_case(ctx, H))
        if not q:
            cases.append(_noise_case(ctx, S))
    if "step" in ops:
        cases.append(_step_case(ctx, H, torch.float32, True, STEP_T, STEP_T_PREV, headline=True, with_out_dtype=not q))
        if not q:
            cases.append(_step_case(ctx, H, torch.float32, False, STEP_T, STEP_T_PREV))
            cases.append(_step_case(ctx, H, torch.bfloat16, True, STEP_T, STEP_T_PREV))
            cases.append(_step_case(ctx, H, torch.float32, True, 1, 0))
            cases.append(_step_case(ctx, S, torch.float32, True, STEP_T, STEP_T_PREV))
    return cases


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------


def _timer(sync):
    def run(fn, calls: int) -> float:
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if sync is not None:
            sync()
        return time.perf_counter() - t0

    return run


_BACKGROUND: list = []  # compile threads that outlived their budget


def _warm_compiled(im: Impl, timeout: float) -> bool:
    """First call of a torch.compile'd callable (compiles), in a worker thread bounded by ``timeout``.

    Returns True when it timed out (the row is skipped; the compilation thread keeps running)."""
    box: dict = {}

    def work():
        try:
            t0 = time.perf_counter()
            box["out"] = im.fn()
            box["t"] = time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - reported in the table
            box["exc"] = exc

    th = threading.Thread(target=work, name=f"warm {im.label}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        im.skip(f"torch.compile warm-up exceeded the {timeout:g}s budget (--compile-timeout)")
        _BACKGROUND.append(th)  # compilation goes on in this daemon thread, sharing the CPU with the timings
        return True
    if "exc" in box:
        exc = box["exc"]
        im.skip(
            f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}", "error"
        )
    else:
        im.out = _to_cpu_tensor(box["out"])
        im.reason = f"compiled in {box['t']:.2f}s (excluded)"
    return False


def _warm(case: Case, compile_timeout: float, run) -> None:
    for im in case.impls:
        if im.fn is None:
            continue
        try:
            if im.compile:
                _warm_compiled(im, compile_timeout)
                if im.fn is None:
                    continue
            else:
                im.out = _to_cpu_tensor(im.fn())
            im.fn()  # second warm-up call (allocator, caches, lazy init)
        except Exception as exc:  # noqa: BLE001 - a failing implementation is reported, not fatal
            msg = str(exc).splitlines()[0][:160] if str(exc) else ""
            im.skip(f"{type(exc).__name__}: {msg}", "error")
    if case.check is not None:
        try:
            case.notes.extend(case.check(case))
        except Exception as exc:  # noqa: BLE001
            case.notes.append(f"check could not run: {type(exc).__name__}: {exc}")
    for im in case.impls:
        im.out = None


def _calibrate(fn, min_time: float, run) -> int:
    """Smallest call count (grown geometrically) whose back-to-back run lasts >= ``min_time``."""
    n = 1
    while n < _MAX_CALLS:
        took = run(fn, n)
        if took >= min_time:
            break
        # aim 20% past min_time, grow at most 10x per try so one lucky fast run cannot overshoot
        n = min(_MAX_CALLS, max(n + 1, min(10 * n, math.ceil(n * 1.2 * min_time / max(took, 1e-9)))))
    return n


def _measure(case: Case, repeats: int, min_time: float, run) -> None:
    live = [im for im in case.impls if im.fn is not None]
    if not live:
        return
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for im in live:  # calibrate calls per sample (like timeit's autorange, robust to one slow call)
            im.calls = _calibrate(im.fn, min_time, run)
        for r in range(repeats):
            k = r % len(live)
            order = live[k:] + live[:k]
            if r % 2:
                order.reverse()
            for im in order:
                im.samples.append(run(im.fn, im.calls) / im.calls)
    finally:
        if gc_was:
            gc.enable()


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


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


def _case_result(case: Case) -> dict:
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
        ratios = {}
        for r in rows:
            if r["kind"] == "bldm_fast" and "median_s" in r:
                ph = next(
                    (
                        x
                        for x in rows
                        if x["kind"] == "reference_point" and x["backend"] == r["backend"] and "median_s" in x
                    ),
                    None,
                )
                if ph is not None:
                    ratios[r["backend"]] = r["median_s"] / ph["median_s"]
        res["noise_over_philox"] = ratios
        res["philox_bytes_formula"] = BYTES_FORMULA["philox"]
    return res


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
            run on ``device``); an unavailable name is reported as skipped.
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
    """
    import bldm_fast as bf

    t_start = time.perf_counter()
    load_before = _loadavg()
    ops = list(OPS) if ops is None else [o.strip() for o in ops if o.strip()]
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise ValueError(f"ops: unknown {bad}; choose from {list(OPS)}")
    if baselines is not None:
        baselines = {b.strip() for b in baselines if b.strip()}
        unknown = baselines - {"official", "compile", "numpy", "torch"}
        if unknown:
            raise ValueError(f"baselines: unknown {sorted(unknown)}; choose from official, compile, numpy, torch")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA is not available")

    global_notes = []
    available = list(bf.available_backends()) if hasattr(bf, "available_backends") else []
    if not hasattr(bf, "available_backends"):
        global_notes.append("bldm_fast.available_backends() is missing: only baselines were timed")
    requested = available if backends is None else [b.strip() for b in backends if b.strip()]
    run_backends = []
    for be in requested:
        if be not in available:
            global_notes.append(f"backend {be!r} skipped: not available (available: {available})")
        elif dev.type == "cpu" and be in ("triton", "cuda"):
            if backends is not None:
                global_notes.append(f"backend {be!r} skipped: needs a CUDA device (run with device='cuda')")
        elif dev.type == "cuda" and be == "cpu":
            if backends is not None:
                global_notes.append("backend 'cpu' skipped: device is cuda")
        else:
            run_backends.append(be)

    reps, mt = _QUICK if quick else _FULL
    reps = repeats or reps
    mt = min_time if min_time is not None else mt
    ctimeout = compile_timeout or (_COMPILE_TIMEOUT_QUICK if quick else _COMPILE_TIMEOUT_FULL)
    ok, why = bl.compile_supported()
    do_compile = compile and ok
    reason = "disabled (--no-compile)" if not compile else why
    ctx = _Ctx(bf, run_backends, dev, quick, do_compile, baselines, reason)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    run = _timer(sync)

    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    threads_before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        cases = _build_cases(ctx, ops)
        results = _run_cases(cases, reps, mt, ctimeout, run, progress)
        out = machine_info(str(dev))  # while the thread count of the run is in force
    finally:
        torch.set_num_threads(threads_before)

    out["machine"]["load_avg_1m_before"] = load_before
    out["machine"]["load_avg_1m_after"] = _loadavg()
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
    out["summary"] = _summary(results)
    out["elapsed_s"] = time.perf_counter() - t_start
    return out


def _run_cases(cases: list, repeats: int, min_time: float, compile_timeout: float, run, progress: bool) -> list:
    """Warm up, check and time each case in turn (tqdm bar over the cases on stderr)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        tqdm = None
    bar = None
    if tqdm is not None:
        bar = tqdm(total=len(cases), file=sys.stderr, desc="bench", unit="case", disable=not progress, leave=False)
    results = []
    try:
        for case in cases:
            if bar is not None:
                bar.set_postfix_str(case.name[:48])
            t_case = time.perf_counter()
            _warm(case, compile_timeout, run)
            t_warm = time.perf_counter()
            if any(th.is_alive() for th in _BACKGROUND):
                case.notes.append(
                    "note: a timed-out torch.compile was still compiling in the background while this case was "
                    "timed (times inflated)"
                )
            _measure(case, repeats, min_time, run)
            res = _case_result(case)
            res["warmup_s"] = t_warm - t_case
            res["elapsed_s"] = time.perf_counter() - t_case
            results.append(res)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


def _summary(cases: list) -> dict:
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


# ---------------------------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------------------------


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
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        out = []
        for i, cell in enumerate(cells):
            cell = str(cell)
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join(("-" if h else " ") * w for h, w in zip(headers, widths)).rstrip()
    return [line(headers), sep, *(line(r) for r in rows)]


def format_report(res: dict) -> str:
    """The human-readable report of a :func:`run_bench` result."""
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

    for case in res["cases"]:
        lines.append("")
        star = "  [headline]" if case["headline"] else ""
        lines.append(f"== {case['name']}  ({case['elements']:,} elements){star}")
        base_keys = []
        for r in case["rows"]:
            if r["kind"] == "baseline" and r["baseline"] not in base_keys:
                base_keys.append(r["baseline"])
        headers = ["implementation", "time", "spread", "elem/s", "GB/s"] + [f"vs {k}" for k in base_keys]
        table_rows = []
        for r in case["rows"]:
            if "median_s" not in r:
                why = r["reason"] or r["status"]
                table_rows.append([r["impl"], r["status"], "", "", ""] + [""] * len(base_keys) + [f"({why})"])
                continue
            spread = f"±{100 * r['iqr_s'] / r['median_s'] / 2:.0f}%"
            cells = [
                r["impl"],
                _fmt_time(r["median_s"]),
                spread,
                _fmt_rate(r["elements_per_s"]),
                f"{r['gb_per_s']:.2f}",
            ]
            for k in base_keys:
                sp = r.get("speedup", {}).get(k)
                cells.append(_fmt_x(sp) if sp is not None else "")
            tail = []
            if r["kind"] == "reference_point":
                tail.append("(reference point)")
            if r["reason"]:
                tail.append(f"({r['reason']})")
            table_rows.append(cells + [" ".join(tail)])
        headers = headers + [""]
        align = "l" + "r" * (len(headers) - 2) + "l"
        lines.extend(_table(headers, table_rows, align))
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
        for note in case["notes"]:
            lines.append(note)

    summ = res.get("summary", {})
    if summ.get("headline_step"):
        lines.append("")
        lines.append("headline (step, fp32 logits + guidance, B=64 L=256 C=64):")
        for impl, d in summ["headline_step"].items():
            sp = ", ".join(f"{_fmt_x(x)} vs {k}" for k, x in d["speedup"].items())
            lines.append(f"  {impl}: {_fmt_time(d['median_s'])}" + (f" ({sp})" if sp else ""))
    lines.append(f"total wall time {res.get('elapsed_s', 0):.1f} s")
    return "\n".join(lines)


def print_report(res: dict, file=None) -> None:
    print(format_report(res), file=file or sys.stdout)


def save_json(res: dict, path: str) -> None:
    """Write all numbers plus machine info to ``path`` (parent folders are created)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2, default=str)
        f.write("\n")
