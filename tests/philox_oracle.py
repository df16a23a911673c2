"""Independent Philox4x32-10 oracle (Random123), written for the tests.

Two implementations of the same generator, so each can check the other:

* ``philox4x32`` — plain Python ints, one counter at a time, the textbook algorithm
  (slow, obviously right; checked against the published Random123 known-answer vectors).
* ``philox4x32_np`` — vectorised over numpy ``uint64`` arrays (every 32x32 product fits in
  64 bits), fast enough to produce a few million words for the statistical tests.

On top of them, the stream contract of docs/DESIGN.md section 4:
key = (seed mod 2^32, seed >> 32); element ``i`` of a call with ``offset`` takes word ``i % 4``
of counter ``n = offset + i // 4`` laid out as ``(n mod 2^32, n >> 32, 0, 0)``;
``u = (word >> 8) * 2^-24``.

Nothing here imports bldm_fast.
"""

from __future__ import annotations

import numpy as np

MASK32 = 0xFFFFFFFF
M0 = 0xD2511F53  # PHILOX_M4x32_0
M1 = 0xCD9E8D57  # PHILOX_M4x32_1
W0 = 0x9E3779B9  # PHILOX_W32_0 (golden ratio)
W1 = 0xBB67AE85  # PHILOX_W32_1 (sqrt(3) - 1)
ROUNDS = 10
U64_MAX = 2**64 - 1

# Random123 kat_vectors for philox4x32_10: (counter words, key words) -> output words
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _mulhilo(a: int, b: int) -> tuple[int, int]:
    p = a * b
    return (p >> 32) & MASK32, p & MASK32


def philox4x32(counter, key, rounds: int = ROUNDS) -> tuple[int, int, int, int]:
    """Philox4x32-R of one 128-bit counter (4 words) under a 64-bit key (2 words)."""
    c0, c1, c2, c3 = (int(c) & MASK32 for c in counter)
    k0, k1 = (int(k) & MASK32 for k in key)
    for r in range(rounds):
        if r:
            k0 = (k0 + W0) & MASK32
            k1 = (k1 + W1) & MASK32
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox4x32_np(c0, c1, c2, c3, k0, k1, rounds: int = ROUNDS):
    """Vectorised Philox4x32-R; every argument is an integer array (or scalar) of uint32 values."""
    m = np.uint64(MASK32)
    s32 = np.uint64(32)
    c0, c1, c2, c3, k0, k1 = (np.asarray(v, dtype=np.uint64) & m for v in (c0, c1, c2, c3, k0, k1))
    c0, c1, c2, c3 = np.broadcast_arrays(c0, c1, c2, c3)
    mul0, mul1 = np.uint64(M0), np.uint64(M1)
    for r in range(rounds):
        if r:
            k0 = (k0 + np.uint64(W0)) & m
            k1 = (k1 + np.uint64(W1)) & m
        p0 = mul0 * c0  # < 2^64: no overflow
        p1 = mul1 * c2
        hi0, lo0 = p0 >> s32, p0 & m
        hi1, lo1 = p1 >> s32, p1 & m
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def _check_range(seed: int, offset: int, numel: int) -> None:
    if not 0 <= seed <= U64_MAX:
        raise ValueError("seed out of range")
    if not 0 <= offset <= U64_MAX:
        raise ValueError("offset out of range")
    if numel and offset + (numel + 3) // 4 - 1 > U64_MAX:
        raise ValueError("offset: counter past 2^64-1")


def stream_words(seed: int, offset: int, numel: int) -> list[int]:
    """The uint32 words of DESIGN.md section 4, plain Python ints (slow path, the oracle)."""
    _check_range(seed, offset, numel)
    key = (seed & MASK32, seed >> 32)
    out: list[int] = []
    n_ctr = (numel + 3) // 4
    for j in range(n_ctr):
        n = offset + j
        out.extend(philox4x32((n & MASK32, n >> 32, 0, 0), key))
    return out[:numel]


def stream_words_np(seed: int, offset: int, numel: int) -> np.ndarray:
    """Same stream as ``stream_words`` from the vectorised generator; returns int64 array (numel,)."""
    _check_range(seed, offset, numel)
    n_ctr = (numel + 3) // 4
    if numel == 0:
        return np.zeros(0, dtype=np.int64)
    # counters offset .. offset + n_ctr - 1 can straddle 2^32 (and reach 2^64 - 1): split in words
    j = np.arange(n_ctr, dtype=np.uint64)
    lo_start = offset & MASK32
    hi_start = offset >> 32
    lo_sum = j + np.uint64(lo_start)  # < 2^33
    lo = lo_sum & np.uint64(MASK32)
    carry = lo_sum >> np.uint64(32)
    hi = (carry + np.uint64(hi_start)) & np.uint64(MASK32)
    words = philox4x32_np(lo, hi, 0, 0, seed & MASK32, seed >> 32)
    out = np.stack(words, axis=1).reshape(-1)[:numel]
    return out.astype(np.int64)


def words_to_uniform(words) -> np.ndarray:
    """u = (word >> 8) * 2^-24, exact in float32."""
    w = np.asarray(words, dtype=np.int64)
    return ((w >> 8).astype(np.float64) * 2.0**-24).astype(np.float32)


def stream_uniform_np(seed: int, offset: int, numel: int) -> np.ndarray:
    return words_to_uniform(stream_words_np(seed, offset, numel))
