"""``bldm-fast inspect DIR``: verify a packed-latent dataset and summarise it.

Checks ``meta.json`` (its fields against each other and against ``meta_fields_hash``), every file's
header, size and (unless ``--no-verify``) sha256 and the padding bits, then prints the count, shapes,
code mode, bytes per image and the bit balance (fraction of ones, overall and the extreme channels).
A missing, truncated or altered file gives an error that names it and exit code 1. ``--json PATH``
writes the summary as JSON (``-`` or no PATH: JSON on stdout, the report on stderr).

numpy only (no torch), so it is cheap to import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .layout import LABELS_FILE, LATENTS_FILE
from .meta import META_HASH_KEY, check_files, verify

_BLOCK_BYTES = 4 << 20


def _bit_balance(lat: np.ndarray, code_mode: str, channels: int) -> tuple[float, np.ndarray]:
    """Fraction of ones overall and per channel (``float64 (C,)``).

    Packed modes count set bits (padding bits excluded); probs averages ``p = x / 255``.
    """
    n = lat.shape[0]
    row_bytes = max(1, int(np.prod(lat.shape[1:])))
    step = max(1, _BLOCK_BYTES // row_bytes)
    per_channel = np.zeros(channels, dtype=np.float64)
    for s in range(0, n, step):
        block = np.asarray(lat[s:s + step])
        if code_mode == "probs":
            per_channel += block.reshape(-1, channels).sum(axis=0, dtype=np.int64)
        else:
            bits = np.unpackbits(block, axis=-1, count=channels, bitorder="little")
            per_channel += bits.reshape(-1, channels).sum(axis=0, dtype=np.int64)
    values_per_channel = lat.size // lat.shape[-1] if lat.size else 0
    if values_per_channel == 0:
        return float("nan"), per_channel
    per_channel /= values_per_channel * (255 if code_mode == "probs" else 1)
    return float(per_channel.mean()), per_channel


def inspect_dataset(root, *, verify_checksums: bool = True, balance: bool = True) -> dict:
    """Verify a dataset and gather its summary.

    Args:
        root: the dataset folder.
        verify_checksums: check sha256 of every file (else headers and sizes only).
        balance: compute the bit balance (reads all latents once).

    Returns:
        dict with ``root``, ``meta``, ``verified`` (checksums checked), ``count``, ``code_mode``,
        ``latent_hw``, ``channels``, ``samples_per_image``, ``shape`` (of ``latents.npy``),
        ``bytes_per_image``, ``float32_bytes_per_image`` (the same latents as float32 bits or
        probabilities), ``ones_fraction`` (float), ``channel_ones`` (list of C floats),
        ``labels`` (``None`` or ``{"min", "max", "distinct"}``).

    Raises:
        ValueError: naming the file that is missing, truncated or altered.
    """
    root = os.path.abspath(os.fspath(root))
    meta = verify(root) if verify_checksums else check_files(root)
    lat = np.load(os.path.join(root, LATENTS_FILE), mmap_mode="r")
    c = int(meta["channels"])
    h, w = meta["latent_hw"]
    k = int(meta["samples_per_image"])
    info = {
        "root": root,
        "meta": meta,
        "verified": verify_checksums,
        "count": int(meta["count"]),
        "code_mode": meta["code_mode"],
        "latent_hw": [int(h), int(w)],
        "channels": c,
        "samples_per_image": k,
        "shape": list(lat.shape),
        "bytes_per_image": int(np.prod(lat.shape[1:])),
        "float32_bytes_per_image": 4 * k * int(h) * int(w) * c,
        "ones_fraction": None,
        "channel_ones": None,
        "labels": None,
    }
    if balance:
        ones, per_channel = _bit_balance(lat, meta["code_mode"], c)
        info["ones_fraction"] = ones
        info["channel_ones"] = per_channel.tolist()
    if meta["with_labels"]:
        labels = np.load(os.path.join(root, LABELS_FILE), mmap_mode="r")
        uniq = np.unique(np.asarray(labels))
        info["labels"] = {"min": int(uniq[0]), "max": int(uniq[-1]), "distinct": int(uniq.size)} if uniq.size else {}
    return info


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def format_report(info: dict) -> str:
    """The human-readable report of :func:`inspect_dataset`'s result (several lines, no trailing newline)."""
    meta = info["meta"]
    h, w = info["latent_hw"]
    c, k = info["channels"], info["samples_per_image"]
    mode = info["code_mode"] + (f" (K={k} samples per image)" if info["code_mode"] == "bernoulli" else "")
    files = ", ".join(f"{name} {_size(e['bytes'])}" + (" sha256 ok" if info["verified"] else " (size ok)")
                      for name, e in meta["files"].items())
    lines = [
        f"dataset      {info['root']}",
        f"format       {meta['format']} v{meta['format_version']}, bit order {meta['bit_order']}",
        f"code mode    {mode}",
        f"count        {info['count']} images",
        f"latent       {h}x{w}x{c} (L={h * w} tokens, C={c})",
        f"shape        latents.npy uint8 {tuple(info['shape'])}",
        f"bytes/image  {info['bytes_per_image']} ({_size(info['bytes_per_image'])}; "
        f"float32: {_size(info['float32_bytes_per_image'])}, "
        f"{info['float32_bytes_per_image'] / info['bytes_per_image']:.0f}x)",
        f"files        {files}",
    ]
    if info["ones_fraction"] is not None:
        ch = np.asarray(info["channel_ones"])
        what = "mean p" if info["code_mode"] == "probs" else "ones"
        lines.append(f"bit balance  {info['ones_fraction']:.4f} {what} (channels: min {ch.min():.4f} at "
                     f"{int(ch.argmin())}, max {ch.max():.4f} at {int(ch.argmax())})")
    if info["labels"] is not None:
        lab = info["labels"]
        lines.append(f"labels       {lab.get('distinct', 0)} distinct in [{lab.get('min')}, {lab.get('max')}]"
                     if lab else "labels       (none)")
    else:
        lines.append("labels       no")
    lines.append("meta.json    " + ("fields hash ok" if META_HASH_KEY in meta else
                                 f"no {META_HASH_KEY} (written before it existed): fields checked for "
                                 "consistency only"))
    lines.append(f"encoder      sha256 {meta.get('encoder_checkpoint_sha256') or '(not recorded)'}")
    lines.append(f"sources      digest {meta.get('source_list_digest') or '(not recorded)'}")
    skipped = meta.get("skipped")
    if skipped:
        lines.append(f"skipped      {len(skipped)} source files (see meta.json)")
    return "\n".join(lines)


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast inspect``."""
    parser.add_argument("dir", metavar="DIR", help="dataset folder (latents.npy, labels.npy, meta.json)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the sha256 checksums (headers and sizes are still checked)")
    parser.add_argument("--no-balance", action="store_true", help="skip the bit balance (reads all latents)")
    parser.add_argument("--json", metavar="PATH", nargs="?", const="-",
                        help="also write the summary as JSON to PATH ('-' or no PATH: JSON on stdout, the report "
                             "on stderr)")


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``bldm-fast inspect``: prints the report (and writes ``--json``); returns 0, or 1 (one line
    on stderr naming the file that is missing, truncated or altered, or the ``--json`` path that
    cannot be written)."""
    try:
        if args.json not in (None, "-") and (os.path.isdir(args.json)
                                             or not os.path.isdir(os.path.dirname(os.path.abspath(args.json)))):
            raise ValueError(f"--json: cannot write {args.json}: it is a folder or its folder does not exist")
        info = inspect_dataset(args.dir, verify_checksums=not args.no_verify, balance=not args.no_balance)
        print(format_report(info), file=sys.stderr if args.json == "-" else sys.stdout)
        if args.json is not None:
            summary = {k: v for k, v in info.items() if k != "meta"} | {"meta": info["meta"]}
            if args.json == "-":
                print(json.dumps(summary, indent=2))
            else:
                with open(args.json, "w") as f:
                    json.dump(summary, f, indent=2)
                    f.write("\n")
    except (ValueError, OSError) as exc:
        print(f"bldm-fast inspect: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bldm_fast.data.inspect DIR`` (the same as ``bldm-fast inspect DIR``)."""
    parser = argparse.ArgumentParser(prog="bldm-fast inspect", description=__doc__.splitlines()[0])
    add_inspect_arguments(parser)
    return run_inspect(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
