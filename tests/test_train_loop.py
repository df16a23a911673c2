"""train-denoiser's loop: the loss falls over a few hundred CPU steps on the digits codes, every
code mode trains, the probs draw and the bernoulli pick are what the docs say, the recipe's
learning-rate schedule and EMA, metrics.jsonl and the summary line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import bldm_fast as bf
from bldm_fast.train.checkpoint import latest_checkpoint
from bldm_fast.train.ema import EMA
from bldm_fast.train.lr_schedule import learning_rate
from bldm_fast.train.sources import LOGIT_LUT, StepReader, clean_codes
from bldm_fast.train.streams import StepStreams, mix
from bldm_fast.train.trainer import open_dataset
from train_data import SMALL, run_cli, write_digits_dataset

KEYS = {"step", "loss", "bce", "acc", "aux", "lr", "grad_norm", "samples_per_s", "time", "epoch"}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    return {m: write_digits_dataset(root / m, m, n=512) for m in ("deterministic", "bernoulli", "probs")}


def _held_loss(model, ds_path):
    """The official loss (mean, fixed t and noise: seed 11) of ``model`` on all the dataset's codes."""
    x0 = torch.from_numpy(np.load(f"{ds_path}/latents.npy"))
    lab = torch.from_numpy(np.load(f"{ds_path}/labels.npy"))
    with torch.no_grad():
        out = bf.training_loss(model.eval(), x0, bf.BernoulliSchedule(16, "linear"), labels=lab, loss_final="mean",
                               seed=11)
    return float(out["loss"]), float(out["acc"])


def test_loss_falls_over_300_steps(datasets, tmp_path):
    run = tmp_path / "run"
    r = run_cli("train-denoiser", datasets["deterministic"], "--out", run, *SMALL, "--steps", "300",
                "--save-every", "0", "--n-embd", "64", "--n-layers", "2", "--lr", "2e-3", "--aux", "0.01")
    assert r.returncode == 0, r.stderr
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith("trained to step 300 (300 steps this run") and "samples/s" in summary
    with open(run / "metrics.jsonl") as f:
        recs = [json.loads(x) for x in f]
    assert [x["step"] for x in recs] == list(range(1, 301)) and all(set(x) == KEYS for x in recs)
    assert all(x["aux"] is not None and x["grad_norm"] > 0 and x["samples_per_s"] > 0 for x in recs)
    assert recs[0]["lr"] == 1e-6 and recs[-1]["lr"] == 2e-3
    # the same loss, on the same fixed noisy batch, before and after training
    cfg = dict(n_embd=64, n_head=2, n_layers=2, latent_size=4, total_steps=16, num_classes=10)
    torch.manual_seed(0)  # the trainer builds its model right after torch.manual_seed(seed)
    before = bf.models.BinaryTransformer(32, **cfg)
    after = bf.models.BinaryTransformer(32, **cfg)
    after.load_state_dict(latest_checkpoint(run)["model"])
    (l0, a0), (l1, a1) = _held_loss(before, datasets["deterministic"]), _held_loss(after, datasets["deterministic"])
    assert l1 < 0.92 * l0 and a1 > a0 + 0.1, (l0, l1, a0, a1)
    first, last = np.mean([x["acc"] for x in recs[:30]]), np.mean([x["acc"] for x in recs[-30:]])
    assert last > first + 0.05


@pytest.mark.parametrize("mode", ["bernoulli", "probs"])
def test_every_code_mode_trains(datasets, tmp_path, mode):
    r = run_cli("train-denoiser", datasets[mode], "--out", tmp_path / mode, *SMALL, "--steps", "8",
                "--save-every", "4", "--num-workers", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / mode / "checkpoints").iterdir()) == ["step_4.pt", "step_8.pt"]


def test_probs_draw_is_u_below_sigmoid_of_the_lut(datasets):
    ds, data = open_dataset(datasets["probs"])
    streams = StepStreams(3, 0, 1, 64, 16 * 32)
    q, _lab, _ = StepReader(ds, streams, labels=False).__getitems__((5, list(range(64))))
    packed = clean_codes(q, "probs", streams, 5)
    bits = bf.unpack_bits(packed, 32, torch.bool)
    gen = streams.philox(5, "code")
    u = bf.philox_uniform(gen.seed, gen.offset, q.numel()).view(q.shape)
    assert torch.equal(bits, u < torch.sigmoid(LOGIT_LUT[q.long()]))
    assert bits[q == 0].sum() == 0 and bits[q == 255].all()
    p = q.double() / 255  # the stored probability, to within float32 rounding of the sigmoid
    assert (torch.sigmoid(LOGIT_LUT[q.long()]).double() - p).abs().max() < 1e-7
    again = clean_codes(q, "probs", streams, 6)
    assert not torch.equal(packed, again)  # a fresh code every step
    assert abs(bits.double().mean().item() - p.mean().item()) < 0.02


def test_bernoulli_pick_reads_the_chosen_draw(datasets):
    ds, _ = open_dataset(datasets["bernoulli"])
    lat = np.load(f"{datasets['bernoulli']}/latents.npy")
    streams = StepStreams(1, 1, 2, 8, 16 * 32)  # rank 1 of 2: global samples 8..15 of the step
    idx = [40, 41, 42, 43, 44, 45, 46, 47]
    codes, labels, step = StepReader(ds, streams, labels=True).__getitems__((9, idx))
    ks = torch.randint(2, (16,), generator=torch.Generator().manual_seed(mix(1, "pick", 9) % 2**63))[8:]
    assert torch.equal(codes, torch.from_numpy(lat[idx, ks.numpy()])) and step == 9
    assert torch.equal(labels, torch.from_numpy(np.load(f"{datasets['bernoulli']}/labels.npy")[idx]))
    assert len(set(ks.tolist())) == 2  # both stored draws are used


def test_lr_schedule_is_the_official_table():
    base, warm = 2e-4, 10
    table = np.concatenate([np.linspace(1e-6, base, warm), base * np.ones(20)])  # official lr_scheduler
    assert [learning_rate(s, base, warm) for s in range(1, 31)] == pytest.approx(table.tolist(), rel=1e-12, abs=0)
    assert learning_rate(1, base, 0) == base
    with pytest.raises(ValueError, match="step must be >= 1"):
        learning_rate(0, base, warm)


def test_ema_update_formula_and_period():
    m = torch.nn.Linear(3, 2)
    ema = EMA(m, 0.9, every=10)
    before = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    assert [ema.due(s) for s in (1, 9, 10, 20, 25)] == [False, False, True, True, False]
    ema.update(m)
    for e, b0, p in zip(ema.module.parameters(), before, m.parameters()):
        assert torch.equal(e, b0 * 0.9 + (1 - 0.9) * p) and not e.requires_grad
