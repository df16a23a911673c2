"""sample(dtype=..., compile=...) of BernoulliDiffusion and accelerate() (issue 16 item 4): the
default keeps today's bits; a compute dtype runs a cached cast copy of the denoiser; compile=True
compiles the denoiser and the step as one cached function that returns the eager bits and does
not recompile for new seeds, labels, temperatures, guidance or step counts (graphs counted with
torch._dynamo's CompileCounter). Most compile tests use the aot_eager backend (the same ops as
eager, so the bits must be equal); one runs inductor, the default."""

import pytest
import torch

import bldm_fast as bf
from bldm_fast.bench.official_sampler import OfficialSampler
from bldm_fast.models import BinaryTransformer

pytestmark = pytest.mark.skipif(not bf.native_available(), reason="needs the C++ extension bldm_fast._C (cpu backend)")

B, SIDE, C, T = 2, 4, 16, 16
L = SIDE * SIDE


def _model(num_classes=5, seed=0):
    torch.manual_seed(seed)
    den = BinaryTransformer(C, n_embd=32, n_head=2, n_layers=2, latent_size=SIDE, total_steps=T,
                            num_classes=num_classes).eval()
    with torch.no_grad():
        for p in den.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return bf.BernoulliDiffusion(den, T, "cos", latent_shape=(SIDE, SIDE), channels=C, num_classes=num_classes)


def _counter():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    return CompileCounter()


def _spy_dtypes(monkeypatch):
    seen = set()
    forward = BinaryTransformer.forward

    def spy(self, x, label=None, time_steps=None, **kw):
        out = forward(self, x, label, time_steps, **kw)
        seen.add((x.dtype, self.tok_emb.weight.dtype, out.dtype))
        return out

    monkeypatch.setattr(BinaryTransformer, "forward", spy)
    return seen


KW = dict(labels=torch.tensor([1, 4]), steps=6, guidance=1.5, temperature=0.9, seed=3, progress=False)


def test_float32_dtype_is_the_default_path_without_a_copy(monkeypatch):
    model = _model()
    seen = _spy_dtypes(monkeypatch)
    ref = model.sample(B, **KW)
    assert torch.equal(model.sample(B, dtype=torch.float32, **KW), ref)
    assert seen == {(torch.float32, torch.float32, torch.float32)}
    assert model._fast._cast == {}


def test_bfloat16_runs_a_cached_cast_copy_and_recasts_after_an_update(monkeypatch):
    model = _model()
    seen = _spy_dtypes(monkeypatch)
    ref = model.sample(B, return_all=True, **KW)
    seen.clear()
    out = model.sample(B, dtype=torch.bfloat16, return_all=True, **KW)
    assert seen == {(torch.bfloat16, torch.bfloat16, torch.bfloat16)}
    assert out.shape == ref.shape and torch.equal(out[0], ref[0])  # the initial noise does not use the model
    copy1 = model._fast.denoiser(model.denoiser, torch.bfloat16)
    assert model._fast.denoiser(model.denoiser, torch.bfloat16) is copy1
    assert next(model.denoiser.parameters()).dtype == torch.float32  # the model itself is untouched
    with torch.no_grad():
        model.denoiser.head.bias.add_(1.0)
    copy2 = model._fast.denoiser(model.denoiser, torch.bfloat16)
    assert copy2 is not copy1
    torch.testing.assert_close(copy2.head.bias.float(), model.denoiser.head.bias, rtol=1e-2, atol=1e-2)


def test_compiled_sampling_matches_eager_and_never_recompiles():
    model = _model()
    mask = torch.zeros(L, C, dtype=torch.bool)
    mask[:3] = True
    known = torch.rand(L, C) < 0.5
    cnt = _counter()
    calls = [dict(KW), dict(KW, labels=torch.tensor([0, 2]), seed=9, steps=9, temperature=0.5, guidance=3.0),
             dict(KW, seed=11, steps=4, mask=mask, known=known)]
    for kw in calls:
        fast = model.sample(B, compile={"backend": cnt}, return_all=True, **kw)
        assert torch.equal(fast, model.sample(B, return_all=True, **kw))
    assert cnt.frame_count == 2  # one graph without a mask, one with; none per step, seed or step count
    assert cnt.op_count > 0


def test_compiled_bfloat16_step_matches_eager_bfloat16():
    model = _model()
    cnt = _counter()
    eager = model.sample(B, dtype=torch.bfloat16, **KW)
    assert torch.equal(model.sample(B, dtype=torch.bfloat16, compile={"backend": cnt}, **KW), eager)
    assert torch.equal(model.sample(B, dtype=torch.bfloat16, compile={"backend": cnt}, **dict(KW, seed=4)),
                       model.sample(B, dtype=torch.bfloat16, **dict(KW, seed=4)))
    assert cnt.frame_count == 1


def test_compile_true_uses_inductor_with_fullgraph_and_caches_it():
    from torch._dynamo.utils import counters

    model = _model(num_classes=None)
    torch._dynamo.reset()
    first = model.sample(B, steps=5, seed=1, compile=True, progress=False)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    second = model.sample(B, steps=7, seed=2, compile=True, progress=False)
    assert counters["stats"]["unique_graphs"] == graphs  # the cached callable: nothing recompiled
    (options,) = [k[-1] for k in model._fast._steps]
    assert ("fullgraph", "True") in options
    assert first.shape == second.shape == (B, L, C // 8) and first.dtype == torch.uint8
    # inductor's float32 kernels may round a logit differently from eager: bits agree where no draw moved
    agree = (bf.unpack_bits(first, C) == bf.unpack_bits(model.sample(B, steps=5, seed=1, progress=False), C))
    assert agree.float().mean() > 0.9


def test_nan_in_a_compiled_loop_raises_naming_the_step():
    model = _model(num_classes=None)
    with torch.no_grad():
        model.denoiser.head.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="first at step 0"):
        model.sample(B, steps=3, seed=1, compile={"backend": "aot_eager"}, progress=False)


def test_accelerate_dtype_and_compile():
    model = _model(num_classes=1000)
    official = OfficialSampler(model.denoiser, num_timesteps=T, kind="cos", latent_hw=(SIDE, SIDE), codebook_size=C)
    fast = bf.accelerate(official)
    cnt = _counter()
    for seed, guidance in ((1, 2.0), (2, 0.5)):
        kw = dict(temp=0.8, sample_steps=5, b=B, guidance=guidance, seed=seed)
        ref = fast.sample(**kw)
        assert torch.equal(fast.sample(compile={"backend": cnt}, **kw), ref)
        half = fast.sample(dtype=torch.bfloat16, **kw)
        assert half.shape == ref.shape and half.dtype == torch.float32
    assert cnt.frame_count == 1


def test_bad_dtype_and_compile_arguments():
    model = _model()
    with pytest.raises(TypeError, match="dtype"):
        model.sample(B, dtype=torch.int8, **KW)
    with pytest.raises(TypeError, match="compile"):
        model.sample(B, compile="yes", **KW)
    with pytest.raises(ValueError, match="distributed"):
        model.sample(B, compile=True, distributed=True, **KW)
    fast = bf.accelerate(OfficialSampler(model.denoiser, num_timesteps=T, latent_hw=(SIDE, SIDE), codebook_size=C))
    with pytest.raises(TypeError, match="dtype"):
        fast.sample(b=1, dtype="bfloat16")
