"""The benchmark cases: one op at one shape / dtype, with every implementation to time side by side.

:func:`build_cases` builds the inputs of each case once (seeded) and wraps each ``bldm_fast``
backend and each baseline of :mod:`bldm_fast.bench.baselines` in an :class:`Impl`: a zero-argument
call plus the bytes its interface must move (the formulas of :data:`BYTES_FORMULA`, explained in
:mod:`bldm_fast.bench.report`). The settings below (shapes, schedule, step, guidance, seed) are
shared with the pytest-benchmark suites in ``benchmarks/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from . import baselines as bl
from .checks import check_equal_to, check_noise, check_step

__all__ = [
    "OPS",
    "BYTES_FORMULA",
    "HEADLINE",
    "SMALL",
    "NUM_STEPS",
    "STEP_T",
    "STEP_T_PREV",
    "GUIDANCE",
    "TEMPERATURE",
    "SEED",
    "Impl",
    "Case",
    "build_cases",
]

OPS = ("pack", "unpack", "noise", "step")

BYTES_FORMULA = {
    "pack": "N*itemsize(bits) + P",
    "unpack": "P + N*itemsize(dtype)",
    "noise": "bldm_fast: 2P; official: 4N + 4N (float32 x0 in, float32 x_t out)",
    "philox": "4N (float32 uniforms out)",
    "step": "bldm_fast: N*itemsize(logits)*(2 if guidance else 1) + 2P [+ N*itemsize(out_dtype)]; "
    "official: N*itemsize(logits)*(2 if guidance else 1) + 4N + 4N",
}

HEADLINE = (64, 256, 64)  # (B, L, C) of each op's first case (the step one is the headline number)
SMALL = (8, 256, 64)  # (B, L, C) of the small-batch cases of a full run
NUM_STEPS = 256  # T of the schedule the step / noise cases use (linear, as the official default)
STEP_T, STEP_T_PREV = 128, 124  # a mid-trajectory step that skips 4 steps (256 -> 64 sampling steps)
GUIDANCE = 2.0
TEMPERATURE = 1.0
SEED = 1234


@dataclass
class Impl:
    """One row of a case: a zero-argument call, its byte count and, once run, its samples."""

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
    """One table of the report: an op at one shape / dtype and its implementations."""

    op: str
    name: str
    shape: tuple
    elements: int
    params: dict
    impls: list
    headline: bool = False
    check: Callable[["Case"], list] | None = None
    notes: list = field(default_factory=list)


def _packed_bytes(shape: tuple) -> int:
    *lead, c = shape
    return math.prod(lead) * ((c + 7) // 8)


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


class _Context:
    """What every case builder shares: backends, device, baseline filter, schedule and random inputs."""

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

    def backend_impls(self, make_fn, nbytes, label="bldm_fast[{}]", kind="bldm_fast") -> list:
        """One row per ``bldm_fast`` backend; ``make_fn(backend)`` returns its zero-argument call."""
        return [Impl(label.format(be), kind, make_fn(be), nbytes, backend=be) for be in self.backends]

    def eager_and_compiled(self, want, fn, args, nbytes, eager, compiled, headline=False) -> list:
        """The baseline ``fn(*args)`` (row ``eager``, speed-up column ``"<want> eager"``) and its
        ``torch.compile`` (row ``compiled``), each where the baseline filter lets it through."""
        impls = []
        if self.want(want):
            impls.append(Impl(eager, "baseline", lambda: fn(*args), nbytes, key=f"{want} eager"))
        if self.want("compile"):
            cfn = bl.compiled(fn)
            impls.append(self._compiled_impl(compiled, lambda: cfn(*args), nbytes, headline))
        return impls

    def _compiled_impl(self, label, fn, nbytes, headline) -> Impl:
        im = Impl(label, "baseline", fn, nbytes, key="torch.compile", compile=True)
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


def _pack_case(ctx: _Context, shape, dtype) -> Case:
    bf = ctx.bf
    bits = ctx.bits(shape, dtype)
    n = math.prod(shape)
    nbytes = n * bits.element_size() + _packed_bytes(shape)
    impls = ctx.backend_impls(lambda be: lambda: bf.pack_bits(bits, backend=be), nbytes)
    if ctx.device.type == "cpu" and ctx.want("numpy"):
        a = bits.numpy()
        if dtype in (torch.uint8, torch.bool):
            fn, label = (lambda: bl.numpy_pack(a)), "numpy.packbits"
        else:  # np.packbits takes integers/bools only: a user would compare with 0 first
            fn, label = (lambda: bl.numpy_pack(a != 0)), "numpy.packbits(a != 0)"
        impls.append(Impl(label, "baseline", fn, nbytes, key="numpy"))
    impls += ctx.eager_and_compiled(
        "torch", bl.torch_pack, (bits,), nbytes, "torch eager (shift+or)", "torch.compile(shift+or)"
    )
    ref_label = next((im.label for im in impls if im.key == "numpy"), "torch eager (shift+or)")
    return Case(
        "pack",
        f"pack {_dtype_name(dtype)} bits -> packed u8, {_shape_str(shape)}",
        shape,
        n,
        {"dtype": str(dtype)},
        impls,
        check=check_equal_to(ref_label),
    )


def _unpack_case(ctx: _Context, shape, dtype) -> Case:
    bf = ctx.bf
    c = shape[-1]
    packed = bl.torch_pack(ctx.bits(shape))
    n = math.prod(shape)
    nbytes = _packed_bytes(shape) + n * torch.empty((), dtype=dtype).element_size()
    impls = ctx.backend_impls(lambda be: lambda: bf.unpack_bits(packed, c, dtype=dtype, backend=be), nbytes)
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
    impls += ctx.eager_and_compiled(
        "torch", bl.torch_unpack, (packed, c, dtype), nbytes, "torch eager (shift+and)", "torch.compile(shift+and)"
    )
    ref = next((im.label for im in impls if im.kind == "baseline" and not im.compile), None)
    return Case(
        "unpack",
        f"unpack packed u8 -> {_dtype_name(dtype)}, {_shape_str(shape)}",
        shape,
        n,
        {"dtype": str(dtype)},
        impls,
        check=check_equal_to(ref) if ref else None,
    )


def _noise_case(ctx: _Context, shape) -> Case:
    bf = ctx.bf
    b, _, c = shape
    n = math.prod(shape)
    x0 = ctx.bits(shape)
    x0_packed = bl.torch_pack(x0)
    x0_float = x0.float()
    t = torch.randint(1, NUM_STEPS + 1, (b,), generator=ctx.gen, dtype=torch.long).to(ctx.device)
    sched = ctx.schedule
    impls = ctx.backend_impls(
        lambda be: lambda: bf.bernoulli_noise(x0_packed, t, sched, c, seed=SEED, offset=0, backend=be).packed,
        2 * _packed_bytes(shape),
    )
    impls += ctx.eager_and_compiled(
        "official", bl.official_noise, (x0_float, t, ctx.k, ctx.b), 8 * n, "official eager", "torch.compile(official)"
    )
    if hasattr(bf, "philox_uniform"):
        impls += ctx.backend_impls(
            lambda be: lambda: bf.philox_uniform(SEED, 0, n, device=ctx.device, backend=be),
            4 * n,
            label="bare philox_uniform[{}]",
            kind="reference_point",
        )
    return Case(
        "noise",
        f"noise (q_sample + Bernoulli), per-sample t in 1..{NUM_STEPS}, {_shape_str(shape)}",
        shape,
        n,
        {"num_steps": NUM_STEPS, "philox_words": n},
        impls,
        check=check_noise,
    )


def _step_case(
    ctx: _Context, shape, dtype, guided: bool, t: int, t_prev: int, headline=False, with_out_dtype=False
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

    def bf_step(be, out_dtype=None):
        kw = dict(seed=SEED, offset=0, temperature=TEMPERATURE, backend=be)
        if guided:
            kw.update(guidance=g, uncond_logits=uncond)
        if out_dtype is not None:
            kw["out_dtype"] = out_dtype
        return lambda: bf.sample_step(cond, xt_packed, t, t_prev, sched, **kw).packed

    impls = ctx.backend_impls(bf_step, logit_bytes + 2 * p)
    if with_out_dtype:
        impls += ctx.backend_impls(
            lambda be: bf_step(be, torch.float32), logit_bytes + 2 * p + 4 * n, label="bldm_fast[{}] +fp32 model input"
        )
    off_guid = GUIDANCE if guided else None
    args = (cond, uncond, xt_float, t, t_prev, ctx.k, ctx.b, ctx.beta, TEMPERATURE, off_guid, True)
    impls += ctx.eager_and_compiled(
        "official",
        bl.official_step,
        args,
        logit_bytes + 8 * n,
        "official eager",
        "torch.compile(official)",
        headline=headline,
    )
    desc = f"guidance g={g:g}" if guided else "no guidance"
    when = f"t={t}->{t_prev}" + (" (final threshold)" if t_prev == 0 else "")
    return Case(
        "step",
        f"step {_dtype_name(dtype)} logits, {desc}, {when}, {_shape_str(shape)}",
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
        check=check_step,
    )


def build_cases(bf, ops, backends, device, *, quick, do_compile, compile_reason, baselines) -> list[Case]:
    """The cases of ``ops`` in report order, inputs on ``device`` and one row per backend in ``backends``.

    ``quick`` keeps one case per op (the :data:`HEADLINE` shape) and compiles only the headline step;
    ``do_compile`` False skips every ``torch.compile`` row with ``compile_reason``; ``baselines``
    (None: all) filters the baseline rows. Returns a list of :class:`Case`, nothing run yet.
    """
    ctx = _Context(bf, backends, device, quick, do_compile, baselines, compile_reason)
    H, S, q = HEADLINE, SMALL, quick
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
