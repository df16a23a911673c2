"""The random stream (DESIGN.md section 4) against the independent Philox4x32-10 oracle.

Proves: the oracle itself reproduces the published Random123 known answers; philox_words and
philox_uniform of every backend are bit-exact with the oracle for seeds up to 2^64-1 and offsets
across the 2^32 counter-word boundary and up to 2^64-1; u = (w >> 8) * 2^-24; prefix/shift
structure of the stream; PhiloxGenerator never reuses a counter; range errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bldm_fast as bf
import philox_oracle as po
from bf_testutil import U64_MAX, device_for, to_np

SEEDS = [0, 1, 42, 2**32 - 1, 2**32, 2**32 + 1, 0xDEADBEEFCAFEBABE, 2**63, U64_MAX]
# U64_MAX - 30 with numel 123 (31 counters) ends exactly on the last counter 2^64 - 1
OFFSETS = [0, 1, 7, 2**31, 2**32 - 2, 2**32 - 1, 2**32, 2**40 + 3, 2**63, U64_MAX - 30]
NUMELS = [1, 3, 4, 5, 20, 123]


def _words(seed, offset, numel, backend):
    out = bf.philox_words(seed, offset, numel, device=device_for(backend), backend=backend)
    assert out.dtype == torch.int64
    assert tuple(out.shape) == (numel,)
    assert out.device.type == device_for(backend)
    return to_np(out)


def _uniform(seed, offset, numel, backend):
    out = bf.philox_uniform(seed, offset, numel, device=device_for(backend), backend=backend)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (numel,)
    assert out.device.type == device_for(backend)
    return to_np(out)


# ------------------------------------------------------------------------------------------
# the oracle on its own
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctr,key,expect", po.KNOWN_ANSWERS, ids=["zeros", "ones", "pi_digits"])
def test_oracle_known_answers(ctr, key, expect):
    """The Python-int oracle and the numpy oracle reproduce the Random123 philox4x32_10 KATs."""
    assert po.philox4x32(ctr, key) == expect
    got = po.philox4x32_np(*ctr, *key)
    assert tuple(int(w) for w in got) == expect


@pytest.mark.parametrize("seed", [0, 2**32 - 1, U64_MAX, 0x0123456789ABCDEF])
@pytest.mark.parametrize("offset", [0, 2**32 - 3, U64_MAX - 4])
def test_oracle_np_equals_int(seed, offset):
    """The vectorised numpy oracle (used for large draws) equals the plain-int oracle."""
    n = 20  # 5 counters: offset U64_MAX-4 ends exactly on the last one
    assert po.stream_words_np(seed, offset, n).tolist() == po.stream_words(seed, offset, n)


# ------------------------------------------------------------------------------------------
# the package against the oracle
# ------------------------------------------------------------------------------------------
def test_design_known_answer(backend):
    """DESIGN.md KAT: key 0, counter 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8."""
    w = _words(0, 0, 4, backend)
    assert [int(x) for x in w] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def test_all_ones_known_answer_reachable_parts(backend):
    """Counter words 2,3 are always 0 through the API; key (2^32-1, 2^32-1) with counter
    (2^32-1, 2^32-1, 0, 0), i.e. seed 2^64-1 and offset 2^64-1, must match the oracle (whose KATs
    cover the full counter)."""
    w = _words(U64_MAX, U64_MAX, 4, backend)
    assert [int(x) for x in w] == list(po.philox4x32((0xFFFFFFFF, 0xFFFFFFFF, 0, 0), (0xFFFFFFFF, 0xFFFFFFFF)))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed{s:#x}")
def test_words_match_oracle_seeds(backend, seed):
    """Words for a spread of seeds (low/high key words, up to 2^64-1) equal the oracle, numel 123."""
    np.testing.assert_array_equal(_words(seed, 5, 123, backend), po.stream_words(seed, 5, 123))


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: f"off{o:#x}")
@pytest.mark.parametrize("numel", NUMELS, ids=lambda n: f"n{n}")
def test_words_match_oracle_offsets(backend, offset, numel):
    """Offsets near and across 2^32 (the counter's carry into word 1), up to the last counter 2^64-1,
    give the oracle's words."""
    seed = 0x9E3779B97F4A7C15
    np.testing.assert_array_equal(_words(seed, offset, numel, backend), po.stream_words(seed, offset, numel))


def test_offset_crossing_2_32(backend):
    """offset 2^32-2, numel 20: counters 2^32-2 .. 2^32+2, i.e. the low word wraps and the high word carries."""
    seed = 1234567
    w = _words(seed, 2**32 - 2, 20, backend)
    np.testing.assert_array_equal(w, po.stream_words(seed, 2**32 - 2, 20))
    # element 8 is word 0 of counter 2^32 = (0, 1, 0, 0)
    assert int(w[8]) == po.philox4x32((0, 1, 0, 0), (seed, 0))[0]


def test_last_counter(backend):
    """offset 2^64-1 with numel <= 4 is allowed (one counter, the last one)."""
    np.testing.assert_array_equal(_words(7, U64_MAX, 4, backend), po.stream_words(7, U64_MAX, 4))
    np.testing.assert_array_equal(_words(7, U64_MAX, 1, backend), po.stream_words(7, U64_MAX, 1))


@given(
    seed=st.integers(0, U64_MAX),
    offset=st.one_of(st.integers(0, U64_MAX - 64), st.integers(2**32 - 40, 2**32 + 5)),
    numel=st.integers(1, 257),
)
def test_words_and_uniform_hypothesis(backend, seed, offset, numel):
    """For any seed in [0, 2^64), offset, numel: words == oracle and uniform == (w >> 8) * 2^-24, exactly."""
    expect = np.array(po.stream_words(seed, offset, numel), dtype=np.int64)
    w = _words(seed, offset, numel, backend)
    np.testing.assert_array_equal(w, expect)
    assert (w >= 0).all() and (w <= 0xFFFFFFFF).all()
    u = _uniform(seed, offset, numel, backend)
    np.testing.assert_array_equal(u, po.words_to_uniform(expect))


def test_uniform_formula_and_range(backend):
    """u is float32, exactly (w >> 8) * 2^-24, in [0, 1 - 2^-24]; large draw via the numpy oracle."""
    seed, offset, n = 2024, 3, 100_003
    u = _uniform(seed, offset, n, backend)
    w = po.stream_words_np(seed, offset, n)
    np.testing.assert_array_equal(u, ((w >> 8).astype(np.float64) * 2.0**-24).astype(np.float32))
    np.testing.assert_array_equal(u.astype(np.float64) * 2**24, (w >> 8).astype(np.float64))  # exact
    assert u.min() >= 0.0 and u.max() <= 1 - 2.0**-24
    np.testing.assert_array_equal(_words(seed, offset, n, backend), w)


def test_prefix_and_shift_structure(backend):
    """Element i takes word i%4 of counter offset + i//4: a shorter call is a prefix of a longer one,
    and offset+1 equals the longer stream shifted by 4 elements."""
    seed = 99
    long = _words(seed, 10, 41, backend)
    for n in (1, 2, 3, 5, 17):
        np.testing.assert_array_equal(_words(seed, 10, n, backend), long[:n])
    np.testing.assert_array_equal(_words(seed, 11, 37, backend), long[4:])
    np.testing.assert_array_equal(_words(seed, 13, 29, backend), long[12:])


def test_seed_splits_into_key_words(backend):
    """key = (seed mod 2^32, seed >> 32): seeds differing only in the high word give different streams."""
    a = _words(5, 0, 8, backend)
    b = _words(5 + 2**32, 0, 8, backend)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, [w for c in range(2) for w in po.philox4x32((c, 0, 0, 0), (5, 1))])


