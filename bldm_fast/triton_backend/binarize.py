"""binarize / quantize_probs as Triton kernels: the quantizer's sigmoid, threshold or Bernoulli
draw and packing in one pass over the code logits."""

import torch
import triton
import triton.language as tl

from . import tiles
from .fmath import stable_sigmoid
from .philox import half_words, load_stream, stream_base, to_uniform
from .tiles import half_tile, pack_tile


@triton.jit
def _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, H: tl.constexpr,
                   ALIGNED: tl.constexpr, BERNOULLI: tl.constexpr):
    """Bits ``4H .. 4H+3`` of each packed byte (``tiles.half_tile``): ``(uint8 [BLOCK], NaN count)``."""
    o_bit, o_elem, m_elem = half_tile(o_byte, m_byte, C, NB, H, ALIGNED)
    l = tl.load(logits_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)
    if BERNOULLI:
        w = half_words(o_elem, o_byte, H, stream_base(off_lo, off_hi), seed_lo, seed_hi, ALIGNED)
        bit = to_uniform(w) < stable_sigmoid(l)
    else:
        bit = l > 0.0
    return pack_tile(bit & m_elem, o_bit), tl.max(((l != l) & m_elem).to(tl.int32))


@triton.jit(do_not_specialize=tiles.TILE_SIZES)
def _binarize_kernel(logits_ptr, packed_ptr, nan_ptr, n_bytes, C, NB, rng_ptr, BLOCK: tl.constexpr,
                     ALIGNED: tl.constexpr, BERNOULLI: tl.constexpr):
    seed_lo, seed_hi, off_lo, off_hi = load_stream(rng_ptr)
    o_byte = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_byte = o_byte < n_bytes
    lo, nan_lo = _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, 0, ALIGNED,
                                BERNOULLI)
    hi, nan_hi = _binarize_half(logits_ptr, o_byte, m_byte, C, NB, seed_lo, seed_hi, off_lo, off_hi, 1, ALIGNED,
                                BERNOULLI)
    tl.store(packed_ptr + o_byte, lo | hi, mask=m_byte)
    has_nan = tl.maximum(nan_lo, nan_hi)
    if has_nan > 0:
        tl.atomic_max(nan_ptr, has_nan)


@triton.jit(do_not_specialize=["n"])
def _quantize_kernel(logits_ptr, out_ptr, nan_ptr, n, BLOCK: tl.constexpr):
    o = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    l = tl.load(logits_ptr + o, mask=o < n, other=0.0).to(tl.float32)
    p = stable_sigmoid(l)
    tl.store(out_ptr + o, (p * 255.0 + 0.5).to(tl.int32).to(tl.uint8), mask=o < n)
    has_nan = tl.max((l != l).to(tl.int32))
    if has_nan > 0:
        tl.atomic_max(nan_ptr, has_nan)


def _raise_if(flag: torch.Tensor, message: str) -> None:
    if int(flag.item()):  # one sync: bad input raises before the op returns
        raise ValueError(message)


def binarize(logits, bernoulli, stream):
    """Raises ValueError when a logit is NaN (checked after the kernel: one sync)."""
    lg = logits.contiguous()
    c = lg.shape[-1]
    nb = (c + 7) // 8
    packed = torch.empty((*lg.shape[:-1], nb), dtype=torch.uint8, device=lg.device)
    if packed.numel():
        nan = torch.zeros(1, dtype=torch.int32, device=lg.device)
        _binarize_kernel[tiles.grid(packed.numel())](
            lg, packed, nan, packed.numel(), c, nb, stream.view(torch.int32), BLOCK=tiles.BLOCK_BYTES,
            ALIGNED=c % 8 == 0, BERNOULLI=bernoulli, num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
        _raise_if(nan, "binarize: logits contain NaN")
    return packed


def quantize_probs(logits):
    """Raises ValueError when a logit is NaN (checked after the kernel: one sync)."""
    lg = logits.contiguous()
    out = torch.empty(lg.shape, dtype=torch.uint8, device=lg.device)
    if out.numel():
        nan = torch.zeros(1, dtype=torch.int32, device=lg.device)
        block = 8 * tiles.BLOCK_BYTES
        _quantize_kernel[(triton.cdiv(out.numel(), block),)](lg, out, nan, out.numel(), BLOCK=block,
                                                               num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
        _raise_if(nan, "quantize_probs: logits contain NaN")
    return out
