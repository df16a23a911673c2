"""The crash-safe, resumable writer of a packed-latent dataset (DESIGN.md section 7).

The folder layout and ``meta.json`` are described in :mod:`bldm_fast.data.layout`, the commit
markers in :mod:`bldm_fast.data.commits`.

Crash safety: rows are addressed by position (``pwrite`` at a fixed offset), so rewriting a chunk
is idempotent, and a chunk is committed only by the atomic rename of a complete marker after its
bytes are durable. A SIGKILL (or power loss, given fsync) at any point leaves every chunk either
committed with its bytes on disk or pending, to be written again on resume; no row can be lost or
duplicated, and ``meta.json`` cannot appear early. Markers are separate files created by rename,
so several processes (e.g. the ranks of a distributed encode, also on a shared file system) may
write disjoint chunks of one folder at once, once it was created; one process finalizes.

This module and its imports need only numpy and the standard library (no torch).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import zlib

import numpy as np
from numpy.lib import format as npformat

from .commits import read_markers, remove_markers, write_marker
from .durable import datasync, fsync_dir, pwrite_all, write_json_atomic
from .layout import (BIT_ORDER, CODE_MODES, COMMITS_DIR, DEFAULT_META, FORMAT_NAME, FORMAT_VERSION, LABELS_FILE,
                     LATENTS_FILE, META_FILE, RESERVED_KEYS, STATE_FILE, latents_shape)
from .meta import read_meta, seal_meta
from .npyfile import HASH_BLOCK, check_npy


def _int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return value


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _identity_keys(meta: dict) -> list[str]:
    """Keys of ``meta`` that identify the data (a different value means different latents)."""
    return sorted(k for k in meta if k.endswith("sha256") or k.endswith("digest"))


def _identity(meta: dict) -> dict[str, str]:
    """``{key: sha256 of its canonical JSON}`` for the identity keys whose value is not None."""
    return {k: hashlib.sha256(_canonical(meta[k])).hexdigest() for k in _identity_keys(meta) if meta[k] is not None}


def _ranges_text(indices: list[int], limit: int = 20) -> str:
    """``[0, 3, 4, 5, 9]`` -> ``"0, 3-5, 9"`` (at most ``limit`` runs, then ``...``)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    if len(runs) > limit:
        text.append("...")
    return ", ".join(text)


