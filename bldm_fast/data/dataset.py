"""Reading packed-latent datasets: a map-style Dataset over the ``latents.npy`` memmap and a sampler
of contiguous index runs (DESIGN.md section 7; the format is in :mod:`bldm_fast.data.layout`)."""

from __future__ import annotations

import math
import os
from typing import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .layout import LABELS_FILE, LATENTS_FILE
from .meta import check_files, read_meta
from .meta import verify as verify_dataset

SAMPLE_MODES = ("first", "random", "all")

__all__ = ["ContiguousBatchSampler", "PackedLatentDataset", "SAMPLE_MODES", "read_meta", "verify"]


def verify(root) -> dict:
    """Verify a dataset: ``meta.json``, every file's header, size and sha256. Returns the meta.

    Raises:
        ValueError: naming the file that is missing, truncated or altered.
    """
    return verify_dataset(root)


class PackedLatentDataset(Dataset):
    """Map-style dataset over one or many packed-latent folders; opens the memmaps lazily in each process.

    Args:
        root: a dataset folder (``latents.npy``, optional ``labels.npy``, ``meta.json``); a list of
            them; or a folder whose (non-hidden) subfolders are datasets, taken in name order.
            Many folders read as one dataset, rows in order (folder 0's rows first): shards written
            by separate ``bldm-fast encode`` jobs, each its own folder. They must agree on code
            mode, channels, latent grid, samples per image and whether they have labels.
        verify: also check every file's sha256 against ``meta.json`` (reads all data once). Headers
            and sizes are always checked.
        sample: which of the ``K`` samples a ``"bernoulli"`` dataset returns: ``"first"`` (sample 0),
            ``"random"`` (one drawn with torch's global RNG, which DataLoader seeds per worker) or
            ``"all"`` (all ``K``). Other code modes accept only ``"first"``.
        return_labels: return ``(latents, label)`` pairs; default: when the dataset has labels.

    Attributes:
        root: the folder given (for a list, the folders' common parent); roots: the dataset
            folders, in row order; meta: ``meta.json`` of a single folder; for many, the first
            folder's with ``count`` the total and ``parts`` (each folder's ``root`` and ``meta``).

    Items (``dataset[i]``), all uint8 tensors that own their memory:
        ``(L, ceil(C/8))`` packed bits (deterministic; bernoulli with ``"first"``/``"random"``),
        ``(K, L, ceil(C/8))`` (bernoulli with ``"all"``), ``(L, C)`` ``round(p * 255)`` (probs);
        with labels, a pair ``(latents, int label)``. ``default_collate`` stacks them into
        ``(B, ...)`` batches, which feed :func:`bldm_fast.bernoulli_noise` directly (packed; no float
        copy on the host) or :meth:`decode` / :func:`bldm_fast.unpack_bits`.

    ``__getitems__`` (used by DataLoader with automatic batching) reads a batch with one memmap
    slice per folder when its indices are contiguous (see :class:`ContiguousBatchSampler`).

    The dataset pickles without its memmaps (DataLoader workers with the spawn start method get
    none) and a process that did not open the memmaps itself (a forked worker) opens its own.

    Raises:
        ValueError: ``meta.json`` missing (unfinished dataset) or invalid, a data file missing,
            truncated or altered (naming it), folders that disagree (naming the folder and the
            setting), an empty list, ``sample`` invalid for the code mode, labels requested from a
            dataset without labels.
    """

    _SAME = ("code_mode", "channels", "latent_hw", "samples_per_image", "with_labels")

    def __init__(self, root, *, verify: bool = False, sample: str = "first", return_labels: bool | None = None):
        roots = _dataset_folders(root)
        self.roots = roots
        self.root = roots[0] if len(roots) == 1 and not isinstance(root, (list, tuple)) \
            else (os.path.abspath(os.fspath(root)) if not isinstance(root, (list, tuple))
                  else os.path.commonpath(roots))
        metas = [verify_dataset(r) if verify else check_files(r) for r in roots]
        m = metas[0]
        for r, other in zip(roots[1:], metas[1:]):
            for key in self._SAME:
                if other[key] != m[key]:
                    raise ValueError(f"{r}: {key} = {other[key]!r} differs from {roots[0]}'s {m[key]!r}; the folders "
                                     "of one dataset must agree")
        counts = [int(x["count"]) for x in metas]
        self.meta = m if len(roots) == 1 else {**m, "count": sum(counts),
                                                "parts": [{"root": r, "meta": x} for r, x in zip(roots, metas)]}
        self.count = sum(counts)
        self._starts = np.cumsum([0] + counts)
        self.code_mode = m["code_mode"]
        self.channels = int(m["channels"])
        self.latent_hw = tuple(m["latent_hw"])
        self.tokens = self.latent_hw[0] * self.latent_hw[1]
        self.samples_per_image = int(m["samples_per_image"])
        self.has_labels = bool(m["with_labels"])
        self._row_shape = tuple(m["files"][LATENTS_FILE]["shape"][1:])
        if sample not in SAMPLE_MODES:
            raise ValueError(f"sample must be one of {SAMPLE_MODES}, got {sample!r}")
        if sample != "first" and self.code_mode != "bernoulli":
            raise ValueError(f"sample={sample!r} applies to 'bernoulli' datasets only; this one is {self.code_mode!r}")
        self.sample = sample
        if return_labels is None:
            return_labels = self.has_labels
        if return_labels and not self.has_labels:
            raise ValueError(f"return_labels=True, but {self.root} has no {LABELS_FILE}")
        self.return_labels = bool(return_labels)
        self._parts: list | None = None  # per folder (latents, labels) memmaps
        self._pid: int | None = None  # the process that opened the memmaps

    # -- shapes -------------------------------------------------------------------------------

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one row of ``latents.npy`` (all ``K`` samples of a bernoulli dataset)."""
        return self._row_shape

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one item's latents (see the class docstring)."""
        shape = self._row_shape
        if self.code_mode == "bernoulli" and self.sample != "all":
            shape = shape[1:]
        return shape

    def __len__(self) -> int:
        return self.count

    # -- lazy memmaps -------------------------------------------------------------------------

    def _arrays(self, part: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        pid = os.getpid()
        if self._parts is None or self._pid != pid:
            self._parts = [None] * len(self.roots)
            self._pid = pid
        if self._parts[part] is None:
            r = self.roots[part]
            lat = np.load(os.path.join(r, LATENTS_FILE), mmap_mode="r")
            lab = np.load(os.path.join(r, LABELS_FILE), mmap_mode="r") if self.return_labels else None
            self._parts[part] = (lat, lab)
        return self._parts[part]

    @property
    def _latents(self) -> np.ndarray | None:
        """The first folder's latents memmap once this process opened it, else None."""
        return None if self._parts is None or self._parts[0] is None else self._parts[0][0]

    @property
    def _labels(self) -> np.ndarray | None:
        return None if self._parts is None or self._parts[0] is None else self._parts[0][1]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_parts"] = state["_pid"] = None
        return state

    def read_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``start..stop-1`` as stored (every ``K`` sample), across folders: uint8
        ``(n, *row_shape)`` and int64 labels ``(n,)`` (None without labels), both owning their memory.

        Raises:
            ValueError: ``0 <= start <= stop <= len(self)`` does not hold.
        """
        if not 0 <= start <= stop <= self.count:
            raise ValueError(f"rows {start}..{stop} outside 0..{self.count}")
        lats, labs = [], []
        for p in range(len(self.roots)):
            a, b = max(start, int(self._starts[p])), min(stop, int(self._starts[p + 1]))
            if a < b:
                lat, _ = self._arrays(p)
                o = int(self._starts[p])
                lats.append(np.array(lat[a - o:b - o]))
                if self.has_labels:
                    labs.append(np.load(os.path.join(self.roots[p], LABELS_FILE), mmap_mode="r")[a - o:b - o])
        lat = np.concatenate(lats) if lats else np.zeros((0, *self._row_shape), np.uint8)
        lab = None
        if self.has_labels:
            lab = np.concatenate(labs).astype(np.int64) if labs else np.zeros((0,), np.int64)
        return lat, lab

    # -- reading ------------------------------------------------------------------------------

    def _index(self, i) -> int:
        if isinstance(i, torch.Tensor):
            i = i.item()
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        i = int(i)
        if not -self.count <= i < self.count:
            raise IndexError(f"index {i} out of range for a dataset of {self.count}")
        return i % self.count

    def _locate(self, i: int) -> tuple[int, int]:
        p = int(np.searchsorted(self._starts, i, side="right")) - 1
        return p, i - int(self._starts[p])

    def __getitem__(self, i):
        p, i = self._locate(self._index(i))
        lat, lab = self._arrays(p)
        if self.code_mode == "bernoulli" and self.sample != "all":
            k = 0 if self.sample == "first" else int(torch.randint(self.samples_per_image, ()).item())
            row = lat[i, k]
        else:
            row = lat[i]
        x = torch.from_numpy(np.array(row))
        return (x, int(lab[i])) if self.return_labels else x

    def __getitems__(self, indices) -> list:
        """A batch of items (as ``[self[i] for i in indices]``), read with one slice per folder when contiguous."""
        if isinstance(indices, torch.Tensor):
            indices = indices.numpy()
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            if idx.size == 0 and idx.ndim == 1:
                idx = idx.astype(np.int64)
            else:
                raise TypeError(f"indices must be a 1-D sequence of ints, got {idx.dtype} of shape {idx.shape}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < -self.count or idx.max() >= self.count):
            raise IndexError(f"indices out of range for a dataset of {self.count}")
        if idx.size and idx.min() < 0:
            idx = np.where(idx < 0, idx + self.count, idx)
        if len(self.roots) == 1:
            return self._part_items(0, idx)
        parts = np.searchsorted(self._starts, idx, side="right") - 1
        out: list = [None] * idx.size
        for p in np.unique(parts):
            where = np.nonzero(parts == p)[0]
            for j, item in zip(where, self._part_items(int(p), idx[where] - self._starts[p])):
                out[j] = item
        return out

    def _part_items(self, part: int, idx: np.ndarray) -> list:
        lat, lab = self._arrays(part)
        n = idx.size
        contiguous = n > 0 and idx[-1] - idx[0] == n - 1 and (n == 1 or bool((np.diff(idx) == 1).all()))
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        if self.code_mode == "bernoulli" and self.sample == "first":
            block = lat[rows, 0]
        elif self.code_mode == "bernoulli" and self.sample == "random":
            ks = torch.randint(self.samples_per_image, (n,)).numpy()
            block = lat[idx, ks]
        else:
            block = lat[rows]
        x = torch.from_numpy(np.array(block))  # one copy out of the page cache
        items = list(x.unbind(0))
        if self.return_labels:
            labels = np.array(lab[rows]).tolist()
            return list(zip(items, labels))
        return items

    def decode(self, batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Batch of items -> model input in ``dtype``: unpacked bits ``(..., C)`` (0/1) for packed
        modes (:func:`bldm_fast.unpack_bits`), ``p = x / 255`` for probs."""
        if self.code_mode == "probs":
            return batch.to(dtype) / 255
        from ..ops import unpack_bits

        return unpack_bits(batch, self.channels, dtype)

    def __repr__(self) -> str:
        h, w = self.latent_hw
        where = repr(self.root) if len(self.roots) == 1 else f"{self.root!r} ({len(self.roots)} folders)"
        return (f"PackedLatentDataset({where}, count={self.count}, latent={h}x{w}x{self.channels}, "
                f"code_mode={self.code_mode!r}, item_shape={self.item_shape}, labels={self.return_labels})")


def _is_dataset_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "meta.json")) or os.path.isfile(os.path.join(path, LATENTS_FILE))


