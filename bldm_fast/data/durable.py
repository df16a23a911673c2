"""Durable file writes for the packed-latent writer: fsync, atomic JSON, positional writes.

Needs only the standard library.
"""

from __future__ import annotations

import json
import os


def datasync(fd: int) -> None:
    """fdatasync ``fd`` (fsync where the platform lacks fdatasync)."""
    (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(fd)


def fsync_dir(path: str) -> None:
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


def write_json_atomic(path: str, obj: dict) -> None:
    """Write ``obj`` to ``path`` via a temporary file, fsync and rename: old or new, never half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` to ``fd`` at ``offset`` (``pwrite`` until nothing is left)."""
    while len(data):
        n = os.pwrite(fd, data, offset)
        if n <= 0:  # pragma: no cover - the kernel never returns 0 for a regular file
            raise OSError(f"pwrite wrote {n} bytes")
        data = data[n:]
        offset += n
