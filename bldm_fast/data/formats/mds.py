"""MosaicML streaming's MDS format, written and read with numpy and the standard library.

Layout (``streaming.base.format.mds``, format version 2): ``index.json`` =
``{"version": 2, "shards": [...]}`` (sorted keys), one entry per ``shard.XXXXX.mds`` with
``samples``, ``raw_data`` (``basename``, ``bytes``, ``hashes``), ``zip_data`` (None: no
compression) and the writer config (``version``, ``format`` "mds", ``compression``, ``hashes``,
``size_limit``, ``column_names`` sorted, ``column_encodings``, ``column_sizes``). A shard is
``uint32 n``, ``uint32 offsets[n + 1]`` (absolute byte offsets of the samples), the config JSON
(sorted keys), then the samples; a sample is ``uint32`` sizes of its variable-size columns, then
the columns' bytes in column order. Columns here: ``codes`` (``bytes``: the row) and, with
labels, ``label`` (``int``: little-endian int64). ``streaming.StreamingDataset(local=DIR)``
reads it and returns ``{"codes": bytes, "label": int}``; :func:`read_mds` returns packed uint8.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .common import decode_row, read_export_meta

__all__ = ["INDEX", "read_mds", "size_limit", "write_mds_index", "write_mds_shard"]

INDEX = "index.json"


def _columns(with_labels: bool) -> dict:
    names = ["codes", "label"] if with_labels else ["codes"]
    enc = {"codes": "bytes", "label": "int"}
    size = {"codes": None, "label": 8}
    return {"column_names": names, "column_encodings": [enc[n] for n in names],
            "column_sizes": [size[n] for n in names]}


def _config(with_labels: bool, size_limit: int) -> dict:
    return {"version": 2, "format": "mds", "compression": None, "hashes": [], "size_limit": size_limit,
            **_columns(with_labels)}


def size_limit(shard_size: int, row_bytes: int, with_labels: bool) -> int:
    """The writer's ``size_limit`` that makes MDSWriter cut shards of ``shard_size`` samples
    (it counts 4 bytes per sample beyond the sample's own)."""
    return min(shard_size * (4 + 4 + row_bytes + (8 if with_labels else 0)), 2**32 - 1)


def write_mds_shard(folder: str, index: int, rows: np.ndarray, labels: np.ndarray | None, limit: int) -> dict:
    """Write ``shard.<index:05>.mds`` of ``rows`` (uint8 ``(n, ...)``) and labels (``limit``: the
    config's ``size_limit``); returns its index entry."""
    n = len(rows)
    row_bytes = int(np.prod(rows.shape[1:]))
    config = _config(labels is not None, limit)
    cfg = json.dumps(config, sort_keys=True).encode("utf-8")
    sample = 4 + row_bytes + (8 if labels is not None else 0)
    body = np.empty((n, sample), np.uint8)
    body[:, :4] = np.frombuffer(np.uint32(row_bytes).tobytes(), np.uint8)
    body[:, 4:4 + row_bytes] = rows.reshape(n, row_bytes)
    if labels is not None:
        body[:, 4 + row_bytes:] = np.ascontiguousarray(labels, dtype="<i8").view(np.uint8).reshape(n, 8)
    head = 4 + 4 * (n + 1) + len(cfg)
    if head + n * sample >= 2**32:
        raise ValueError(f"an MDS shard of {n} rows would pass 4 GiB; use a smaller --shard-size")
    offsets = (head + sample * np.arange(n + 1, dtype=np.int64)).astype("<u4")
    basename = f"shard.{index:05}.mds"
    path = os.path.join(folder, basename)
    with open(path, "wb") as f:
        f.write(np.uint32(n).astype("<u4").tobytes())
        f.write(offsets.tobytes())
        f.write(cfg)
        f.write(body.tobytes())
    return {"samples": n, "raw_data": {"basename": basename, "bytes": os.path.getsize(path), "hashes": {}},
            "zip_data": None, **config}


def write_mds_index(folder: str, shards: list[dict]) -> None:
    """``index.json`` of the shards (written last, renamed into place)."""
    tmp = os.path.join(folder, f"{INDEX}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump({"version": 2, "shards": shards}, f, sort_keys=True)
    os.replace(tmp, os.path.join(folder, INDEX))


def read_mds(root):
    """Yield ``(codes, label)`` of every sample: uint8 ``row_shape`` numpy arrays and int labels
    (None without labels), in order.

    Raises:
        ValueError: not an MDS export, a shard that does not match its index entry.
    """
    meta = read_export_meta(root, "mds")
    shape = meta["row_shape"]
    with open(os.path.join(root, INDEX)) as f:
        index = json.load(f)
    for entry in index["shards"]:
        names = entry["column_names"]
        path = os.path.join(root, entry["raw_data"]["basename"])
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != entry["raw_data"]["bytes"]:
            raise ValueError(f"{path}: {len(data)} bytes, index.json says {entry['raw_data']['bytes']}")
        n = int(np.frombuffer(data[:4], "<u4")[0])
        if n != entry["samples"]:
            raise ValueError(f"{path}: {n} samples, index.json says {entry['samples']}")
        offsets = np.frombuffer(data[4:4 + 4 * (n + 1)], "<u4")
        for i in range(n):
            s = data[offsets[i]:offsets[i + 1]]
            size = int(np.frombuffer(s[:4], "<u4")[0])
            codes = decode_row(s[4:4 + size], shape)
            label = int(np.frombuffer(s[4 + size:12 + size], "<i8")[0]) if "label" in names else None
            yield codes, label
