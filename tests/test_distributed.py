"""sample_distributed with 2 CPU processes on gloo equals one process sampling the whole batch.

The processes are spawned with torch.multiprocessing (file:// rendezvous in a temporary folder,
collectives time out after 60 s, the whole run after DEADLINE_S); each writes its results to a file
that the test compares with ``BernoulliDiffusion.sample`` in this process.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

import bldm_fast as bf
from bf_testutil import spawn_bounded
from bldm_fast.diffusion import BernoulliDiffusion, batch_slice, sample_distributed
from test_sampling import StubDenoiser, make_diffusion, mask_known

WORLD = 2
DEADLINE_S = 180

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available")

LABELS = torch.tensor([0, 2, 1, 1, 0])
MASK, KNOWN = mask_known("per-sample", 5, 4, 12)


def _models():
    return (make_diffusion(C=8, kind="cos"), make_diffusion(C=12, kind="sigmoid", num_classes=3),
            BernoulliDiffusion(StubDenoiser(3, 5), 6, latent_shape=(3,), channels=5))


def _runs(d, dc, d_odd):
    """name -> zero-argument call, run the same way by every rank (results compared by the parent)."""
    return {
        "uncond": lambda: sample_distributed(d, 5, steps=4, seed=11, progress=False),
        "cond_all": lambda: sample_distributed(dc, labels=LABELS, steps=5, temperature=0.8, guidance=1.5,
                                               mask=MASK, known=KNOWN, return_all=True, seed=2**64 - 1,
                                               progress=False),
        "local": lambda: sample_distributed(d, 5, steps=4, seed=11, gather=False, progress=False),
        "flag": lambda: d.sample(5, steps=4, seed=11, distributed=True, progress=False),
        "generator": lambda: sample_distributed(d, 4, steps=3, generator=bf.PhiloxGenerator(5, offset=9),
                                                progress=False),
        "fewer_than_ranks": lambda: sample_distributed(d, 1, steps=3, seed=1, return_all=True, progress=False),
        "no_seed": lambda: sample_distributed(d, 3, steps=3, progress=False),
    }


def _worker(rank: int, world: int, init_method: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(100 + rank)  # the ranks' default generators differ: no_seed must broadcast rank 0's
        d, dc, d_odd = _models()
        results = {name: run() for name, run in _runs(d, dc, d_odd).items()}
        errors = {}
        for name, call in {
            "odd": lambda: sample_distributed(d_odd, 2, seed=0, progress=False),
            "seeds_differ": lambda: sample_distributed(d, 2, steps=2, seed=rank, progress=False),
            "seed_on_one_rank": lambda: sample_distributed(d, 2, steps=2, seed=3 if rank == 0 else None,
                                                           progress=False),
        }.items():
            try:
                call()
                errors[name] = None
            except ValueError as exc:
                errors[name] = str(exc)
        results["errors"] = errors
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path) -> list[dict]:
    init = f"file://{tmp_path / 'rendezvous'}"
    spawn_bounded(_worker, (WORLD, init, str(tmp_path)), WORLD, DEADLINE_S, "distributed sampling")
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    return _spawn(tmp_path_factory.mktemp("dist"))


@pytest.mark.slow
def test_gathered_equals_single_process(rank_results):
    d, dc, _ = _models()
    ref = {
        "uncond": d.sample(5, steps=4, seed=11, progress=False),
        "cond_all": dc.sample(labels=LABELS, steps=5, temperature=0.8, guidance=1.5, mask=MASK, known=KNOWN,
                              return_all=True, seed=2**64 - 1, progress=False),
        "flag": d.sample(5, steps=4, seed=11, progress=False),
        "generator": d.sample(4, steps=3, generator=bf.PhiloxGenerator(5, offset=9), progress=False),
        "fewer_than_ranks": d.sample(1, steps=3, seed=1, return_all=True, progress=False),
    }
    for r, res in enumerate(rank_results):
        for name, want in ref.items():
            assert res[name].dtype == torch.uint8 and torch.equal(res[name], want), (r, name)
        start, count = batch_slice(5, WORLD, r)
        assert torch.equal(res["local"], ref["uncond"][start:start + count])
    assert torch.equal(rank_results[0]["no_seed"], rank_results[1]["no_seed"])  # rank 0's seed everywhere


@pytest.mark.slow
def test_distributed_errors(rank_results):
    for res in rank_results:
        errs = res["errors"]
        assert errs["odd"] and "L * C % 4 == 0" in errs["odd"]
        assert errs["seeds_differ"] and "different seeds" in errs["seeds_differ"]
        assert errs["seed_on_one_rank"] and "every rank or none" in errs["seed_on_one_rank"]


def test_needs_initialised_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="torch.distributed"):
        sample_distributed(make_diffusion(), 2, seed=0, progress=False)


@pytest.mark.parametrize("B,W", [(5, 2), (1, 2), (8, 4), (3, 5), (7, 1)])
def test_batch_slice_partitions(B, W):
    parts = [batch_slice(B, W, r) for r in range(W)]
    assert sum(c for _, c in parts) == B
    assert all(parts[i][0] + parts[i][1] == parts[i + 1][0] for i in range(W - 1)) and parts[0][0] == 0
    assert max(c for _, c in parts) - min(c for _, c in parts) <= 1
