"""The one set of argument rules of the public ops (every op validates once, here, before it calls
a backend). Each message names the user's argument.

* ints: Python ints, numpy integer scalars and 0-d integer tensors are accepted wherever an int is
  (``bool`` is not an int); under ``torch.compile`` a SymInt too.
* numbers (floats): ints as above, Python/numpy floats and 0-d floating tensors.
* A wrong *type* raises :class:`ArgumentTypeError`, a ``TypeError`` that is also a ``ValueError``
  (so ``except ValueError`` and the CLI's one-line error handler catch every bad argument); a
  wrong *value* raises ``ValueError``.
"""

import math
import numbers

import numpy as np
import torch

LOGIT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BIT_DTYPES = (torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64)
U64_MAX = 2**64 - 1
F32_MAX = float(np.finfo(np.float32).max)


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a TypeError, catchable as ValueError like every bad argument."""


def compiling() -> bool:
    """Whether torch.compile / torch.export is tracing this call (checks that read tensor data are
    then replaced by device-side asserts)."""
    return torch.compiler.is_compiling()


def packed_size(channels: int) -> int:
    """Bytes per packed row of ``channels`` bits: ``ceil(channels / 8)``."""
    return (channels + 7) // 8


def is_int(value) -> bool:
    """A Python int, numpy integer or SymInt (not bool)."""
    if type(value) is int:  # the common case, without the ABC checks below (~1 us each)
        return True
    return (isinstance(value, (numbers.Integral, torch.SymInt)) and not isinstance(value, (bool, np.bool_)))


def is_int_tensor(value) -> bool:
    return (isinstance(value, torch.Tensor) and not value.is_floating_point() and not value.is_complex()
            and value.dtype != torch.bool)


def _range_text(low, high) -> str:
    if high is None:
        return f">= {low}"
    return f"in [{low}, {high}]"


def check_int(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An int within ``[low, high]`` as a Python int (a SymInt stays symbolic).

    Accepts Python ints, numpy integer scalars and 0-d integer tensors (read once: use
    :func:`index_arg` for values that should stay on the device).

    Raises:
        ArgumentTypeError: not an int (bool included). ValueError: out of range.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or not is_int_tensor(value):
            raise ArgumentTypeError(f"{name} must be an int or a 0-d integer tensor, got a {value.dtype} tensor "
                                    f"of shape {tuple(value.shape)}")
        value = int(value)
    elif not is_int(value):
        raise ArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    elif not isinstance(value, torch.SymInt):
        value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got {value}")
    return value


def index_arg(value, name: str, low: int, high: int):
    """An int step index in ``[low, high]``: an int (Python/numpy/SymInt) is returned as an int;
    a 0-d integer tensor stays a tensor (int64, its device), so compiled code does not specialise
    on its value. Eager calls check a tensor's value (one read); compiled calls assert it on the
    device.

    Raises:
        ArgumentTypeError: neither an int nor a 0-d integer tensor. ValueError: out of range.
    """
    if not isinstance(value, torch.Tensor):
        return check_int(value, name, low, high)
    if value.dim() != 0 or not is_int_tensor(value):
        raise ArgumentTypeError(f"{name} must be an int or a 0-d integer tensor, got a {value.dtype} tensor of "
                                f"shape {tuple(value.shape)}")
    value = value.to(torch.int64)
    check_tensor_range(value, name, low, high)
    return value


def check_tensor_range(value: torch.Tensor, name: str, low, high) -> None:
    """Integer tensor values within ``[low, high]`` (bounds: ints or 0-d tensors). Eager: one read
    of the min and max; under torch.compile a device-side assert (RuntimeError on the CPU)."""
    if value.numel() == 0:
        return
    if compiling():
        torch._assert_async(((value >= low) & (value <= high)).all(), f"{name} must be in [{low}, {high}]")
        return
    lo, hi = int(value.min()), int(value.max())
    low_v, high_v = int(low), int(high)
    if lo < low_v or hi > high_v:
        got = f"{lo}" if lo == hi else f"values in {lo}..{hi}"
        raise ValueError(f"{name} must be in [{low_v}, {high_v}], got {got}")


def check_bool(value, name: str) -> bool:
    """A bool (Python or numpy); strings and ints are not (``"false"`` would read as True).

    Raises:
        ArgumentTypeError: not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def number_arg(value, name: str):
    """A real number: Python/numpy int or float (not bool) as a Python float, or a 0-d floating or
    integer tensor, kept as a tensor (compiled code may pass traced values).

    Raises:
        ArgumentTypeError: anything else.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.is_complex() or value.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must be a number or a 0-d real tensor, got a {value.dtype} tensor of "
                                    f"shape {tuple(value.shape)}")
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_temperature(value, name: str = "temperature"):
    """A temperature > 0 whose reciprocal is a finite, nonzero float32 (the kernels scale by
    ``1 / temperature`` in float32). A Python float is returned as such; a 0-d tensor stays a
    tensor (checked by one read when eager, by a device assert when compiling).

    Raises:
        ArgumentTypeError: not a number. ValueError: not finite, <= 0, or 1/temperature overflows
        or underflows float32 (temperature < ~2.9e-39 or > ~1e45).
    """
    value = number_arg(value, name)
    if isinstance(value, torch.Tensor):
        inv = (1.0 / value.to(torch.float64)).to(torch.float32)
        ok = (value > 0) & torch.isfinite(inv) & (inv > 0)
        if compiling():
            torch._assert_async(ok, f"{name} must be a finite number > 0 whose reciprocal is a finite float32")
        elif not bool(ok):
            raise ValueError(f"{name} must be a finite number > 0 whose reciprocal is a finite, nonzero float32, "
                             f"got {float(value)!r}")
        return value
    ok = math.isfinite(value) and value > 0
    if ok:
        inv = 1.0 / value
        ok = inv <= F32_MAX and float(np.float32(inv)) > 0
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0 whose reciprocal is a finite, nonzero float32, "
                         f"got {value!r}")
    return value


def check_finite_f32(value, name: str):
    """A number that is finite in float32 (e.g. guidance): a Python float, or a 0-d tensor kept.

    Raises:
        ArgumentTypeError: not a number. ValueError: not finite as a float32.
    """
    value = number_arg(value, name)
    if isinstance(value, torch.Tensor):
        ok = torch.isfinite(value.to(torch.float32))
        if compiling():
            torch._assert_async(ok, f"{name} must be a finite float32 number")
        elif not bool(ok):
            raise ValueError(f"{name} must be a finite float32 number, got {float(value)!r}")
        return value
    if not math.isfinite(value) or abs(value) > F32_MAX:
        raise ValueError(f"{name} must be a finite float32 number, got {value!r}")
    return value


def check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_logits(x, name: str = "logits", min_dim: int = 1) -> None:
    """float32/float16/bfloat16 ``(..., C)`` with ``C >= 1`` and at least ``min_dim`` dims."""
    check_tensor(x, name)
    if x.dtype not in LOGIT_DTYPES:
        raise ArgumentTypeError(f"{name} must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() < min_dim or x.shape[-1] < 1:
        lead = "(B, ..., C)" if min_dim > 1 else "(..., C)"
        raise ValueError(f"{name} must be {lead} with a last (channel) dim of size >= 1, got shape {tuple(x.shape)}")


def check_channels(channels) -> int:
    return check_int(channels, "channels", 1)


def check_packed(x, name: str, channels: int, min_dim: int = 1) -> None:
    """``x`` is a uint8 tensor of at least ``min_dim`` dims whose last dim is ``ceil(channels/8)``."""
    check_tensor(x, name)
    if x.dtype != torch.uint8:
        raise ArgumentTypeError(f"{name} must be uint8 packed bits, got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if x.shape[-1] != packed_size(channels):
        raise ValueError(
            f"{name} must have last dim ceil({channels} / 8) = {packed_size(channels)}, got shape {tuple(x.shape)}"
        )


def check_out_dtype(dtype, name: str = "out_dtype", optional: bool = True) -> None:
    if (dtype is None and optional) or dtype in BIT_DTYPES:
        return
    raise ArgumentTypeError(f"{name} must be {'None or ' if optional else ''}one of {BIT_DTYPES}, got {dtype!r}")


def check_same_device(x: torch.Tensor, name: str, device: torch.device, ref_name: str) -> None:
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but {ref_name} is on {device}")


def check_device_arg(device) -> torch.device:
    """A device this torch can allocate on.

    Raises:
        ArgumentTypeError: not a str/torch.device. ValueError: unknown, or CUDA on a torch without CUDA.
    """
    if not isinstance(device, (str, torch.device)):
        raise ArgumentTypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a valid torch device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available in this torch install")
    return device


def check_seed_offset(seed, offset, numel: int) -> tuple[int, int]:
    """``seed`` and ``offset`` for a call over ``numel`` elements, as Python ints (or SymInts).

    Raises:
        ArgumentTypeError: either is not an int. ValueError: out of [0, 2^64), or the last counter
        the call needs, ``offset + ceil(numel / 4) - 1``, passes 2^64 - 1.
    """
    seed = check_int(seed, "seed", 0, U64_MAX)
    offset = check_int(offset, "offset", 0, U64_MAX)
    counters = (numel + 3) // 4
    if offset + counters - 1 > U64_MAX:
        raise ValueError(f"offset {offset} + {counters} counters for {numel} elements passes the last Philox "
                         "counter 2**64 - 1")
    return seed, offset
