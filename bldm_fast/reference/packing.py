"""Bit packing in plain PyTorch: ``(..., C)`` 0/1 <-> uint8 ``(..., ceil(C/8))``, LSB first."""

import torch


def packed_size(channels: int) -> int:
    """Bytes per packed row of ``channels`` bits: ``ceil(channels / 8)``."""
    return (channels + 7) // 8


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack nonzero/zero along the last dim; bit ``j`` of byte ``k`` is channel ``8k + j``."""
    c = bits.shape[-1]
    nb = packed_size(c)
    x = (bits != 0).to(torch.uint8)
    x = torch.nn.functional.pad(x, (0, nb * 8 - c)).reshape(*bits.shape[:-1], nb, 8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    return (x * weights).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unpack ``(..., ceil(C/8))`` uint8 into ``(..., channels)`` 0/1 of ``dtype``."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(*packed.shape[:-1], packed.shape[-1] * 8)[..., :channels].to(dtype)
