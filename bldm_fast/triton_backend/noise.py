"""bernoulli_noise as one Triton kernel: packed x_0 in, packed x_t (+ model input, + flip) out."""

import torch
import triton
import triton.language as tl

from . import tiles
from .philox import element_words, load_stream, stream_base, to_uniform
from .tiles import bits_view, byte_tile, pack_tile, sample_of, store_bits, unpack_tile, wide


@triton.jit(do_not_specialize=[*tiles.TILE_SIZES, "bytes_per_sample"])
def _noise_kernel(x0_ptr, thr_ptr, packed_ptr, unpacked_ptr, flip_ptr, n_bytes, C, NB, bytes_per_sample,
                  rng_ptr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr,
                  STORE_UNPACKED: tl.constexpr, ONE: tl.constexpr, STORE_FLIP: tl.constexpr, WIDE: tl.constexpr):
    seed_lo, seed_hi, off_lo, off_hi = load_stream(rng_ptr)
    o_byte, m_byte, o_bit, o_elem, m_elem = byte_tile(n_bytes, C, NB, BLOCK, ALIGNED)
    x0 = unpack_tile(tl.load(x0_ptr + o_byte, mask=m_byte, other=0), o_bit)
    b = sample_of(o_byte, bytes_per_sample, WIDE)  # [BLOCK] sample of each byte
    thr1 = tl.load(thr_ptr + 2 * b, mask=m_byte, other=0.0)
    thr0 = tl.load(thr_ptr + 2 * b + 1, mask=m_byte, other=0.0)
    w = element_words(o_elem, o_byte, o_bit, stream_base(off_lo, off_hi), seed_lo, seed_hi, ALIGNED)
    xt = (to_uniform(w) < tl.where(x0, thr1[None, :], thr0[None, :])) & m_elem
    tl.store(packed_ptr + o_byte, pack_tile(xt, o_bit), mask=m_byte)
    if STORE_UNPACKED:
        store_bits(unpacked_ptr, o_elem, xt, m_elem, ONE)
    if STORE_FLIP:
        tl.store(flip_ptr + o_byte, pack_tile(xt != (x0 & m_elem), o_bit), mask=m_byte)


def bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip):
    """Packed ``(B, ..., ceil(C/8))`` x_0, float32 ``(B, 2)`` thresholds ``[thr1, thr0]`` and the
    int64 ``(2,)`` stream ``[seed, offset]`` (all on the device) ->
    ``(packed x_t, unpacked or None, flip or None)``."""
    x0 = x0_packed.contiguous()
    nb = x0.shape[-1]
    packed = torch.empty_like(x0)
    unpacked = (torch.empty((*x0.shape[:-1], channels), dtype=out_dtype, device=x0.device)
                if out_dtype is not None else None)
    flip = torch.empty_like(x0) if return_flip else None
    n = x0.numel()
    if n:
        target, one = bits_view(unpacked)
        _noise_kernel[tiles.grid(n)](
            x0, thresholds.contiguous(), packed, target, flip, n, channels, nb, n // x0.shape[0],
            stream.view(torch.int32), BLOCK=tiles.BLOCK_BYTES, ALIGNED=channels % 8 == 0,
            STORE_UNPACKED=unpacked is not None, ONE=one, STORE_FLIP=return_flip, WIDE=wide(n),
            num_warps=tiles.NUM_WARPS)
    return packed, unpacked, flip
