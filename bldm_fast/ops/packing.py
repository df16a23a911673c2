"""pack_bits / unpack_bits: ``(..., C)`` 0/1 <-> uint8 ``(..., ceil(C/8))``, LSB first."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import BIT_DTYPES, ArgumentTypeError, check_channels, check_out_dtype, check_packed, check_tensor


def pack_bits(bits: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Pack the last dim 8 bits per byte, LSB first (``numpy.packbits(x, -1, bitorder="little")``).

    Args:
        bits: ``(..., C)`` with ``C >= 1``; bool or uint8 (any nonzero is 1), or float16/bfloat16/
            float32/float64 holding only 0 and 1. Any strides; may have zero rows.
        backend: ``"auto"`` or a name from :func:`bldm_fast.available_backends`.

    Returns:
        uint8 ``(..., ceil(C/8))``: bit ``j`` of byte ``k`` holds channel ``8k + j``, padding bits 0.

    Raises:
        TypeError (ArgumentTypeError, also a ValueError): ``bits`` has another dtype.
        ValueError: ``bits`` has no channel dim, or a float value other than 0 and 1 (every
            backend checks in the packing pass; on CUDA that reads one flag back).
    """
    check_tensor(bits, "bits")
    if bits.dtype not in BIT_DTYPES:
        raise ArgumentTypeError(f"bits must be bool, uint8 or float16/bfloat16/float32/float64, got {bits.dtype}")
    if bits.dim() < 1 or bits.shape[-1] < 1:
        raise ValueError(f"bits must have a last (channel) dim of size >= 1, got shape {tuple(bits.shape)}")
    return backend_ops(resolve_backend(backend, bits.device)).pack_bits(bits)


def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype = torch.float32, *,
                backend: str = "auto") -> torch.Tensor:
    """Unpack ``(..., ceil(C/8))`` uint8 into ``(..., channels)`` 0/1 of ``dtype``.

    Args:
        packed: uint8 ``(..., ceil(channels/8))``, any strides; padding bits are ignored.
        channels: ``C >= 1``.
        dtype: bool, uint8, float16, bfloat16, float32 or float64.

    Raises:
        TypeError (ArgumentTypeError, also a ValueError): ``packed`` is not uint8, ``channels`` not
            an int, or ``dtype`` is not one of the above.
        ValueError: ``channels < 1`` or ``packed``'s last dim is not ``ceil(channels/8)``.
    """
    channels = check_channels(channels)
    check_packed(packed, "packed", channels)
    check_out_dtype(dtype, "dtype", optional=False)
    return backend_ops(resolve_backend(backend, packed.device)).unpack_bits(packed, channels, dtype)
