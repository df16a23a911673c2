"""pytest-benchmark: the whole sampling loop, bldm_fast vs the official loop, denoiser cost excluded.

The denoiser is a stub that returns precomputed logits (a few microseconds per call), so a
round times only what the sampler does between denoiser calls: ``BernoulliDiffusion.sample``
(one fused ``sample_step`` per step, packed state, next model input written by the step) against a
transcription of the official ``BinaryDiffusion.sample`` loop (``torch.bernoulli`` initial noise,
then per step the official eager chain ``bldm_fast.bench.baselines.official_step``, float32 state).

Shape: B=64, 16x16 tokens, C=64 channels (1M bits), 64 steps of a 64-step cos schedule; variants
without guidance and with temperature + classifier-free guidance (two logit tensors per step), and
``return_all`` (the trajectory: packed ``(S+1, B, L, C/8)`` uint8 vs the official float32
``((S+1) B, L, C)``; the memory ratio is asserted to be 32).

``extra_info``: ``ms_per_step`` (min round / steps) and, on the official benchmark of a variant
(run after bldm_fast's), ``overhead_ratio`` = official / bldm_fast per-step time for each backend;
``trajectory_bytes`` for return_all.

Run: ``python -m pytest benchmarks/test_bench_sampling.py --benchmark-only``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

import bldm_fast as bf
from bldm_fast.bench import baselines as bl
from bldm_fast.diffusion import BernoulliDiffusion, sampling_grid

B, H, W, C = 64, 16, 16, 64
L = H * W
T = STEPS = 64
KIND = "cos"
TEMPERATURE, GUIDANCE = 0.9, 2.0
SEED = 1234

BACKENDS = [b for b in bf.available_backends() if b not in ("reference", "triton", "cuda")]  # fused CPU backends
IMPLS = [f"bldm_fast[{b}]" for b in BACKENDS] + [pytest.param("official_eager", marks=pytest.mark.baseline)]
VARIANTS = ["plain", "guidance", "return_all"]

_PER_STEP: dict[tuple[str, str], float] = {}


class Precomputed(nn.Module):
    """Denoiser stub: returns fixed logits (conditional, or unconditional when ``label`` is None)."""

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor):
        super().__init__()
        self.cond, self.uncond = cond, uncond

    def forward(self, x, label=None, time_steps=None):
        return self.uncond if label is None else self.cond


@functools.lru_cache(maxsize=None)
def _setup():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(B, L, C, generator=g) * 3.0
    uncond = cond + torch.randn(B, L, C, generator=g)
    den = Precomputed(cond, uncond)
    diffusion = BernoulliDiffusion(den, T, KIND, latent_shape=(H, W), channels=C, num_classes=10)
    labels = torch.arange(B) % 10
    return diffusion, labels


def _kwargs(variant: str) -> dict:
    if variant == "guidance":
        return dict(temperature=TEMPERATURE, guidance=GUIDANCE)
    return dict(temperature=1.0, guidance=None)


def run_bldm_fast(backend: str, variant: str) -> torch.Tensor:
    diffusion, labels = _setup()
    return diffusion.sample(B, labels=labels, steps=STEPS, seed=SEED, backend=backend, progress=False,
                            return_all=variant == "return_all", **_kwargs(variant))


def run_official(variant: str) -> torch.Tensor:
    """The official ``BinaryDiffusion.sample`` loop (class-conditional dataset, device CPU)."""
    diffusion, labels = _setup()
    den = diffusion.denoiser
    k_final, b_final, beta = bl.official_tables(diffusion.schedule)
    kw = _kwargs(variant)
    temp, guidance = kw["temperature"], kw["guidance"]
    return_all = variant == "return_all"
    x_t = torch.bernoulli(0.5 * torch.ones((B, L, C)))
    x_all = [x_t] if return_all else None
    grid = sampling_grid(T, STEPS)
    for i, t in enumerate(grid):
        t_prev = grid[i + 1] if i + 1 < len(grid) else 0
        ts = torch.full((B,), t, dtype=torch.long)
        cond = den(x_t, labels, time_steps=ts - 1)
        uncond = den(x_t, None, time_steps=ts - 1) if guidance is not None else None
        x_t = bl.official_step(cond, uncond, x_t, t, t_prev, k_final, b_final, beta, temp=temp, guidance=guidance,
                               p_flip=True)
        if return_all:
            x_all.append(x_t)
    return torch.cat(x_all, 0) if return_all else x_t


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("impl", IMPLS)
def test_sampling_loop(benchmark, impl, variant):
    benchmark.group = f"sampling loop {variant} B{B}xL{L}xC{C} steps={STEPS}"
    benchmark.extra_info.update(impl=impl, steps=STEPS, elements=B * L * C)
    if impl == "official_eager":
        fn = functools.partial(run_official, variant)
    else:
        fn = functools.partial(run_bldm_fast, impl[len("bldm_fast["):-1], variant)
    out = benchmark.pedantic(fn, rounds=3, warmup_rounds=1, iterations=1)
    per_step_ms = benchmark.stats.stats.min / STEPS * 1e3
    benchmark.extra_info["ms_per_step"] = per_step_ms
    _PER_STEP[(impl, variant)] = per_step_ms
    if variant == "return_all":
        benchmark.extra_info["trajectory_bytes"] = out.numel() * out.element_size()
    if impl == "official_eager":
        ratios = {i: per_step_ms / _PER_STEP[(i, variant)] for i in (f"bldm_fast[{b}]" for b in BACKENDS)
                  if (i, variant) in _PER_STEP}
        benchmark.extra_info["overhead_ratio"] = ratios


def test_return_all_memory(benchmark):
    """The packed trajectory is 32x smaller than the official float32 one (same content)."""
    benchmark.group = "sampling return_all memory"
    diffusion, labels = _setup()
    steps = 8
    traj = benchmark.pedantic(diffusion.sample, args=(B,), kwargs=dict(labels=labels, steps=steps, seed=SEED,
                                                                        progress=False, return_all=True),
                              rounds=1, iterations=1)
    ours = traj.numel() * traj.element_size()
    official = (steps + 1) * B * L * C * torch.finfo(torch.float32).bits // 8  # torch.cat(x_all) of float32 (B, L, C)
    assert traj.shape == (steps + 1, B, L, C // 8) and traj.dtype == torch.uint8
    assert official == 32 * ours
    benchmark.extra_info.update(packed_bytes=ours, official_float32_bytes=official, ratio=official / ours)
