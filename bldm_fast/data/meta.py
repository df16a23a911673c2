"""Reading ``meta.json`` of a packed-latent dataset and verifying its files (DESIGN.md section 7).

Needs only numpy and the standard library.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .layout import (BIT_ORDER, FORMAT_NAME, FORMAT_VERSION, LABELS_FILE, LATENTS_FILE, META_FILE, STATE_FILE,
                     latents_shape)
from .npyfile import check_npy, file_sha256

_REQUIRED = ("format_version", "count", "latent_hw", "channels", "bit_order", "code_mode", "samples_per_image",
             "with_labels", "files")


def read_meta(root) -> dict:
    """Read and check ``meta.json`` of a dataset folder.

    Returns:
        the meta dict (see :meth:`PackedLatentWriter.finalize`).

    Raises:
        ValueError: ``meta.json`` is missing (the dataset is unfinished: resume its writer), is not
            valid JSON, is not this format, has a newer format version, or lacks a required key, or its
            fields are inconsistent. The message names ``meta.json``.
    """
    root = os.fspath(root)
    path = os.path.join(root, META_FILE)
    if not os.path.exists(path):
        unfinished = os.path.exists(os.path.join(root, STATE_FILE))
        raise ValueError(f"{META_FILE}: missing in {root}: "
                         + ("the dataset is unfinished (being written or interrupted; rerun the writer to resume)"
                            if unfinished else "not a bldm_fast packed-latent dataset"))
    try:
        with open(path, "rb") as f:
            meta = json.loads(f.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{META_FILE}: invalid JSON in {root} ({exc}); the file is truncated or altered") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{META_FILE}: not a {FORMAT_NAME} dataset (format {got!r})")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{META_FILE}: missing keys {missing}; the file is altered")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{META_FILE}: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{META_FILE}: format version {version} is newer than this bldm_fast reads "
                         f"({FORMAT_VERSION}); upgrade bldm_fast")
    if meta["bit_order"] != BIT_ORDER:
        raise ValueError(f"{META_FILE}: bit_order {meta['bit_order']!r}, expected {BIT_ORDER!r}")
    try:
        shape = latents_shape(int(meta["count"]), tuple(meta["latent_hw"]), int(meta["channels"]), meta["code_mode"],
                              int(meta["samples_per_image"]))
        files = meta["files"]
        ok = (isinstance(files, dict) and LATENTS_FILE in files and tuple(files[LATENTS_FILE]["shape"]) == shape
              and files[LATENTS_FILE]["dtype"] == "uint8"
              and (LABELS_FILE in files) == bool(meta["with_labels"])
              and (not meta["with_labels"] or (tuple(files[LABELS_FILE]["shape"]) == (meta["count"],)
                                               and files[LABELS_FILE]["dtype"] == "int64")))
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{META_FILE}: inconsistent fields ({exc}); the file is altered") from None
    if not ok:
        raise ValueError(f"{META_FILE}: the files entry does not match count/latent_hw/channels/code_mode; "
                         "the file is altered")
    return meta


def check_files(root, meta: dict | None = None) -> dict:
    """Cheap checks (no hashing): each data file exists, its ``.npy`` header matches ``meta.json`` and
    its size is exact. Returns the meta.

    Raises:
        ValueError: naming the file that is missing, truncated, extended or has another header.
    """
    root = os.fspath(root)
    meta = read_meta(root) if meta is None else meta
    for name, entry in meta["files"].items():
        path = os.path.join(root, name)
        check_npy(path, tuple(entry["shape"]), np.dtype(entry["dtype"]))
        size = os.path.getsize(path)
        if size != entry["bytes"]:
            raise ValueError(f"{name}: {size} bytes, meta.json records {entry['bytes']}; the file is altered")
    return meta


def verify(root) -> dict:
    """Verify a dataset: ``meta.json``, every file's header, size and sha256. Returns the meta.

    Raises:
        ValueError: naming the file (``meta.json``, ``latents.npy`` or ``labels.npy``) that is
            missing, truncated, altered (sha256 mismatch) or inconsistent.
    """
    root = os.fspath(root)
    meta = check_files(root)
    for name, entry in meta["files"].items():
        digest = file_sha256(os.path.join(root, name))
        if digest != entry["sha256"]:
            raise ValueError(f"{name}: sha256 {digest[:16]}... does not match meta.json ({entry['sha256'][:16]}...); "
                             "the file is altered or corrupted")
    return meta
