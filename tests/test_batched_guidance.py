"""Classifier-free guidance in one forward (issue 16 item 4): ``BinaryTransformer.guided_forward``
runs the conditional and the unconditional sequences as one batch of 2B, the unconditional half's
class token masked out of the attention. The official unconditional call has one token fewer, so
this equals the two official calls within float rounding; proved here on the CPU (where the path
is off by default) for class and vector conditioning, inside real sampling loops, and shown to
depend on the mask."""

import pytest
import torch

import bldm_fast as bf
from bldm_fast.bench.official_sampler import OfficialSampler
from bldm_fast.models import BinaryTransformer
from bldm_fast.models.transformer import _masked_block

B, SIDE, C, T = 3, 4, 16, 16
L = SIDE * SIDE


def _denoiser(seed=0, **kw):
    """A small denoiser whose weights are all perturbed, so attention is far from uniform and every
    token (the class token included) matters."""
    torch.manual_seed(seed)
    den = BinaryTransformer(C, n_embd=32, n_head=4, n_layers=2, latent_size=SIDE, total_steps=T, **kw).eval()
    with torch.no_grad():
        for p in den.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return den


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(B, L, C, generator=g) < 0.5).float()
    return x, torch.randint(0, T, (B,), generator=g)


@pytest.mark.parametrize("kind", ["classes", "vectors"])
def test_guided_forward_equals_the_two_official_calls(kind):
    den = _denoiser(num_classes=7) if kind == "classes" else _denoiser(cond_dim=5)
    x, ts = _inputs()
    label = torch.tensor([0, 6, 3]) if kind == "classes" else torch.randn(B, 5)
    with torch.no_grad():
        cond, uncond = den.guided_forward(x, label, ts)
        torch.testing.assert_close(cond, den(x, label, ts), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(uncond, den(x, None, ts), rtol=1e-5, atol=1e-5)
    assert cond.shape == uncond.shape == (B, L, C)


def test_without_the_mask_the_unconditional_half_differs():
    den = _denoiser(num_classes=7)
    x, ts = _inputs()
    with torch.no_grad():
        ref = den(x, None, ts)
        w = den.tok_emb.weight
        h = (x - 0.5) * 2.0 @ w + den.pos_emb[:, :L]
        seq = torch.cat((h, den.time_step_embedding(den.time_input(ts)), torch.zeros(B, 1, 32)), 1)
        keep_all = torch.ones(B, 1, 1, L + 2, dtype=torch.bool)
        for block in den.blocks:
            seq = _masked_block(block, seq, keep_all)
        unmasked = den.head(den.ln_f(seq[:, :L]))
    assert (unmasked - ref).abs().max() > 1e-3  # the zero class token does change the result unmasked


def test_sampling_with_batched_guidance_matches_two_passes_step_by_step():
    den = _denoiser(num_classes=7)
    model = bf.BernoulliDiffusion(den, T, "cos", latent_shape=(SIDE, SIDE), channels=C, num_classes=7)
    labels = torch.tensor([0, 5, 6])
    calls = []
    inner = den.guided_forward

    def checked(x, label, ts):
        cond, uncond = inner(x, label, ts)
        torch.testing.assert_close(cond, den(x, label, time_steps=ts), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(uncond, den(x, None, time_steps=ts), rtol=1e-5, atol=1e-5)
        calls.append(int(ts[0]))
        return cond, uncond

    den.guided_forward = checked
    kw = dict(labels=labels, steps=8, guidance=2.0, temperature=0.9, seed=5, progress=False)
    batched = model.sample(B, batch_guidance=True, **kw)
    assert len(calls) == 8
    del den.guided_forward
    assert torch.equal(batched, model.sample(B, batch_guidance=False, **kw))


def test_accelerate_batches_guidance_of_a_denoiser_that_can():
    den = _denoiser(num_classes=1000)
    official = OfficialSampler(den, num_timesteps=T, kind="linear", latent_hw=(SIDE, SIDE), codebook_size=C)
    fast = bf.accelerate(official)
    kw = dict(temp=0.8, sample_steps=6, b=B, guidance=1.5, seed=2)
    assert torch.equal(fast.sample(batch_guidance=True, **kw), fast.sample(batch_guidance=False, **kw))


def test_batch_guidance_errors():
    model = bf.BernoulliDiffusion(_denoiser(num_classes=7), T, latent_shape=(SIDE, SIDE), channels=C, num_classes=7)
    with pytest.raises(TypeError, match="batch_guidance"):
        model.sample(2, labels=1, guidance=1.0, steps=2, batch_guidance="yes", progress=False)
    plain = bf.BernoulliDiffusion(torch.nn.Sequential(torch.nn.Linear(C, C)), T, latent_shape=(SIDE, SIDE),
                                  channels=C, num_classes=7)
    with pytest.raises(ValueError, match="guided_forward"):
        plain.sample(2, labels=1, guidance=1.0, steps=2, batch_guidance=True, progress=False)
    x, ts = _inputs()
    with pytest.raises(ValueError, match="conditional model"):
        _denoiser().guided_forward(x, torch.zeros(B, dtype=torch.long), ts)
    with pytest.raises(ValueError, match="needs a label"):
        _denoiser(num_classes=7).guided_forward(x, None, ts)
