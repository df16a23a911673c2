"""pack_bits / unpack_bits as Triton kernels (one ``[8, BLOCK]`` tile per program)."""

import torch
import triton
import triton.language as tl

from . import tiles
from .tiles import bits_view, byte_tile, pack_tile, store_bits, unpack_tile


@triton.jit(do_not_specialize=tiles.TILE_SIZES)
def _pack_kernel(bits_ptr, packed_ptr, bad_ptr, n_bytes, C, NB, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
                 CHECK_01: tl.constexpr):
    o_byte, m_byte, o_bit, o_elem, m_elem = byte_tile(n_bytes, C, NB, BLOCK, ALIGNED)
    v = tl.load(bits_ptr + o_elem, mask=m_elem, other=0)
    tl.store(packed_ptr + o_byte, pack_tile((v != 0) & m_elem, o_bit), mask=m_byte)
    if CHECK_01:
        has_bad = tl.max(((v != 0) & (v != 1) & m_elem).to(tl.int32))
        if has_bad > 0:
            tl.atomic_max(bad_ptr, has_bad)


@triton.jit(do_not_specialize=tiles.TILE_SIZES)
def _unpack_kernel(packed_ptr, out_ptr, n_bytes, C, NB, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
                   ONE: tl.constexpr):
    o_byte, m_byte, o_bit, o_elem, m_elem = byte_tile(n_bytes, C, NB, BLOCK, ALIGNED)
    bits = unpack_tile(tl.load(packed_ptr + o_byte, mask=m_byte, other=0), o_bit)
    store_bits(out_ptr, o_elem, bits, m_elem, ONE)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """``(..., C)`` -> uint8 ``(..., ceil(C/8))``; nonzero is 1.

    Raises:
        ValueError: floating ``bits`` hold a value other than 0 and 1 (checked after the kernel: one sync).
    """
    c = bits.shape[-1]
    nb = (c + 7) // 8
    x = bits.contiguous()
    if x.dtype == torch.bool:
        x = x.view(torch.uint8)
    out = torch.empty((*bits.shape[:-1], nb), dtype=torch.uint8, device=bits.device)
    check = x.is_floating_point()
    bad = torch.zeros(1, dtype=torch.int32, device=bits.device) if check else None
    if out.numel():
        _pack_kernel[tiles.grid(out.numel())](x, out, bad, out.numel(), c, nb, BLOCK=tiles.BLOCK_BYTES,
                                              ALIGNED=c % 8 == 0, CHECK_01=check, num_warps=tiles.NUM_WARPS)
        if check and int(bad.item()):
            raise ValueError("pack_bits: bits must hold only 0 or 1, found another value")
    return out


def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """uint8 ``(..., ceil(C/8))`` -> ``(..., channels)`` 0/1 of ``dtype``."""
    p = packed.contiguous()
    out = torch.empty((*packed.shape[:-1], channels), dtype=dtype, device=packed.device)
    target, one = bits_view(out)
    if p.numel():
        _unpack_kernel[tiles.grid(p.numel())](p, target, p.numel(), channels, p.shape[-1],
                                              BLOCK=tiles.BLOCK_BYTES, ALIGNED=channels % 8 == 0, ONE=one,
                                              num_warps=tiles.NUM_WARPS)
    return out
