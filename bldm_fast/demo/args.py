"""Argument checks and durable file writes shared by ``bldm-fast demo`` and ``bldm-fast train``.

Every check runs before the command writes anything, and raises ``ValueError`` naming the argument
(``TypeError`` for a value of the wrong type), which the CLI prints as one line with exit code 1.
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid


def check_int(value, name: str, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (numpy integers accepted).

    Raises:
        TypeError: not an integer (bools are rejected).
        ValueError: out of range.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an int {bound}, got {value}")
    return value


def check_float(value, name: str, *, low: float = 0.0, high: float | None = None, low_open: bool = True) -> float:
    """``value`` as a finite float with ``value > low`` (``>=`` when not ``low_open``) and ``<= high``.

    Raises:
        TypeError: not a real number (bools are rejected).
        ValueError: NaN, infinite or out of range.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low or (low_open and value == low) or (high is not None and value > high):
        bound = f"{'>' if low_open else '>='} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def check_out_dir(path, name: str = "out") -> str:
    """The absolute path of output folder ``path``, created if missing and shown to be writable by
    creating and removing a probe file in it.

    Raises:
        TypeError: ``path`` is not a str / os.PathLike.
        ValueError: ``path`` is empty, is an existing file, or cannot be created or written (a
            read-only folder or file system, no permission, a file in the way).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{name} must be a folder path, got an empty string")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{name} {path!r} exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"{name} {path!r} is not a writable folder: {exc.strerror or exc}") from None
    return path


def save_atomic(items: list[tuple[str, object]]) -> None:
    """Write several files so that each is the old or the new version, never half written:
    every ``(path, obj)`` goes to a temporary file in its folder (``torch.save`` for objects,
    UTF-8 text for ``str``), is fsync'ed, and only when all are written are they renamed into
    place, in order, then the folders fsync'ed. Temporary files are removed on failure.

    Raises:
        OSError: a write or rename failed.
    """
    import torch

    from ..data.durable import fsync_dir

    temps = []
    try:
        for path, obj in items:
            tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                               f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            temps.append(tmp)
            with open(tmp, "xb") as f:  # the umask's permissions, as a plain open
                if isinstance(obj, str):
                    f.write(obj.encode("utf-8"))
                else:
                    torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        for (path, _), tmp in zip(items, temps):
            os.replace(tmp, path)
        temps = []
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)
    for folder in sorted({os.path.dirname(os.path.abspath(p)) for p, _ in items}):
        fsync_dir(folder)
