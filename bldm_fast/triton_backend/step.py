"""sample_step as one Triton kernel: logits (+ uncond) and packed x_t read once, packed
x_{t_prev} (+ probabilities, + next model input) written once, each byte as two halves of 4 bits
(``tiles.half_tile``). The math is DESIGN.md section 5 in the operation order of
kernels/include/bldm_fast/step_math.h, so a GPU run rounds like the C++ kernels: the same Cephes exp,
IEEE division (``div_rn``; Triton's ``/`` is approximate) and no fused multiply-add (launched with
``enable_fp_fusion=False``)."""

import torch
import triton
import triton.language as tl

from . import tiles
from .fmath import exp_nonpositive
from .philox import half_words, load_stream, stream_base, to_uniform
from .tiles import bits_view, half_tile, pack_tile, store_bits, unpack_tile


@triton.jit
def _step_half(logits_ptr, uncond_ptr, probs_ptr, unpacked_ptr, o_byte, m_byte, xt_byte, mask_byte, known_byte, C,
               NB, inv_temp, g, k_prev, b_prev, qh, ql, final, seed_lo, seed_hi, off_lo, off_hi, H: tl.constexpr,
               ALIGNED: tl.constexpr, GUIDED: tl.constexpr, MASKED: tl.constexpr, PREDICT_FLIP: tl.constexpr,
               STORE_PROBS: tl.constexpr, STORE_UNPACKED: tl.constexpr, ONE: tl.constexpr):
    """Bits ``4H .. 4H+3`` of each byte: ``(their packed bits [BLOCK] uint8, NaN count)``."""
    o_bit, o_elem, m_elem = half_tile(o_byte, m_byte, C, NB, H, ALIGNED)
    cond = tl.load(logits_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)  # [4, BLOCK]
    if GUIDED:
        unc = tl.load(uncond_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)
        d = cond - unc
        gd = d * g
        l = (cond + gd) * inv_temp
    else:
        l = cond * inv_temp
    xt = unpack_tile(xt_byte, o_bit)
    flip = xt & PREDICT_FLIP
    # sigmoid(+-|l|) from one exp, p0 = P(x_0 = 1), p0c = P(x_0 = 0)
    e = exp_nonpositive(-tl.abs(l))
    hi = tl.math.div_rn(tl.full(l.shape, 1.0, tl.float32), 1.0 + e)
    lo = e * hi
    pos = l >= 0.0
    p = tl.where(pos, hi, lo)
    pc = tl.where(pos, lo, hi)
    p0 = tl.where(flip, pc, p)
    if final:  # the threshold step (a runtime flag from the scalars tensor: no recompile)
        prob = p0
        bit = tl.where(flip, -l, l) > 0.0
    else:
        p0c = tl.where(flip, p, pc)
        a1 = k_prev * p0 + b_prev
        a0 = k_prev * p0c + b_prev
        n1 = a1 * tl.where(xt, qh, ql)
        prob = tl.math.div_rn(n1, n1 + a0 * tl.where(xt, ql, qh))
        w = half_words(o_elem, o_byte, H, stream_base(off_lo, off_hi), seed_lo, seed_hi, ALIGNED)
        bit = to_uniform(w) < prob
    if MASKED:
        bit = tl.where(unpack_tile(mask_byte, o_bit), unpack_tile(known_byte, o_bit), bit)
    bit = bit & m_elem
    if STORE_PROBS:
        tl.store(probs_ptr + o_elem, prob, mask=m_elem)
    if STORE_UNPACKED:
        store_bits(unpacked_ptr, o_elem, bit, m_elem, ONE)
    return pack_tile(bit, o_bit), tl.max(((l != l) & m_elem).to(tl.int32))


