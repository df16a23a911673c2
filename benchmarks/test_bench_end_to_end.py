"""pytest-benchmark: end-to-end sampling with a real denoiser, accelerate() vs the official sampler.

The same :class:`~bldm_fast.bench.official_sampler.OfficialSampler` (official loop, op by op) over
a class-conditional BinaryTransformer of the small official architecture (n_embd 128, 2 layers;
``BLDM_BENCH_ARCH=mid`` for 512 / 8 layers), 16x16x64 latents, T = 64, sampled by the official
loop and by ``bf.accelerate`` of that object: float32 eager, ``compile=True`` and
``compile=True, dtype=torch.bfloat16``; 16 steps, without and with guidance 2.0, B = 2. Each
benchmark's first call (the compilation for compiled variants) is made before timing.

``extra_info``: ``images_per_s`` (B / min round) and, for fast variants, ``bits_differ_vs_fp32``
(share of the sample bits that differ from float32 ``accelerate`` with the same seed).
For the side-by-side table with interleaved calls and the load average use
``bldm_fast.bench.end_to_end.end_to_end`` (``bldm-fast bench --end-to-end``).

Run: ``python -m pytest benchmarks/test_bench_end_to_end.py --benchmark-only``.
"""

from __future__ import annotations

import functools
import os

import pytest
import torch

from bldm_fast.bench import end_to_end as e2e

ARCH = os.environ.get("BLDM_BENCH_ARCH", "small")
B, STEPS = 2, 16
IMPLS = ["official", *e2e.VARIANTS]


@functools.lru_cache(maxsize=None)
def _samplers():
    return e2e._samplers(ARCH, torch.device("cpu"), 0)


@functools.lru_cache(maxsize=None)
def _reference(guided: bool) -> torch.Tensor:
    _official, fast = _samplers()
    return fast.sample(e2e.TEMP, STEPS, B, guidance=e2e.GUIDANCE if guided else None, seed=0)


@pytest.mark.parametrize("guided", [False, True], ids=["plain", "guidance"])
@pytest.mark.parametrize("impl", IMPLS, ids=[i.replace(" ", "-") for i in IMPLS])
def test_end_to_end(benchmark, impl, guided):
    official, fast = _samplers()
    g = e2e.GUIDANCE if guided else None
    if impl == "official":
        def fn():
            return official.sample(e2e.TEMP, STEPS, B, guidance=g)
    else:
        kw = e2e.VARIANTS[impl]

        def fn():
            return fast.sample(e2e.TEMP, STEPS, B, guidance=g, seed=0, **kw)
    out = fn()  # the compilation, untimed
    benchmark.group = f"end to end {ARCH} {STEPS} steps {'guided' if guided else 'plain'} B={B}"
    benchmark.pedantic(fn, rounds=3, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = B / benchmark.stats.stats.min
    if impl != "official":
        ref = _reference(guided)
        benchmark.extra_info["bits_differ_vs_fp32"] = float((out != ref).float().mean())
    assert out.shape == (B, e2e.SIDE * e2e.SIDE, e2e.CHANNELS)
