"""Reading packed-latent datasets: PackedLatentDataset, ContiguousBatchSampler, DataLoader workers,
and feeding packed batches straight into bf.bernoulli_noise."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data._utils.collate import default_collate

import bldm_fast as bf
from bldm_fast.data import ContiguousBatchSampler, PackedLatentDataset, PackedLatentWriter, read_meta, verify

HW, C = (4, 4), 64
L = HW[0] * HW[1]


def _make(root, mode="deterministic", n=50, c=C, k=1, labels=True, chunk_rows=16, seed=0):
    """Write a dataset; returns (latents as written, labels or None)."""
    rng = np.random.default_rng(seed)
    if mode == "probs":
        lat = rng.integers(0, 256, (n, L, c), dtype=np.uint8)
    else:
        shape = (n, k, L, c) if mode == "bernoulli" else (n, L, c)
        lat = np.packbits(rng.integers(0, 2, shape, dtype=np.uint8), axis=-1, bitorder="little")
    lab = np.arange(n) * 10 + 3 if labels else None
    w = PackedLatentWriter(root, count=n, latent_hw=HW, channels=c, code_mode=mode, samples_per_image=k,
                           with_labels=labels, chunk_rows=chunk_rows)
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e], None if lab is None else lab[s:e])
    w.finalize()
    return lat, lab


# ---------------------------------------------------------------------------------------------
# items
# ---------------------------------------------------------------------------------------------


def test_items_deterministic_with_labels(tmp_path):
    lat, lab = _make(tmp_path)
    ds = PackedLatentDataset(tmp_path)
    assert len(ds) == 50 and ds.item_shape == (L, C // 8) and ds.return_labels
    for i in (0, 17, 49, -1):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and x.shape == (L, C // 8) and x.is_contiguous()
        assert np.array_equal(x.numpy(), lat[i]) and y == lab[i] and isinstance(y, int)
    x[:] = 0  # items own their memory (the memmap is read-only)
    assert np.array_equal(ds[-1][0].numpy(), lat[-1])
    ds2 = PackedLatentDataset(tmp_path, return_labels=False)
    assert torch.equal(ds2[3], torch.from_numpy(lat[3]))
    with pytest.raises(IndexError):
        ds[50]
    with pytest.raises(TypeError):
        ds[1.0]


def test_items_probs_and_decode(tmp_path):
    lat, _ = _make(tmp_path, "probs", c=12, labels=False)
    ds = PackedLatentDataset(tmp_path)
    assert ds[5].shape == (L, 12) and torch.equal(ds[5], torch.from_numpy(lat[5]))
    batch = default_collate([ds[i] for i in range(4)])
    assert torch.equal(ds.decode(batch), torch.from_numpy(lat[:4]).float() / 255)
    with pytest.raises(ValueError, match="applies to 'bernoulli' datasets only"):
        PackedLatentDataset(tmp_path, sample="random")
    with pytest.raises(ValueError, match="has no labels.npy"):
        PackedLatentDataset(tmp_path, return_labels=True)


def test_items_bernoulli_sample_modes(tmp_path):
    K = 3
    lat, lab = _make(tmp_path, "bernoulli", k=K)
    first = PackedLatentDataset(tmp_path, return_labels=False)
    assert first.item_shape == (L, 8) and torch.equal(first[7], torch.from_numpy(lat[7, 0]))
    every = PackedLatentDataset(tmp_path, sample="all")
    x, y = every[7]
    assert x.shape == (K, L, 8) and np.array_equal(x.numpy(), lat[7]) and y == lab[7]
    rand = PackedLatentDataset(tmp_path, sample="random", return_labels=False)

    def draws():
        out = []
        for _ in range(30):
            item = rand[7].numpy()
            out.append(next(k for k in range(K) if np.array_equal(item, lat[7, k])))
        return out

    torch.manual_seed(0)
    picks = draws()
    assert set(picks) == set(range(K))  # seeded: the same 30 draws every run
    torch.manual_seed(0)
    assert draws() == picks
    with pytest.raises(ValueError, match="sample must be one of"):
        PackedLatentDataset(tmp_path, sample="mean")


@pytest.mark.parametrize("mode,sample", [("deterministic", "first"), ("probs", "first"), ("bernoulli", "first"),
                                         ("bernoulli", "all"), ("bernoulli", "random")])
def test_getitems_equals_getitem(tmp_path, mode, sample):
    lat, lab = _make(tmp_path, mode, k=2 if mode == "bernoulli" else 1)
    ds = PackedLatentDataset(tmp_path, sample=sample)
    for idx in ([3, 4, 5, 6], [9], [40, 2, 2, 17, -1], list(range(50))):
        batch = ds.__getitems__(idx)
        assert len(batch) == len(idx)
        for i, (x, y) in zip(idx, batch):
            assert y == lab[i]
            if sample == "random":
                assert any(np.array_equal(x.numpy(), lat[i, k]) for k in range(2))
            else:
                assert torch.equal(x, ds[i][0])
    with pytest.raises(IndexError):
        ds.__getitems__([0, 50])


# ---------------------------------------------------------------------------------------------
# lazy memmaps, pickling, workers
# ---------------------------------------------------------------------------------------------


def test_opens_lazily_and_pickles_without_memmap(tmp_path):
    lat, _ = _make(tmp_path, n=300)
    ds = PackedLatentDataset(tmp_path)
    assert ds._latents is None  # nothing opened by the constructor
    ds[0]
    assert isinstance(ds._latents, np.memmap) and ds._pid == os.getpid()
    blob = pickle.dumps(ds)
    assert len(blob) < 8192 < lat.nbytes  # the data does not travel
    clone = pickle.loads(blob)
    assert clone._latents is None and clone._labels is None and clone._pid is None
    assert torch.equal(clone[299][0], torch.from_numpy(lat[299]))
    assert ds._latents is not None  # pickling did not close the original


def _collate_with_pid(batch):
    info = get_worker_info()
    return default_collate(batch), os.getpid(), info.dataset._pid, info.id


def test_dataloader_two_workers_each_open_their_own_memmap(tmp_path):
    n = 200
    lat, lab = _make(tmp_path, n=n)
    ds = PackedLatentDataset(tmp_path)
    ds[0]  # the parent has a memmap open: forked workers must not use it
    sampler = ContiguousBatchSampler(ds, 16, seed=3)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, collate_fn=_collate_with_pid, timeout=120)
    seen, pids = [], {}
    for (x, y), pid, opened_by, wid in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (L, 8)
        assert opened_by == pid != os.getpid()
        pids.setdefault(wid, pid)
        for row, label in zip(x.numpy(), y.tolist()):
            i = (label - 3) // 10
            assert np.array_equal(row, lat[i])
            seen.append(i)
    assert sorted(seen) == list(range(n))  # every row exactly once
    assert len(set(pids.values())) == 2


# ---------------------------------------------------------------------------------------------
# training input straight from packed batches
# ---------------------------------------------------------------------------------------------


def test_bernoulli_noise_straight_from_packed_batches(tmp_path):
    lat, lab = _make(tmp_path, n=64)
    ds = PackedLatentDataset(tmp_path)
    sched = bf.BernoulliSchedule(32, "cos")
    loader = DataLoader(ds, batch_sampler=ContiguousBatchSampler(ds, 16, seed=1))
    for b, (x0, y) in enumerate(loader):
        # the batch stays packed: uint8 (B, L, C/8), 1/32 of a float32 x0, and goes to the kernel as is
        assert x0.dtype == torch.uint8 and x0.shape == (16, L, C // 8) and x0.nbytes * 32 == 16 * L * C * 4
        idx = torch.as_tensor((y.numpy() - 3) // 10)
        t = torch.randint(1, 33, (16,), generator=torch.Generator().manual_seed(b))
        xt, model_in, flip = bf.bernoulli_noise(x0, t, sched, C, seed=7, offset=b * 2**20,
                                                out_dtype=torch.float32, return_flip=True)
        ref = torch.from_numpy(lat)[idx]
        xt2, _, _ = bf.bernoulli_noise(ref, t, sched, C, seed=7, offset=b * 2**20, out_dtype=torch.float32,
                                       return_flip=True)
        assert torch.equal(xt, xt2)
        assert torch.equal(model_in, bf.unpack_bits(xt, C, torch.float32))
        assert torch.equal(flip, x0 ^ xt)
        assert torch.equal(ds.decode(x0), bf.unpack_bits(ref, C, torch.float32))


# ---------------------------------------------------------------------------------------------
# ContiguousBatchSampler
# ---------------------------------------------------------------------------------------------


def _segments(batch: list[int]) -> int:
    return 1 + sum(1 for a, b in zip(batch, batch[1:]) if b != a + 1)


@given(n=st.integers(0, 300), bs=st.integers(1, 40), run=st.one_of(st.none(), st.integers(1, 50)),
       shuffle=st.booleans(), drop_last=st.booleans(), seed=st.integers(0, 2**40))
def test_sampler_covers_every_index_once(n, bs, run, shuffle, drop_last, seed):
    s = ContiguousBatchSampler(n, bs, run_length=run, shuffle=shuffle, drop_last=drop_last, seed=seed)
    batches = list(s)
    assert len(batches) == len(s)
    assert all(len(b) == bs for b in batches[:-1])
    flat = [i for b in batches for i in b]
    if drop_last:
        assert all(len(b) == bs for b in batches) and len(flat) == n - n % bs
        assert len(set(flat)) == len(flat) and set(flat) <= set(range(n))
    else:
        assert sorted(flat) == list(range(n))
    r = bs if run is None else run
    for b in batches:  # a batch spans at most the runs it can touch (+1 misaligned, +1 the short last run)
        assert _segments(b) <= -(-len(b) // r) + 2
    if not shuffle:
        assert flat == list(range(len(flat)))
    assert list(ContiguousBatchSampler(n, bs, run_length=run, shuffle=shuffle, drop_last=drop_last,
                                       seed=seed)) == batches


def test_sampler_epochs_seeds_and_global_rng():
    s = ContiguousBatchSampler(range(1000), 10, seed=5)
    e0 = list(s)
    assert all(_segments(b) == 1 for b in e0)  # run_length == batch_size: one slice per batch
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1 and sorted(map(tuple, e0)) == sorted(map(tuple, e1))
    s.set_epoch(0)
    assert list(s) == e0
    g = ContiguousBatchSampler(1000, 10)  # no seed: torch's global RNG, like RandomSampler
    torch.manual_seed(11)
    a = list(g)
    torch.manual_seed(11)
    assert list(g) == a
    assert list(g) != a
    mixed = list(ContiguousBatchSampler(1000, 16, run_length=4, seed=0))
    assert max(_segments(b) for b in mixed) > 1
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ContiguousBatchSampler(10, 0)
    with pytest.raises(TypeError, match="run_length must be an int"):
        ContiguousBatchSampler(10, 2, run_length=1.5)


# ---------------------------------------------------------------------------------------------
# damaged and unfinished datasets
# ---------------------------------------------------------------------------------------------


def test_unfinished_or_damaged_dataset_is_refused(tmp_path):
    w = PackedLatentWriter(tmp_path / "unfinished", count=8, latent_hw=HW, channels=C, code_mode="deterministic",
                           chunk_rows=4)
    w.write_chunk(0, np.zeros((4, L, 8), np.uint8))
    with pytest.raises(ValueError, match="meta.json: missing .*unfinished"):
        PackedLatentDataset(tmp_path / "unfinished")

    _make(tmp_path / "ok")
    path = tmp_path / "ok" / "latents.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match="latents.npy: .* bytes, expected .*truncated"):
        PackedLatentDataset(tmp_path / "ok")  # sizes are always checked
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x80
    path.write_bytes(bytes(flipped))
    PackedLatentDataset(tmp_path / "ok")  # same size: only the checksum sees it
    with pytest.raises(ValueError, match="latents.npy: sha256 .* does not match"):
        PackedLatentDataset(tmp_path / "ok", verify=True)
    path.write_bytes(data)
    assert PackedLatentDataset(tmp_path / "ok", verify=True).meta == read_meta(tmp_path / "ok") == verify(
        tmp_path / "ok")
