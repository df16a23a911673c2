"""The fused ops are proper torch.library ops: schemas and fake implementations agree with the
kernels (torch.library.opcheck), for the native ops (torch.ops.bldm_fast, CPU and CUDA) and the Triton ops
(torch.ops.bldm_fast_triton), and the public functions trace under torch.compile(fullgraph=True)."""

import pytest
import torch

import bldm_fast as bf
from bf_testutil import device_for, require_backend
from bldm_fast._backends import backend_ops, fused_ops

OPCHECK_TESTS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
FUSED = ["cpu", "triton", "cuda"]


@pytest.fixture(params=FUSED, ids=[f"backend={b}" for b in FUSED])
def fused(request):
    """(backend name, its torch.ops namespace, device of its tensors); missing ones are skipped."""
    require_backend(request.param)
    return request.param, fused_ops(request.param), device_for(request.param)


def _bits(*shape, device="cpu"):
    return torch.randint(0, 2, shape, dtype=torch.uint8, device=device)


def _stream(seed, offset, device):
    return torch.tensor([seed, offset], dtype=torch.int64, device=device)


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
    torch.library.opcheck(ops.philox_fill_.default, (out, _stream(7, 2**40, dev)), test_utils=OPCHECK_TESTS)


@pytest.mark.parametrize("out_dtype,return_flip", [(None, False), (torch.float32, True), (torch.bfloat16, False)])
def test_opcheck_noise(fused, out_dtype, return_flip):
    _, ops, dev = fused
    x0 = bf.pack_bits(_bits(4, 6, 21, device=dev))
    thr = torch.rand(4, 2, device=dev)
    args = (x0, thr, 21, _stream(3, 5, dev), out_dtype, return_flip)
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
    scalars = torch.tensor([1.25, 2.0, 0.9, 0.05, 0.8, 0.2, float(final)], device=dev)
    args = (logits, uncond, xt, mask, known, scalars, _stream(-5, 2**62, dev), True, return_probs, out_dtype, True)
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
        noised = bf.bernoulli_noise(x, 7, sched, 24, seed=12, backend=backend).packed
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
    torch.library.opcheck(ops.binarize.default, (logits, True, _stream(9, 2**41, dev)), test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.binarize.default, (logits.bfloat16(), False, _stream(0, 0, dev)),
                          test_utils=OPCHECK_TESTS)
    torch.library.opcheck(ops.quantize_probs.default, (logits,), test_utils=OPCHECK_TESTS)


ALL = ["reference", "cpu", "triton", "cuda"]


@pytest.fixture(params=ALL, ids=[f"backend={b}" for b in ALL])
def table(request):
    """(backend, its op table, device): every backend, the reference included, by one schema."""
    require_backend(request.param)
    return request.param, backend_ops(request.param), device_for(request.param)


def test_every_backend_table_has_one_schema(table):
    """The reference table is called exactly like the registered ops and returns the same arity."""
    _, ops, dev = table
    logits = torch.randn(2, 3, 10, device=dev)
    xt = bf.pack_bits(_bits(2, 3, 10, device=dev))
    scalars = torch.tensor([1.0, 0.0, 0.5, 0.25, 0.75, 0.25, 0.0], device=dev)
    out = ops.sample_step(logits, None, xt, None, None, scalars, _stream(1, 2, dev), True, True, torch.float32, True)
    assert len(out) == 4 and out[1].shape == logits.shape and out[2].dtype == torch.float32
    assert out[3].dtype == torch.int32 and out[3].shape == (1,)
    noise = ops.bernoulli_noise(xt, torch.rand(2, 2, device=dev), 10, _stream(1, 2, dev), None, False)
    assert len(noise) == 3 and noise[1].numel() == 0 and noise[2].numel() == 0


def _step_args(dev, **over):
    a = dict(logits=torch.randn(2, 3, 10, device=dev), uncond=None, xt=bf.pack_bits(_bits(2, 3, 10, device=dev)),
             mask=None, known=None, scalars=torch.zeros(7, device=dev), stream=_stream(1, 2, dev))
    a.update(over)
    return (a["logits"], a["uncond"], a["xt"], a["mask"], a["known"], a["scalars"], a["stream"], True, False, None,
            True)


