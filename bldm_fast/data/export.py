"""``bldm-fast export DATASET --format hf|webdataset|mds --out DIR [--shard-size N]``.

Writes a packed-latent dataset (one folder, a list of folders or a folder of shard folders, as
:class:`~bldm_fast.data.PackedLatentDataset` opens them) in a format of :mod:`.formats`, shard
by shard with a progress bar, into ``DIR.tmp-<pid>`` beside ``DIR``, renamed to ``DIR`` when
complete (with ``bldm_fast_export.json`` written last), so a ``DIR`` that exists is whole. Every
row is stored as its raw bytes and every label as int64: the readers give the dataset back byte
for byte.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from .formats.common import EXPORT_META, FORMATS, export_meta, shard_ranges, write_json

__all__ = ["DEFAULT_SHARD_SIZE", "add_export_arguments", "export_dataset", "run_export"]

DEFAULT_SHARD_SIZE = 50_000  # rows: ~100 MiB shards at 2 KiB per 16x16x64 row


def export_dataset(dataset, out, format: str, *, shard_size: int = DEFAULT_SHARD_SIZE, verify: bool = True,
                   progress: bool = False) -> dict:
    """Export ``dataset`` to the new folder ``out``.

    Args:
        dataset: a dataset folder, a list of them or a folder of dataset folders (or an open
            ``PackedLatentDataset``).
        out: the export folder; must not exist or be empty.
        format: ``"hf"``, ``"webdataset"`` or ``"mds"``.
        shard_size: rows per shard, >= 1.
        verify: check every source file's sha256 first (``meta.json``).
        progress: a tqdm bar over the shards.

    Returns:
        the sidecar dict (``bldm_fast_export.json``): ``kind``, ``count``, ``row_shape``, ``shards``
        (``file``, ``rows``) and the source's settings, plus ``seconds``.

    Raises:
        ValueError: an unknown format, ``shard_size < 1``, ``out`` exists and is not empty, and every
            error of ``PackedLatentDataset`` (unfinished or corrupt source).
        TypeError: ``shard_size`` not an int.
    """
    from tqdm.auto import tqdm

    from .dataset import PackedLatentDataset

    t0 = time.perf_counter()
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if isinstance(shard_size, bool) or not isinstance(shard_size, int):
        raise TypeError(f"shard_size must be an int, got {type(shard_size).__name__}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new one")
    ds = dataset if isinstance(dataset, PackedLatentDataset) else PackedLatentDataset(dataset, verify=verify)
    if format == "hf":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"--format hf needs pyarrow: pip install 'bldm_fast[formats]' ({exc})") from None
    ranges = shard_ranges(ds.count, shard_size)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        shards = _write_shards(ds, tmp, format, ranges, shard_size, tqdm(ranges, desc=f"export {format}",
                                                                          unit="shard", disable=not progress))
        meta = export_meta(ds, format, shards)
        write_json(os.path.join(tmp, EXPORT_META), meta)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**meta, "seconds": time.perf_counter() - t0}


def _write_shards(ds, folder: str, format: str, ranges, shard_size: int, bar) -> list[dict]:
    shards = []
    if format == "hf":
        from .formats.hf import shard_name, write_hf_shard

        for i, (a, b) in enumerate(bar):
            rows, labels = ds.read_rows(a, b)
            name = shard_name(i, len(ranges))
            shards.append({"file": name, **write_hf_shard(os.path.join(folder, name), rows, labels)})
    elif format == "webdataset":
        from .formats.webdataset import shard_name, write_wds_shard

        for i, (a, b) in enumerate(bar):
            rows, labels = ds.read_rows(a, b)
            shards.append({"file": shard_name(i), **write_wds_shard(os.path.join(folder, shard_name(i)), a, rows,
                                                                    labels)})
    else:
        from .formats.mds import size_limit, write_mds_index, write_mds_shard

        row_bytes = 1
        for d in ds.row_shape:
            row_bytes *= d
        limit = size_limit(shard_size, row_bytes, ds.has_labels)
        entries = []
        for i, (a, b) in enumerate(bar):
            rows, labels = ds.read_rows(a, b)
            entries.append(write_mds_shard(folder, i, rows, labels, limit))
            shards.append({"file": entries[-1]["raw_data"]["basename"], "rows": b - a})
        write_mds_index(folder, entries)
    return shards


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast export`` (standard library only)."""
    p.add_argument("dataset", metavar="DATASET", nargs="+",
                   help="a dataset folder written by `bldm-fast encode`, several, or a folder of them (shards)")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="hf: Parquet for Hugging Face datasets; webdataset: tar shards; mds: MosaicML streaming")
    p.add_argument("--out", metavar="DIR", required=True, help="the new export folder")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help=f"rows per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the source files")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run_export(args: argparse.Namespace) -> int:
    src = args.dataset[0] if len(args.dataset) == 1 else args.dataset
    res = export_dataset(src, args.out, args.format, shard_size=args.shard_size, verify=not args.no_verify,
                         progress=not args.quiet)
    print(f"exported {res['count']} rows ({'x'.join(map(str, res['row_shape']))} uint8"
          f"{', labels' if res['with_labels'] else ''}) to {args.out} as {args.format}: "
          f"{len(res['shards'])} shard(s) in {res['seconds']:.1f} s")
    return 0
