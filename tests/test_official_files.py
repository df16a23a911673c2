"""Files the official code writes: log folders, sampler files with embedding_weight and module.
prefixes, settings from log.txt or arguments, and every unreadable checkpoint file.

The fixtures are written by tests/official_layout.py in the official layouts (BinaryGAN and
BinaryDiffusion state dicts, DDP raw files, log.txt as start_training_log writes it); the models
that wrote them are the oracle for logits, codes and images.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import official_layout as ol
from bldm_fast.models import (BinaryAutoencoder, BinaryTransformer, find_checkpoint, load_official,
                              load_official_models, read_hparams, read_state_dict)
from bldm_fast.models.official_log import parse_value

C = 8


def _perturb(m, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return m.eval()


def make_ae(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(nf=32, emb_dim=32, ch_mult=(1, 2), res_blocks=1, img_size=16, attn_resolutions=(8,), norm_first=True)
    return _perturb(BinaryAutoencoder(C, **{**cfg, **kw}), seed + 1, 0.02)


def make_denoiser(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(n_embd=128, n_head=4, n_layers=2, latent_size=8, total_steps=8)
    return _perturb(BinaryTransformer(C, **{**cfg, **kw}), seed + 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    ae, ae_raw = make_ae(0, use_tanh=True), make_ae(3, use_tanh=True)
    den, den_raw = make_denoiser(0), make_denoiser(5)
    ol.write_ae_run(root / "bae", ae_raw, ema_ae=ae)
    ol.write_sampler_run(root / "bld", den_raw, ae, kind="cos", ema_den=den)
    return dict(root=root, ae=ae, ae_raw=ae_raw, den=den, den_raw=den_raw)


def _bits(B=2, L=64, seed=3):
    return torch.randint(0, 2, (B, L, C), generator=torch.Generator().manual_seed(seed)).float()


# ---------------------------------------------------------------------------------------------
# the layouts themselves
# ---------------------------------------------------------------------------------------------
def test_fixture_files_have_the_official_keys(runs):
    sm = runs["root"] / "bld" / "saved_models"
    ema = torch.load(sm / "bld_ema_40.th", weights_only=True)
    raw = torch.load(sm / "bld_40.th", weights_only=True)
    assert list(ema)[0] == "embedding_weight" and ema["embedding_weight"].shape == (C, 32)
    assert list(ema)[-4:] == ["scheduler.k_final", "scheduler.b_final", "scheduler.beta", "scheduler.cumbeta"]
    assert all(k.startswith("module.") for k in raw) and "module.embedding_weight" in raw
    gan = torch.load(runs["root"] / "bae" / "saved_models" / "binaryae_ema_20.th", weights_only=True)
    assert {k.split(".")[0] for k in gan} == {"ae", "disc", "perceptual"}
    text = (runs["root"] / "bld" / "log.txt").read_text()
    assert " - Using following hparams:\n" in text and " - > bert_n_head: 4\n" in text


# ---------------------------------------------------------------------------------------------
# log.txt
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,want", [("256", 256), ("0.0002", 2e-4), ("1e-08", 1e-8), ("True", True),
                                       ("False", False), ("None", None), ("[1, 16, 16]", [1, 16, 16]),
                                       ("linear", "linear"), ("logs/bnl test", "logs/bnl test"), ("", ""),
                                       ("inf", float("inf")), ("env://", "env://")])
def test_log_values_parse_as_str_wrote_them(text, want):
    assert parse_value(text) == want and type(parse_value(text)) is type(want)


def test_last_hparam_block_wins(tmp_path, runs):
    H = ol.sampler_hparams(runs["ae"], runs["den"], p_flip=True)
    ol.write_log(tmp_path, {**H, "bert_n_head": 2}, "first run")
    ol.write_log(tmp_path, H, "resumed run")
    got = read_hparams(tmp_path / "log.txt")
    assert got["bert_n_head"] == 4 and got["p_flip"] is True and got["latent_shape"] == [1, 8, 8]
    assert got["load_model_dir"] == "" and got["visdom_server"] is None and got["optim_eps"] == 1e-8


# ---------------------------------------------------------------------------------------------
# loading the runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ema", [True, False])
def test_sampler_run_reproduces_logits(runs, ema):
    m = load_official_models(runs["root"] / "bld", runs["root"] / "bae", ema=ema) if ema else None
    if not ema:  # raw weights: the DDP file; the raw autoencoder differs from the sampler's (EMA) codebook
        den = load_official(runs["root"] / "bld", ema=False)
        assert den.official_info["file"].endswith("bld_40.th")
        want = runs["den_raw"]
    else:
        den, want = m.denoiser, runs["den"]
        assert m.diffusion.predict_flip is True and m.diffusion.kind == "cos" and m.diffusion.num_timesteps == 8
        assert torch.equal(m.embedding_weight, runs["ae"].quantize.embed.weight)
        assert m.settings["diffusion"]["p_flip"]["source"].endswith("log.txt")
    assert den.n_head == 4 and den.official_info["settings"]["n_head"]["source"].endswith("log.txt")
    assert den.sample_steps == 8
    x, t = _bits(), torch.tensor([0, 6])
    with torch.no_grad():
        assert torch.equal(den(x, time_steps=t), want(x, time_steps=t))


def test_autoencoder_run_keeps_use_tanh_and_reproduces_codes(runs):
    ae = load_official(runs["root"] / "bae")
    assert ae.use_tanh and ae.official_info["settings"]["use_tanh"]["source"].endswith("log.txt")
    assert ae.official_info["file"].endswith("binaryae_ema_20.th") and ae.img_size == 16
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = ae.encode(img, deterministic=True)
        assert torch.equal(codes, runs["ae"].encode(img, deterministic=True))
        assert torch.equal(ae.decode(codes), runs["ae"].decode(codes))
    raw = load_official(runs["root"] / "bae" / "saved_models", ema=False)
    assert all(torch.equal(v, runs["ae_raw"].state_dict()[k]) for k, v in raw.state_dict().items())


def test_samples_of_the_loaded_pipeline_equal_the_writers(runs):
    from bldm_fast import BernoulliDiffusion

    m = load_official_models(runs["root"] / "bld", runs["root"] / "bae")
    ref = BernoulliDiffusion(runs["den"], 8, "cos", latent_shape=(8, 8), channels=C, predict_flip=True)
    got = m.diffusion.sample(batch_size=3, steps=4, seed=11, progress=False)
    assert torch.equal(got, ref.sample(batch_size=3, steps=4, seed=11, progress=False))


def test_settings_without_log_are_never_guessed(runs, tmp_path):
    ema_file = runs["root"] / "bld" / "saved_models" / "bld_ema_40.th"
    with pytest.raises(ValueError, match=r"n_head is not stored .*official --bert_n_head"):
        load_official(ema_file, log=False, sample_steps=8)
    with pytest.raises(ValueError, match=r"sample_steps is not stored .*official --sample_steps"):
        load_official(ema_file, log=False, n_head=4)
    assert load_official(ema_file, log=False, n_head=4, fix_time_scale=True).time_scale_steps() == 8
    lone = tmp_path / "bld_ema_40.th"
    lone.write_bytes(ema_file.read_bytes())
    with pytest.raises(ValueError, match=r"p_flip is not stored .*--p_flip"):
        load_official_models(lone, n_head=4, sample_steps=8)
    m = load_official_models(lone, n_head=4, sample_steps=8, p_flip=False)
    assert m.diffusion.predict_flip is False and m.settings["sampler"]["n_head"]["source"] == "argument"
    ae_file = tmp_path / "binaryae_ema_20.th"
    ae_file.write_bytes((runs["root"] / "bae" / "saved_models" / "binaryae_ema_20.th").read_bytes())
    with pytest.warns(UserWarning, match=r"use_tanh=False \(--use_tanh\)"):
        quiet = load_official(ae_file, img_size=16)
    assert not quiet.use_tanh and quiet.official_info["settings"]["use_tanh"]["source"] == "official default"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_official(ae_file, img_size=16, use_tanh=True, deterministic=False).use_tanh


def test_sampler_log_describes_its_autoencoder(runs, tmp_path):
    ae_file = tmp_path / "binaryae_ema_20.th"
    ae_file.write_bytes((runs["root"] / "bae" / "saved_models" / "binaryae_ema_20.th").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # use_tanh and img_size from the sampler's log: no default used
        m = load_official_models(runs["root"] / "bld", ae_file)
    assert m.autoencoder.use_tanh and m.settings["autoencoder"]["use_tanh"]["source"].endswith("log.txt")


def test_a_768_wide_denoiser_takes_the_documented_head_count_with_a_warning(tmp_path):
    den = BinaryTransformer(C, n_embd=768, n_head=12, n_layers=1, latent_size=2, total_steps=4)
    ae = make_ae()
    torch.save(ol.binarydiffusion_state_dict(den, ae.quantize.embed.weight, "linear"), tmp_path / "bld_ema_1.th")
    with pytest.warns(UserWarning, match=r"n_head=12 \(--bert_n_head\)"):
        assert load_official(tmp_path / "bld_ema_1.th", sample_steps=4).n_head == 12


def test_sampler_of_another_autoencoder_is_refused(runs, tmp_path):
    other = make_ae(9, use_tanh=True)
    ol.write_ae_run(tmp_path / "other", other)
    with pytest.raises(ValueError, match="trained on another autoencoder: its embedding_weight differs"):
        load_official_models(runs["root"] / "bld", tmp_path / "other")
    wide = BinaryAutoencoder(16, nf=32, emb_dim=32, ch_mult=(1, 2), res_blocks=1, img_size=16, attn_resolutions=(8,))
    ol.write_ae_run(tmp_path / "wide", wide)
    with pytest.raises(ValueError, match="8 code channels, the autoencoder .* 16"):
        load_official_models(runs["root"] / "bld", tmp_path / "wide")


def test_a_log_of_another_model_is_refused(runs, tmp_path):
    folder = tmp_path / "run"
    ol.write_sampler_run(folder, runs["den"], runs["ae"], log=False)
    ol.write_log(folder, ol.sampler_hparams(runs["ae"], runs["den"], bert_n_emb=256), "another run")
    with pytest.raises(ValueError,
                       match=r"does not describe .*bert_n_emb = 256 there, but the weights have n_embd = 128"):
        load_official(folder)


def test_wrong_kind_and_missing_checkpoints(runs, tmp_path):
    with pytest.raises(ValueError, match="is a sampler checkpoint, not an autoencoder one"):
        load_official(runs["root"] / "bld" / "saved_models" / "bld_ema_40.th", kind="autoencoder")
    with pytest.raises(ValueError, match="no EMA sampler checkpoint"):
        load_official(runs["root"] / "bae", kind="sampler")
    (tmp_path / "empty_run" / "saved_models").mkdir(parents=True)
    with pytest.raises(ValueError, match="no EMA autoencoder or sampler checkpoint in"):
        find_checkpoint(tmp_path / "empty_run")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# unreadable files
# ---------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if it were unpickled


def _bad_files(folder, marker) -> dict:
    good = folder / "good.th"
    torch.save({"w": torch.zeros(64)}, good)
    data = good.read_bytes()
    files = {"empty": b"", "truncated": data[: len(data) // 2], "random": bytes(np.random.RandomState(0).randint(
        0, 256, 512, dtype=np.uint8)), "text": b"not a checkpoint\n", "plain pickle": pickle.dumps({"w": [1.0]})}
    out = {}
    for name, blob in files.items():
        p = folder / f"{name.replace(' ', '_')}.th"
        p.write_bytes(blob)
        out[name] = p
    out["objects"] = folder / "objects.th"
    torch.save({"w": _Payload(str(marker))}, out["objects"])
    out["not a state dict"] = folder / "list.th"
    torch.save([torch.zeros(2)], out["not a state dict"])
    return out


WHY = {"empty": "is empty", "truncated": "truncated", "random": "is not a torch checkpoint",
       "text": "is not a torch checkpoint", "plain pickle": "plain Python pickle",
       "objects": "contains Python objects .*refusing to unpickle", "not a state dict": "is not a state_dict"}


def test_every_unreadable_file_is_one_clear_value_error(tmp_path):
    marker = tmp_path / "EXECUTED"
    for name, path in _bad_files(tmp_path, marker).items():
        with pytest.raises(ValueError, match=WHY[name]) as info:
            read_state_dict(path)
        assert str(path) in str(info.value), name
        with pytest.raises(ValueError, match=WHY[name]):
            load_official(path, kind="autoencoder")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["empty", "truncated", "objects"])
def test_clis_print_unreadable_checkpoints_as_one_line(tmp_path, name):
    marker = tmp_path / "EXECUTED"
    path = _bad_files(tmp_path, marker)[name]
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8), (10, 200, 30)).save(images / "a.png")
    for cmd in (["encode", str(images), str(tmp_path / "ds"), "--autoencoder", str(path)],
                ["sample", "--sampler", str(path), "--autoencoder", str(path), "--out", str(tmp_path / "s")]):
        res = subprocess.run([sys.executable, "-m", "bldm_fast", *cmd, "--no-progress"], capture_output=True, text=True,
                             timeout=300)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1, res.stderr
        assert lines[0].startswith(f"bldm-fast {cmd[0]}: error: checkpoint ") and "Traceback" not in res.stderr
        assert not (tmp_path / "ds").exists() and not (tmp_path / "s").exists()
    assert not marker.exists()
