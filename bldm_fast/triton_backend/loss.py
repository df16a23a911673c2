"""flip_bce as a Triton kernel: weighted BCE-with-logits against packed targets, the per-program
partial sums and the gradient in one pass over the logits."""

import torch
import triton
import triton.language as tl

from . import tiles
from .fmath import bce_with_logits
from .tiles import byte_tile, sample_of, unpack_tile, wide


@triton.jit(do_not_specialize=[*tiles.TILE_SIZES, "bytes_per_sample"])
def _flip_bce_kernel(logits_ptr, target_ptr, w1_ptr, w0_ptr, partial_ptr, grad_ptr, n_bytes, C, NB, bytes_per_sample,
                     BLOCK: tl.constexpr, ALIGNED: tl.constexpr, WIDE: tl.constexpr):
    o_byte, m_byte, o_bit, o_elem, m_elem = byte_tile(n_bytes, C, NB, BLOCK, ALIGNED)
    l = tl.load(logits_ptr + o_elem, mask=m_elem, other=0.0).to(tl.float32)
    y = unpack_tile(tl.load(target_ptr + o_byte, mask=m_byte, other=0), o_bit)
    b = sample_of(o_byte, bytes_per_sample, WIDE)
    w1 = tl.load(w1_ptr + b, mask=m_byte, other=0.0)
    w0 = tl.load(w0_ptr + b, mask=m_byte, other=0.0)
    w = tl.where(y, w1[None, :], w0[None, :])
    loss, grad = bce_with_logits(l, y)
    tl.store(partial_ptr + tl.program_id(0), tl.sum(tl.sum(tl.where(m_elem, w * loss, 0.0), axis=0), axis=0))
    tl.store(grad_ptr + o_elem, w * grad, mask=m_elem)


def flip_bce(logits, target_packed, pos_weight, neg_weight):
    """(float32 scalar loss, gradient shaped and typed like ``logits``). Partial sums are added
    in program order on the host side of the kernel: deterministic, no float atomics. The
    gradient is written in float32 (Triton 3.6's interpreter cannot store bfloat16 tiles) and
    cast when the logits are 16-bit."""
    lg = logits.contiguous()
    t = target_packed.contiguous()
    n = t.numel()
    grad = torch.empty(lg.shape, dtype=torch.float32, device=lg.device)
    if n == 0:
        return torch.zeros((), dtype=torch.float32, device=lg.device), grad.to(lg.dtype)
    grid = tiles.grid(n)
    partial = torch.empty(grid[0], dtype=torch.float32, device=lg.device)
    c = lg.shape[-1]
    _flip_bce_kernel[grid](lg, t, pos_weight.contiguous(), neg_weight.contiguous(), partial, grad, n, c, t.shape[-1],
                           n // t.shape[0], BLOCK=tiles.BLOCK_BYTES, ALIGNED=c % 8 == 0, WIDE=wide(n),
                           num_warps=tiles.NUM_WARPS,
                           enable_fp_fusion=False)
    return partial.sum(), grad.to(lg.dtype)
