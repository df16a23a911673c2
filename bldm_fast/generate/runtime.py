"""What ``sample``, ``decode`` and ``encode`` share at run time: argument checks that must pass
before anything is written, one-line warnings, JSON output (``-`` is stdout), versions, and the
process group under ``torchrun``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import warnings

__all__ = ["Ranks", "check_backend", "check_device", "cli_warnings", "versions", "write_json", "check_json_path"]


def check_device(device: str):
    """``torch.device(device)``, refusing CUDA without a GPU (ValueError naming ``--device``)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"--device {device!r} is not a device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available in this torch install (no GPU or a CPU-only "
                         "build)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def check_backend(backend: str, device) -> str:
    """The backend ``backend`` resolves to on ``device`` (ValueError naming ``--backend`` otherwise)."""
    from .._backends import resolve_backend

    try:
        return resolve_backend(backend, device)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"--backend {backend!r}: {exc}") from None


def check_json_path(path: str | None) -> None:
    """Refuse a ``--json`` path whose folder is missing or not writable (``-`` is stdout)."""
    if path is None or path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--json {path!r} is a folder")
    if not os.path.isdir(folder):
        raise ValueError(f"--json {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--json {path!r}: the folder {folder!r} is not writable")


def write_json(obj, path: str) -> None:
    """``obj`` as indented JSON into ``path`` (written to a temporary name, then renamed) or stdout for ``-``."""
    text = json.dumps(obj, indent=1, default=str) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def cli_warnings(command: str):
    """Print each warning raised inside as one line ``bldm-fast <command>: warning: ...`` on stderr."""
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"bldm-fast {command}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def versions() -> dict:
    """The versions a result depends on: bldm_fast, torch, numpy, Python, and the backends available."""
    import numpy
    import torch

    from .. import __version__
    from .._backends import available_backends

    return {"bldm_fast": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "backends": available_backends()}


class Ranks:
    """The ``torchrun`` process group of a command: created from ``WORLD_SIZE`` > 1 (gloo; nccl
    for CUDA devices), ``rank``/``world``, ``agree`` to share errors, destroyed by ``close``."""

    def __init__(self, device_type: str = "cpu"):
        import torch.distributed as dist

        self.dist = dist
        self.created = False
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
            self.created = True
        self.on = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def agree(self, error: BaseException | None = None) -> None:
        """Raise on every rank when any rank failed (the failing rank re-raises its own error)."""
        if not self.on:
            if error is not None:
                raise error
            return
        got = [None] * self.world
        self.dist.all_gather_object(got, None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [(r, e) for r, e in enumerate(got) if e is not None]
        if failed:
            raise RuntimeError("failed on " + "; ".join(f"rank {r}: {e}" for r, e in failed))

    def close(self) -> None:
        if self.created:
            self.dist.destroy_process_group()
            self.created = False
