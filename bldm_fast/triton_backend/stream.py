"""The bare random stream as a Triton kernel: the Philox-only rate that noising is measured
against, and the oracle-checked words."""

import torch
import triton
import triton.language as tl

from . import tiles
from .philox import load_stream, philox_words, pick4, stream_base, to_uniform


@triton.jit(do_not_specialize=["n"])
def _fill_kernel(out_ptr, n, rng_ptr, BLOCK: tl.constexpr, UNIFORM: tl.constexpr):
    seed_lo, seed_hi, off_lo, off_hi = load_stream(rng_ptr)
    o_ctr = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] counters
    r0, r1, r2, r3 = philox_words(stream_base(off_lo, off_hi) + o_ctr.to(tl.uint64), seed_lo, seed_hi)
    o_word = tl.arange(0, 4)
    w = pick4(o_word[:, None], r0[None, :], r1[None, :], r2[None, :], r3[None, :])  # [4, BLOCK]
    o_elem = o_ctr[None, :] * 4 + o_word[:, None]
    if UNIFORM:
        tl.store(out_ptr + o_elem, to_uniform(w), mask=o_elem < n)
    else:
        tl.store(out_ptr + o_elem, w.to(tl.int64) & 0xFFFFFFFF, mask=o_elem < n)


def philox_fill_(out: torch.Tensor, stream: torch.Tensor) -> None:
    """Fill contiguous ``out`` (float32 uniforms or int64 words) with the stream tensor
    ``[seed, offset]`` (int64 ``(2,)`` on out's device)."""
    n = out.numel()
    if n:
        block = 2 * tiles.BLOCK_BYTES
        _fill_kernel[(triton.cdiv(triton.cdiv(n, 4), block),)](
            out, n, stream.view(torch.int32), BLOCK=block, UNIFORM=out.dtype == torch.float32,
            num_warps=tiles.NUM_WARPS)
