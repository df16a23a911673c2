"""The native ops are proper torch.library ops: schemas and fake implementations agree with the
kernels (torch.library.opcheck), and the public functions trace under torch.compile(fullgraph=True)."""

import pytest
import torch

import bldm_fast as bf

pytestmark = pytest.mark.skipif(not bf.native_available(), reason="C++ extension bldm_fast._C not built")

OPCHECK_TESTS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")


def _bits(*shape):
    return torch.randint(0, 2, shape, dtype=torch.uint8)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32, torch.bfloat16])
def test_opcheck_pack_unpack(dtype):
    bits = _bits(3, 5, 13).to(dtype)
    torch.library.opcheck(torch.ops.bldm_fast.pack_bits.default, (bits,), test_utils=OPCHECK_TESTS)
    packed = bf.pack_bits(bits)
    torch.library.opcheck(torch.ops.bldm_fast.unpack_bits.default, (packed, 13, torch.float16), test_utils=OPCHECK_TESTS)


def test_opcheck_philox_fill():
    out = torch.empty(37, dtype=torch.float32)
    torch.library.opcheck(torch.ops.bldm_fast.philox_fill_.default, (out, 7, 2**40), test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("out_dtype,return_flip", [(None, False), (torch.float32, True), (torch.bfloat16, False)])
def test_opcheck_noise(out_dtype, return_flip):
    x0 = bf.pack_bits(_bits(4, 6, 21))
    thr = torch.rand(4, 2)
    args = (x0, thr, 21, 3, 5, out_dtype, return_flip)
    torch.library.opcheck(torch.ops.bldm_fast.bernoulli_noise.default, args, test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("guided,masked,final,return_probs,out_dtype", [
    (False, False, False, False, None),
    (True, True, False, True, torch.float32),
    (True, False, True, True, torch.float16),
])
def test_opcheck_step(guided, masked, final, return_probs, out_dtype):
    logits = torch.randn(2, 9, 19)
    uncond = torch.randn(2, 9, 19) if guided else None
    xt = bf.pack_bits(_bits(2, 9, 19))
    mask = bf.pack_bits(_bits(2, 9, 19)) if masked else None
    known = bf.pack_bits(_bits(2, 9, 19)) if masked else None
    args = (logits, uncond, xt, mask, known, 1.25, 2.0, 0.9, 0.05, 0.8, 0.2, final, True, -5, 2**62,
            return_probs, out_dtype)
    torch.library.opcheck(torch.ops.bldm_fast.sample_step.default, args, test_utils=OPCHECK_TESTS)


def test_compiled_step_and_noise_match_eager():
    """The public functions compile with fullgraph=True and give the eager bits."""
    torch._dynamo.reset()
    sched = bf.BernoulliSchedule(16, "cos")
    logits, uncond = torch.randn(3, 16, 24), torch.randn(3, 16, 24)
    xt = bf.pack_bits(_bits(3, 16, 24))

    def step_then_noise(logits, uncond, xt):
        x, probs, model_in = bf.sample_step(logits, xt, 9, 4, sched, seed=11, offset=3, guidance=1.5,
                                            uncond_logits=uncond, return_probs=True, out_dtype=torch.float32,
                                            backend="cpu")
        noised = bf.bernoulli_noise(x, 7, sched, 24, seed=12, backend="cpu")
        return x, probs, model_in, noised, bf.pack_bits(model_in, backend="cpu")

    compiled = torch.compile(step_then_noise, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(logits, uncond, xt), step_then_noise(logits, uncond, xt)):
        assert torch.equal(got, want)