def _dataset_folders(root) -> list[str]:
    """The dataset folders ``root`` names (see :class:`PackedLatentDataset`), absolute paths."""
    if isinstance(root, (list, tuple)):
        if not root:
            raise ValueError("root is an empty list; give at least one dataset folder")
        return [os.path.abspath(os.fspath(r)) for r in root]
    path = os.path.abspath(os.fspath(root))
    if os.path.isdir(path) and not _is_dataset_folder(path):
        subs = sorted(os.path.join(path, n) for n in os.listdir(path) if not n.startswith("."))
        subs = [s for s in subs if os.path.isdir(s) and _is_dataset_folder(s)]
        if subs:
            return subs
    return [path]


class ContiguousBatchSampler(Sampler[list[int]]):
    """Batches made of contiguous index runs, the run order shuffled each epoch, split across ranks.

    ``[0, N)`` is cut into runs of ``run_length`` consecutive indices (the last may be shorter);
    each epoch visits the runs in a random order (or in order with ``shuffle=False``). With
    ``run_length == batch_size`` (the default) most batches are one contiguous slice: one memmap
    read, sequential on disk.

    Ranks (``torch.distributed``, like ``DistributedSampler``): the epoch's order is first made a
    multiple of ``num_replicas`` long, by repeating its first indices (``pad=True``, the default)
    or dropping its last ones (``pad=False``); ``n = ceil(N / R)`` or ``floor(N / R)`` indices per
    rank. It is then cut into *global* batches of ``R * batch_size`` indices and rank ``r`` takes
    the ``r``-th ``batch_size`` slice of each; the last, shorter global batch is split into ``R``
    equal slices. So the ranks get disjoint index sets (apart from the padding) that together cover
    the epoch, every rank gets exactly ``n`` indices and the same number of batches of the same
    sizes, and the ranks' batches of one step, concatenated in rank order, are the batch a single
    process with ``batch_size * R`` gets. ``drop_last`` drops a rank's last batch when it is shorter
    than ``batch_size`` (on every rank alike).

    Args:
        data_source: the dataset (anything with ``len``) or its length ``N``.
        batch_size: indices per batch (per rank), ``>= 1``.
        run_length: indices per contiguous run, ``>= 1`` (default ``batch_size``); smaller runs mix
            more images from different parts of the dataset into a batch.
        shuffle: shuffle the run order.
        drop_last: drop the last batch if it is smaller than ``batch_size``.
        seed: the order of epoch ``e`` is a function of ``(seed, e)`` (see :meth:`set_epoch`);
            default: a fresh seed from torch's global RNG each epoch (like ``RandomSampler``; only
            with one replica, since every rank must compute the same order).
        num_replicas: number of ranks ``R``; default: the world size of the initialised default
            process group, else 1.
        rank: this process's rank in ``[0, R)``; default: its rank in the process group, else 0.
        pad: make the order a multiple of ``R`` long by repeating its first indices (True) or by
            dropping the tail (False). No effect with one replica.

    Yields:
        lists of int indices (use as ``DataLoader(dataset, batch_sampler=...)``).

    Raises:
        TypeError: a size, ``num_replicas`` or ``rank`` that is not an int. ValueError: sizes
            ``< 1``, ``rank`` outside ``[0, num_replicas)``, no ``seed`` with ``num_replicas > 1``.
    """

    def __init__(self, data_source: Sized | int, batch_size: int, *, run_length: int | None = None,
                 shuffle: bool = True, drop_last: bool = False, seed: int | None = None,
                 num_replicas: int | None = None, rank: int | None = None, pad: bool = True):
        n = data_source if isinstance(data_source, (int, np.integer)) and not isinstance(data_source, bool) \
            else len(data_source)
        self.num_samples = int(n)
        if self.num_samples < 0:
            raise ValueError(f"dataset length must be >= 0, got {n}")
        dist_on = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if dist_on else 1
        if rank is None:
            rank = torch.distributed.get_rank() if dist_on else 0
        for name, v in (("batch_size", batch_size), ("run_length", batch_size if run_length is None else run_length),
                        ("num_replicas", num_replicas)):
            _check_int(v, name)
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        _check_int(rank, "rank")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas) = [0, {num_replicas}), got {rank}")
        if num_replicas > 1 and seed is None:
            raise ValueError("seed is required when num_replicas > 1: every rank must compute the same order")
        self.batch_size = int(batch_size)
        self.run_length = int(batch_size if run_length is None else run_length)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.pad = bool(pad)
        self.epoch = 0

    @property
    def per_rank(self) -> int:
        """Indices this rank gets per epoch (before ``drop_last``): ``ceil(N / R)`` with ``pad``,
        else ``floor(N / R)``."""
        n, r = self.num_samples, self.num_replicas
        return -(-n // r) if self.pad else n // r

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` (used when ``seed`` is given)."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        n, r = self.num_samples, self.run_length
        runs = -(-n // r)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        if self.seed is None:
            g = torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        else:
            g = torch.Generator().manual_seed((int(self.seed) * 1_000_003 + self.epoch) % (2**63))
        perm = torch.randperm(runs, generator=g).numpy()
        starts = perm * r
        lengths = np.minimum(starts + r, n) - starts
        # concatenation of arange(start, start + length) over the permuted runs
        out = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        out += np.arange(n, dtype=np.int64)
        return out

    def _rank_order(self) -> np.ndarray:
        """This rank's indices of the epoch, in batch order (see the class docstring)."""
        order = self._order()
        R = self.num_replicas
        if R == 1:
            return order
        per = self.per_rank
        total = per * R
        if total > order.size:  # pad by repeating the start (cyclically, for N < R)
            order = np.resize(order, total) if order.size else order
        order = order[:total]
        if order.size < total:  # N == 0
            return order[:0]
        bs = self.batch_size
        full = per // bs  # full global batches
        head = order[:full * bs * R].reshape(full, R, bs)[:, self.rank].reshape(-1)
        tail_len = per - full * bs
        tail = order[full * bs * R:].reshape(R, tail_len)[self.rank] if tail_len else order[:0]
        return np.concatenate((head, tail))

    def __iter__(self) -> Iterator[list[int]]:
        order = self._rank_order()
        bs = self.batch_size
        stop = len(self) * bs
        for s in range(0, min(stop, order.size), bs):
            yield order[s:s + bs].tolist()

    def __len__(self) -> int:
        n = self.per_rank
        if self.drop_last:
            return n // self.batch_size
        return math.ceil(n / self.batch_size)


def _check_int(v, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
