"""pytest-benchmark suites: pack, unpack, noise and step on every available bldm_fast backend and
on the baselines (official eager chain, torch.compile of it, numpy for bit packing).

Each benchmark's ``group`` is "<op> <variant> <shape>", so pytest-benchmark prints one table per
case with all implementations side by side; ``extra_info`` holds ``elements`` (unpacked bits),
``bytes`` (the traffic the implementation's interface must move; formulas in
``bldm_fast/bench/report.py``) and the implementation / backend names.

Run: ``python -m pytest benchmarks --benchmark-only`` (add ``--benchmark-min-rounds 3`` for a quick
pass, ``-m "not compile"`` to leave out torch.compile).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import bldm_fast as bf
from bldm_fast.bench import baselines as bl
from bldm_fast.bench.cases import GUIDANCE, NUM_STEPS, SEED, STEP_T, STEP_T_PREV, TEMPERATURE

BACKENDS = [b for b in bf.available_backends() if b not in ("triton", "cuda")]  # CPU tensors here

SHAPES = {"B64xL256xC64": (64, 256, 64), "B8xL256xC64": (8, 256, 64)}
HEADLINE = "B64xL256xC64"

_compile = [pytest.mark.compile, pytest.mark.baseline]
_base = [pytest.mark.baseline]
BF_IMPLS = [f"bldm_fast[{b}]" for b in BACKENDS]
PACK_IMPLS = BF_IMPLS + [
    pytest.param("numpy", marks=_base),
    pytest.param("torch_eager", marks=_base),
    pytest.param("torch_compile", marks=_compile),
]
OFFICIAL_IMPLS = BF_IMPLS + [pytest.param("official_eager", marks=_base), pytest.param("torch_compile", marks=_compile)]


# ---------------------------------------------------------------------------------------------
# inputs (built once per shape)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _bits(shape: tuple, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, shape, generator=g, dtype=torch.uint8)


@functools.lru_cache(maxsize=None)
def _logits(shape: tuple, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 3.0).to(dtype)


@functools.lru_cache(maxsize=None)
def _schedule():
    return bf.BernoulliSchedule(NUM_STEPS, "linear")


def _packed_bytes(shape) -> int:
    *lead, c = shape
    return math.prod(lead) * ((c + 7) // 8)


def _backend(impl: str) -> str | None:
    return impl[len("bldm_fast[") : -1] if impl.startswith("bldm_fast[") else None


def _setup(benchmark, group: str, impl: str, elements: int, nbytes: int, **extra) -> None:
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, backend=_backend(impl), elements=elements, bytes=nbytes, **extra)


def _warm(fn):
    """First call outside the timing (torch.compile compiles here); skip when it cannot compile."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, (AssertionError, pytest.skip.Exception)):
            raise
        pytest.skip(f"warm-up failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _first(out):
    return out[0] if isinstance(out, tuple) else out


# ---------------------------------------------------------------------------------------------
# pack / unpack
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", PACK_IMPLS)
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_pack(benchmark, shape_id, impl):
    shape = SHAPES[shape_id]
    bits = _bits(shape)
    n = bits.numel()
    if impl == "numpy":
        a = bits.numpy()
        fn = lambda: bl.numpy_pack(a)  # noqa: E731
    elif impl == "torch_eager":
        fn = lambda: bl.torch_pack(bits)  # noqa: E731
    elif impl == "torch_compile":
        cfn = bl.compiled(bl.torch_pack)
        fn = lambda: cfn(bits)  # noqa: E731
    else:
        be = _backend(impl)
        fn = lambda: bf.pack_bits(bits, backend=be)  # noqa: E731
    _setup(benchmark, f"pack u8 {shape_id}", impl, n, n + _packed_bytes(shape), formula="N + P")
    out = _warm(fn)
    expect = bl.numpy_pack(bits.numpy())
    got = out if isinstance(out, np.ndarray) else out.numpy()
    assert np.array_equal(got, expect), f"{impl}: packed bits differ from numpy.packbits(bitorder='little')"
    benchmark(fn)


@pytest.mark.parametrize("impl", PACK_IMPLS)
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_unpack(benchmark, shape_id, impl):
    shape = SHAPES[shape_id]
    c = shape[-1]
    packed = bl.torch_pack(_bits(shape))
    n = math.prod(shape)
    if impl == "numpy":
        a = packed.numpy()
        fn = lambda: bl.numpy_unpack(a, c, np.float32)  # noqa: E731
    elif impl == "torch_eager":
        fn = lambda: bl.torch_unpack(packed, c, torch.float32)  # noqa: E731
    elif impl == "torch_compile":
        cfn = bl.compiled(bl.torch_unpack)
        fn = lambda: cfn(packed, c, torch.float32)  # noqa: E731
    else:
        be = _backend(impl)
        fn = lambda: bf.unpack_bits(packed, c, dtype=torch.float32, backend=be)  # noqa: E731
    _setup(benchmark, f"unpack fp32 {shape_id}", impl, n, _packed_bytes(shape) + 4 * n, formula="P + 4N")
    out = _warm(fn)
    got = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
    assert got.dtype == torch.float32 and torch.equal(got, _bits(shape).float()), f"{impl}: unpacked bits differ"
    benchmark(fn)


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------


NOISE_IMPLS = OFFICIAL_IMPLS + [pytest.param(f"philox[{b}]", id=f"bare_philox[{b}]") for b in BACKENDS]


@pytest.mark.parametrize("impl", NOISE_IMPLS)
@pytest.mark.parametrize("shape_id", list(SHAPES))
def test_noise(benchmark, shape_id, impl):
    shape = SHAPES[shape_id]
    b, _, c = shape
    n = math.prod(shape)
    x0 = _bits(shape)
    t = torch.randint(1, NUM_STEPS + 1, (b,), generator=torch.Generator().manual_seed(1), dtype=torch.long)
    sched = _schedule()
    k, bb, _beta = bl.official_tables(sched)
    if impl == "official_eager":
        x0f = x0.float()
        fn = lambda: bl.official_noise(x0f, t, k, bb)  # noqa: E731
        nbytes, formula = 8 * n, "4N + 4N"
    elif impl == "torch_compile":
        x0f = x0.float()
        cfn = bl.compiled(bl.official_noise)
        fn = lambda: cfn(x0f, t, k, bb)  # noqa: E731
        nbytes, formula = 8 * n, "4N + 4N"
    elif impl.startswith("philox["):
        be = impl[len("philox[") : -1]
        fn = lambda: bf.philox_uniform(SEED, 0, n, backend=be)  # noqa: E731
        nbytes, formula = 4 * n, "4N (bare Philox over the words noise uses)"
    else:
        be = _backend(impl)
        x0p = bl.torch_pack(x0)
        fn = lambda: bf.bernoulli_noise(x0p, t, sched, c, seed=SEED, offset=0, backend=be).packed  # noqa: E731
        nbytes, formula = 2 * _packed_bytes(shape), "2P"
    _setup(benchmark, f"noise {shape_id}", impl, n, nbytes, formula=formula, philox_words=n)
    out = _first(_warm(fn))
    assert out.shape[0] == (n if impl.startswith("philox[") else b)
    benchmark(fn)


# ---------------------------------------------------------------------------------------------
# step
# ---------------------------------------------------------------------------------------------

# (variant id, logits dtype, guided, t, t_prev, shapes)
STEP_VARIANTS = [
    ("fp32_guided", torch.float32, True, STEP_T, STEP_T_PREV, list(SHAPES)),  # the headline case
    ("fp32_noguidance", torch.float32, False, STEP_T, STEP_T_PREV, [HEADLINE]),
    ("bf16_guided", torch.bfloat16, True, STEP_T, STEP_T_PREV, [HEADLINE]),
    ("fp32_guided_final", torch.float32, True, 1, 0, [HEADLINE]),
]


def _unwrap(impl):
    return impl if isinstance(impl, str) else impl.values[0]


STEP_CASES = [
    pytest.param(
        v,
        dt,
        gd,
        t,
        tp,
        s,
        _unwrap(impl),
        id=f"{v}-{s}-{_unwrap(impl)}",
        marks=() if isinstance(impl, str) else impl.marks,
    )
    for (v, dt, gd, t, tp, shapes) in STEP_VARIANTS
    for s in shapes
    for impl in OFFICIAL_IMPLS
]


@pytest.mark.parametrize("variant, dtype, guided, t, t_prev, shape_id, impl", STEP_CASES)
def test_step(benchmark, variant, dtype, guided, t, t_prev, shape_id, impl):
    shape = SHAPES[shape_id]
    n = math.prod(shape)
    cond = _logits(shape, dtype, 2)
    uncond = _logits(shape, dtype, 3) if guided else None
    xt_bits = _bits(shape, 4)
    sched = _schedule()
    logit_bytes = n * cond.element_size() * (2 if guided else 1)
    if impl in ("official_eager", "torch_compile"):
        k, bb, beta = bl.official_tables(sched)
        args = (cond, uncond, xt_bits.float(), t, t_prev, k, bb, beta, TEMPERATURE, GUIDANCE if guided else None, True)
        step = bl.official_step if impl == "official_eager" else bl.compiled(bl.official_step)
        fn = lambda: step(*args)  # noqa: E731
        nbytes, formula = logit_bytes + 8 * n, "logits + 4N + 4N"
    else:
        be = _backend(impl)
        xtp = bl.torch_pack(xt_bits)
        kw = dict(seed=SEED, offset=0, temperature=TEMPERATURE, backend=be)
        if guided:
            kw.update(guidance=GUIDANCE, uncond_logits=uncond)
        fn = lambda: bf.sample_step(cond, xtp, t, t_prev, sched, **kw).packed  # noqa: E731
        nbytes, formula = logit_bytes + 2 * _packed_bytes(shape), "logits + 2P"
    _setup(
        benchmark,
        f"step {variant} t={t}->{t_prev} {shape_id}",
        impl,
        n,
        nbytes,
        formula=formula,
        logits_dtype=str(dtype),
        guidance=GUIDANCE if guided else 0.0,
    )
    out = _first(_warm(fn))
    assert out.shape[0] == shape[0]
    benchmark(fn)
