"""export-official: a training run as the official file layout (saved_models/bld[_ema]_<step>.th,
log.txt), read back by bf.load_official to the same logits."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import bldm_fast as bf
import official
from bldm_fast.train import export_official, train_denoiser
from bldm_fast.train.checkpoint import latest_checkpoint
from train_data import AUTOENCODER, run_cli, write_digits_dataset

TINY = dict(n_embd=32, n_head=2, n_layers=1, total_steps=16, batch_size=16, warmup_steps=2, lr=1e-3, num_workers=0,
            progress=False, ema_every=2, save_every=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    ds = write_digits_dataset(root / "ds", "deterministic", n=128)
    res = train_denoiser(ds, root / "run", autoencoder=AUTOENCODER, device="cpu", steps=12, beta_type="cos",
                         sample_every=0, **TINY)
    assert res["step"] == 12
    return root / "run"


def test_official_layout_and_log(run, tmp_path):
    res = export_official(run, tmp_path / "official")
    assert res["step"] == 12 and res["embedding_weight"]
    ema = torch.load(res["ema_file"], weights_only=True)
    raw = torch.load(res["raw_file"], weights_only=True)
    ckpt = latest_checkpoint(run)
    den = {k for k in ema if k.startswith("_denoise_fn.")}
    assert den == {f"_denoise_fn.{k}" for k in ckpt["ema"]}
    assert set(ema) - den == {"scheduler.k_final", "scheduler.b_final", "scheduler.beta", "scheduler.cumbeta",
                              "embedding_weight"}
    assert all(k.startswith("module.") for k in raw) and set(raw) == {f"module.{k}" for k in ema}
    for k, v in ckpt["ema"].items():
        assert torch.equal(ema[f"_denoise_fn.{k}"], v)
    for k, v in ckpt["model"].items():
        assert torch.equal(raw[f"module._denoise_fn.{k}"], v)
    # the official noise_scheduler buffers: float32, torch.Tensor of the float64 tables, cumprod in float32
    k, b, beta = official.tables_f32(16, "cos")
    for name, ref in (("k_final", k), ("b_final", b), ("beta", beta)):
        t = ema[f"scheduler.{name}"]
        assert t.dtype == torch.float32 and np.array_equal(t.numpy(), ref)
    assert torch.equal(ema["scheduler.cumbeta"], torch.cumprod(torch.from_numpy(beta), 0))
    # embedding_weight: the autoencoder's codebook, (C, emb_dim)
    sd = torch.load(AUTOENCODER, weights_only=True)
    assert torch.equal(ema["embedding_weight"], sd["quantize.embed.weight"])
    assert ema["embedding_weight"].shape == (32, 32)
    lines = (tmp_path / "official" / "log.txt").read_text().splitlines()
    prefix = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - "
    assert all(re.match(prefix, line) for line in lines)
    kv = dict(re.match(prefix + r"> (\w+): (.*)$", x).groups() for x in lines if " - > " in x)
    assert re.match(prefix + "Using following hparams:$", lines[2])
    assert list(kv) == sorted(kv)
    assert kv["bert_n_emb"] == "32" and kv["bert_n_head"] == "2" and kv["bert_n_layers"] == "1"
    assert kv["total_steps"] == kv["sample_steps"] == "16" and kv["beta_type"] == "cos"
    assert kv["latent_shape"] == "[1, 4, 4]" and kv["codebook_size"] == "32" and kv["p_flip"] == "True"
    assert kv["dataset"] == "imagenet" and kv["num_classes"] == "10" and kv["sampler"] == "bld"


def test_load_official_reads_the_export_to_the_same_logits(run, tmp_path):
    export_official(run)  # into RUN itself: RUN is then an official log_dir too
    ckpt = latest_checkpoint(run)
    ref = bf.models.BinaryTransformer(32, n_embd=32, n_head=2, n_layers=1, latent_size=4, total_steps=16,
                                      num_classes=10)
    ref.load_state_dict(ckpt["ema"])
    loaded = bf.load_official(run)
    raw = bf.load_official(run, ema=False)
    assert loaded.official_info["step"] == 12 and loaded.official_info["beta_type"] == "cos"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (3, 16, 32), generator=g).float()
    t = torch.tensor([0, 7, 15])
    y = torch.tensor([1, 4, 9])
    with torch.no_grad():
        assert torch.equal(loaded(x, y, t), ref.eval()(x, y, t))
        assert torch.equal(loaded(x, None, t), ref(x, None, t))
        ref.load_state_dict(ckpt["model"])
        assert torch.equal(raw(x, y, t), ref(x, y, t))
        assert not torch.equal(raw(x, y, t), loaded(x, y, t))  # EMA and raw weights differ


def test_export_cli_and_errors(run, tmp_path):
    r = run_cli("export-official", run, "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "saved_models" / "bld_ema_12.th").exists() and "exported step 12" in r.stdout
    cases = (([tmp_path], "not a train-denoiser run folder"), ([run, "--step", "5"], "no checkpoint of step 5"))
    for args, msg in cases:
        r = run_cli("export-official", *args)
        assert r.returncode == 1 and msg in r.stderr
        assert r.stderr.strip().startswith("bldm-fast export-official: error:") and "\n" not in r.stderr.strip()
