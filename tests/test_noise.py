"""bernoulli_noise (training forward process) against an oracle built from the contract.

Oracle: x_t[i] = [u_i < thr(x0_i)] with u_i the uniform of flat index i of the unpacked logical
tensor (B, ..., C) drawn by the independent numpy Philox oracle, thr(1) = fp32(k32[t_b] + b32[t_b]),
thr(0) = b32[t_b] from the official tables (t_b the sample's step). Bit-exact on every backend,
per-sample and scalar t, with unpacked output and flip target, batch-prefix invariance, the
generator's offsets, and padding bits 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bldm_fast as bf
import official
import philox_oracle as po
from bf_testutil import device_for, nbytes, np_pack, np_unpack, random_bits, to_np

KINDS = list(official.KINDS)


def oracle_noise(x0_bits: np.ndarray, t, T: int, kind: str, seed: int, offset: int) -> np.ndarray:
    """Unpacked x_t (uint8 0/1) of the contract, from the numpy Philox oracle and official tables."""
    k32, b32, _ = official.tables_f32(T, kind)
    B = x0_bits.shape[0]
    t = np.broadcast_to(np.asarray(t, dtype=np.int64), (B,))
    thr1 = (k32[t] + b32[t]).astype(np.float32)
    thr0 = b32[t]
    shape_b = (B,) + (1,) * (x0_bits.ndim - 1)
    thr = np.where(x0_bits != 0, thr1.reshape(shape_b), thr0.reshape(shape_b)).astype(np.float32)
    u = po.stream_uniform_np(seed, offset, x0_bits.size).reshape(x0_bits.shape)
    return (u < thr).astype(np.uint8)


def _run(x0_bits, t, sched, backend, **kw):
    C = x0_bits.shape[-1]
    x0p = torch.from_numpy(np_pack(x0_bits)).to(device_for(backend))
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    t_on_device = kw.pop("t_on_device", False)
    if isinstance(t, torch.Tensor) and t_on_device:
        t = t.to(device_for(backend))
    res = bf.bernoulli_noise(x0p, t, sched, C, backend=backend, **kw)
    assert isinstance(res, bf.NoiseResult)
    return res if ("out_dtype" in kw or "return_flip" in kw) else res.packed


SHAPES = [(1, 1, 1), (1, 6, 8), (3, 42, 7), (2, 16, 64), (4, 6, 123), (2, 5, 3, 42), (5, 33)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", KINDS)
def test_noise_matches_oracle_per_sample_t(backend, shape, kind):
    """Packed x_t equals the contract oracle bit for bit, with a different t per sample (incl. 1 and T)."""
    T = 40
    x0 = random_bits(shape, seed=sum(shape))
    B = shape[0]
    t = np.array([1, T, 7, 20, 39][:B] if B <= 5 else np.arange(1, B + 1), dtype=np.int64)
    seed, offset = 0xC0FFEE + B, 2**32 - 3
    out = _run(x0, t, bf.BernoulliSchedule(T, kind=kind), backend, seed=seed, offset=offset)
    assert out.dtype == torch.uint8
    assert tuple(out.shape) == shape[:-1] + (nbytes(shape[-1]),)
    assert out.device.type == device_for(backend)
    expect = oracle_noise(x0, t, T, kind, seed, offset)
    np.testing.assert_array_equal(to_np(out), np_pack(expect))


@pytest.mark.parametrize("t_kind", ["int", "int64", "int32", "int_on_device"])
def test_noise_t_forms(backend, t_kind):
    """t as a Python int (every sample) or an int64/int32 tensor (B,) all give the oracle's bits."""
    T, shape = 16, (3, 10, 42)
    x0 = random_bits(shape, seed=4)
    seed = 123
    if t_kind == "int":
        t = 9
    else:
        t = torch.full((3,), 9, dtype=torch.int32 if t_kind == "int32" else torch.int64)
    out = _run(x0, t, bf.BernoulliSchedule(T), backend, seed=seed, offset=0, t_on_device=t_kind == "int_on_device")
    np.testing.assert_array_equal(to_np(out), np_pack(oracle_noise(x0, 9, T, "linear", seed, 0)))


def test_noise_at_T_is_fair_coin_thresholds(backend):
    """At t = T every schedule has k = 0, so both thresholds are b[T] = 0.5: x_t = [u < 0.5] whatever x_0."""
    shape = (2, 8, 24)
    ones = np.ones(shape, np.uint8)
    zeros = np.zeros(shape, np.uint8)
    for kind in KINDS:
        s = bf.BernoulliSchedule(10, kind=kind)
        a = to_np(_run(ones, 10, s, backend, seed=5, offset=9))
        b = to_np(_run(zeros, 10, s, backend, seed=5, offset=9))
        np.testing.assert_array_equal(a, b)
        u = po.stream_uniform_np(5, 9, ones.size).reshape(shape)
        np.testing.assert_array_equal(a, np_pack(u < 0.5))


