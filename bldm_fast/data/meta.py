"""Reading ``meta.json`` of a packed-latent dataset and verifying its files (DESIGN.md section 7).

``meta.json`` is cross-checked against itself and the data: ``meta_fields_hash`` (written by
:func:`seal_meta`) is the sha256 of every other field, so an edited ``channels`` or ``latent_hw``
is caught even where it leaves the file shapes unchanged (32 -> 31 channels keeps 4 bytes per token;
4x4 -> 2x8 keeps 16 tokens); the fields must agree with each other (``tokens = H * W``,
``bytes_per_image``, the files' shapes); and :func:`verify`, which reads the data anyway, checks that
the padding bits of the last byte of packed codes are 0 (DESIGN.md section 2). A ``meta.json``
without ``meta_fields_hash`` (written before it existed) is read with the other checks only.

Needs only numpy and the standard library.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .layout import (BIT_ORDER, CODE_MODES, FORMAT_NAME, FORMAT_VERSION, LABELS_FILE, LATENTS_FILE, META_FILE,
                     STATE_FILE, latents_shape, packed_channels)
from .npyfile import check_npy, file_sha256

#: the ``meta.json`` key holding ``"sha256:" + hex digest`` of the canonical JSON of every other key
META_HASH_KEY = "meta_fields_hash"
_PADDING_BLOCK_BYTES = 4 << 20

_REQUIRED = ("format_version", "count", "latent_hw", "channels", "bit_order", "code_mode", "samples_per_image",
             "with_labels", "files")


def meta_fields_hash(meta: dict) -> str:
    """``"sha256:<hex>"`` of the canonical JSON (sorted keys, no spaces) of every field of ``meta`` but
    :data:`META_HASH_KEY`. The same after a JSON round trip (what ``meta.json`` stores).

    Raises:
        ValueError: ``meta`` is not JSON-serialisable (NaN included).
    """
    fields = {k: v for k, v in meta.items() if k != META_HASH_KEY}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def seal_meta(meta: dict) -> dict:
    """``meta`` plus :data:`META_HASH_KEY` (a new dict): what a writer stores as ``meta.json``, so that
    :func:`read_meta` detects any later edit of its fields.

    Raises:
        ValueError: ``meta`` is not JSON-serialisable.
    """
    return {**meta, META_HASH_KEY: meta_fields_hash(meta)}


def _check_fields(meta: dict) -> None:
    """The types and ranges of the shape fields."""
    hw, c, n, k, mode = (meta["latent_hw"], meta["channels"], meta["count"], meta["samples_per_image"],
                         meta["code_mode"])
    ints = (isinstance(v, int) and not isinstance(v, bool) for v in (c, n, k))
    if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                          for v in hw)):
        raise ValueError(f"{META_FILE}: latent_hw must be [H, W] of positive ints, got {hw!r}; the file is altered")
    if not all(ints) or c < 1 or n < 0 or k < 1:
        raise ValueError(f"{META_FILE}: channels {c!r}, count {n!r}, samples_per_image {k!r} must be ints "
                         ">= 1, >= 0, >= 1; the file is altered")
    if mode not in CODE_MODES:
        raise ValueError(f"{META_FILE}: code_mode {mode!r}, expected one of {CODE_MODES}; the file is altered")
    if mode != "bernoulli" and k != 1:
        raise ValueError(f"{META_FILE}: samples_per_image is {k} but code_mode {mode!r} stores one code per image; "
                         "the file is altered")


def _check_derived(meta: dict) -> None:
    """``tokens`` and ``bytes_per_image`` agree with ``latent_hw``, ``channels`` and the code mode."""
    hw, c = meta["latent_hw"], meta["channels"]
    shape = latents_shape(meta["count"], tuple(hw), c, meta["code_mode"], meta["samples_per_image"])
    expected = {"tokens": hw[0] * hw[1], "bytes_per_image": int(np.prod(shape[1:], dtype=np.int64))}
    wrong = [f"{key} {meta[key]!r} (latent_hw {hw} and channels {c} give {want})"
             for key, want in expected.items() if key in meta and meta[key] != want]
    if wrong:
        raise ValueError(f"{META_FILE}: {', '.join(wrong)}; the file is altered")


def read_meta(root) -> dict:
    """Read and check ``meta.json`` of a dataset folder.

    Returns:
        the meta dict (see :meth:`PackedLatentWriter.finalize`).

    Raises:
        ValueError: ``meta.json`` is missing (the dataset is unfinished: resume its writer), is not
            valid JSON, is not this format, has a newer format version, or lacks a required key, or its
            fields are inconsistent with each other or with ``meta_fields_hash`` (the file was edited).
            The message names ``meta.json``.
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
    _check_fields(meta)
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
    _check_derived(meta)
    if META_HASH_KEY in meta:
        try:
            digest = meta_fields_hash(meta)
        except ValueError as exc:
            raise ValueError(f"{META_FILE}: {exc}; the file is altered") from None
        if digest != meta[META_HASH_KEY]:
            raise ValueError(f"{META_FILE}: its fields do not match {META_HASH_KEY} (recorded "
                             f"{str(meta[META_HASH_KEY])[:23]}..., the fields give {digest[:23]}...); the file was "
                             "edited after the dataset was written")
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


def check_padding(root, meta: dict) -> None:
    """Check that the padding bits of packed codes are 0 (bit ``j >= C % 8`` of each token's last byte,
    DESIGN.md section 2): a ``channels`` smaller than the data's is caught here. Reads the last byte
    of every token once; nothing to check in ``probs`` mode or when ``C % 8 == 0``.

    Raises:
        ValueError: naming ``meta.json`` and the first image whose padding bits are set.
    """
    c = int(meta["channels"])
    if meta["code_mode"] == "probs" or c % 8 == 0:
        return
    mask = np.uint8((0xFF << (c % 8)) & 0xFF)
    lat = np.load(os.path.join(os.fspath(root), LATENTS_FILE), mmap_mode="r")
    if lat.shape[-1] != packed_channels(c):
        raise ValueError(f"{META_FILE}: channels {c} needs {packed_channels(c)} bytes per token, "
                         f"{LATENTS_FILE} has {lat.shape[-1]}; the file is altered")
    step = max(1, _PADDING_BLOCK_BYTES // max(1, int(np.prod(lat.shape[1:]))))
    for s in range(0, lat.shape[0], step):
        bad = np.flatnonzero((np.asarray(lat[s:s + step, ..., -1]) & mask).reshape(min(step, lat.shape[0] - s), -1)
                             .any(axis=1))
        if bad.size:
            raise ValueError(f"{META_FILE}: channels is {c}, but image {s + int(bad[0])} of {LATENTS_FILE} has bits "
                             f"set beyond channel {c - 1} (padding bits must be 0); meta.json or the data is altered")


def verify(root) -> dict:
    """Verify a dataset: ``meta.json`` (its fields against each other and ``meta_fields_hash``), every
    file's header, size and sha256, and the padding bits of packed codes. Returns the meta.

    Raises:
        ValueError: naming the file (``meta.json``, ``latents.npy`` or ``labels.npy``) that is
            missing, truncated, altered (sha256 mismatch, an edited field, set padding bits) or
            inconsistent.
    """
    root = os.fspath(root)
    meta = check_files(root)
    for name, entry in meta["files"].items():
        digest = file_sha256(os.path.join(root, name))
        if digest != entry["sha256"]:
            raise ValueError(f"{name}: sha256 {digest[:16]}... does not match meta.json ({entry['sha256'][:16]}...); "
                             "the file is altered or corrupted")
    check_padding(root, meta)
    return meta
