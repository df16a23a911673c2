"""Hugging Face ``datasets``: Parquet shards in the Hub's layout, and a ``datasets`` reader.

``DIR/data/train-XXXXX-of-YYYYY.parquet``, columns ``codes`` (``binary``: one row of
``latents.npy``, C order) and, with labels, ``label`` (``int64``); ``datasets.load_dataset(DIR)``
finds the ``train`` split there (the features ``Value("binary")`` and ``Value("int64")``).
:func:`load_hf` opens it and sets a transform that turns ``codes`` into packed uint8 tensors
``(n, *row_shape)`` (the shape from ``bldm_fast_export.json``). Writing needs pyarrow (which
``datasets`` depends on); reading needs ``datasets``.
"""

from __future__ import annotations

import os

import numpy as np

from .common import decode_row, read_export_meta

__all__ = ["DATA_DIR", "PackedCodesTransform", "load_hf", "shard_name", "write_hf_shard"]

DATA_DIR = "data"


def shard_name(index: int, total: int) -> str:
    return os.path.join(DATA_DIR, f"train-{index:05d}-of-{total:05d}.parquet")


def write_hf_shard(path: str, rows: np.ndarray, labels: np.ndarray | None) -> dict:
    """One Parquet file of ``rows`` (uint8 ``(n, ...)``) and labels; returns ``{"file", "rows"}``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(rows)
    flat = np.ascontiguousarray(rows).reshape(n, -1)
    width = flat.shape[1]
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width, pa.int32())
    codes = pa.BinaryArray.from_buffers(pa.binary(), n, [None, offsets.buffers()[1], pa.py_buffer(flat.tobytes())])
    cols = {"codes": codes}
    if labels is not None:
        cols["label"] = pa.array(labels.astype(np.int64), pa.int64())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    pq.write_table(pa.table(cols), tmp)
    os.replace(tmp, path)
    return {"rows": n}


class PackedCodesTransform:
    """``datasets`` transform: a batch ``{"codes": [bytes], "label": [int]}`` ->
    ``{"codes": uint8 tensor (n, *row_shape), "label": long tensor (n,)}``."""

    def __init__(self, row_shape):
        self.row_shape = tuple(row_shape)

    def __call__(self, batch: dict) -> dict:
        import torch

        rows = [decode_row(b, self.row_shape) for b in batch["codes"]]
        out = {"codes": torch.from_numpy(np.stack(rows)) if rows else torch.zeros((0, *self.row_shape),
                                                                                  dtype=torch.uint8)}
        if "label" in batch:
            out["label"] = torch.tensor(batch["label"], dtype=torch.long)
        return out


def load_hf(root, *, decode: bool = True, cache_dir=None):
    """The ``train`` split of an ``hf`` export as a ``datasets.Dataset``; with ``decode`` its rows
    read as packed uint8 tensors (:class:`PackedCodesTransform`), else as stored (bytes).
    ``cache_dir``: where ``datasets`` keeps its Arrow cache (default: its own).

    Raises:
        ValueError: not an ``hf`` export. ImportError: ``datasets`` is not installed.
    """
    meta = read_export_meta(root, "hf")
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"reading an hf export needs datasets: pip install 'bldm_fast[formats]' ({exc})") from None
    files = [os.path.join(os.fspath(root), s["file"]) for s in meta["shards"]]
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=cache_dir)
    if decode:
        ds.set_transform(PackedCodesTransform(meta["row_shape"]))
    return ds