@given(
    B=st.integers(1, 4),
    mid=st.lists(st.integers(1, 9), min_size=0, max_size=2).map(tuple),
    C=st.integers(1, 70),
    kind=st.sampled_from(KINDS),
    T=st.integers(1, 200),
    seed=st.integers(0, 2**64 - 1),
    offset=st.integers(0, 2**40),
    data=st.data(),
)
def test_noise_hypothesis(backend, B, mid, C, kind, T, seed, offset, data):
    """Any (B, ..., C), schedule, T, per-sample t, seed and offset: bit-exact with the oracle."""
    t = np.array(data.draw(st.lists(st.integers(1, T), min_size=B, max_size=B), label="t"), dtype=np.int64)
    shape = (B,) + mid + (C,)
    x0 = random_bits(shape, seed=seed % 2**32)
    out = _run(x0, t, bf.BernoulliSchedule(T, kind=kind), backend, seed=seed, offset=offset)
    np.testing.assert_array_equal(to_np(out), np_pack(oracle_noise(x0, t, T, kind, seed, offset)))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.bool, torch.uint8,
                                       torch.float64], ids=str)
@pytest.mark.parametrize("C", [5, 64, 123], ids=lambda c: f"C{c}")
def test_noise_out_dtype_equals_unpack(backend, out_dtype, C):
    """With out_dtype: (packed, unpacked, None), unpacked == unpack_bits(packed, C, out_dtype)."""
    x0 = random_bits((2, 9, C), seed=C)
    res = _run(x0, np.array([3, 11]), bf.BernoulliSchedule(12, "cos"), backend, seed=8, offset=1,
               out_dtype=out_dtype)
    assert isinstance(res, tuple) and len(res) == 3
    packed, unpacked, flip = res
    assert flip is None
    assert unpacked.dtype == out_dtype and tuple(unpacked.shape) == (2, 9, C)
    np.testing.assert_array_equal(to_np(unpacked).astype(np.uint8), np_unpack(to_np(packed), C))
    np.testing.assert_array_equal(to_np(packed), np_pack(oracle_noise(x0, np.array([3, 11]), 12, "cos", 8, 1)))


