"""WebDataset tar shards: ``shard-XXXXXX.tar`` holding per sample ``<key>.codes.npy`` (one row of
``latents.npy`` as a ``.npy`` file, uint8) and, with labels, ``<key>.cls`` (the label in ASCII
decimal, WebDataset's class-label convention); ``<key>`` is the 9-digit row index. Members are
written in row order with fixed metadata (mtime 0, uid/gid 0, mode 0644), so the bytes depend on
the data only.

Readers: :func:`wds_dataset` (``webdataset.WebDataset(...).decode(decode_codes)``, yielding
``(codes uint8 tensor, label)``), or :func:`read_webdataset` with the standard library only.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np

from .common import read_export_meta

__all__ = ["CODES_EXT", "LABEL_EXT", "decode_codes", "read_webdataset", "shard_name", "wds_dataset",
           "write_wds_shard"]

CODES_EXT = "codes.npy"
LABEL_EXT = "cls"


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _npy_bytes(row: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(row), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_wds_shard(path: str, start: int, rows: np.ndarray, labels: np.ndarray | None) -> dict:
    """One tar shard of ``rows`` (uint8 ``(n, ...)``, row ``start`` first) and labels; returns ``{"rows"}``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(len(rows)):
            key = f"{start + i:09d}"
            _add(tar, f"{key}.{CODES_EXT}", _npy_bytes(rows[i]))
            if labels is not None:
                _add(tar, f"{key}.{LABEL_EXT}", str(int(labels[i])).encode())
    os.replace(tmp, path)
    return {"rows": len(rows)}


def decode_codes(key: str, data: bytes):
    """WebDataset decoder handler (``WebDataset(...).decode(decode_codes)``): the ``codes.npy``
    member -> uint8 tensor of the row shape; anything else -> None (left to WebDataset's own
    handlers, which read ``cls`` as int).

    Raises:
        ValueError: ``codes.npy`` is not a uint8 array.
    """
    if not key.endswith("." + CODES_EXT) and key != CODES_EXT:
        return None
    import torch

    arr = np.load(io.BytesIO(data), allow_pickle=False)
    if arr.dtype != np.uint8:
        raise ValueError(f"codes.npy holds {arr.dtype}, expected uint8")
    return torch.from_numpy(arr)


def wds_dataset(root, **kwargs):
    """A ``webdataset.WebDataset`` over the shards of a ``webdataset`` export, in order, yielding
    ``(codes, label)`` (``label`` only when the export has labels); ``kwargs`` go to ``WebDataset``
    (default ``shardshuffle=False``).

    Raises:
        ValueError: not a ``webdataset`` export. ImportError: webdataset is not installed.
    """
    meta = read_export_meta(root, "webdataset")
    try:
        import webdataset as wds
    except ImportError as exc:
        raise ImportError(f"wds_dataset needs webdataset: pip install 'bldm_fast[formats]' ({exc})") from None
    urls = [os.path.join(os.fspath(root), s["file"]) for s in meta["shards"]]
    kwargs.setdefault("shardshuffle", False)
    keys = (CODES_EXT, LABEL_EXT) if meta["with_labels"] else (CODES_EXT,)
    return wds.WebDataset(urls, **kwargs).decode(decode_codes).to_tuple(*keys)


def read_webdataset(root):
    """Yield ``(codes, label)`` of every sample with the standard library: uint8 ``row_shape``
    numpy arrays and int labels (None without labels), in order.

    Raises:
        ValueError: not a ``webdataset`` export, a member of the wrong shape.
    """
    meta = read_export_meta(root, "webdataset")
    shape = tuple(meta["row_shape"])
    for s in meta["shards"]:
        with tarfile.open(os.path.join(os.fspath(root), s["file"]), "r") as tar:
            codes, key = None, None
            for m in tar:
                k, _, ext = m.name.partition(".")
                data = tar.extractfile(m).read()
                if ext == CODES_EXT:
                    if codes is not None and not meta["with_labels"]:
                        yield codes, None
                    codes, key = np.load(io.BytesIO(data), allow_pickle=False), k
                    if codes.shape != shape or codes.dtype != np.uint8:
                        raise ValueError(f"{m.name}: {codes.dtype} {codes.shape}, expected uint8 {shape}")
                elif ext == LABEL_EXT:
                    if k != key:
                        raise ValueError(f"{m.name}: label without its codes")
                    yield codes, int(data)
                    codes = None
            if codes is not None:
                yield codes, None
