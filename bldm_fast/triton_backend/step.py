"""sample_step as one Triton kernel: logits (+ uncond) and packed x_t read once, packed
x_{t_prev} (+ probabilities, + next model input) written once. The math is DESIGN.md section 5
in the operation order of kernels/include/bldm_fast/step_math.h, so a GPU run rounds like the
C++ kernels: the same Cephes exp, IEEE division (``div_rn``; Triton's ``/`` is approximate) and
no fused multiply-add (launched with ``enable_fp_fusion=False``)."""

import torch
import triton
import triton.language as tl

from . import tiles
from .fmath import exp_nonpositive
from .philox import element_words, halves, stream_base, to_uniform
from .tiles import bits_view, byte_tile, pack_tile, store_bits, unpack_tile


@triton.jit(do_not_specialize=[*tiles.TILE_SIZES, "inv_temp", "g", "k_prev", "b_prev", "qh", "ql", *tiles.STREAM])
def _step_kernel(logits_ptr, uncond_ptr, xt_ptr, mask_ptr, known_ptr, packed_ptr, probs_ptr, unpacked_ptr,
                 nan_ptr, n_bytes, C, NB, inv_temp, g, k_prev, b_prev, qh, ql, seed_lo, seed_hi, off_lo, off_hi,
                 BLOCK: tl.constexpr, ALIGNED: tl.constexpr, GUIDED: tl.constexpr, MASKED: tl.constexpr,
                 FINAL: tl.constexpr, PREDICT_FLIP: tl.constexpr, STORE_PROBS: tl.constexpr,
                 STORE_UNPACKED: tl.constexpr, ONE: tl.constexpr):
    o_byte, m_byte, o_bit, o_elem, m_elem = byte_tile(n_bytes, C, NB, BLOCK, ALIGNED)
    cond = tl.load(logits_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)  # [8, BLOCK]
    if GUIDED:
        unc = tl.load(uncond_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)
        d = cond - unc
        gd = d * g
        l = (cond + gd) * inv_temp
    else:
        l = cond * inv_temp
    xt = unpack_tile(tl.load(xt_ptr + o_byte, mask=m_byte, other=0), o_bit)
    flip = xt & PREDICT_FLIP
    # sigmoid(+-|l|) from one exp, p0 = P(x_0 = 1), p0c = P(x_0 = 0)
    e = exp_nonpositive(-tl.abs(l))
    hi = tl.math.div_rn(tl.full(l.shape, 1.0, tl.float32), 1.0 + e)
    lo = e * hi
    pos = l >= 0.0
    p = tl.where(pos, hi, lo)
    pc = tl.where(pos, lo, hi)
    p0 = tl.where(flip, pc, p)
    if FINAL:
        prob = p0
        bit = tl.where(flip, -l, l) > 0.0
    else:
        p0c = tl.where(flip, p, pc)
        a1 = k_prev * p0 + b_prev
        a0 = k_prev * p0c + b_prev
        n1 = a1 * tl.where(xt, qh, ql)
        prob = tl.math.div_rn(n1, n1 + a0 * tl.where(xt, ql, qh))
        w = element_words(o_elem, o_byte, o_bit, stream_base(off_lo, off_hi), seed_lo, seed_hi, ALIGNED)
        bit = to_uniform(w) < prob
    if MASKED:
        m = unpack_tile(tl.load(mask_ptr + o_byte, mask=m_byte, other=0), o_bit)
        k = unpack_tile(tl.load(known_ptr + o_byte, mask=m_byte, other=0), o_bit)
        bit = tl.where(m, k, bit)
    bit = bit & m_elem
    tl.store(packed_ptr + o_byte, pack_tile(bit, o_bit), mask=m_byte)
    if STORE_PROBS:
        tl.store(probs_ptr + o_elem, prob, mask=m_elem)
    if STORE_UNPACKED:
        store_bits(unpacked_ptr, o_elem, bit, m_elem, ONE)
    has_nan = tl.max(((l != l) & m_elem).to(tl.int32))
    if has_nan > 0:
        tl.atomic_max(nan_ptr, has_nan)


def sample_step(logits, uncond, xt_packed, mask, known, inv_temp, g, k_prev, b_prev, qh, ql, final, predict_flip,
                seed, offset, return_probs, out_dtype):
    """Returns ``(packed x_{t_prev}, probs or None, unpacked or None)``.

    Raises:
        ValueError: the (guided) logits hold NaN (checked when the kernel has run: one sync).
    """
    c = logits.shape[-1]
    lg = logits.contiguous()
    xt = xt_packed.contiguous()
    packed = torch.empty_like(xt)
    probs = torch.empty(logits.shape, dtype=torch.float32, device=lg.device) if return_probs else None
    unpacked = torch.empty(logits.shape, dtype=out_dtype, device=lg.device) if out_dtype is not None else None
    nan = torch.zeros(1, dtype=torch.int32, device=lg.device)
    target, one = bits_view(unpacked)
    n = xt.numel()
    if n:
        _step_kernel[tiles.grid(n)](
            lg, uncond.contiguous() if uncond is not None else None, xt,
            mask.contiguous() if mask is not None else None, known.contiguous() if known is not None else None,
            packed, probs, target, nan,
            n, c, xt.shape[-1], inv_temp, g, k_prev, b_prev, qh, ql, *halves(seed), *halves(offset),
            BLOCK=tiles.BLOCK_BYTES, ALIGNED=c % 8 == 0, GUIDED=uncond is not None, MASKED=mask is not None,
            FINAL=final, PREDICT_FLIP=predict_flip, STORE_PROBS=return_probs, STORE_UNPACKED=out_dtype is not None, ONE=one,
            num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
        if int(nan.item()):
            raise ValueError("sample_step: logits contain NaN (or guidance combined infinite logits into NaN)")
    return packed, probs, unpacked
