"""accelerate(official BinaryDiffusion) against a stand-in of the official class.

``OfficialBinaryDiffusion`` below is a duck-typed stand-in for ``models/binarylatent.py``'s
``BinaryDiffusion`` (ZeWang95/BinaryLatentDiffusion): the attributes ``accelerate`` reads and a
``sample()`` transcribed from the official one, in float32 with the official float32 buffers, with
two changes: tensors live on the denoiser's device instead of ``"cuda"``, and ``torch.bernoulli(p)``
is ``u < p`` on the contract's uniforms at the sampler's stream offsets (region 0: initial noise,
region i + 1: step i).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import bldm_fast as bf
import official
from bf_testutil import device_for
from bldm_fast.diffusion import AcceleratedBinaryDiffusion, accelerate, match_schedule
from test_sampling import StubDenoiser, check_trajectory, uniforms


class OfficialScheduler(nn.Module):
    """The official ``noise_scheduler``'s buffers and methods (tables from tests/official.py)."""

    def __init__(self, steps=40, beta_type="linear"):
        super().__init__()
        k, b, beta = (torch.from_numpy(np.asarray(t, dtype=np.float64)) for t in official.tables(steps, beta_type))
        self.register_buffer("k_final", k.float())
        self.register_buffer("b_final", b.float())
        self.register_buffer("beta", beta.float())
        self.register_buffer("cumbeta", torch.cumprod(self.beta, 0))

    def one_step(self, x, t):
        dim = x.ndim - 1
        k = self.beta[t].view(-1, *([1] * dim))
        return x * k + 0.5 * (1 - k)

    def forward(self, x, t):
        dim = x.ndim - 1
        k = self.k_final[t].view(-1, *([1] * dim))
        b = self.b_final[t].view(-1, *([1] * dim))
        return k * x + b


class OfficialBinaryDiffusion(nn.Module):
    def __init__(self, denoise_fn, *, total_steps, beta_type, latent_shape, codebook_size, p_flip, dataset):
        super().__init__()
        self.codebook_size = codebook_size
        self.shape = tuple(latent_shape)
        self.num_timesteps = total_steps
        self._denoise_fn = denoise_fn
        self.scheduler = OfficialScheduler(total_steps, beta_type=beta_type)
        self.p_flip = p_flip
        self.dataset = dataset
        self.guidance = None

    def sample(self, temp=1.0, sample_steps=None, b=5, return_all=False, label=None, mask=None, guidance=None,
               full=False, *, seed=0):
        device = next(self._denoise_fn.parameters()).device
        shape = (b, int(np.prod(self.shape)), self.codebook_size)
        x_t = (uniforms(seed, 0, 0, shape) < 0.5).to(device) * 1.0  # torch.bernoulli(0.5 * ones)

        if mask is not None:
            m = mask["mask"].unsqueeze(0)
            latent = mask["latent"].unsqueeze(0)
            x_t = latent * m + x_t * (1 - m)
        sampling_steps = np.array(range(1, self.num_timesteps + 1))

        if sample_steps != self.num_timesteps:
            idx = np.linspace(0.0, 1.0, sample_steps)
            idx = np.array(idx * (self.num_timesteps - 1), int)
            sampling_steps = sampling_steps[idx]

        if return_all:
            x_all = [x_t]

        if self.dataset == "imagenet":
            if label is None:
                label = torch.arange(b, device=device) * 100
                label = label.long()
            else:
                label = torch.full((b,), label, device=device, dtype=torch.long)

        sampling_steps = sampling_steps[::-1]

        for i, t in enumerate(sampling_steps):
            t = torch.full((b,), t, device=device, dtype=torch.long)

            if self.dataset.startswith("imagenet") or self.dataset.startswith("laion"):
                x_0_logits = self._denoise_fn(x_t, label, time_steps=t - 1)
                x_0_logits = x_0_logits / temp
                if guidance is not None:
                    x_0_logits_uncond = self._denoise_fn(x_t, None, time_steps=t - 1)
                    x_0_logits_uncond = x_0_logits_uncond / temp
                    x_0_logits = (1 + guidance) * x_0_logits - guidance * x_0_logits_uncond
            else:
                x_0_logits = self._denoise_fn(x_t, time_steps=t - 1)
                x_0_logits = x_0_logits / temp

            x_0_logits = torch.sigmoid(x_0_logits)

            if self.p_flip:
                x_0_logits = x_t * (1 - x_0_logits) + (1 - x_t) * x_0_logits

            if not t[0].item() == 1:
                t_p = torch.full((b,), sampling_steps[i + 1], device=device, dtype=torch.long)

                x_0_logits = torch.cat([x_0_logits.unsqueeze(-1), (1 - x_0_logits).unsqueeze(-1)], dim=-1)
                x_t_logits = torch.cat([x_t.unsqueeze(-1), (1 - x_t).unsqueeze(-1)], dim=-1)

                p_EV_qxtmin_x0 = self.scheduler(x_0_logits, t_p)
                q_one_step = x_t_logits

                for mns in range(sampling_steps[i] - sampling_steps[i + 1]):
                    q_one_step = self.scheduler.one_step(q_one_step, t - mns)

                unnormed_probs = p_EV_qxtmin_x0 * q_one_step
                unnormed_probs = unnormed_probs / unnormed_probs.sum(-1, keepdims=True)
                unnormed_probs = unnormed_probs[..., 0]

                x_tm1_logits = unnormed_probs
                x_tm1_p = (uniforms(seed, 0, i + 1, shape).to(device) < x_tm1_logits) * 1.0  # torch.bernoulli
            else:
                x_0_logits = x_0_logits
                x_tm1_p = (x_0_logits > 0.5) * 1.0

            x_t = x_tm1_p

            if mask is not None:
                m = mask["mask"].unsqueeze(0)
                latent = mask["latent"].unsqueeze(0)
                x_t = latent * m + x_t * (1 - m)

            if return_all:
                x_all.append(x_t)
        if return_all:
            return torch.cat(x_all, 0)
        else:
            return x_t