class PackedLatentWriter:
    """Write a packed-latent dataset chunk by chunk, crash-safe and resumable.

    Args:
        out_dir: the dataset folder (created with its parents if missing). If it holds an unfinished
            dataset of the same configuration, the writer resumes it: :meth:`pending` lists the chunks
            still to write. If it holds a finished one (``meta.json``) of the same configuration,
            nothing is pending and :meth:`finalize` returns its meta.
        count: ``N >= 1`` images (rows).
        latent_hw: ``(H, W)`` of the latent grid; ``L = H * W`` tokens in row-major order.
        channels: ``C >= 1`` bits per token.
        code_mode: one of :data:`CODE_MODES`: ``"deterministic"`` (one packed code per image),
            ``"bernoulli"`` (``samples_per_image`` packed samples per image) or ``"probs"``
            (``uint8 round(p * 255)`` per bit, unpacked).
        samples_per_image: ``K >= 1``; must be 1 unless ``code_mode == "bernoulli"``.
        with_labels: also write ``labels.npy`` (int64 ``(N,)``); then every chunk needs labels.
        meta: JSON-serialisable dict copied into ``meta.json`` (e.g. ``encoder_checkpoint_sha256``,
            ``source_list_digest``, per-source-file sha256, skipped files with reasons). Its keys
            ending in ``sha256`` or ``digest`` identify the data: resuming with other values is an
            error. Other keys are taken from the writer that finalizes.
        chunk_rows: rows per chunk, the unit of commit: chunk ``i`` is rows
            ``[i * chunk_rows, min((i + 1) * chunk_rows, N))``.

    Shapes of ``latents.npy`` (uint8): ``(N, L, ceil(C/8))`` deterministic, ``(N, K, L, ceil(C/8))``
    bernoulli, ``(N, L, C)`` probs; see :func:`latents_shape`.

    Raises:
        TypeError: a count/size argument is not an int, ``meta`` is not a dict.
        ValueError: an argument is out of range, ``meta`` is not JSON-serialisable or uses a reserved
            key (:data:`RESERVED_KEYS`), the folder holds a dataset with a different configuration
            (the message names every difference), or the folder holds ``latents.npy``/``labels.npy``
            that this writer did not create, or files of an unfinished dataset are missing or damaged.

    Several writers (processes) may write disjoint chunks of one folder at the same time once it
    exists (open the first one before the others); :meth:`finalize` reads every writer's commits.
    Use it as a context manager or call :meth:`close`.
    """

    def __init__(self, out_dir, *, count: int, latent_hw: tuple[int, int], channels: int, code_mode: str,
                 samples_per_image: int = 1, with_labels: bool = False, meta: dict | None = None,
                 chunk_rows: int = 256):
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.count = _int(count, "count", 1)
        try:
            h, w = latent_hw
        except (TypeError, ValueError):
            raise ValueError(f"latent_hw must be a pair (H, W), got {latent_hw!r}") from None
        self.latent_hw = (_int(h, "latent_hw[0]", 1), _int(w, "latent_hw[1]", 1))
        self.channels = _int(channels, "channels", 1)
        if code_mode not in CODE_MODES:
            raise ValueError(f"code_mode must be one of {CODE_MODES}, got {code_mode!r}")
        self.code_mode = code_mode
        self.samples_per_image = _int(samples_per_image, "samples_per_image", 1)
        if code_mode != "bernoulli" and self.samples_per_image != 1:
            raise ValueError(f"samples_per_image must be 1 for code_mode {code_mode!r}, got {samples_per_image}")
        self.with_labels = bool(with_labels)
        self.chunk_rows = _int(chunk_rows, "chunk_rows", 1)
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
        clash = sorted(set(meta) & RESERVED_KEYS)
        if clash:
            raise ValueError(f"meta may not set the keys the writer sets itself: {clash}")
        if not all(isinstance(k, str) for k in meta):
            raise ValueError("meta keys must be strings")
        try:
            _canonical(meta)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"meta must be JSON-serialisable: {exc}") from None
        self.meta = {**DEFAULT_META, **json.loads(json.dumps(meta))}  # a private deep copy

        self.shape = latents_shape(self.count, self.latent_hw, self.channels, code_mode, self.samples_per_image)
        self.row_shape = self.shape[1:]
        self.row_bytes = math.prod(self.row_shape)
        self.num_chunks = -(-self.count // self.chunk_rows)
        self._lat_path = os.path.join(self.out_dir, LATENTS_FILE)
        self._lab_path = os.path.join(self.out_dir, LABELS_FILE)
        self._meta_path = os.path.join(self.out_dir, META_FILE)
        self._state_path = os.path.join(self.out_dir, STATE_FILE)
        self._commits_dir = os.path.join(self.out_dir, COMMITS_DIR)
        self._fds: list[int] = []
        self._lat_fd = self._lab_fd = -1
        self._committed: dict[int, tuple[int, int]] = {}
        #: commit markers ignored on open (torn, garbled or leftover temporaries); informational
        self.ignored_records = 0
        self.finalized = False

        os.makedirs(self.out_dir, exist_ok=True)
        if os.path.exists(self._meta_path):
            self._open_finalized()
        elif os.path.exists(self._state_path):
            self._open_resume()
        else:
            self._create()

    # -- configuration ------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "count": self.count,
            "latent_hw": list(self.latent_hw),
            "channels": self.channels,
            "code_mode": self.code_mode,
            "samples_per_image": self.samples_per_image,
            "with_labels": self.with_labels,
            "chunk_rows": self.chunk_rows,
            "latents_shape": list(self.shape),
            "identity": _identity(self.meta),
        }

    def _compare(self, theirs: dict, keys: list[str], where: str) -> None:
        mine = self._state()
        diffs = []
        for k in keys:
            if k == "identity":
                a, b = mine["identity"], theirs.get("identity", {})
                for ik in sorted(set(a) | set(b)):
                    if a.get(ik) != b.get(ik):
                        diffs.append(f"meta[{ik!r}] differs" if ik in a and ik in b else
                                     f"meta[{ik!r}] {'given' if ik in a else 'missing'} now but "
                                     f"{'absent' if ik in a else 'set'} in the existing dataset")
            elif mine[k] != theirs.get(k):
                diffs.append(f"{k} {mine[k]!r} != {theirs.get(k)!r} (existing)")
        if diffs:
            raise ValueError(f"{self.out_dir} holds a {where} dataset with a different configuration: "
                             + "; ".join(diffs) + ". Use another out_dir or delete this one.")

    def _open_finalized(self) -> None:
        meta = read_meta(self.out_dir)
        theirs = {k: meta.get(k) for k in ("count", "channels", "code_mode", "samples_per_image", "with_labels")}
        theirs["latent_hw"] = list(meta.get("latent_hw") or [])
        theirs["identity"] = _identity(meta)
        self._compare(theirs, ["count", "latent_hw", "channels", "code_mode", "samples_per_image", "with_labels",
                               "identity"], "finished")
        self.finalized = True
        self._committed = {i: (0, 0) for i in range(self.num_chunks)}

    def _open_resume(self) -> None:
        try:
            with open(self._state_path, "rb") as f:
                theirs = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{STATE_FILE}: unreadable writer state in {self.out_dir} ({exc})") from None
        if theirs.get("format") != FORMAT_NAME or theirs.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{STATE_FILE}: written by another format/version "
                             f"({theirs.get('format')!r} v{theirs.get('format_version')!r}); delete {self.out_dir}")
        self._compare(theirs, ["count", "latent_hw", "channels", "code_mode", "samples_per_image", "with_labels",
                               "chunk_rows", "identity"], "partly written")
        self._read_commits()
        try:
            self._check_data_files()
        except ValueError:
            if self._committed:
                raise
            self._create_data_files()  # interrupted before any commit: start the data files afresh
        self._open_data_fds()

    def _create(self) -> None:
        foreign = [n for n in (LATENTS_FILE, LABELS_FILE, COMMITS_DIR)
                   if os.path.exists(os.path.join(self.out_dir, n))]
        if foreign:
            raise ValueError(f"{self.out_dir} holds {', '.join(foreign)} but no {STATE_FILE} or {META_FILE}: "
                             "not written by PackedLatentWriter (or damaged); not overwriting it. "
                             "Delete it or choose an empty folder.")
        # the state file is the marker "this folder belongs to a writer": it comes first
        write_json_atomic(self._state_path, self._state())
        self._create_data_files()
        self._read_commits()
        self._open_data_fds()

    def _create_data_files(self) -> None:
        # open_memmap writes the .npy header and sizes the file (sparse zeros); the map is dropped at once
        npformat.open_memmap(self._lat_path, mode="w+", dtype=np.uint8, shape=self.shape)
        if self.with_labels:
            npformat.open_memmap(self._lab_path, mode="w+", dtype=np.int64, shape=(self.count,))
        for p in [self._lat_path] + ([self._lab_path] if self.with_labels else []):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.out_dir)

    def _check_data_files(self) -> None:
        self._lat_offset = check_npy(self._lat_path, self.shape, np.dtype(np.uint8))
        if self.with_labels:
            self._lab_offset = check_npy(self._lab_path, (self.count,), np.dtype(np.int64))

    def _open_data_fds(self) -> None:
        self._check_data_files()
        self._lat_fd = os.open(self._lat_path, os.O_RDWR)
        self._fds.append(self._lat_fd)
        if self.with_labels:
            self._lab_fd = os.open(self._lab_path, os.O_RDWR)
            self._fds.append(self._lab_fd)

    def _read_commits(self) -> None:
        """Load the valid commit markers (creating ``.commits/`` if missing)."""
        if not os.path.isdir(self._commits_dir):
            os.makedirs(self._commits_dir, exist_ok=True)
            fsync_dir(self.out_dir)
        self._committed, self.ignored_records = read_markers(self._commits_dir, self.num_chunks, self.chunk_rows,
                                                             self.count)

    # -- chunks -------------------------------------------------------------------------------

    def chunk_range(self, index: int) -> tuple[int, int]:
        """Rows ``[start, end)`` of chunk ``index``.

        Raises:
            ValueError: ``index`` is not in ``0 .. num_chunks - 1``.
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < self.num_chunks:
            raise ValueError(f"chunk index must be an int in 0..{self.num_chunks - 1}, got {index!r}")
        start = int(index) * self.chunk_rows
        return start, min(start + self.chunk_rows, self.count)

    def refresh(self) -> None:
        """Re-read the commit markers (to see chunks committed by other writers since opening)."""
        if not self.finalized:
            self._read_commits()

    def pending_chunks(self) -> list[int]:
        """Indices of the chunks not committed yet, ascending."""
        return [i for i in range(self.num_chunks) if i not in self._committed]

    def pending(self) -> list[tuple[int, int]]:
        """Row ranges ``[start, end)`` of the chunks not committed yet, ascending (chunk ``i`` is
        rows ``[i * chunk_rows, min((i + 1) * chunk_rows, count))``): those not committed when
        this writer opened the folder (or last called :meth:`refresh`) nor written by it since."""
        return [self.chunk_range(i) for i in self.pending_chunks()]

    @property
    def committed(self) -> int:
        """Number of committed chunks."""
        return len(self._committed)

    def write_chunk(self, index: int, latents, labels=None) -> None:
        """Write the rows of chunk ``index``, make them durable, then commit the chunk.

        Args:
            index: chunk index, ``0 <= index < num_chunks``, not committed yet.
            latents: uint8 array of shape ``(end - start, *row_shape)``: ``(n, L, ceil(C/8))``
                deterministic (packed LSB first, padding bits 0), ``(n, K, L, ceil(C/8))`` bernoulli,
                ``(n, L, C)`` probs. A numpy array or anything ``numpy.asarray`` accepts (a CPU tensor).
            labels: integer array ``(end - start,)``; required iff ``with_labels``. Stored as int64.

        Raises:
            TypeError: ``latents`` is not uint8 or ``labels`` not integer.
            ValueError: bad ``index``, chunk already committed (also after finalize), wrong shapes,
                nonzero padding bits, labels missing or unexpected, writer closed.
        """
        start, end = self.chunk_range(index)
        index = int(index)
        if index in self._committed:
            raise ValueError(f"chunk {index} (rows [{start}, {end})) is already committed"
                             + (" (the dataset is finalized)" if self.finalized else ""))
        if self._lat_fd < 0:
            raise ValueError("the writer is closed")
        lat = np.asarray(latents)
        if lat.dtype != np.uint8:
            raise TypeError(f"latents must be uint8, got {lat.dtype}")
        want = (end - start, *self.row_shape)
        if lat.shape != want:
            raise ValueError(f"latents for chunk {index} must have shape {want} (rows [{start}, {end}), "
                             f"code_mode {self.code_mode!r}), got {lat.shape}")
        pad = self.channels % 8
        if self.code_mode != "probs" and pad and (lat[..., -1] >> pad).any():
            raise ValueError(f"latents: padding bits of the last byte must be 0 (C = {self.channels}, "
                             "LSB-first packing as numpy.packbits(..., bitorder='little'))")
        lab = None
        if self.with_labels:
            if labels is None:
                raise ValueError("labels are required: the writer was created with with_labels=True")
            lab = np.asarray(labels)
            if lab.dtype == np.bool_ or not np.issubdtype(lab.dtype, np.integer):
                raise TypeError(f"labels must be an integer array, got {lab.dtype}")
            if lab.shape != (end - start,):
                raise ValueError(f"labels for chunk {index} must have shape {(end - start,)}, got {lab.shape}")
            lab = np.ascontiguousarray(lab, dtype=np.int64)
        elif labels is not None:
            raise ValueError("labels given, but the writer was created with with_labels=False")
        lat = np.ascontiguousarray(lat)

        lat_bytes = memoryview(lat).cast("B")
        pwrite_all(self._lat_fd, lat_bytes, self._lat_offset + start * self.row_bytes)
        crc_lab = 0
        if lab is not None:
            lab_bytes = memoryview(lab).cast("B")
            pwrite_all(self._lab_fd, lab_bytes, self._lab_offset + start * 8)
            crc_lab = zlib.crc32(lab_bytes)
        datasync(self._lat_fd)
        if lab is not None:
            datasync(self._lab_fd)
        crc_lat = zlib.crc32(lat_bytes)
        # the commit: a complete marker renamed into place after the bytes are durable
        write_marker(self._commits_dir, index, start, end, crc_lat, crc_lab)
        self._committed[index] = (crc_lat, crc_lab)

    # -- finish -------------------------------------------------------------------------------

    def finalize(self) -> dict:
        """Check every chunk, hash the files and write ``meta.json`` atomically; returns the meta.

        Every committed chunk's bytes are checked against the CRCs recorded at commit; a chunk that
        no longer matches is revoked (pending again). Then ``meta.json`` is written through a
        temporary file, fsync and rename, and the writer's hidden files are removed. On a folder that
        was already finished, returns its ``meta.json`` unchanged.

        Returns:
            the ``meta.json`` dict: ``format``, ``format_version``, ``count``, ``latent_hw``,
            ``channels``, ``tokens``, ``bit_order``, ``code_mode``, ``samples_per_image``,
            ``with_labels``, ``bytes_per_image``, ``files`` (``{name: {"shape", "dtype", "bytes",
            "sha256"}}``), ``encoder_checkpoint_sha256``, ``source_list_digest`` and the rest of ``meta``.

        Raises:
            ValueError: chunks are not committed (the message lists them and their rows), or
                committed chunks' bytes changed on disk (they become pending).
        """
        if self.finalized:
            meta = read_meta(self.out_dir)
            self._cleanup()
            return meta
        self.refresh()  # other writers' commits too
        missing = self.pending_chunks()
        if missing:
            rows = ", ".join(f"[{a}, {b})" for a, b in (self.chunk_range(i) for i in missing[:5]))
            raise ValueError(f"cannot finalize {self.out_dir}: {len(missing)} of {self.num_chunks} chunks not "
                             f"committed: chunks {_ranges_text(missing)} "
                             f"(rows {rows}{', ...' if len(missing) > 5 else ''})")
        files = {LATENTS_FILE: self._hash_and_check(self._lat_path, self._lat_offset, self.row_bytes, 0)}
        if self.with_labels:
            files[LABELS_FILE] = self._hash_and_check(self._lab_path, self._lab_offset, 8, 1)
        bad = sorted(set(files[LATENTS_FILE].pop("bad")) | set(files.get(LABELS_FILE, {}).pop("bad", [])))
        if bad:
            remove_markers(self._commits_dir, bad)
            for i in bad:
                self._committed.pop(i, None)
            raise ValueError(f"cannot finalize {self.out_dir}: chunks {_ranges_text(bad)} changed on disk after "
                             "they were committed; they are pending again: write them and call finalize() again")
        files[LATENTS_FILE] = {"shape": list(self.shape), "dtype": "uint8", **files[LATENTS_FILE]}
        if self.with_labels:
            files[LABELS_FILE] = {"shape": [self.count], "dtype": "int64", **files[LABELS_FILE]}
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "count": self.count,
            "latent_hw": list(self.latent_hw),
            "channels": self.channels,
            "tokens": self.latent_hw[0] * self.latent_hw[1],
            "bit_order": BIT_ORDER,
            "code_mode": self.code_mode,
            "samples_per_image": self.samples_per_image,
            "with_labels": self.with_labels,
            "bytes_per_image": self.row_bytes,
            "files": files,
            **self.meta,
        }
        meta = seal_meta(meta)
        write_json_atomic(self._meta_path, meta)  # from here on the dataset is complete
        self.finalized = True
        self._cleanup()
        return meta

    def _hash_and_check(self, path: str, offset: int, row_bytes: int, which: int) -> dict:
        """sha256 and size of a data file, and the chunks whose bytes differ from their commit CRC."""
        h = hashlib.sha256()
        bad = []
        with open(path, "rb") as f:
            h.update(f.read(offset))
            for i in range(self.num_chunks):
                start, end = self.chunk_range(i)
                n = (end - start) * row_bytes
                crc = 0
                while n:
                    block = f.read(min(n, HASH_BLOCK))
                    if not block:
                        raise ValueError(f"{os.path.basename(path)}: truncated while finalizing")
                    h.update(block)
                    crc = zlib.crc32(block, crc)
                    n -= len(block)
                if crc != self._committed[i][which]:
                    bad.append(i)
            if f.read(1):
                raise ValueError(f"{os.path.basename(path)}: trailing bytes after the data")
            size = f.tell()
        return {"bytes": size, "sha256": h.hexdigest(), "bad": bad}

    def _cleanup(self) -> None:
        self.close()
        removed = False
        if os.path.isdir(self._commits_dir):
            shutil.rmtree(self._commits_dir, ignore_errors=True)
            removed = True
        stale = [os.path.join(self.out_dir, n) for n in os.listdir(self.out_dir)
                 if n.startswith((META_FILE + ".tmp-", STATE_FILE + ".tmp-"))]
        for p in [self._state_path, *stale]:
            try:
                os.unlink(p)
                removed = True
            except FileNotFoundError:
                pass
        if removed:
            fsync_dir(self.out_dir)

    def close(self) -> None:
        """Close the files (idempotent). Committed chunks stay committed; reopen to resume."""
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._lat_fd = self._lab_fd = -1

    def __enter__(self) -> "PackedLatentWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return (f"PackedLatentWriter({self.out_dir!r}, count={self.count}, shape={self.shape}, "
                f"code_mode={self.code_mode!r}, committed={self.committed}/{self.num_chunks}"
                f"{', finalized' if self.finalized else ''})")