@pytest.mark.parametrize("C", [1, 13, 64], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("with_unpacked", [False, True])
def test_noise_return_flip(backend, C, with_unpacked):
    """return_flip gives the packed flip target x_0 XOR x_t (padding bits 0), alongside packed x_t."""
    x0 = random_bits((3, 7, C), seed=C + 1)
    kw = {"out_dtype": torch.float32} if with_unpacked else {}
    packed, unpacked, flip = _run(x0, 5, bf.BernoulliSchedule(8, "sigmoid"), backend, seed=77, offset=3,
                                  return_flip=True, **kw)
    assert (unpacked is not None) == with_unpacked
    assert flip.dtype == torch.uint8 and flip.shape == packed.shape
    expect_xt = oracle_noise(x0, 5, 8, "sigmoid", 77, 3)
    np.testing.assert_array_equal(to_np(packed), np_pack(expect_xt))
    np.testing.assert_array_equal(to_np(flip), np_pack(expect_xt ^ x0))
    np.testing.assert_array_equal(to_np(flip), np_pack(x0) ^ to_np(packed))


@pytest.mark.parametrize("C", [3, 9, 70], ids=lambda c: f"C{c}")
def test_noise_padding_bits_zero(backend, C):
    """Output bytes (x_t and flip) have 0 padding bits even where thresholds are ~1/2 for all bits."""
    x0 = np.ones((4, 50, C), np.uint8)
    packed, _, flip = _run(x0, 30, bf.BernoulliSchedule(30), backend, seed=1, offset=0, return_flip=True)
    rem = C % 8
    last_mask = 0xFF ^ ((1 << rem) - 1)
    assert (to_np(packed)[..., -1] & last_mask == 0).all()
    assert (to_np(flip)[..., -1] & last_mask == 0).all()


def test_noise_batch_prefix_invariance(backend):
    """The flat index makes sample b's draws independent of the batch size: the first samples of a
    bigger batch equal the smaller batch (same seed/offset), and a lone sample b with offset shifted by
    b*L*C/4 counters reproduces sample b of the batch (L*C divisible by 4)."""
    T, L, C = 20, 12, 42  # L*C = 504 = 4 * 126
    x0 = random_bits((5, L, C), seed=9)
    t = np.array([4, 17, 1, 20, 9])
    s = bf.BernoulliSchedule(T, "cos")
    full = to_np(_run(x0, t, s, backend, seed=31, offset=1000))
    for nb in (1, 2, 4):
        part = to_np(_run(x0[:nb], t[:nb], s, backend, seed=31, offset=1000))
        np.testing.assert_array_equal(part, full[:nb])
    per_counters = L * C // 4
    for b in range(5):
        lone = to_np(_run(x0[b:b + 1], t[b:b + 1], s, backend, seed=31, offset=1000 + b * per_counters))
        np.testing.assert_array_equal(lone[0], full[b])


def test_noise_noncontiguous_x0(backend):
    """A non-contiguous packed x_0 (a strided slice) noises like its contiguous copy."""
    x0 = random_bits((6, 10, 40), seed=12)
    x0p = torch.from_numpy(np_pack(x0)).to(device_for(backend))
    view = x0p[::2]
    assert not view.is_contiguous()
    s = bf.BernoulliSchedule(10)
    a = bf.bernoulli_noise(view, 4, s, 40, seed=3, offset=5, backend=backend).packed
    b = bf.bernoulli_noise(view.contiguous(), 4, s, 40, seed=3, offset=5, backend=backend).packed
    np.testing.assert_array_equal(to_np(a), to_np(b))
    np.testing.assert_array_equal(to_np(a), np_pack(oracle_noise(x0[::2], 4, 10, "linear", 3, 5)))


def test_noise_generator_offsets(backend):
    """generator=: the op takes seed from it and offset = next_offset(B*...*C); repeated calls continue
    the stream (no counter reuse) and equal explicit seed/offset calls."""
    shape = (2, 9, 30)  # 540 elements = 135 counters
    x0 = random_bits(shape, seed=1)
    x0p = torch.from_numpy(np_pack(x0)).to(device_for(backend))
    s = bf.BernoulliSchedule(50)
    g = bf.PhiloxGenerator(2024, offset=7)
    a = to_np(bf.bernoulli_noise(x0p, 25, s, 30, generator=g, backend=backend).packed)
    assert g.offset == 7 + 135
    b = to_np(bf.bernoulli_noise(x0p, 25, s, 30, generator=g, backend=backend).packed)
    assert g.offset == 7 + 270
    np.testing.assert_array_equal(a, np_pack(oracle_noise(x0, 25, 50, "linear", 2024, 7)))
    np.testing.assert_array_equal(b, np_pack(oracle_noise(x0, 25, 50, "linear", 2024, 7 + 135)))
    assert not np.array_equal(a, b)


def test_noise_seed_without_offset_defaults_to_zero(backend):
    """seed given, offset None -> offset 0."""
    x0 = random_bits((2, 4, 16), seed=2)
    s = bf.BernoulliSchedule(10)
    a = _run(x0, 5, s, backend, seed=99)
    b = _run(x0, 5, s, backend, seed=99, offset=0)
    np.testing.assert_array_equal(to_np(a), to_np(b))


def test_noise_default_stream_follows_torch_manual_seed(backend):
    """Neither generator nor seed: the seed comes from torch's default generator (manual_seed repeats it)."""
    x0 = random_bits((2, 32, 64), seed=3)
    s = bf.BernoulliSchedule(10)
    torch.manual_seed(1234)
    a = to_np(_run(x0, 10, s, backend))
    torch.manual_seed(1234)
    b = to_np(_run(x0, 10, s, backend))
    np.testing.assert_array_equal(a, b)
    c = to_np(_run(x0, 10, s, backend))  # default generator advanced: a fresh seed
    assert not np.array_equal(a, c)


def test_noise_empty_batch(backend):
    """B = 0 gives an empty packed result of the right shape."""
    x0p = torch.zeros((0, 4, 2), dtype=torch.uint8, device=device_for(backend))
    out = bf.bernoulli_noise(x0p, torch.zeros(0, dtype=torch.int64), bf.BernoulliSchedule(5), 16, seed=1,
                             offset=0, backend=backend).packed
    assert tuple(out.shape) == (0, 4, 2)


def test_backends_agree_on_noise(present_backends):
    """Every available backend gives the same packed x_t, unpacked x_t and flip, bit for bit."""
    x0 = random_bits((3, 64, 123), seed=5)
    t = np.array([1, 333, 1000])
    s = bf.BernoulliSchedule(1000, "cos")
    results = []
    for b in present_backends:
        p, u, f = _run(x0, t, s, b, seed=2**63 + 5, offset=2**32 - 10, out_dtype=torch.float16, return_flip=True)
        results.append((to_np(p), to_np(u), to_np(f)))
    expect = oracle_noise(x0, t, 1000, "cos", 2**63 + 5, 2**32 - 10)
    for p, u, f in results:
        np.testing.assert_array_equal(p, np_pack(expect))
        np.testing.assert_array_equal(u.astype(np.uint8), expect)
        np.testing.assert_array_equal(f, np_pack(expect ^ x0))
