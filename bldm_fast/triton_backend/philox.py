"""The random stream of DESIGN.md section 4 inside Triton kernels.

seed and offset reach a kernel in device memory, as four int32 bit patterns (the 32-bit halves of
two uint64, :func:`load_stream`): so no value ever triggers a recompile or a host sync, and every
Philox word stays uint32 (Triton <= 3.6's interpreter gets ``umulhi`` wrong on signed int32).
"""

import triton
import triton.language as tl
from triton.language.random import philox_impl


@triton.jit
def load_stream(rng_ptr):
    """``(seed_lo, seed_hi, off_lo, off_hi)`` int32 bit patterns from the op's int64 ``(2,)``
    ``stream`` tensor ``[seed, offset]``, passed viewed as int32 ``(4,)`` (little-endian halves):
    read on the device, so new values need no host value and no recompile."""
    return tl.load(rng_ptr), tl.load(rng_ptr + 1), tl.load(rng_ptr + 2), tl.load(rng_ptr + 3)


@triton.jit
def stream_base(off_lo, off_hi):
    """The first counter of a call, as uint64."""
    lo = off_lo.to(tl.uint32, bitcast=True).to(tl.uint64)
    hi = off_hi.to(tl.uint32, bitcast=True).to(tl.uint64)
    return lo | (hi << 32)


@triton.jit
def philox_words(n, seed_lo, seed_hi):
    """The four Philox4x32-10 words of uint64 counters ``n`` (any shape) under the key
    ``(seed_lo, seed_hi)``: ``tl.randint4x``'s rounds with a 64-bit counter ``(lo, hi, 0, 0)``."""
    c0 = (n & 0xFFFFFFFF).to(tl.uint32)
    c1 = (n >> 32).to(tl.uint32)
    zero = tl.zeros_like(c0)
    k0 = seed_lo.to(tl.uint32, bitcast=True) + zero
    k1 = seed_hi.to(tl.uint32, bitcast=True) + zero
    return philox_impl(c0, c1, zero, zero, k0, k1)


@triton.jit
def pick4(w, r0, r1, r2, r3):
    """Word ``w`` (0..3, broadcast against the words) of each counter."""
    return tl.where(w == 0, r0, tl.where(w == 1, r1, tl.where(w == 2, r2, r3)))


@triton.jit
def to_uniform(word):
    """``(word >> 8) * 2^-24`` in float32: exact, in [0, 1 - 2^-24]."""
    return (word >> 8).to(tl.float32) * 5.9604644775390625e-08


@triton.jit
def element_words(o_elem, o_byte, o_bit, base, seed_lo, seed_hi, ALIGNED: tl.constexpr):
    """The word of each element of an ``[8, BLOCK]`` tile (``o_elem`` flat element indices,
    ``o_byte`` the packed byte of each tile column, ``o_bit`` = arange(8)).

    ALIGNED (``C % 8 == 0``): column ``g`` holds elements ``8g .. 8g+7``, the words of counters
    ``base + 2g`` and ``base + 2g + 1``: two Philox calls per 8 elements. Otherwise one call per
    element, taking word ``i % 4`` of counter ``base + i // 4``.
    """
    if ALIGNED:
        n = base + (o_byte * 2).to(tl.uint64)
        a0, a1, a2, a3 = philox_words(n, seed_lo, seed_hi)
        b0, b1, b2, b3 = philox_words(n + 1, seed_lo, seed_hi)
        j = o_bit[:, None]
        lo = pick4(j, a0[None, :], a1[None, :], a2[None, :], a3[None, :])
        hi = pick4(j - 4, b0[None, :], b1[None, :], b2[None, :], b3[None, :])
        return tl.where(j < 4, lo, hi)
    n = base + (o_elem // 4).to(tl.uint64)
    r0, r1, r2, r3 = philox_words(n, seed_lo, seed_hi)
    return pick4(o_elem % 4, r0, r1, r2, r3)


@triton.jit
def half_words(o_elem, o_byte, H: tl.constexpr, base, seed_lo, seed_hi, ALIGNED: tl.constexpr):
    """:func:`element_words` for half ``H`` of a tile (``o_elem`` ``[4, BLOCK]``, see
    ``tiles.half_tile``). ALIGNED: column ``g`` takes the four words of counter ``base + 2g + H``,
    one Philox call per half byte."""
    if ALIGNED:
        r0, r1, r2, r3 = philox_words(base + (o_byte * 2 + H).to(tl.uint64), seed_lo, seed_hi)
        j = tl.arange(0, 4)[:, None]
        return pick4(j, r0[None, :], r1[None, :], r2[None, :], r3[None, :])
    n = base + (o_elem // 4).to(tl.uint64)
    r0, r1, r2, r3 = philox_words(n, seed_lo, seed_hi)
    return pick4(o_elem % 4, r0, r1, r2, r3)
