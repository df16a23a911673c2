"""pytest-benchmark suite: one training step (data -> codes -> loss -> backward -> AdamW) of the
packed-dataset trainer against the official online recipe (autoencoder encoder forward +
``torch.bernoulli`` + the official loss op by op), same denoiser, 16x16x64 latents, B=8
(:mod:`bldm_fast.bench.training`; ``bldm_fast.bench.training.training_throughput`` prints the
table with the autoencoder's share).

Run: ``python -m pytest benchmarks/test_bench_training.py --benchmark-only``.
"""

from __future__ import annotations

import itertools

import pytest

from bldm_fast.bench.training import training_paths

BATCH = 8


@pytest.fixture(scope="module")
def paths():
    with training_paths(batch=BATCH) as (fns, config):
        yield fns, config


@pytest.mark.parametrize("path", ["packed", pytest.param("online", marks=pytest.mark.baseline)])
def test_training_step(benchmark, paths, path):
    fns, config = paths
    steps = itertools.count(1)
    fn = fns[path]
    fn(next(steps))  # warm-up
    benchmark.group = f"training step B{BATCH} {config['latent']} denoiser {config['denoiser']}"
    benchmark.extra_info.update(path=path, batch=BATCH, **{k: str(v) for k, v in config.items()})
    benchmark.pedantic(lambda: fn(next(steps)), rounds=2, iterations=1)