L, C = 4, 8


def make_official(dataset="churches", beta_type="linear", total_steps=12, p_flip=True, device="cpu"):
    den = StubDenoiser(L, C, num_classes=1000 if dataset.startswith("imagenet") else None, seed=1).to(device)
    return OfficialBinaryDiffusion(den, total_steps=total_steps, beta_type=beta_type, latent_shape=(1, 2, 2),
                                   codebook_size=C, p_flip=p_flip, dataset=dataset).to(device)


def official_mask(seed=4):
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(L, C, generator=g) < 0.4).float()
    return {"mask": m, "latent": (torch.rand(L, C, generator=g) < 0.5).float()}


CASES = {
    "uncond-linear-all": (dict(dataset="churches"), dict(temp=1.0, sample_steps=12, b=3)),
    "uncond-cos-skip-x0pred": (dict(dataset="ffhq", beta_type="cos", p_flip=False),
                               dict(temp=0.8, sample_steps=5, b=2)),
    "imagenet-default-labels-guidance": (dict(dataset="imagenet", beta_type="sigmoid"),
                                         dict(sample_steps=4, b=3, guidance=2.0, temp=1.1)),
    "imagenet-int-label-mask": (dict(dataset="imagenet"), dict(sample_steps=6, b=2, label=7, mask="mask")),
    "imagenet256-tensor-label": (dict(dataset="imagenet256", beta_type="cos"),
                                 dict(sample_steps=3, b=2, label="tensor", guidance=0.5)),
    "uncond-guidance-ignored": (dict(dataset="churches"), dict(sample_steps=4, b=2, guidance=3.0)),
    "one-step": (dict(dataset="churches"), dict(sample_steps=1, b=2)),
}


def case_args(name, device):
    okw, skw = CASES[name]
    skw = dict(skw)
    if skw.get("mask") == "mask":
        skw["mask"] = {k: v.to(device) for k, v in official_mask().items()}
    if skw.get("label") == "tensor":
        skw["label"] = torch.tensor([5, 900], device=device)
    return dict(okw), skw


