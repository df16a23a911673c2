"""The packed-latent dataset format (DESIGN.md section 7): writer, ``meta.json``, verification.

A dataset is a folder::

    latents.npy   uint8, written with numpy.lib.format.open_memmap (O(1) random access, zero-copy reads)
                  deterministic: (N, L, ceil(C/8))      packed bits, LSB first (bit order "little")
                  bernoulli:     (N, K, L, ceil(C/8))   K packed samples per image
                  probs:         (N, L, C)              round(p * 255) per bit, unpacked
    labels.npy    int64 (N,), optional
    meta.json     format version, latent H, W, C, bit order, code mode, per-file sha256 and size,
                  count, encoder checkpoint sha256, source list digest, plus the writer's ``meta``

``meta.json`` is written last (temporary file, fsync, rename), only once every row is on disk, so
a folder with ``meta.json`` is complete; a folder without one is being written or was interrupted,
and :class:`PackedLatentWriter` resumes it.

While a dataset is being written the folder also holds hidden entries, removed by
:meth:`PackedLatentWriter.finalize`:

* ``.writer.json``: the writer's configuration (shapes, code mode, chunk size, digests of the
  identity keys of ``meta``), written atomically before any data file; a writer that reopens the
  folder must match it.
* ``.commits/``: one marker file per committed chunk, ``.commits/<index, 8 digits>``, holding the
  line ``C <index> <start> <end> <crc32 latents> <crc32 labels> <crc32 of the line so far>``.
  It is written to a temporary name, fsynced and renamed into place (then the folder is fsynced)
  only *after* the chunk's rows were written and fdatasynced. A marker counts only if its line is
  complete and its own CRC and fields match, so a torn or garbled marker and a leftover temporary
  are ignored. :meth:`~PackedLatentWriter.finalize` deletes the marker of a chunk whose bytes no
  longer match its CRCs (the chunk is pending again).

Crash safety: rows are addressed by position (``pwrite`` at a fixed offset), so rewriting a chunk
is idempotent, and a chunk is committed only by the atomic rename of a complete marker after its
bytes are durable. A SIGKILL (or power loss, given fsync) at any point leaves every chunk either
committed with its bytes on disk or pending, to be written again on resume; no row can be lost or
duplicated, and ``meta.json`` cannot appear early. Markers are separate files created by rename,
so several processes (e.g. the ranks of a distributed encode, also on a shared file system) may
write disjoint chunks of one folder at once, once it was created; one process finalizes.

This module needs only numpy and the standard library (no torch).
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

FORMAT_VERSION = 1
FORMAT_NAME = "bldm_fast.packed_latents"
CODE_MODES = ("deterministic", "bernoulli", "probs")
BIT_ORDER = "little"

LATENTS_FILE = "latents.npy"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"
STATE_FILE = ".writer.json"
COMMITS_DIR = ".commits"

#: keys of ``meta.json`` the writer sets itself; a user ``meta`` may not contain them
RESERVED_KEYS = frozenset({
    "format", "format_version", "count", "latent_hw", "channels", "tokens", "bit_order", "code_mode",
    "samples_per_image", "with_labels", "bytes_per_image", "files",
})
#: user ``meta`` keys that are always present in ``meta.json`` (``None`` when not given)
DEFAULT_META = {"encoder_checkpoint_sha256": None, "source_list_digest": None}

_HASH_BLOCK = 8 << 20


# ---------------------------------------------------------------------------------------------
# shapes and small helpers
# ---------------------------------------------------------------------------------------------


def packed_channels(channels: int) -> int:
    """Bytes per token of packed bits: ``ceil(channels / 8)``."""
    return (channels + 7) // 8


def latents_shape(count: int, latent_hw: tuple[int, int], channels: int, code_mode: str,
                  samples_per_image: int = 1) -> tuple[int, ...]:
    """Shape of ``latents.npy`` (uint8) for a configuration.

    Returns:
        ``(count, L, ceil(C/8))`` for ``"deterministic"``, ``(count, K, L, ceil(C/8))`` for
        ``"bernoulli"`` (``K = samples_per_image``), ``(count, L, C)`` for ``"probs"``; ``L = H * W``.
    """
    h, w = latent_hw
    tokens = h * w
    if code_mode == "deterministic":
        return (count, tokens, packed_channels(channels))
    if code_mode == "bernoulli":
        return (count, samples_per_image, tokens, packed_channels(channels))
    if code_mode == "probs":
        return (count, tokens, channels)
    raise ValueError(f"code_mode must be one of {CODE_MODES}, got {code_mode!r}")


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


def _datasync(fd: int) -> None:
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)


def _fsync_dir(path: str) -> None:
    """fsync a directory so renames and new files in it survive a power loss (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: str, obj: dict) -> None:
    """Write ``obj`` to ``path`` via a temporary file, fsync and rename: old or new, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        if n <= 0:  # pragma: no cover - the kernel never returns 0 for a regular file
            raise OSError(f"pwrite wrote {n} bytes")
        data = data[n:]
        offset += n


def read_npy_header(path: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Read the header of a ``.npy`` file.

    Returns:
        ``(shape, dtype, fortran_order, data_offset)``.

    Raises:
        ValueError: the file is missing or its header is not a valid ``.npy`` header (names the file).
    """
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except FileNotFoundError:
        raise ValueError(f"{name}: file missing ({path})") from None
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise ValueError(f"{name}: not a valid .npy file ({exc}); the file is truncated or altered") from None
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), offset


