"""binarize / quantize_probs (the autoencoder quantizer's output) against independent float64
numpy oracles on every backend: deterministic codes bit-exact, Bernoulli codes equal to
[u < sigmoid64(l)] outside the 1e-5 guard band (u from the independent Philox oracle), quantised
probabilities equal to floor(sigmoid64 * 255 + 0.5) except within float rounding of a .5 boundary."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bldm_fast as bf
import philox_oracle as po
from bf_testutil import device_for, np_pack, record_guard_band, to_np

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _sigmoid64(l):
    return 1.0 / (1.0 + np.exp(-l.astype(np.float64)))


def _logits(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 4).to(dtype)


@settings(max_examples=15)
@given(b=st.integers(1, 3), l=st.integers(1, 9), c=st.integers(1, 70), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31), stream_seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40))
def test_binarize_against_oracles(backend, b, l, c, dtype, seed, stream_seed, offset):
    logits = _logits((b, l, c), dtype, seed)
    lf = to_np(logits.float())
    dev = device_for(backend)
    det = bf.binarize(logits.to(dev), "deterministic", backend=backend)
    np.testing.assert_array_equal(to_np(det), np_pack(lf > 0))
    ber = to_np(bf.binarize(logits.to(dev), "bernoulli", seed=stream_seed, offset=offset, backend=backend))
    u = po.stream_uniform_np(stream_seed, offset, lf.size).reshape(lf.shape).astype(np.float64)
    p = _sigmoid64(lf)
    expect = u < p
    band = np.abs(u - p) <= 1e-5
    got = np.unpackbits(ber, axis=-1, bitorder="little")[..., :c].astype(bool)
    assert not ((got != expect) & ~band).any()
    mism = int(((got != expect) & band).sum())
    record_guard_band(got.size, int(band.sum()), mism)
    assert mism <= 1e-3 * got.size + 1
    np.testing.assert_array_equal(ber, np_pack(got))  # padding bits 0


def test_quantize_probs_against_oracle(backend):
    for dtype in DTYPES:
        logits = _logits((3, 17, 33), dtype, 5)
        got = to_np(bf.quantize_probs(logits.to(device_for(backend)), backend=backend)).astype(np.int64)
        scaled = _sigmoid64(to_np(logits.float())) * 255 + 0.5
        want = np.floor(scaled).astype(np.int64)
        near_boundary = np.abs(scaled - np.round(scaled)) < 1e-4
        assert np.all((got == want) | (near_boundary & (np.abs(got - want) <= 1)))


def test_binarize_stream_and_generator(backend):
    """A generator hands out the offsets; the deterministic mode ignores the stream."""
    logits = _logits((2, 5, 16), torch.float32, 6).to(device_for(backend))
    gen = bf.PhiloxGenerator(42)
    a = bf.binarize(logits, "bernoulli", generator=gen, backend=backend)
    assert gen.offset == (logits.numel() + 3) // 4
    b = bf.binarize(logits, "bernoulli", seed=42, offset=0, backend=backend)
    assert torch.equal(a, b)
    assert torch.equal(bf.binarize(logits, backend=backend), bf.binarize(logits, seed=1, backend=backend))


def test_non_contiguous(backend):
    dev = device_for(backend)
    wide = _logits((2, 5, 48), torch.float32, 7).to(dev)
    nc = wide[..., ::2]
    assert torch.equal(bf.binarize(nc, "bernoulli", seed=3, backend=backend),
                       bf.binarize(nc.contiguous(), "bernoulli", seed=3, backend=backend))
    assert torch.equal(bf.quantize_probs(nc, backend=backend), bf.quantize_probs(nc.contiguous(), backend=backend))


def test_bad_input(backend):
    dev = device_for(backend)
    with pytest.raises(TypeError, match="logits"):
        bf.binarize(torch.zeros(2, 8, dtype=torch.int32, device=dev), backend=backend)
    with pytest.raises(ValueError, match="mode"):
        bf.binarize(torch.zeros(2, 8, device=dev), "random", backend=backend)
    with pytest.raises(ValueError, match="seed"):
        bf.binarize(torch.zeros(2, 8, device=dev), "bernoulli", seed=-1, backend=backend)
    with pytest.raises(TypeError, match="logits"):
        bf.quantize_probs(torch.zeros(2, 8, dtype=torch.float64, device=dev), backend=backend)