@pytest.mark.parametrize("bad,exc,match", [
    ("logits_int", TypeError, "logits must be float32"),
    ("xt_shape", ValueError, "xt_packed must have shape"),
    ("xt_dtype", TypeError, "xt_packed must be uint8"),
    ("scalars_len", ValueError, "scalars must be a contiguous"),
    ("scalars_dtype", TypeError, "scalars must be"),
    ("stream_dtype", TypeError, "stream must be"),
    ("stream_len", ValueError, "stream must be a contiguous"),
    ("uncond_shape", ValueError, "uncond_logits must have the shape"),
    ("mask_alone", ValueError, "mask and known must be given together"),
])
def test_backend_step_boundary_checks(table, bad, exc, match):
    """Direct calls of each backend's registered op (the C++ TORCH_CHECKs, the Triton and reference
    checks) with bad input raise the same exception type with the same message."""
    _, ops, dev = table
    over = {
        "logits_int": dict(logits=torch.zeros(2, 3, 10, dtype=torch.int32, device=dev)),
        "xt_shape": dict(xt=torch.zeros(2, 3, 3, dtype=torch.uint8, device=dev)),
        "xt_dtype": dict(xt=torch.zeros(2, 3, 2, dtype=torch.int32, device=dev)),
        "scalars_len": dict(scalars=torch.zeros(6, device=dev)),
        "scalars_dtype": dict(scalars=torch.zeros(7, dtype=torch.float64, device=dev)),
        "stream_dtype": dict(stream=torch.zeros(2, dtype=torch.int32, device=dev)),
        "stream_len": dict(stream=torch.zeros(3, dtype=torch.int64, device=dev)),
        "uncond_shape": dict(uncond=torch.zeros(2, 3, 9, device=dev)),
        "mask_alone": dict(mask=torch.zeros(2, 3, 2, dtype=torch.uint8, device=dev)),
    }[bad]
    with pytest.raises(exc, match=match):
        ops.sample_step(*_step_args(dev, **over))


@pytest.mark.parametrize("op", ["noise_thr", "noise_stream", "philox_dtype", "binarize_stream", "unpack_channels",
                                "pack_empty", "bce_weight"])
def test_backend_boundary_checks_other_ops(table, op):
    _, ops, dev = table
    x0 = bf.pack_bits(_bits(2, 3, 10, device=dev))
    logits = torch.randn(2, 3, 10, device=dev)
    calls = {
        "noise_thr": (ValueError, "thresholds must have shape",
                      lambda: ops.bernoulli_noise(x0, torch.rand(3, 2, device=dev), 10, _stream(1, 2, dev), None,
                                                  False)),
        "noise_stream": (ValueError, "stream must be",
                         lambda: ops.bernoulli_noise(x0, torch.rand(2, 2, device=dev), 10,
                                                     torch.zeros(1, dtype=torch.int64, device=dev), None, False)),
        "philox_dtype": (TypeError, "out must be float32",
                         lambda: ops.philox_fill_(torch.empty(8, dtype=torch.int32, device=dev), _stream(1, 2, dev))),
        "binarize_stream": (TypeError, "stream must be",
                            lambda: ops.binarize(logits, True, torch.zeros(2, device=dev))),
        "unpack_channels": (ValueError, "packed must have shape", lambda: ops.unpack_bits(x0, 17, torch.float32)),
        "pack_empty": (ValueError, "last \\(channel\\) dimension",
                       lambda: ops.pack_bits(torch.zeros(3, 0, dtype=torch.uint8, device=dev))),
        "bce_weight": (TypeError, "pos_weight must be float32",
                       lambda: ops.flip_bce(logits, x0, torch.ones(2, dtype=torch.float64, device=dev),
                                            torch.ones(2, device=dev))),
    }
    exc, match, call = calls[op]
    with pytest.raises(exc, match=match):
        call()
