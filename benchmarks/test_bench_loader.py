"""pytest-benchmark: feeding training from a packed-latent dataset vs the same latents as float32.

One round is one epoch of ``N = 2048`` latents of 16x16x64 in batches of 64 (32 batches), each batch
delivered as float32 ``(64, 256, 64)`` 0/1 bits, the denoiser's input:

* ``packed[...]``: ``DataLoader`` over :class:`~bldm_fast.data.PackedLatentDataset` (uint8
  ``(64, 256, 8)`` batches, 2 KiB per image) + :func:`bldm_fast.unpack_bits` in the main process;
  ``contiguous`` uses :class:`~bldm_fast.data.ContiguousBatchSampler` (one memmap slice per
  batch), ``shuffled`` the usual ``shuffle=True`` (a gather of 64 random rows).
* ``float32_memmap[...]`` (baselines): the same bits stored as a float32 ``.npy`` memmap
  (64 KiB per image) read by a plain map-style dataset (``per_item``: ``DataLoader`` default
  ``__getitem__`` per image, as usual; ``batched``: one memmap slice per batch, the strongest
  float32 loader).

Groups: ``hot`` (both files in the page cache: the CPU cost of loading), ``cold`` (both files
evicted from the page cache with ``posix_fadvise(DONTNEED)`` before every epoch, untimed: a dataset
larger than RAM, where the float32 file moves 32x the bytes) and ``workers=2`` (two persistent
DataLoader workers). torch runs with one intra-op thread here (steady numbers on a shared machine;
the DataLoader itself is single-threaded per process).
Run: ``python -m pytest benchmarks/test_bench_loader.py --benchmark-only``.
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import bldm_fast as bf
from bldm_fast.data import ContiguousBatchSampler, PackedLatentDataset, PackedLatentWriter

N, HW, C, BATCH = 2048, (16, 16), 64, 64
L = HW[0] * HW[1]
GROUP = f"loader fp32 batches B{BATCH} {HW[0]}x{HW[1]}x{C} epoch of {N}"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _evict(*paths: str) -> None:
    """Drop the files' pages from the page cache (clean pages; no privileges needed)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class Float32Memmap(Dataset):
    """The baseline: float32 0/1 latents ``(N, L, C)`` in a ``.npy`` memmap, opened lazily."""

    def __init__(self, path: str, batched: bool):
        self.path = path
        self.n = int(np.load(path, mmap_mode="r").shape[0])
        self._mm = None
        if batched:
            self.__getitems__ = self._getitems

    def _arr(self):
        if self._mm is None:
            self._mm = np.load(self.path, mmap_mode="r")
        return self._mm

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self._arr()[i]))

    def _getitems(self, idx):
        idx = np.asarray(idx)
        contiguous = idx[-1] - idx[0] == len(idx) - 1 and bool((np.diff(idx) == 1).all())
        block = self._arr()[idx[0]:idx[-1] + 1] if contiguous else self._arr()[idx]
        return list(torch.from_numpy(np.array(block)).unbind(0))

    def __getstate__(self):
        return {**self.__dict__, "_mm": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    bits = np.random.default_rng(0).integers(0, 2, (N, L, C), dtype=np.uint8)
    w = PackedLatentWriter(root / "packed", count=N, latent_hw=HW, channels=C, code_mode="deterministic")
    packed = np.packbits(bits, axis=-1, bitorder="little")
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, packed[s:e])
    w.finalize()
    fpath = str(root / "latents_f32.npy")
    mm = np.lib.format.open_memmap(fpath, mode="w+", dtype=np.float32, shape=bits.shape)
    mm[:] = bits
    mm.flush()
    del mm
    return {"packed": str(root / "packed"), "float32": fpath, "bits": bits,
            "files": [str(root / "packed" / "latents.npy"), fpath]}


def _loader(data, impl: str, workers: int):
    kw = dict(num_workers=workers, persistent_workers=workers > 0)
    kind, order = impl.split(":")
    if kind == "packed":
        ds = PackedLatentDataset(data["packed"])
    else:
        ds = Float32Memmap(data["float32"], batched=kind == "float32_batched")
    if order == "contiguous":
        loader = DataLoader(ds, batch_sampler=ContiguousBatchSampler(ds, BATCH, seed=0), **kw)
    else:
        loader = DataLoader(ds, batch_size=BATCH, shuffle=True, **kw)
    if kind == "packed":
        def epoch(keep: bool = False):
            out = []
            for x in loader:
                batch = bf.unpack_bits(x, C, torch.float32)  # the float32 batch the model gets
                if keep:
                    out.append(batch)
            return out
    else:
        def epoch(keep: bool = False):
            out = []
            for batch in loader:
                if keep:
                    out.append(batch)
            return out
    return epoch  # timed with keep=False: each batch is dropped when the next arrives, as in training