@triton.jit(do_not_specialize=tiles.TILE_SIZES)
def _step_kernel(logits_ptr, uncond_ptr, xt_ptr, mask_ptr, known_ptr, packed_ptr, probs_ptr, unpacked_ptr,
                 nan_ptr, n_bytes, C, NB, scalars_ptr, rng_ptr,
                 BLOCK: tl.constexpr, ALIGNED: tl.constexpr, GUIDED: tl.constexpr, MASKED: tl.constexpr,
                 PREDICT_FLIP: tl.constexpr, STORE_PROBS: tl.constexpr,
                 STORE_UNPACKED: tl.constexpr, ONE: tl.constexpr):
    # The step's scalars and stream live in device memory: new values need no recompile, no sync.
    inv_temp = tl.load(scalars_ptr)
    g = tl.load(scalars_ptr + 1)
    k_prev = tl.load(scalars_ptr + 2)
    b_prev = tl.load(scalars_ptr + 3)
    qh = tl.load(scalars_ptr + 4)
    ql = tl.load(scalars_ptr + 5)
    final = tl.load(scalars_ptr + 6) != 0.0
    seed_lo, seed_hi, off_lo, off_hi = load_stream(rng_ptr)
    o_byte = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m_byte = o_byte < n_bytes
    xt_byte = tl.load(xt_ptr + o_byte, mask=m_byte, other=0)
    mask_byte = xt_byte  # mask_byte and known_byte are read only when MASKED
    known_byte = xt_byte
    if MASKED:
        mask_byte = tl.load(mask_ptr + o_byte, mask=m_byte, other=0)
        known_byte = tl.load(known_ptr + o_byte, mask=m_byte, other=0)
    lo, nan_lo = _step_half(logits_ptr, uncond_ptr, probs_ptr, unpacked_ptr, o_byte, m_byte, xt_byte, mask_byte,
                            known_byte, C, NB, inv_temp, g, k_prev, b_prev, qh, ql, final, seed_lo, seed_hi, off_lo,
                            off_hi, 0, ALIGNED, GUIDED, MASKED, PREDICT_FLIP, STORE_PROBS, STORE_UNPACKED, ONE)
    hi, nan_hi = _step_half(logits_ptr, uncond_ptr, probs_ptr, unpacked_ptr, o_byte, m_byte, xt_byte, mask_byte,
                            known_byte, C, NB, inv_temp, g, k_prev, b_prev, qh, ql, final, seed_lo, seed_hi, off_lo,
                            off_hi, 1, ALIGNED, GUIDED, MASKED, PREDICT_FLIP, STORE_PROBS, STORE_UNPACKED, ONE)
    tl.store(packed_ptr + o_byte, lo | hi, mask=m_byte)
    has_nan = tl.maximum(nan_lo, nan_hi)
    if has_nan > 0:
        tl.atomic_max(nan_ptr, has_nan)


def sample_step(logits, uncond, xt_packed, mask, known, scalars, stream, predict_flip, return_probs, out_dtype,
                check_nan):
    """Returns ``(packed x_{t_prev}, probs or None, unpacked or None, int32 (1,) NaN flag)``;
    ``scalars`` float32 ``(7,)`` and ``stream`` int64 ``(2,)`` on the device (see kernels/ops.cpp).

    Raises:
        ValueError: with ``check_nan``, the (guided) logits hold NaN (read after the kernel: one sync).
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
            packed, probs, target, nan, n, c, xt.shape[-1], scalars, stream.view(torch.int32),
            BLOCK=tiles.BLOCK_BYTES, ALIGNED=c % 8 == 0, GUIDED=uncond is not None, MASKED=mask is not None,
            PREDICT_FLIP=predict_flip, STORE_PROBS=return_probs, STORE_UNPACKED=out_dtype is not None, ONE=one,
            num_warps=tiles.NUM_WARPS, enable_fp_fusion=False)
        if check_nan and int(nan.item()):
            raise ValueError("sample_step: logits contain NaN (or guidance combined infinite logits into NaN)")
    return packed, probs, unpacked, nan
