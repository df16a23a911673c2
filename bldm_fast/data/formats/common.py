"""What every export format shares: the sidecar ``bldm_fast_export.json``, shard ranges, row decoding."""

from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["EXPORT_META", "FORMATS", "decode_row", "export_meta", "read_export_meta", "shard_ranges", "write_json"]

FORMATS = ("hf", "webdataset", "mds")
EXPORT_META = "bldm_fast_export.json"
FORMAT_TAG = "bldm_fast.export"
VERSION = 1


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of ``ceil(count / shard_size)`` shards (one empty shard for ``count = 0``)."""
    if count == 0:
        return [(0, 0)]
    return [(a, min(a + shard_size, count)) for a in range(0, count, shard_size)]


def export_meta(ds, kind: str, shards: list[dict]) -> dict:
    """The sidecar of an export of ``ds`` (a ``PackedLatentDataset``)."""
    src = ds.meta if len(ds.roots) == 1 else {k: v for k, v in ds.meta.items() if k != "parts"}
    return {"format": FORMAT_TAG, "version": VERSION, "kind": kind, "count": ds.count,
            "row_shape": list(ds.row_shape), "dtype": "uint8", "code_mode": ds.code_mode, "channels": ds.channels,
            "latent_hw": list(ds.latent_hw), "samples_per_image": ds.samples_per_image,
            "with_labels": ds.has_labels, "source": {"roots": ds.roots, "meta": src}, "shards": shards}


def write_json(path: str, obj) -> None:
    """``obj`` as JSON, written beside ``path`` and renamed into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_export_meta(root, kind: str | None = None) -> dict:
    """The sidecar of an export folder, checked.

    Raises:
        ValueError: no sidecar (not an export, or an unfinished one), another format or ``kind``.
    """
    path = os.path.join(os.fspath(root), EXPORT_META)
    if not os.path.isfile(path):
        raise ValueError(f"{root}: no {EXPORT_META}; not a bldm-fast export (or an unfinished one)")
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT_TAG or meta.get("version") != VERSION:
        raise ValueError(f"{path}: not a bldm-fast export of version {VERSION}")
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{root} holds a {meta['kind']!r} export, not {kind!r}")
    return meta


def decode_row(data: bytes, row_shape) -> np.ndarray:
    """One stored row: uint8 ``row_shape`` (a copy that owns its memory).

    Raises:
        ValueError: ``data`` has another length than ``prod(row_shape)``.
    """
    n = int(np.prod(row_shape))
    if len(data) != n:
        raise ValueError(f"a stored row holds {len(data)} bytes, expected {n} for shape {tuple(row_shape)}")
    return np.frombuffer(data, np.uint8).reshape(row_shape).copy()