def test_zero_numel(backend):
    """numel 0 gives empty int64 / float32 tensors."""
    assert bf.philox_words(1, 0, 0, device=device_for(backend), backend=backend).numel() == 0
    assert bf.philox_uniform(1, 0, 0, device=device_for(backend), backend=backend).numel() == 0


def test_backends_agree_on_stream(present_backends):
    """All available backends produce the same words and uniforms, bit for bit."""
    ref_w = po.stream_words_np(31337, 2**32 - 7, 4099)
    for b in present_backends:
        np.testing.assert_array_equal(_words(31337, 2**32 - 7, 4099, b), ref_w)
        np.testing.assert_array_equal(_uniform(31337, 2**32 - 7, 4099, b), po.words_to_uniform(ref_w))


# ------------------------------------------------------------------------------------------
# PhiloxGenerator
# ------------------------------------------------------------------------------------------
def test_generator_attributes():
    """PhiloxGenerator(seed, offset) keeps .seed and starts .offset where told (default 0)."""
    g = bf.PhiloxGenerator(17)
    assert g.seed == 17 and g.offset == 0
    g = bf.PhiloxGenerator(U64_MAX, offset=12)
    assert g.seed == U64_MAX and g.offset == 12


@pytest.mark.parametrize("numels", [[1, 1, 1], [4, 4], [5, 3, 8, 13], [0, 7, 1], [1000, 1, 999]],
                         ids=lambda v: "-".join(map(str, v)))
