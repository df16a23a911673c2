"""Argument checks shared by the public ops. Dtype problems raise TypeError, every other bad
input ValueError; each message names the argument."""

import math

import torch

from .reference.packing import packed_size

LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BIT_DTYPES = (torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int (or 0-d integer tensor) within ``[low, high]``."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_channels(channels) -> int:
    return check_int(channels, "channels", 1)


def check_packed(x, name: str, channels: int, min_dim: int = 1) -> None:
    """``x`` is a uint8 tensor of at least ``min_dim`` dims whose last dim is ``ceil(channels/8)``."""
    check_tensor(x, name)
    if x.dtype != torch.uint8:
        raise TypeError(f"{name} must be uint8 packed bits, got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if x.shape[-1] != packed_size(channels):
        raise ValueError(
            f"{name} must have last dim ceil({channels} / 8) = {packed_size(channels)}, got shape {tuple(x.shape)}"
        )


def check_out_dtype(dtype) -> None:
    if dtype is not None and dtype not in BIT_DTYPES:
        raise TypeError(f"out_dtype must be None or one of {BIT_DTYPES}, got {dtype!r}")


def check_positive_finite(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_same_device(x: torch.Tensor, name: str, device: torch.device, ref_name: str) -> None:
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {device}")
