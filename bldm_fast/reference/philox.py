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


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on int64 tensors holding uint32 counter words (keys: ints or 0-d int64
    tensors); returns the four output words."""
    for _ in range(ROUNDS):
        hi_a, lo_a = _mulhilo(ROUND_A, c0)
        hi_b, lo_b = _mulhilo(ROUND_B, c2)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0 = (k0 + KEY_A) & _MASK32
        k1 = (k1 + KEY_B) & _MASK32
    return c0, c1, c2, c3


def stream_words(stream: torch.Tensor, numel: int) -> torch.Tensor:
    """The uint32 words of the stream as int64, shape ``(numel,)``, on the device of ``stream``
    (int64 ``(2,)`` ``[seed, offset]``, uint64 bit patterns): element i takes word ``i % 4`` of
    counter ``offset + i // 4``. Reads no tensor value on the host, so it traces and captures."""
    n_ctr = (numel + 3) // 4
    n = torch.arange(n_ctr, dtype=torch.int64, device=stream.device)
    seed, offset = stream[0], stream[1]
    # offset + n may exceed int64: add the 64-bit offset limb by limb (>> is arithmetic: mask).
    off_lo, off_hi = offset & _MASK32, (offset >> 32) & _MASK32
    lo = n + off_lo  # < 2^33
    c0 = lo & _MASK32
    c1 = ((lo >> 32) + off_hi) & _MASK32
    zero = torch.zeros_like(c0)
    words = philox4x32_10(c0, c1, zero, zero, seed & _MASK32, (seed >> 32) & _MASK32)
    return torch.stack(words, dim=1).reshape(-1)[:numel]


def _stream(seed: int, offset: int, device) -> torch.Tensor:
    as64 = lambda v: v - 2**64 if v >= 2**63 else v  # noqa: E731
    return torch.tensor([as64(seed), as64(offset)], dtype=torch.int64, device=device)


def philox_words(seed: int, offset: int, numel: int, device="cpu") -> torch.Tensor:
    """:func:`stream_words` of the validated ints ``seed``, ``offset`` on ``device``."""
    return stream_words(_stream(seed, offset, device), numel)


def words_to_uniform(words: torch.Tensor) -> torch.Tensor:
    """``(word >> 8) * 2^-24`` in float32: exact, in [0, 1 - 2^-24]."""
    return (words >> 8).to(torch.float32) * (2.0**-24)


def stream_uniform(stream: torch.Tensor, numel: int) -> torch.Tensor:
    """float32 uniforms of the stream tensor, shape ``(numel,)``."""
    return words_to_uniform(stream_words(stream, numel))


def philox_uniform(seed: int, offset: int, numel: int, device="cpu") -> torch.Tensor:
    """float32 uniforms of the stream, shape ``(numel,)``."""
    return words_to_uniform(philox_words(seed, offset, numel, device))