def test_generator_never_reuses_counters(numels):
    """next_offset(n) returns the current offset and advances by ceil(n/4): the counter ranges
    [o, o + ceil(n/4)) of consecutive calls are adjacent and disjoint."""
    g = bf.PhiloxGenerator(3, offset=100)
    expect = 100
    used = set()
    for n in numels:
        o = g.next_offset(n)
        assert o == expect
        rng = set(range(o, o + (n + 3) // 4))
        assert not (rng & used)
        used |= rng
        expect += (n + 3) // 4
        assert g.offset == expect


@given(numels=st.lists(st.integers(0, 10_000), min_size=1, max_size=20))
def test_generator_offsets_hypothesis(numels):
    """Any sequence of requests: offsets are the running sum of ceil(n/4), so no counter is handed out twice."""
    g = bf.PhiloxGenerator(0)
    total = 0
    for n in numels:
        assert g.next_offset(n) == total
        total += -(-n // 4)
    assert g.offset == total


def test_generator_streams_do_not_overlap(backend):
    """Consecutive draws with offsets from one generator are disjoint pieces of the single long stream."""
    g = bf.PhiloxGenerator(77, offset=2**32 - 3)
    sizes = [5, 9, 4, 1, 11]
    pieces = []
    for n in sizes:
        o = g.next_offset(n)
        w = _words(77, o, n, backend)
        pieces.append(w)
        np.testing.assert_array_equal(w, po.stream_words(77, o, n))
    # each piece starts on a fresh counter: piece k equals the stream at counter o_k
    assert len({tuple(p[:1]) for p in pieces}) == len(pieces)


# ------------------------------------------------------------------------------------------
# range errors
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", ["philox_words", "philox_uniform"])
@pytest.mark.parametrize("seed", [-1, 2**64, 2**70], ids=["neg", "2^64", "2^70"])
def test_seed_out_of_range(backend, fn, seed):
    """seed outside [0, 2^64) -> ValueError naming 'seed'."""
    with pytest.raises(ValueError, match="seed"):
        getattr(bf, fn)(seed, 0, 4, device=device_for(backend), backend=backend)


@pytest.mark.parametrize("fn", ["philox_words", "philox_uniform"])
@pytest.mark.parametrize("offset,numel", [(-1, 4), (2**64, 4), (U64_MAX, 5), (U64_MAX - 1, 9), (2**64 - 3, 100)],
                         ids=["neg", "2^64", "last+1elem", "last2+1elem", "overrun"])
def test_offset_out_of_range(backend, fn, offset, numel):
    """offset outside [0, 2^64), or a counter past 2^64-1 (offset + ceil(numel/4) - 1) -> ValueError naming 'offset'."""
    with pytest.raises(ValueError, match="offset"):
        getattr(bf, fn)(1, offset, numel, device=device_for(backend), backend=backend)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_generator_seed_out_of_range(seed):
    """PhiloxGenerator rejects seeds outside [0, 2^64) with ValueError naming 'seed'."""
    with pytest.raises(ValueError, match="seed"):
        bf.PhiloxGenerator(seed)
