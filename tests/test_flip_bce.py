"""flip_bce_loss: the fused backends equal the reference in value (rtol 1e-5) and gradient, for
every logits dtype, odd shapes and non-contiguous inputs; the reference's gradient is checked by
torch.autograd.gradcheck in float64; bad input raises naming the argument."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bldm_fast as bf
from bf_testutil import device_for
from bldm_fast.reference import loss as ref

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _case(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g) * 6).to(dtype)
    target = bf.pack_bits(torch.rand(shape, generator=g) < 0.4)
    w1, w0 = torch.rand(shape[0], generator=g), torch.rand(shape[0], generator=g)
    return logits.to(device), target.to(device), w1.to(device), w0.to(device)


def _loss_and_grad(logits, target, w1, w0, backend):
    x = logits.detach().clone().requires_grad_(True)
    loss = bf.flip_bce_loss(x, target, w1, w0, backend=backend)
    loss.backward()
    return loss.detach().double().cpu(), x.grad.cpu()


@settings(max_examples=15)
@given(b=st.integers(1, 4), l=st.integers(1, 9), c=st.integers(1, 70), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**31))
def test_fused_equals_reference(backend, b, l, c, dtype, seed):
    dev = device_for(backend)
    args = _case((b, l, c), dtype, seed, dev)
    want_loss, want_grad = _loss_and_grad(*[a.cpu() for a in args], backend="reference")
    got_loss, got_grad = _loss_and_grad(*args, backend=backend)
    assert got_grad.dtype == dtype
    np.testing.assert_allclose(got_loss.numpy(), want_loss.numpy(), rtol=1e-5, atol=1e-5)
    # gradients are w * (sigmoid(l) - y) in float32, rounded once to the logits dtype
    tol = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    np.testing.assert_allclose(got_grad.float().numpy(), want_grad.float().numpy(), rtol=tol, atol=tol)


def test_non_contiguous_logits(backend):
    dev = device_for(backend)
    logits, target, w1, w0 = _case((3, 5, 24), torch.float32, 1, dev)
    wide = torch.randn(3, 5, 48, device=dev)
    wide[..., ::2] = logits
    nc = wide[..., ::2]
    assert not nc.is_contiguous()
    a = bf.flip_bce_loss(nc, target, w1, w0, backend=backend)
    b = bf.flip_bce_loss(logits, target, w1, w0, backend=backend)
    assert torch.equal(a, b)


def test_reference_gradcheck_float64():
    logits, target, w1, w0 = _case((2, 3, 11), torch.float32, 2, "cpu")
    x = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ref.flip_bce_loss(t, target, w1, w0), (x,))


def test_loss_matches_formula():
    """Independent float64 numpy formula: w * (max(l,0) - l*y + log1p(exp(-|l|)))."""
    logits, target, w1, w0 = _case((2, 4, 13), torch.float32, 3, "cpu")
    l = logits.double().numpy()
    y = np.unpackbits(target.numpy(), axis=-1, bitorder="little")[..., :13].astype(np.float64)
    w = np.where(y > 0, w1.double().numpy()[:, None, None], w0.double().numpy()[:, None, None])
    want = (w * (np.maximum(l, 0) - l * y + np.log1p(np.exp(-np.abs(l))))).sum()
    for backend in bf.available_backends():
        dev = device_for(backend)
        got = bf.flip_bce_loss(logits.to(dev), target.to(dev), w1.to(dev), w0.to(dev), backend=backend)
        np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_bad_input(backend):
    dev = device_for(backend)
    logits, target, w1, w0 = _case((2, 3, 16), torch.float32, 4, dev)
    with pytest.raises(TypeError, match="logits"):
        bf.flip_bce_loss(logits.to(torch.int32), target, w1, w0, backend=backend)
    with pytest.raises(ValueError, match="target_packed"):
        bf.flip_bce_loss(logits, target[..., :1], w1, w0, backend=backend)
    with pytest.raises(ValueError, match="pos_weight"):
        bf.flip_bce_loss(logits, target, w1[:1], w0, backend=backend)
    with pytest.raises(TypeError, match="neg_weight"):
        bf.flip_bce_loss(logits, target, w1, w0.double(), backend=backend)