@pytest.mark.parametrize("case", list(CASES))
def test_accelerated_sample_equals_official(backend, case):
    dev = device_for(backend)
    okw, skw = case_args(case, dev)
    off = make_official(device=dev, **okw)
    acc = accelerate(off)
    want = off.sample(return_all=True, seed=21, **skw)
    got = acc.sample(return_all=True, seed=21, backend=backend, **skw)
    S1 = len(bf.diffusion.sampling_grid(off.num_timesteps, skw["sample_steps"])) + 1
    b = skw["b"]
    assert got.dtype == torch.float32 and got.shape == want.shape == (S1 * b, L, C)
    if not torch.equal(got, want):
        # the official float32 arithmetic is ~1e-4 off in the probabilities; a draw that close to u may differ,
        # and then everything after it: every step of ours must still be the official float64 step
        dataset = off.dataset
        label = skw.get("label")
        if dataset == "imagenet":
            label = torch.arange(b) * 100 if label is None else torch.full((b,), label)
        m = skw.get("mask")
        n = check_trajectory(bf.pack_bits(got.reshape(S1, b, L, C)).cpu(), off._denoise_fn.cpu(), off.num_timesteps,
                             acc.schedule.kind, C=C, seed=21, sample_steps=skw["sample_steps"],
                             temp=skw.get("temp", 1.0),
                             guidance=skw.get("guidance") if dataset.startswith(("imagenet", "laion")) else None,
                             p_flip=off.p_flip, label=None if label is None else label.cpu(),
                             conditional=dataset.startswith(("imagenet", "laion")),
                             mask=None if m is None else m["mask"].cpu(),
                             latent=None if m is None else m["latent"].cpu())
        assert n > 0
    final = acc.sample(seed=21, backend=backend, **skw)
    assert final.shape == (b, L, C) and torch.equal(final, got[-b:])


@pytest.mark.parametrize("kind", ["linear", "cos", "sigmoid"])
@pytest.mark.parametrize("T", [1, 7, 256])
def test_schedule_kind_is_detected(kind, T):
    off = make_official(beta_type=kind, total_steps=T)
    s = match_schedule(off.scheduler, T)
    assert torch.equal(s.k, off.scheduler.k_final) and torch.equal(s.beta, off.scheduler.beta)
    if T > 1:  # with one step all kinds have the same tables
        assert s.kind == kind
    assert accelerate(off).schedule.num_steps == T


def test_unknown_schedule_and_missing_attributes():
    off = make_official()
    off.scheduler.beta[3] += 0.01
    with pytest.raises(ValueError, match="match no BernoulliSchedule"):
        accelerate(off)
    off = make_official()
    off.scheduler.k_final = off.scheduler.k_final[:-1]
    with pytest.raises(ValueError, match="k_final"):
        accelerate(off)

    class NotOfficial:
        num_timesteps = 4

    with pytest.raises(ValueError, match="_denoise_fn"):
        accelerate(NotOfficial())


def test_wrapper_delegates_and_keeps_official_untouched():
    off = make_official(dataset="imagenet")
    acc = accelerate(off)
    assert isinstance(acc, AcceleratedBinaryDiffusion) and acc.official is off
    assert acc.num_timesteps == 12 and acc.dataset == "imagenet" and acc._denoise_fn is off._denoise_fn
    assert acc.scheduler is off.scheduler
    assert type(off).sample is OfficialBinaryDiffusion.sample  # not patched


def test_stream_and_defaults():
    off = make_official()
    acc = accelerate(off)
    # sample_steps=None means all steps (the official code fails on None)
    assert torch.equal(acc.sample(sample_steps=None, b=2, seed=3), acc.sample(sample_steps=12, b=2, seed=3))
    # batch-size invariance and generator reservation as BernoulliDiffusion
    assert torch.equal(acc.sample(sample_steps=4, b=1, seed=3), acc.sample(sample_steps=4, b=3, seed=3)[:1])
    gen = bf.PhiloxGenerator(3)
    a = acc.sample(sample_steps=4, b=2, generator=gen)
    assert torch.equal(a, acc.sample(sample_steps=4, b=2, seed=3)) and gen.offset == 5 * 2**40
    torch.manual_seed(1)
    x = acc.sample(sample_steps=3, b=2)
    torch.manual_seed(1)
    assert torch.equal(x, acc.sample(sample_steps=3, b=2))
    assert set(x.unique().tolist()) <= {0.0, 1.0}


def test_bad_arguments():
    acc = accelerate(make_official())
    with pytest.raises(ValueError, match="steps"):
        acc.sample(sample_steps=13, b=1, seed=0)
    with pytest.raises(ValueError, match="temperature"):
        acc.sample(temp=0.0, sample_steps=2, b=1, seed=0)
    with pytest.raises(ValueError, match="\\bb\\b"):
        acc.sample(sample_steps=2, b=0, seed=0)
    with pytest.raises(ValueError, match="mask"):
        acc.sample(sample_steps=2, b=1, mask={"mask": torch.ones(L, C)}, seed=0)
    with pytest.raises(ValueError, match="mask"):
        acc.sample(sample_steps=2, b=1, mask={"mask": torch.ones(L + 1, C), "latent": torch.ones(L + 1, C)}, seed=0)
