"""Commit markers of a packed-latent dataset being written: write, read, validate, remove.

``.commits/`` holds one marker file per committed chunk, ``.commits/<index, 8 digits>``, holding the
line ``C <index> <start> <end> <crc32 latents> <crc32 labels> <crc32 of the line so far>``.
It is written to a temporary name, fsynced and renamed into place (then the folder is fsynced)
only *after* the chunk's rows were written and fdatasynced. A marker counts only if its line is
complete and its own CRC and fields match, so a torn or garbled marker and a leftover temporary
are ignored. :meth:`~bldm_fast.data.writer.PackedLatentWriter.finalize` deletes the marker of a
chunk whose bytes no longer match its CRCs (the chunk is pending again).

Needs only the standard library.
"""

from __future__ import annotations

import os
import zlib

from .durable import datasync, fsync_dir


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


def write_marker(commits_dir: str, index: int, start: int, end: int, crc_lat: int, crc_lab: int) -> None:
    """Commit chunk ``index`` (rows ``[start, end)``): a complete marker, renamed into place.

    Call it only after the chunk's bytes are durable.
    """
    record = _record("C", index, start, end, f"{crc_lat:08x}", f"{crc_lab:08x}")
    final = os.path.join(commits_dir, _marker_name(index))
    tmp = f"{final}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, record)
        datasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(commits_dir)


def read_markers(commits_dir: str, num_chunks: int, chunk_rows: int,
                 count: int) -> tuple[dict[int, tuple[int, int]], int]:
    """The valid commit markers in ``commits_dir``.

    Returns:
        ``({index: (crc latents, crc labels)}, number of entries ignored)``: torn, garbled or
        leftover temporaries, and entries that vanished or are not files.
    """
    committed: dict[int, tuple[int, int]] = {}
    ignored = 0
    for name in sorted(os.listdir(commits_dir)):
        try:
            with open(os.path.join(commits_dir, name), "rb") as f:
                data = f.read(256)
        except OSError:  # vanished (another process renamed or removed it) or not a file
            ignored += 1
            continue
        rec = _parse_marker(name, data, num_chunks, chunk_rows, count)
        if rec is None:
            ignored += 1
        else:
            committed[rec[0]] = rec[1:]
    return committed, ignored


def remove_markers(commits_dir: str, indices: list[int]) -> None:
    """Revoke the commits of chunks ``indices`` (missing markers are fine), then fsync the folder."""
    for i in indices:
        try:
            os.unlink(os.path.join(commits_dir, _marker_name(i)))
        except FileNotFoundError:
            pass
    fsync_dir(commits_dir)
