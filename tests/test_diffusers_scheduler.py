"""BernoulliScheduler as a diffusers scheduler: mixins, FrozenDict config, save/from_pretrained with
subfolder, BaseOutput results, step_index / set_begin_index / len, torch.Generator streams; and the
same calls without diffusers (BLDM_FAST_NO_DIFFUSERS=1 in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import bldm_fast as bf
from bldm_fast.demo.bundle import load_bundled
from bldm_fast.diffusion import BernoulliScheduler
from bldm_fast.diffusion.diffusers_compat import DIFFUSERS_AVAILABLE
from bldm_fast.diffusion.scheduler import philox_seed

needs_diffusers = pytest.mark.skipif(not DIFFUSERS_AVAILABLE, reason="diffusers is not installed "
                                     "(pip install 'bldm_fast[diffusers]')")


@pytest.fixture(scope="module")
def bundled():
    _ae, diffusion, _meta = load_bundled()
    return diffusion


def diffusers_loop(sched, diffusion, batch, steps, generator):
    """The loop a diffusers user writes: set_timesteps, init_noise, step(...).prev_sample."""
    sched.set_timesteps(steps)
    x = sched.init_noise(batch, diffusion.length, diffusion.channels, generator=generator)
    for t in sched.timesteps:
        ts = torch.full((batch,), int(t) - 1)
        x = sched.step(diffusion.denoiser(x, time_steps=ts), t, x, generator=generator).prev_sample
    return bf.pack_bits(x)


@needs_diffusers
def test_is_a_diffusers_scheduler_with_a_frozen_config():
    from diffusers import ConfigMixin, SchedulerMixin
    from diffusers.configuration_utils import FrozenDict

    s = BernoulliScheduler(32, "cos")
    assert isinstance(s, SchedulerMixin) and isinstance(s, ConfigMixin)
    assert isinstance(s.config, FrozenDict) and s.config.beta_schedule == "cos" and s.config["predict_flip"] is True
    with pytest.raises(Exception, match="cannot use ``update``"):  # diffusers' FrozenDict refuses these
        s.config.update(beta_schedule="linear")
    assert len(s) == 32 and s.order == 1 and s.init_noise_sigma == 1.0


@needs_diffusers
def test_save_and_from_pretrained_with_subfolder(tmp_path):
    s = BernoulliScheduler(24, "sigmoid", predict_flip=False)
    s.save_pretrained(tmp_path / "pipe" / "scheduler")
    data = json.loads((tmp_path / "pipe" / "scheduler" / "scheduler_config.json").read_text())
    assert data == {"_class_name": "BernoulliScheduler", "num_train_timesteps": 24, "beta_schedule": "sigmoid",
                    "predict_flip": False}
    s2 = BernoulliScheduler.from_pretrained(tmp_path / "pipe", subfolder="scheduler")
    assert dict(s2.config) == dict(s.config) and torch.equal(s2.schedule.beta, s.schedule.beta)
    s3, unused = BernoulliScheduler.from_pretrained(str(tmp_path / "pipe" / "scheduler"), return_unused_kwargs=True)
    assert dict(s3.config) == dict(s.config) and unused == {}
    s4 = BernoulliScheduler.from_config(s.config)  # diffusers' idiom: from another scheduler's config
    assert dict(s4.config) == dict(s.config)


@needs_diffusers
def test_step_returns_a_base_output():
    from diffusers.utils import BaseOutput

    s = BernoulliScheduler(8, "linear")
    s.set_timesteps(4)
    x = s.init_noise(2, 4, 8, seed=3)
    logits = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    out = s.step(logits, s.timesteps[0], x, seed=3)
    assert isinstance(out, BaseOutput)
    assert out[0] is out.prev_sample and out[1] is out.pred_original_sample
    assert out.to_tuple() == (out.prev_sample, out.pred_original_sample) and out["prev_sample"] is out.prev_sample


def test_step_index_begin_index_and_len():
    s = BernoulliScheduler(16, "cos")
    s.set_timesteps(5)
    grid = s.timesteps.tolist()
    assert s.step_index is None and s.begin_index is None and len(s) == 16
    x = s.init_noise(1, 4, 8, seed=0)
    for i, t in enumerate(s.timesteps):
        x = s.step(torch.zeros(1, 4, 8), t, x, seed=0).prev_sample
        assert s.step_index == i + 1
    s.set_timesteps(5)
    assert s.step_index is None
    s.set_begin_index(2)
    assert s.begin_index == 2
    x = s.init_noise(1, 4, 8, seed=0)
    with pytest.raises(ValueError, match=r"not timesteps\[begin_index = 2\]"):
        s.step(torch.zeros(1, 4, 8), grid[0], x, seed=0)
    s.step(torch.zeros(1, 4, 8), grid[2], x, seed=0)
    assert s.step_index == 3
    for bad in (5, -1, 1.0, True):
        with pytest.raises(ValueError, match="begin_index must be an int in 0..4"):
            s.set_begin_index(bad)


def test_torch_generator_equals_sample_with_its_philox_seed(bundled):
    """A torch.Generator drives the run like the seed philox_seed(generator) would: bit-identical
    to BernoulliDiffusion.sample with that seed, for a fresh generator of the same state."""
    sched = BernoulliScheduler(bundled.num_timesteps, bundled.kind)
    got = diffusers_loop(sched, bundled, 3, 8, torch.Generator().manual_seed(11))
    seed = philox_seed(torch.Generator().manual_seed(11))
    ref = bundled.sample(3, steps=8, seed=seed, progress=False)
    assert torch.equal(got, ref)
    gen = bf.PhiloxGenerator(seed)
    assert torch.equal(diffusers_loop(sched, bundled, 3, 8, gen), ref)  # and a PhiloxGenerator of that seed
    assert seed == int(torch.randint(0, 2**63 - 1, (), generator=torch.Generator().manual_seed(11)))


def test_torch_generator_rules():
    g = torch.Generator().manual_seed(0)
    a, b = philox_seed(g), philox_seed(g)
    assert a != b and 0 <= a < 2**63  # one draw each: the generator advances
    s = BernoulliScheduler(8)
    s.set_timesteps(4)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = s.init_noise(1, 4, 8, generator=g1)
    with pytest.raises(ValueError, match="another generator"):
        s.step(torch.zeros(1, 4, 8), s.timesteps[0], x, generator=g2)
    x = s.step(torch.zeros(1, 4, 8), s.timesteps[0], x, generator=g1).prev_sample  # the same one is fine
    with pytest.raises(TypeError, match="PhiloxGenerator or a torch.Generator"):
        s.step(torch.zeros(1, 4, 8), s.timesteps[1], x, generator=123)
    with pytest.raises(TypeError, match="torch.Generator"):
        philox_seed(bf.PhiloxGenerator(0))
    s.set_timesteps(4)
    with pytest.raises(ValueError, match="not both"):
        s.init_noise(1, 4, 8, generator=g1, seed=3)


_FALLBACK = r"""
import json, os, sys
import torch
import bldm_fast as bf
from bldm_fast.diffusion import BernoulliScheduler
from bldm_fast.diffusion.diffusers_compat import DIFFUSERS_AVAILABLE
assert not DIFFUSERS_AVAILABLE
assert "diffusers" not in sys.modules
root = sys.argv[1]
s = BernoulliScheduler(12, "cos", predict_flip=False)
assert s.config.beta_schedule == "cos" and len(s) == 12
try:
    s.config["beta_schedule"] = "linear"
    raise SystemExit("config is not frozen")
