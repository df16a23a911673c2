"""pack_bits / unpack_bits: bit-exact against numpy.packbits / unpackbits(bitorder="little").

Contract (DESIGN.md section 2): packed is uint8 (..., ceil(C/8)), LSB first (bit j of
byte k = channel 8k + j), padding bits 0; bool/uint8 inputs count any nonzero as 1, float
inputs hold exactly 0/1; any ndim >= 1, non-contiguous and empty inputs allowed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bldm_fast as bf
from bf_testutil import device_for, nbytes, np_pack, np_unpack, random_bits, to_np

CHANNELS = [1, 6, 7, 8, 9, 15, 16, 42, 64, 70, 123]
LEADING = [(1,), (6,), (3, 5), (2, 1, 42)]
INPUT_DTYPES = [torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]
OUT_DTYPES = [torch.bool, torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _ids(v):
    if isinstance(v, torch.dtype):
        return str(v).replace("torch.", "")
    if isinstance(v, tuple):
        return "x".join(map(str, v)) or "scalar"
    return str(v)


def _as_dtype(bits_np: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    t = torch.from_numpy(bits_np.astype(np.uint8))
    return t.bool() if dtype == torch.bool else t.to(dtype)


# ------------------------------------------------------------------------------------------
# pack
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", INPUT_DTYPES, ids=_ids)
@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"C{c}")
@pytest.mark.parametrize("leading", LEADING, ids=_ids)
def test_pack_matches_numpy(backend, dtype, channels, leading):
    """pack_bits of 0/1 data in every accepted dtype equals numpy.packbits(little), byte for byte."""
    bits = random_bits(leading + (channels,), seed=channels * 31 + len(leading))
    x = _as_dtype(bits, dtype).to(device_for(backend))
    out = bf.pack_bits(x, backend=backend)
    assert out.dtype == torch.uint8
    assert out.shape == leading + (nbytes(channels),)
    assert out.device.type == device_for(backend)
    np.testing.assert_array_equal(to_np(out), np_pack(bits))


@pytest.mark.parametrize("channels", [1, 5, 8, 13, 64, 70], ids=lambda c: f"C{c}")
def test_pack_uint8_any_nonzero_is_one(backend, channels):
    """uint8 input: every nonzero value (2, 17, 128, 255 ...) packs as a 1 bit."""
    rng = np.random.default_rng(channels)
    vals = rng.integers(0, 256, size=(37, channels)).astype(np.uint8)
    vals[rng.random(vals.shape) < 0.4] = 0
    out = bf.pack_bits(torch.from_numpy(vals).to(device_for(backend)), backend=backend)
    np.testing.assert_array_equal(to_np(out), np_pack(vals != 0))


@pytest.mark.parametrize("channels", [1, 7, 8, 9, 70], ids=lambda c: f"C{c}")
def test_pack_padding_bits_are_zero(backend, channels):
    """All-ones input: the last byte holds exactly C mod 8 low bits set, its padding bits are 0."""
    x = torch.ones(5, channels, dtype=torch.bool, device=device_for(backend))
    out = to_np(bf.pack_bits(x, backend=backend))
    assert (out[:, :-1] == 0xFF).all()
    rem = channels % 8
    assert (out[:, -1] == (0xFF if rem == 0 else (1 << rem) - 1)).all()


def test_pack_bit_order_lsb_first(backend):
    """Bit j of byte k holds channel 8k + j: a single 1 in channel c gives byte c//8 == 1 << c%8."""
    C = 20
    x = torch.eye(C, dtype=torch.uint8, device=device_for(backend))
    out = to_np(bf.pack_bits(x, backend=backend))
    for c in range(C):
        expect = np.zeros(3, dtype=np.uint8)
        expect[c // 8] = 1 << (c % 8)
        np.testing.assert_array_equal(out[c], expect)


@pytest.mark.parametrize("channels", [1, 8, 42, 123], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("leading", [(0,), (0, 5), (3, 0)], ids=_ids)
def test_pack_empty(backend, leading, channels):
    """Tensors with zero rows pack to an empty uint8 tensor of shape (..., ceil(C/8))."""
    x = torch.zeros(leading + (channels,), dtype=torch.bool, device=device_for(backend))
    out = bf.pack_bits(x, backend=backend)
    assert out.dtype == torch.uint8
    assert tuple(out.shape) == leading + (nbytes(channels),)


NONCONTIG = ["transposed", "sliced_rows", "sliced_channels", "expanded", "permuted3d", "neg_view"]


def _make_noncontig(kind: str, bits: np.ndarray, dtype, device):
    """Return (non-contiguous tensor, numpy bits it holds)."""
    base = _as_dtype(bits, dtype).to(device)
    if kind == "transposed":  # (C, N) -> (N, C): channel stride N
        t = base.reshape(bits.shape[-1], -1).t()
        ref = bits.reshape(bits.shape[-1], -1).T
    elif kind == "sliced_rows":
        t = base[::2]
        ref = bits[::2]
    elif kind == "sliced_channels":  # channel stride 3
        t = base[..., ::3]
        ref = bits[..., ::3]
    elif kind == "expanded":  # stride 0 on a new leading dim
        t = base[:1].expand(4, *base.shape[1:])
        ref = np.broadcast_to(bits[:1], (4,) + bits.shape[1:])
    elif kind == "permuted3d":
        b3 = bits.reshape(2, -1, bits.shape[-1])
        t = base.reshape(2, -1, bits.shape[-1]).permute(1, 0, 2)
        ref = b3.transpose(1, 0, 2)
    elif kind == "neg_view":  # a narrow() of a transposed view, storage offset != 0
        t = base.t()[1:]
        ref = bits.T[1:]
    else:
        raise AssertionError(kind)
    return t, np.ascontiguousarray(ref)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32, torch.bfloat16], ids=_ids)
