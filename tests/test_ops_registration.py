"""The fused ops are proper torch.library ops: schemas and fake implementations agree with the
kernels (torch.library.opcheck), for the native ops (torch.ops.bldm_fast, CPU and CUDA) and the Triton ops
(torch.ops.bldm_fast_triton), and the public functions trace under torch.compile(fullgraph=True)."""

import pytest
import torch

import bldm_fast as bf
from bf_testutil import device_for, require_backend
from bldm_fast._backends import fused_ops

OPCHECK_TESTS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
FUSED = ["cpu", "triton", "cuda"]


@pytest.fixture(params=FUSED, ids=[f"backend={b}" for b in FUSED])
def fused(request):
    """(backend name, its torch.ops namespace, device of its tensors); missing ones are skipped."""
    require_backend(request.param)
    return request.param, fused_ops(request.param), device_for(request.param)


def _bits(*shape, device="cpu"):
    return torch.randint(0, 2, shape, dtype=torch.uint8, device=device)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32, torch.bfloat16])
def test_opcheck_pack_unpack(fused, dtype):
    _, ops, dev = fused
    bits = _bits(3, 5, 13, device=dev).to(dtype)
    torch.library.opcheck(ops.pack_bits.default, (bits,), test_utils=OPCHECK_TESTS)
    packed = bf.pack_bits(bits)
    torch.library.opcheck(ops.unpack_bits.default, (packed, 13, torch.float16), test_utils=OPCHECK_TESTS)


def test_opcheck_philox_fill(fused):
    _, ops, dev = fused
    out = torch.empty(37, dtype=torch.float32, device=dev)
    torch.library.opcheck(ops.philox_fill_.default, (out, 7, 2**40), test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("out_dtype,return_flip", [(None, False), (torch.float32, True), (torch.bfloat16, False)])
def test_opcheck_noise(fused, out_dtype, return_flip):
    _, ops, dev = fused
    x0 = bf.pack_bits(_bits(4, 6, 21, device=dev))
    thr = torch.rand(4, 2, device=dev)
    args = (x0, thr, 21, 3, 5, out_dtype, return_flip)
    torch.library.opcheck(ops.bernoulli_noise.default, args, test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("guided,masked,final,return_probs,out_dtype", [
    (False, False, False, False, None),
    (True, True, False, True, torch.float32),
    (True, False, True, True, torch.float16),
])
def test_opcheck_step(fused, guided, masked, final, return_probs, out_dtype):
    _, ops, dev = fused
    logits = torch.randn(2, 9, 19, device=dev)
    uncond = torch.randn(2, 9, 19, device=dev) if guided else None
    xt = bf.pack_bits(_bits(2, 9, 19, device=dev))
    mask = bf.pack_bits(_bits(2, 9, 19, device=dev)) if masked else None
    known = bf.pack_bits(_bits(2, 9, 19, device=dev)) if masked else None
    args = (logits, uncond, xt, mask, known, 1.25, 2.0, 0.9, 0.05, 0.8, 0.2, final, True, -5, 2**62,
            return_probs, out_dtype)
    torch.library.opcheck(ops.sample_step.default, args, test_utils=OPCHECK_TESTS)


def test_compiled_step_and_noise_match_eager(fused):
    """The public functions compile with fullgraph=True and give the eager bits."""
    backend, _, dev = fused
    torch._dynamo.reset()
    sched = bf.BernoulliSchedule(16, "cos")
    logits, uncond = torch.randn(3, 16, 24, device=dev), torch.randn(3, 16, 24, device=dev)
    xt = bf.pack_bits(_bits(3, 16, 24, device=dev))

    def step_then_noise(logits, uncond, xt):
        x, probs, model_in = bf.sample_step(logits, xt, 9, 4, sched, seed=11, offset=3, guidance=1.5,
                                            uncond_logits=uncond, return_probs=True, out_dtype=torch.float32,
                                            backend=backend)
        noised = bf.bernoulli_noise(x, 7, sched, 24, seed=12, backend=backend)
        return x, probs, model_in, noised, bf.pack_bits(model_in, backend=backend)

    compiled = torch.compile(step_then_noise, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(logits, uncond, xt), step_then_noise(logits, uncond, xt)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck_flip_bce(fused, dtype):
    """Schema, fake and the registered backward (the op returns its own gradient)."""
    _, ops, dev = fused
    logits = torch.randn(3, 5, 21, device=dev).to(dtype).requires_grad_(True)
    target = bf.pack_bits(_bits(3, 5, 21, device=dev))
    w1, w0 = torch.rand(3, device=dev), torch.rand(3, device=dev)
    torch.library.opcheck(ops.flip_bce.default, (logits, target, w1, w0),
                          test_utils=(*OPCHECK_TESTS, "test_autograd_registration"))


def test_opcheck_binarize_quantize(fused):
    _, ops, dev = fused
    logits = torch.randn(3, 5, 21, device=dev)
    torch.library.opcheck(ops.binarize.default, (logits, True, 9, 2**41), test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.binarize.default, (logits.bfloat16(), False, 0, 0), test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.quantize_probs.default, (logits,), test_utils=OPCHECK_TESTS)
