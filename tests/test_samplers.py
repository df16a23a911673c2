"""ContiguousBatchSampler across ranks (num_replicas / rank / pad / set_epoch), like DistributedSampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

from bldm_fast.data import ContiguousBatchSampler


def _ranks(n, bs, R, **kw):
    return [list(ContiguousBatchSampler(n, bs, num_replicas=R, rank=r, **kw)) for r in range(R)]


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 200), bs=st.integers(1, 20), R=st.integers(1, 5), run=st.one_of(st.none(), st.integers(1, 30)),
       pad=st.booleans(), drop_last=st.booleans(), seed=st.integers(0, 2**40), epoch=st.integers(0, 3))
def test_ranks_disjoint_covering_equal(n, bs, R, run, pad, drop_last, seed, epoch):
    samplers = [ContiguousBatchSampler(n, bs, run_length=run, num_replicas=R, rank=r, pad=pad, drop_last=drop_last,
                                       seed=seed) for r in range(R)]
    for s in samplers:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]
    n_per = -(-n // R) if pad else n // R
    # identical counts: the same number of batches of the same sizes on every rank
    assert len({len(b) for b in per_rank}) == 1 and all(len(b) == len(samplers[0]) for b in per_rank)
    assert len({tuple(map(len, b)) for b in per_rank}) == 1
    flat = [[i for b in batches for i in b] for batches in per_rank]
    if not drop_last:
        assert all(len(f) == n_per for f in flat)
    allidx = [i for f in flat for i in f]
    if pad:
        # every index at most once, apart from the R * n_per - n padding repeats
        assert len(allidx) - len(set(allidx)) <= R * n_per - n and set(allidx) <= set(range(n))
        if not drop_last:
            assert set(allidx) == set(range(n))  # covering
            assert len(allidx) - len(set(allidx)) == R * n_per - n
    else:
        assert len(allidx) == len(set(allidx))  # disjoint
        assert set(allidx) <= set(range(n))
        if not drop_last:
            assert len(allidx) == n - n % R


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), bs=st.integers(1, 12), R=st.integers(2, 4), seed=st.integers(0, 2**30))
def test_concatenated_rank_batches_equal_one_process(n, bs, R, seed):
    """Rank batches of step k, concatenated in rank order, are batch k of one process with batch
    size R * bs (where N is a multiple of R, so no padding is needed and the tails line up)."""
    n = n - n % R or R
    per_rank = _ranks(n, bs, R, seed=seed, run_length=bs)
    one = list(ContiguousBatchSampler(n, bs * R, run_length=bs, seed=seed))
    steps = len(per_rank[0])
    assert steps == len(one)
    for k in range(steps):
        cat = [i for r in range(R) for i in per_rank[r][k]]
        assert cat == one[k]


def test_one_replica_unchanged_and_epochs():
    a = list(ContiguousBatchSampler(100, 7, seed=3))
    b = list(ContiguousBatchSampler(100, 7, seed=3, num_replicas=1, rank=0))
    assert a == b
    s = ContiguousBatchSampler(100, 10, seed=3, num_replicas=2, rank=1)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and len(e0) == len(e1) == 5
    s.set_epoch(0)
    assert list(s) == e0
    assert s.per_rank == 50


def test_padding_repeats_the_start():
    order = [i for b in ContiguousBatchSampler(5, 2, shuffle=False, num_replicas=2, rank=0, seed=0) for i in b]
    other = [i for b in ContiguousBatchSampler(5, 2, shuffle=False, num_replicas=2, rank=1, seed=0) for i in b]
    # order 0..4 padded to 0,1,2,3,4,0; global batches of 4: [0,1 | 2,3], tail [4 | 0]
    assert order == [0, 1, 4] and other == [2, 3, 0]
    dropped = [list(ContiguousBatchSampler(5, 2, shuffle=False, num_replicas=2, rank=r, seed=0, pad=False))
               for r in range(2)]
    assert dropped == [[[0, 1]], [[2, 3]]]


def test_defaults_from_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        s = ContiguousBatchSampler(10, 2, seed=0)
        assert s.num_replicas == 1 and s.rank == 0
    finally:
        dist.destroy_process_group()


def test_bad_arguments():
    with pytest.raises(ValueError, match="seed is required when num_replicas > 1"):
        ContiguousBatchSampler(10, 2, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, num_replicas\)"):
        ContiguousBatchSampler(10, 2, num_replicas=2, rank=2, seed=0)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        ContiguousBatchSampler(10, 2, num_replicas=0, rank=0, seed=0)
    with pytest.raises(TypeError, match="rank must be an int"):
        ContiguousBatchSampler(10, 2, num_replicas=2, rank=0.5, seed=0)
    with pytest.raises(TypeError, match="num_replicas must be an int"):
        ContiguousBatchSampler(10, 2, num_replicas="2", rank=0, seed=0)
    assert np.array_equal([], [i for b in ContiguousBatchSampler(0, 2, num_replicas=3, rank=1, seed=0) for i in b])
