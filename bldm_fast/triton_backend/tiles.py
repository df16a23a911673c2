"""The ``[8, BLOCK]`` tile every kernel works on: one column per packed byte, one row per bit.

Column ``g`` is packed byte ``g`` of the flat ``(rows, ceil(C/8))`` packed tensor; row ``j`` is
its bit ``j``, channel ``8 * (g % NB) + j`` of row ``g // NB`` of the unpacked ``(rows, C)``
tensor. Reading the unpacked side this way is contiguous when ``C % 8 == 0`` (ALIGNED).

Bits lead, bytes trail: Triton's default layout spreads the trailing axis over threads, so each
thread holds whole bytes, and per-byte values (the Philox words of its counters, thresholds, the
packed byte) live in one thread each. With bytes leading, each byte's 8 bits sat on 8 threads,
which computed its Philox words 8 times over (seen in the SASS of the noise kernel).
"""

import os

import torch
import triton
import triton.language as tl

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
# Packed bytes per program. On a GPU 512 bytes is 4096 elements: with 4 warps each thread owns
# 32 elements, i.e. eight 16-byte loads per fp32 input in flight, enough to cover HBM latency
# (derived, not tuned: the H200 runs of benchmarks/gpu_check.sh measured this setting only).
# The interpreter runs each program as numpy calls, so there fewer, larger programs are faster.
BLOCK_BYTES = 4096 if INTERPRETING else 512
NUM_WARPS = 4


# Sizes are not specialised either: Triton would compile a variant per divisibility of every size
# (hundreds over the test suite's shapes) for no gain here, where ALIGNED carries what matters.
TILE_SIZES = ("n_bytes", "C", "NB")


def grid(n_bytes: int) -> tuple[int]:
    return (triton.cdiv(n_bytes, BLOCK_BYTES),)


# Bit pattern of 1 in each dtype unpacked bits may take, and the integer dtype of that width.
_ONE_BITS = {
    torch.bool: (torch.uint8, 1),
    torch.uint8: (torch.uint8, 1),
    torch.float16: (torch.int16, 0x3C00),
    torch.bfloat16: (torch.int16, 0x3F80),
    torch.float32: (torch.int32, 0x3F800000),
    torch.float64: (torch.int64, 0x3FF0000000000000),
}


def bits_view(out: torch.Tensor | None) -> tuple[torch.Tensor | None, int]:
    """``out`` viewed as integers of its width, and the bit pattern of 1 there: kernels store
    0/1 outputs as ``bit * ONE`` with no float conversion (and Triton 3.6's interpreter cannot
    store bfloat16 tiles)."""
    if out is None:
        return None, 0
    int_dtype, one = _ONE_BITS[out.dtype]
    return out.view(int_dtype), one


@triton.jit
def _elements(o_byte, m_byte, o_bit, C, NB, ALIGNED: tl.constexpr):
    """Flat element indices and masks ``[len(o_bit), BLOCK]`` of bits ``o_bit`` of bytes ``o_byte``."""
    if ALIGNED:
        o_elem = o_byte[None, :] * 8 + o_bit[:, None]
        m_elem = m_byte[None, :] & (o_bit[:, None] < 8)
    else:
        ch = (o_byte % NB)[None, :] * 8 + o_bit[:, None]
        o_elem = (o_byte // NB)[None, :] * C + ch
        m_elem = m_byte[None, :] & (ch < C)
    return o_elem, m_elem


@triton.jit
def byte_tile(n_bytes, C, NB, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """Indices and masks of this program's tile: ``o_byte``/``m_byte`` ``[BLOCK]``, ``o_bit``
    ``[8]``, ``o_elem``/``m_elem`` ``[8, BLOCK]`` (int64 flat element indices)."""
    o_byte = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_byte = o_byte < n_bytes
    o_bit = tl.arange(0, 8)
    o_elem, m_elem = _elements(o_byte, m_byte, o_bit, C, NB, ALIGNED)
    return o_byte, m_byte, o_bit, o_elem, m_elem


@triton.jit
def half_tile(o_byte, m_byte, C, NB, H: tl.constexpr, ALIGNED: tl.constexpr):
    """Half ``H`` (bits ``4H .. 4H+3``) of :func:`byte_tile`'s tile: ``o_bit`` ``[4]``,
    ``o_elem``/``m_elem`` ``[4, BLOCK]``.

    Kernels that load 4-byte logits work on two halves: Triton loads at most 16 bytes per thread
    at once, so an ``[8, BLOCK]`` float32 tile puts each byte on two threads, and per-byte work
    (the Philox words) is done on both; a ``[4, BLOCK]`` half keeps each byte's half in one
    thread, and both halves of a byte in the same one."""
    o_bit = 4 * H + tl.arange(0, 4)
    o_elem, m_elem = _elements(o_byte, m_byte, o_bit, C, NB, ALIGNED)
    return o_bit, o_elem, m_elem


@triton.jit
def sample_of(o_byte, bytes_per_sample, WIDE: tl.constexpr):
    """``o_byte // bytes_per_sample``: in uint32 unless the tensor has 2^31 bytes or more (WIDE),
    since a 64-bit division is a long software routine on the GPU."""
    if WIDE:
        return o_byte // bytes_per_sample
    return o_byte.to(tl.uint32) // bytes_per_sample.to(tl.uint32)


def wide(n_bytes: int) -> bool:
    """The WIDE flag of :func:`sample_of` for a tensor of ``n_bytes`` packed bytes."""
    return n_bytes >= 2**31


@triton.jit
def unpack_tile(byte, o_bit):
    """``[BLOCK]`` uint8 bytes -> ``[len(o_bit), BLOCK]`` bool bits ``o_bit`` (LSB = bit 0)."""
    return ((byte.to(tl.int32)[None, :] >> o_bit[:, None]) & 1) != 0


@triton.jit
def store_bits(ptr, o_elem, bit, m_elem, ONE: tl.constexpr):
    """Store ``[8, BLOCK]`` bool bits as 0/1 through an integer view (see :func:`bits_view`)."""
    tl.store(ptr + o_elem, bit.to(ptr.dtype.element_ty) * ONE, mask=m_elem)


@triton.jit
def pack_tile(bit, o_bit):
    """``[len(o_bit), BLOCK]`` bool bits ``o_bit`` -> ``[BLOCK]`` uint8 bytes (LSB = bit 0)."""
    return tl.sum(bit.to(tl.int32) << o_bit[:, None], axis=0).to(tl.uint8)
