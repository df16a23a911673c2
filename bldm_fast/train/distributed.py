"""The process group of a training run: torchrun's environment, gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """Whether torchrun (or ``torch.distributed.launch``) started this process with a world > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def resolve_device(device: str | None) -> torch.device:
    """``device`` (default: ``cuda`` when available, else ``cpu``); under torchrun on CUDA the
    local rank's GPU.

    Raises:
        ValueError: an unknown device string, or CUDA asked for without a GPU.
    """
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


@contextlib.contextmanager
def process_group(device: torch.device):
    """Yield ``(rank, world)``; under torchrun initialise the default group (nccl for CUDA,
    gloo otherwise) unless one exists, and destroy what was created here on exit."""
    created = False
    if launched_by_torchrun() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        created = True
    try:
        if dist.is_initialized():
            yield dist.get_rank(), dist.get_world_size()
        else:
            yield 0, 1
    finally:
        if created:
            dist.destroy_process_group()


def all_mean(values: list[float], world: int, device: torch.device) -> list[float]:
    """The mean over ranks of each value (identity with one rank)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / world).tolist()


def gather_objects(obj, world: int) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier(world: int) -> None:
    """Wait for every rank (no-op with one rank)."""
    if world > 1:
        dist.barrier()