@pytest.mark.parametrize("kind", NONCONTIG)
def test_pack_noncontiguous(backend, kind, dtype):
    """Non-contiguous inputs (transposed, strided, expanded, permuted) pack like their contiguous copy."""
    bits = random_bits((42, 46), seed=7)
    x, ref = _make_noncontig(kind, bits, dtype, device_for(backend))
    if kind != "expanded":
        assert not x.is_contiguous()
    out = bf.pack_bits(x, backend=backend)
    np.testing.assert_array_equal(to_np(out), np_pack(ref))


@given(
    leading=st.lists(st.integers(0, 7), min_size=1, max_size=3).map(tuple),
    channels=st.integers(1, 70),
    dtype=st.sampled_from(INPUT_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_pack_hypothesis(backend, leading, channels, dtype, seed):
    """Any leading shape (zero-sized included), any C in 1..70, any accepted dtype == numpy.packbits."""
    bits = random_bits(leading + (channels,), seed=seed)
    out = bf.pack_bits(_as_dtype(bits, dtype).to(device_for(backend)), backend=backend)
    assert tuple(out.shape) == leading + (nbytes(channels),)
    np.testing.assert_array_equal(to_np(out), np_pack(bits))


def test_pack_1d(backend):
    """A 1-D tensor of C bits packs to ceil(C/8) bytes."""
    bits = random_bits((29,), seed=3)
    out = bf.pack_bits(torch.from_numpy(bits).bool().to(device_for(backend)), backend=backend)
    assert tuple(out.shape) == (4,)
    np.testing.assert_array_equal(to_np(out), np_pack(bits))


# ------------------------------------------------------------------------------------------
# unpack
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", OUT_DTYPES, ids=_ids)
@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"C{c}")
def test_unpack_matches_numpy(backend, dtype, channels):
    """unpack_bits(packed, C, dtype) equals numpy.unpackbits(little, count=C), as 0/1 in dtype."""
    bits = random_bits((3, 11, channels), seed=channels)
    packed = torch.from_numpy(np_pack(bits)).to(device_for(backend))
    out = bf.unpack_bits(packed, channels, dtype=dtype, backend=backend)
    assert out.dtype == dtype
    assert tuple(out.shape) == (3, 11, channels)
    assert out.device.type == device_for(backend)
    np.testing.assert_array_equal(to_np(out).astype(np.uint8), bits)
    if dtype != torch.bool:
        assert set(np.unique(to_np(out)).tolist()) <= {0, 1}


def test_unpack_default_dtype_is_float32(backend):
    """unpack_bits without dtype returns float32."""
    packed = torch.tensor([[0b10100101]], dtype=torch.uint8, device=device_for(backend))
    out = bf.unpack_bits(packed, 8, backend=backend)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(to_np(out), [[1, 0, 1, 0, 0, 1, 0, 1]])


@pytest.mark.parametrize("channels", [1, 3, 7, 9, 70], ids=lambda c: f"C{c}")
def test_unpack_ignores_padding_bits(backend, channels):
    """Padding bits of the last byte (set to 1 here) never leak into the C unpacked channels."""
    rng = np.random.default_rng(channels)
    packed = rng.integers(0, 256, size=(9, nbytes(channels))).astype(np.uint8)  # padding garbage
    out = bf.unpack_bits(torch.from_numpy(packed).to(device_for(backend)), channels,
                         dtype=torch.uint8, backend=backend)
    np.testing.assert_array_equal(to_np(out), np_unpack(packed, channels))


@pytest.mark.parametrize("channels", [1, 42], ids=lambda c: f"C{c}")
@pytest.mark.parametrize("leading", [(0,), (2, 0)], ids=_ids)
def test_unpack_empty(backend, leading, channels):
    """Empty packed tensors unpack to empty (..., C) tensors."""
    packed = torch.zeros(leading + (nbytes(channels),), dtype=torch.uint8, device=device_for(backend))
    out = bf.unpack_bits(packed, channels, dtype=torch.float32, backend=backend)
    assert tuple(out.shape) == leading + (channels,)


@pytest.mark.parametrize("kind", ["transposed", "sliced_rows", "expanded"])
def test_unpack_noncontiguous(backend, kind):
    """Non-contiguous packed inputs unpack like their contiguous copy."""
    C = 43
    rng = np.random.default_rng(5)
    base_np = rng.integers(0, 256, size=(nbytes(C), 12)).astype(np.uint8)  # (nb, N)
    base = torch.from_numpy(base_np).to(device_for(backend))
    if kind == "transposed":
        x, ref = base.t(), base_np.T
    elif kind == "sliced_rows":
        x, ref = base.t()[::3], base_np.T[::3]
    else:
        x, ref = base.t()[:1].expand(5, -1), np.broadcast_to(base_np.T[:1], (5, nbytes(C)))
    out = bf.unpack_bits(x, C, dtype=torch.uint8, backend=backend)
    np.testing.assert_array_equal(to_np(out), np_unpack(np.ascontiguousarray(ref), C))


# ------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------
@given(
    leading=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    channels=st.integers(1, 130),
    in_dtype=st.sampled_from(INPUT_DTYPES),
    out_dtype=st.sampled_from(OUT_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_bits(backend, leading, channels, in_dtype, out_dtype, seed):
    """unpack(pack(x)) == x for 0/1 data, whatever the input and output dtypes."""
    bits = random_bits(leading + (channels,), seed=seed)
    x = _as_dtype(bits, in_dtype).to(device_for(backend))
    back = bf.unpack_bits(bf.pack_bits(x, backend=backend), channels, dtype=out_dtype, backend=backend)
    np.testing.assert_array_equal(to_np(back).astype(np.uint8), bits)


@given(
    rows=st.integers(1, 50),
    channels=st.integers(1, 130),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_bytes(backend, rows, channels, seed):
    """pack(unpack(p)) == p for any packed data whose padding bits are 0."""
    packed = np_pack(random_bits((rows, channels), seed=seed))
    p = torch.from_numpy(packed).to(device_for(backend))
    again = bf.pack_bits(bf.unpack_bits(p, channels, dtype=torch.bool, backend=backend), backend=backend)
    np.testing.assert_array_equal(to_np(again), packed)


def test_backends_agree_on_packing(present_backends):
    """Every available backend packs and unpacks the same bytes (computed on its own device)."""
    bits = random_bits((4, 13, 123), seed=11)
    outs = []
    for b in present_backends:
        x = torch.from_numpy(bits).to(device_for(b))
        p = to_np(bf.pack_bits(x, backend=b))
        u = to_np(bf.unpack_bits(torch.from_numpy(p).to(device_for(b)), 123, dtype=torch.uint8, backend=b))
        outs.append((p, u))
    for p, u in outs:
        np.testing.assert_array_equal(p, outs[0][0])
        np.testing.assert_array_equal(u, bits)


def test_auto_backend_packs(backend):
    """backend='auto' (the default) gives the same bytes as the explicit backend."""
    bits = random_bits((6, 42), seed=2)
    x = torch.from_numpy(bits).to(device_for(backend))
    np.testing.assert_array_equal(to_np(bf.pack_bits(x)), to_np(bf.pack_bits(x, backend=backend)))
