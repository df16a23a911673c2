"""BernoulliScheduler: diffusers-style config, timesteps and step, against BernoulliDiffusion.sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import bldm_fast as bf
from bf_testutil import device_for
from bldm_fast.diffusion import BernoulliScheduler, SchedulerOutput
from bldm_fast.diffusion.grid import REGION_COUNTERS
from test_sampling import L_SMALL, StubDenoiser, make_diffusion, mask_known, official_grid, official_logits, \
    official_step_prob, official_tables


def diffusers_loop(sched, den, B, L, C, *, steps=None, labels=None, guidance=None, temperature=1.0, mask=None,
                   known=None, generator=None, seed=None, backend="auto", device="cpu", collect=None):
    """The diffusers-style loop: init_noise, then ``model(x, t)`` and ``step`` for t in timesteps."""
    sched.set_timesteps(steps)
    x = sched.init_noise(B, L, C, generator=generator, seed=seed, device=device, mask=mask, known=known,
                         backend=backend)
    for t in sched.timesteps:
        ts = torch.full((B,), int(t) - 1, dtype=torch.long, device=device)
        if labels is None:
            out, unc = den(x, time_steps=ts), None
        else:
            out = den(x, label=labels, time_steps=ts)
            unc = den(x, label=None, time_steps=ts) if guidance else None
        res = sched.step(out, t, x, temperature=temperature, guidance=guidance, uncond_model_output=unc, mask=mask,
                         known=known, generator=generator, seed=seed, backend=backend)
        if collect is not None:
            collect.append(res)
        x = res.prev_sample
    return x


@pytest.mark.parametrize("kind,steps,temperature,guidance,use_mask,predict_flip", [
    ("linear", None, 1.0, None, False, True),
    ("cos", 5, 0.8, 2.0, False, True),
    ("sigmoid", 4, 1.2, None, True, False),
    ("linear", 1, 1.0, 0.5, True, True),
])
def test_diffusers_loop_reproduces_sample(backend, kind, steps, temperature, guidance, use_mask, predict_flip):
    dev = device_for(backend)
    C, B = 8, 3
    d = make_diffusion(C=C, kind=kind, num_classes=4, predict_flip=predict_flip).to(dev)
    labels = torch.tensor([1, 3, 0], device=dev)
    mask = known = None
    if use_mask:
        mask, known = (t.to(dev) for t in mask_known("shared", B, L_SMALL, C))
    sched = BernoulliScheduler(d.num_timesteps, kind, predict_flip=predict_flip)
    common = dict(labels=labels, guidance=guidance, temperature=temperature, mask=mask, known=known, backend=backend)
    ref = d.sample(steps=steps, generator=bf.PhiloxGenerator(77), progress=False, **common)
    gen = bf.PhiloxGenerator(77)
    x = diffusers_loop(sched, d.denoiser, B, L_SMALL, C, steps=steps, generator=gen, device=dev, **common)
    assert x.dtype == torch.float32 and x.shape == (B, L_SMALL, C)
    assert torch.equal(bf.pack_bits(x), ref)
    n = len(sched.timesteps)
    assert gen.offset == (n + 1) * REGION_COUNTERS  # one run's regions, reserved once
    # with a seed instead of a generator
    ref_seed = d.sample(steps=steps, seed=5, progress=False, **common)
    x = diffusers_loop(sched, d.denoiser, B, L_SMALL, C, steps=steps, seed=5, device=dev, **common)
    assert torch.equal(bf.pack_bits(x), ref_seed)


def test_consecutive_runs_take_fresh_streams():
    d = make_diffusion(C=8)
    sched = BernoulliScheduler(d.num_timesteps)
    gen, gen_ref = bf.PhiloxGenerator(3), bf.PhiloxGenerator(3)
    for _ in range(2):
        x = diffusers_loop(sched, d.denoiser, 2, L_SMALL, 8, steps=4, generator=gen)
        assert torch.equal(bf.pack_bits(x), d.sample(2, steps=4, generator=gen_ref, progress=False))
    assert gen.offset == gen_ref.offset


def test_timesteps_are_official_grid():
    sched = BernoulliScheduler(100, "cos")
    assert torch.equal(sched.timesteps, torch.arange(100, 0, -1))
    for n in (1, 7, 16, 99, 100):
        sched.set_timesteps(n)
        assert sched.timesteps.dtype == torch.long and sched.num_inference_steps == n
        assert sched.timesteps.tolist() == [int(v) for v in official_grid(100, n)[::-1]]
        assert sched.previous_timestep(sched.timesteps[-1]) == 0
    with pytest.raises(ValueError, match="steps"):
        sched.set_timesteps(101)


def test_config_round_trip(tmp_path):
    sched = BernoulliScheduler(num_train_timesteps=64, beta_schedule="sigmoid", predict_flip=False)
    path = sched.save_config(tmp_path / "sched")
    data = json.loads(open(path).read())
    assert data == {"_class_name": "BernoulliScheduler", "num_train_timesteps": 64, "beta_schedule": "sigmoid",
                    "predict_flip": False}
    for src in (tmp_path / "sched", path, data, dict(sched.config)):
        s2 = BernoulliScheduler.from_config(src)
        assert s2.config == sched.config and s2.config.beta_schedule == "sigmoid"
        assert torch.equal(s2.schedule.k, sched.schedule.k)
    assert BernoulliScheduler.from_config({"num_train_timesteps": 8, "kind": "cos"}).config.beta_schedule == "cos"
    assert BernoulliScheduler.from_config(data, num_train_timesteps=10).config.num_train_timesteps == 10
    with pytest.raises(ValueError, match="unknown"):
        BernoulliScheduler.from_config({"num_train_timesteps": 8, "bogus": 1})
    with pytest.raises(ValueError, match="beta_schedule"):
        BernoulliScheduler(8, "quadratic")


@pytest.mark.parametrize("predict_flip", [True, False])
@torch.no_grad()
def test_step_outputs(predict_flip):
    T, B, C = 10, 2, 12
    den = StubDenoiser(L_SMALL, C, num_classes=2)
    sched = BernoulliScheduler(T, "cos", predict_flip=predict_flip)
    sched.set_timesteps(4)
    labels = torch.tensor([1, 0])
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        x = sched.init_noise(B, L_SMALL, C, seed=1, dtype=dtype)
        assert x.dtype == dtype and set(x.unique().tolist()) <= {0.0, 1.0}
        for t in sched.timesteps:
            ts = torch.full((B,), int(t) - 1)
            out, unc = den(x, label=labels, time_steps=ts), den(x, label=None, time_steps=ts)
            res = sched.step(out, t, x, temperature=0.7, guidance=1.5, uncond_model_output=unc, seed=1)
            assert isinstance(res, SchedulerOutput)
            assert res.prev_sample.dtype == dtype and res.prev_sample.shape == x.shape
            p0 = res.pred_original_sample
            assert p0.dtype == torch.float32 and p0.shape == x.shape
            lg = official_logits(den, x.double(), int(t), torch.float64, temp=0.7, guidance=1.5, label=labels,
                                 conditional=True)
            ref = official_step_prob(lg, x.double(), int(t), 0, official_tables(T, "cos", torch.float64), predict_flip)
            np.testing.assert_allclose(p0.double().numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
            x = res.prev_sample
    tup = sched.step(out, sched.timesteps[0], x.float(), return_dict=False, seed=2)
    assert isinstance(tup, tuple) and len(tup) == 2


def test_step_errors():
    sched = BernoulliScheduler(10)
    sched.set_timesteps(4)
    x = sched.init_noise(1, 4, 8, seed=0)
    out = torch.zeros(1, 4, 8)
    with pytest.raises(ValueError, match="timestep"):
        sched.step(out, 5, x, seed=0)  # not in the 4-step grid [10, 7, 4, 1]
    with pytest.raises(ValueError, match="shape"):
        sched.step(torch.zeros(1, 4, 9), 10, x, seed=0)
    with pytest.raises(ValueError, match="uncond_model_output"):
        sched.step(out, 10, x, guidance=1.0, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sched.step(out, 10, x, seed=1)  # the run started with seed 0
    with pytest.raises(ValueError, match="temperature"):
        sched.step(out, 10, x, temperature=-1.0, seed=0)
    with pytest.raises(ValueError):
        sched.step(out, 10, x * 0.5, seed=0)  # not 0/1
    assert sched.scale_model_input(x, 10) is x


def test_add_noise_is_bernoulli_noise():
    sched = BernoulliScheduler(16, "cos")
    x0 = (torch.rand(3, 4, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    t = torch.tensor([1, 8, 16])
    xt = sched.add_noise(x0, t, seed=9)
    ref = bf.bernoulli_noise(bf.pack_bits(x0), t, sched.schedule, 8, seed=9).packed
    assert xt.dtype == torch.float32 and torch.equal(bf.pack_bits(xt), ref)