def _check_npy(path: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Check header and size of a ``.npy`` file against ``shape``/``dtype``; returns the data offset.

    Raises:
        ValueError: naming the file, when it is missing, its header differs, or its size is wrong.
    """
    name = os.path.basename(path)
    got_shape, got_dtype, fortran, offset = read_npy_header(path)
    if got_shape != tuple(shape) or got_dtype != dtype or fortran:
        raise ValueError(
            f"{name}: header says {got_dtype} {got_shape}{' (Fortran order)' if fortran else ''}, "
            f"expected {dtype} {tuple(shape)}; the file is altered or from another dataset")
    expect = offset + math.prod(shape) * dtype.itemsize
    size = os.path.getsize(path)
    if size != expect:
        what = "truncated" if size < expect else "has trailing bytes"
        raise ValueError(f"{name}: {size} bytes, expected {expect}; the file is {what} (altered or incomplete copy)")
    return offset


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


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


# ---------------------------------------------------------------------------------------------
# commit markers
# ---------------------------------------------------------------------------------------------


def _record(*fields) -> bytes:
    body = " ".join(str(f) for f in fields)
    return f"{body} {zlib.crc32(body.encode()):08x}\n".encode()


def _marker_name(index: int) -> str:
    return f"{index:08d}"


def _parse_marker(name: str, data: bytes, num_chunks: int, chunk_rows: int, count: int) -> tuple[int, int, int] | None:
    """``(index, crc latents, crc labels)`` of a valid commit marker, else None.

    Valid: exactly one complete line (ending in a newline) whose own CRC matches, whose index is the
    file's name and whose rows are that chunk's rows under the configuration.
    """
    try:
        if not data.endswith(b"\n") or data.count(b"\n") != 1:
            return None
        body, crc = data[:-1].decode("ascii").rsplit(" ", 1)
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body.encode()):
            return None
        kind, *fields = body.split(" ")
        if kind != "C" or len(fields) != 5:
            return None
        index, start, end = int(fields[0]), int(fields[1]), int(fields[2])
        if not (name == _marker_name(index) and 0 <= index < num_chunks and start == index * chunk_rows
                and end == min(start + chunk_rows, count)):
            return None
        return index, int(fields[3], 16), int(fields[4], 16)
    except (ValueError, UnicodeDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# the writer
# ---------------------------------------------------------------------------------------------


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
        _write_json_atomic(self._state_path, self._state())
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
        _fsync_dir(self.out_dir)

    def _check_data_files(self) -> None:
        self._lat_offset = _check_npy(self._lat_path, self.shape, np.dtype(np.uint8))
        if self.with_labels:
            self._lab_offset = _check_npy(self._lab_path, (self.count,), np.dtype(np.int64))

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
            _fsync_dir(self.out_dir)
        self._committed = {}
        self.ignored_records = 0
        for name in sorted(os.listdir(self._commits_dir)):
            try:
                with open(os.path.join(self._commits_dir, name), "rb") as f:
                    data = f.read(256)
            except OSError:  # vanished (another process renamed or removed it) or not a file
                self.ignored_records += 1
                continue
            rec = _parse_marker(name, data, self.num_chunks, self.chunk_rows, self.count)
            if rec is None:
                self.ignored_records += 1
            else:
                self._committed[rec[0]] = rec[1:]

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
        _pwrite_all(self._lat_fd, lat_bytes, self._lat_offset + start * self.row_bytes)
        crc_lab = 0
        if lab is not None:
            lab_bytes = memoryview(lab).cast("B")
            _pwrite_all(self._lab_fd, lab_bytes, self._lab_offset + start * 8)
            crc_lab = zlib.crc32(lab_bytes)
        _datasync(self._lat_fd)
        if lab is not None:
            _datasync(self._lab_fd)
        crc_lat = zlib.crc32(lat_bytes)
        # the commit: a complete marker renamed into place after the bytes are durable
        record = _record("C", index, start, end, f"{crc_lat:08x}", f"{crc_lab:08x}")
        final = os.path.join(self._commits_dir, _marker_name(index))
        tmp = f"{final}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, record)
            _datasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self._commits_dir)
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
            for i in bad:
                try:
                    os.unlink(os.path.join(self._commits_dir, _marker_name(i)))
                except FileNotFoundError:
                    pass
                self._committed.pop(i, None)
            _fsync_dir(self._commits_dir)
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
        _write_json_atomic(self._meta_path, meta)  # from here on the dataset is complete
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
                    block = f.read(min(n, _HASH_BLOCK))
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
            _fsync_dir(self.out_dir)

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


# ---------------------------------------------------------------------------------------------
# reading meta.json and verifying a dataset
# ---------------------------------------------------------------------------------------------

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
        _check_npy(path, tuple(entry["shape"]), np.dtype(entry["dtype"]))
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
        digest = _file_sha256(os.path.join(root, name))
        if digest != entry["sha256"]:
            raise ValueError(f"{name}: sha256 {digest[:16]}... does not match meta.json ({entry['sha256'][:16]}...); "
                             "the file is altered or corrupted")
    return meta