except TypeError:
    pass
import copy, pickle
assert dict(copy.deepcopy(s).config) == dict(s.config) and dict(pickle.loads(pickle.dumps(s)).config) == dict(s.config)
s.save_pretrained(os.path.join(root, "pipe", "scheduler"))
s2 = BernoulliScheduler.from_pretrained(os.path.join(root, "pipe"), subfolder="scheduler")
assert dict(s2.config) == dict(s.config)
s2.set_timesteps(3)
x = s2.init_noise(2, 4, 8, generator=torch.Generator().manual_seed(4))
out = s2.step(torch.randn(2, 4, 8), s2.timesteps[0], x, generator=None)
assert out[0] is out.prev_sample and out.to_tuple()[1] is out.pred_original_sample
print(json.dumps({"ok": True, "step_index": s2.step_index, "keys": out.keys()}))
"""


def test_without_diffusers_the_same_calls_work(tmp_path):
    env = dict(os.environ, BLDM_FAST_NO_DIFFUSERS="1")
    r = subprocess.run([sys.executable, "-c", _FALLBACK, str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"ok": True, "step_index": 1,
                                                               "keys": ["prev_sample", "pred_original_sample"]}
    data = json.loads((tmp_path / "pipe" / "scheduler" / "scheduler_config.json").read_text())
    assert data == {"_class_name": "BernoulliScheduler", "num_train_timesteps": 12, "beta_schedule": "cos",
                    "predict_flip": False}


def test_pipelines_without_diffusers_name_the_extra():
    env = dict(os.environ, BLDM_FAST_NO_DIFFUSERS="1")
    code = ("import bldm_fast.pipelines as p\n"
            "try:\n    p.BinaryLatentDiffusionPipeline\nexcept ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "pip install 'bldm_fast[diffusers]'" in r.stdout and "BLDM_FAST_NO_DIFFUSERS is set" in r.stdout