IMPLS = [
    "packed:contiguous",
    "packed:shuffled",
    pytest.param("float32_batched:contiguous", marks=pytest.mark.baseline),
    pytest.param("float32_per_item:contiguous", marks=pytest.mark.baseline),
    pytest.param("float32_per_item:shuffled", marks=pytest.mark.baseline),
]


def _setup(benchmark, group: str, impl: str, workers: int) -> None:
    benchmark.group = group
    per_image = L * (C // 8) if impl.startswith("packed") else L * C * 4
    benchmark.extra_info.update(impl=impl, workers=workers, images=N, batches=N // BATCH,
                                stored_bytes_per_image=per_image)


@pytest.mark.parametrize("impl", IMPLS)
def test_loader_epoch(benchmark, data, impl):
    _setup(benchmark, GROUP + " hot", impl, 0)
    fn = _loader(data, impl, 0)
    out = fn(keep=True)
    assert len(out) == N // BATCH and all(b.dtype == torch.float32 and b.shape == (BATCH, L, C) for b in out)
    if impl.endswith("contiguous"):  # the same seed gives the same batches in every implementation
        order = [i for b in ContiguousBatchSampler(N, BATCH, seed=0) for i in b]
        assert torch.equal(torch.cat(out), torch.from_numpy(data["bits"][order]).float())
    benchmark(fn)


COLD_IMPLS = ["packed:contiguous", "packed:shuffled",
              pytest.param("float32_batched:contiguous", marks=pytest.mark.baseline),
              pytest.param("float32_per_item:shuffled", marks=pytest.mark.baseline)]


@pytest.mark.parametrize("impl", COLD_IMPLS)
def test_loader_epoch_cold(benchmark, data, impl):
    """Every epoch starts with both files out of the page cache (eviction not timed)."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("needs os.posix_fadvise")
    _setup(benchmark, GROUP + " cold", impl, 0)
    holder = {}

    def setup():  # a fresh loader over evicted files (a mapped page cannot be evicted)
        holder.clear()
        gc.collect()
        _evict(*data["files"])
        holder["epoch"] = _loader(data, impl, 0)

    benchmark.pedantic(lambda: holder["epoch"](), setup=setup, rounds=5)


@pytest.mark.parametrize("impl", ["packed:contiguous",
                                  pytest.param("float32_batched:contiguous", marks=pytest.mark.baseline),
                                  pytest.param("float32_per_item:shuffled", marks=pytest.mark.baseline)])
def test_loader_epoch_workers(benchmark, data, impl):
    """Two DataLoader workers (persistent): batches cross process boundaries in shared memory."""
    _setup(benchmark, GROUP + " workers=2", impl, 2)
    fn = _loader(data, impl, 2)
    assert len(fn(keep=True)) == N // BATCH
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)


def test_bytes_per_image(benchmark, tmp_path):
    """A 256 px image is a 16x16x64 code: 2 KiB packed (latents.npy minus its header), 64 KiB as float32."""
    n = 64
    w = PackedLatentWriter(tmp_path, count=n, latent_hw=(16, 16), channels=64, code_mode="deterministic")
    w.write_chunk(0, np.zeros((n, 256, 8), np.uint8))
    meta = w.finalize()
    header = np.load(tmp_path / "latents.npy", mmap_mode="r").offset
    per_image = (os.path.getsize(tmp_path / "latents.npy") - header) / n
    assert per_image == meta["bytes_per_image"] == 2048
    benchmark.group = "bytes per 256px image, C=64"
    benchmark.extra_info.update(bytes_per_image=per_image, float32_bytes_per_image=256 * 64 * 4)
    ds = PackedLatentDataset(tmp_path)
    idx = iter(np.random.default_rng(0).integers(0, n, 10**7).tolist())
    benchmark(lambda: ds[next(idx)])  # one random item: the per-image read
