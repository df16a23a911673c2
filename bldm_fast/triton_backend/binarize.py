"""binarize / quantize_probs as Triton kernels: the quantizer's sigmoid, threshold or Bernoulli
draw and packing in one pass over the code logits."""

import torch
import triton
import triton.language as tl

from . import tiles
from .fmath import stable_sigmoid
from .philox import half_words, halves, stream_base, to_uniform
from .tiles import half_tile, pack_tile


@triton.jit
def _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, H: tl.constexpr,
                   ALIGNED: tl.constexpr, BERNOULLI: tl.constexpr):
    """Bits ``4H .. 4H+3`` of each packed byte (``tiles.half_tile``), as uint8 ``[BLOCK]``."""
    o_bit, o_elem, m_elem = half_tile(o_byte, m_byte, C, NB, H, ALIGNED)
    l = tl.load(logits_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)
    if BERNOULLI:
        w = half_words(o_elem, o_byte, H, stream_base(off_lo, off_hi), seed_lo, seed_hi, ALIGNED)
        bit = to_uniform(w) < stable_sigmoid(l)
    else:
        bit = l > 0.0
    return pack_tile(bit & m_elem, o_bit)


@triton.jit(do_not_specialize=[*tiles.TILE_SIZES, *tiles.STREAM])
def _binarize_kernel(logits_ptr, packed_ptr, n_bytes, C, NB, seed_lo, seed_hi, off_lo, off_hi, BLOCK: tl.constexpr,
                     ALIGNED: tl.constexpr, BERNOULLI: tl.constexpr):
    o_byte = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_byte = o_byte < n_bytes
    lo = _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, 0, ALIGNED, BERNOULLI)
    hi = _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, 1, ALIGNED, BERNOULLI)
    tl.store(packed_ptr + o_byte, lo | hi, mask=m_byte)


@triton.jit(do_not_specialize=["n"])
def _quantize_kernel(logits_ptr, out_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    p = stable_sigmoid(tl.load(logits_ptr + o, mask=o < n, other=0.0).to(tl.float32))
    tl.store(out_ptr + o, (p * 255.0 + 0.5).to(tl.int32).to(tl.uint8), mask=o < n)


def binarize(logits, bernoulli, seed, offset):
    lg = logits.contiguous()
    c = lg.shape[-1]
    nb = (c + 7) // 8
    packed = torch.empty((*lg.shape[:-1], nb), dtype=torch.uint8, device=lg.device)
    if packed.numel():
        _binarize_kernel[tiles.grid(packed.numel())](
            lg, packed, packed.numel(), c, nb, *halves(seed), *halves(offset), BLOCK=tiles.BLOCK_BYTES,
            ALIGNED=c % 8 == 0, BERNOULLI=bernoulli, num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
    return packed


def quantize_probs(logits):
    lg = logits.contiguous()
    out = torch.empty(lg.shape, dtype=torch.uint8, device=lg.device)
    if out.numel():
        block = 8 * tiles.BLOCK_BYTES
        _quantize_kernel[(triton.cdiv(out.numel(), block),)](lg, out, out.numel(), BLOCK=block,
                                                               num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
    return out
