"""Philox4x32-10 in plain PyTorch int64 arithmetic (DESIGN.md section 4).

torch has almost no uint32 arithmetic on the CPU, so every 32-bit word lives in an int64 and the
32x32 -> 64 bit products are formed from 16-bit limbs, which never overflow int64.
"""

import torch

_MASK32 = 0xFFFFFFFF
ROUND_A = 0xD2511F53
ROUND_B = 0xCD9E8D57
KEY_A = 0x9E3779B9
KEY_B = 0xBB67AE85
ROUNDS = 10


def _mulhilo(m: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``m * x`` for a 32-bit constant ``m`` and int64 words ``x``."""
    x_hi = x >> 16
    x_lo = x & 0xFFFF
    a = m * x_hi  # < 2^48
    b = m * x_lo  # < 2^48
    hi = (a + (b >> 16)) >> 16  # (a * 2^16 + b) >> 32
    lo = (((a & 0xFFFF) << 16) + b) & _MASK32
    return hi, lo


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Ten Philox rounds on int64 tensors holding uint32 counter words; returns the four output words."""
    for _ in range(ROUNDS):
        hi_a, lo_a = _mulhilo(ROUND_A, c0)
        hi_b, lo_b = _mulhilo(ROUND_B, c2)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + KEY_A) & _MASK32
        k1 = (k1 + KEY_B) & _MASK32
    return c0, c1, c2, c3


def philox_words(seed: int, offset: int, numel: int, device="cpu") -> torch.Tensor:
    """The uint32 words of the stream as int64, shape ``(numel,)``: element i takes word ``i % 4``
    of counter ``offset + i // 4``. Arguments are assumed validated."""
    n_ctr = (numel + 3) // 4
    n = torch.arange(n_ctr, dtype=torch.int64, device=device)
    # offset + n may exceed int64: add the 64-bit offset limb by limb.
    off_lo, off_hi = offset & _MASK32, offset >> 32
    lo = n + off_lo  # < 2^33
    c0 = lo & _MASK32
    c1 = ((lo >> 32) + off_hi) & _MASK32
    zero = torch.zeros_like(c0)
    words = philox4x32_10(c0, c1, zero, zero, seed & _MASK32, seed >> 32)
    return torch.stack(words, dim=1).reshape(-1)[:numel]


def words_to_uniform(words: torch.Tensor) -> torch.Tensor:
    """``(word >> 8) * 2^-24`` in float32: exact, in [0, 1 - 2^-24]."""
    return (words >> 8).to(torch.float32) * (2.0**-24)


def philox_uniform(seed: int, offset: int, numel: int, device="cpu") -> torch.Tensor:
    """float32 uniforms of the stream, shape ``(numel,)``."""
    return words_to_uniform(philox_words(seed, offset, numel, device))
