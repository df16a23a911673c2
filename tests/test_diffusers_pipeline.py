"""BinaryLatentDiffusionPipeline: diffusers' own calls (from_pretrained, save_pretrained, to, __call__)
give bit for bit the codes of BernoulliDiffusion.sample; converters from the bundled model, official
files and a train-denoiser run; bldm-fast convert-pipeline as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="diffusers is not installed (pip install 'bldm_fast[diffusers]')")

import bldm_fast as bf  # noqa: E402
import official_layout as ol  # noqa: E402
from bldm_fast.diffusion.scheduler import philox_seed  # noqa: E402
from bldm_fast.generate.decode import decode_codes  # noqa: E402
from bldm_fast.pipelines import (BinaryLatentDiffusionPipeline, pipeline_from_models,  # noqa: E402
                                 pipeline_from_official, pipeline_from_run)


@pytest.fixture(scope="module")
def pipe():
    p = pipeline_from_official()  # the bundled digits model
    p.set_progress_bar_config(disable=True)
    return p


def _codes(p, n, steps, generator, **kw):
    return p(n, num_inference_steps=steps, generator=generator, output_type="codes", **kw).codes


def test_bit_identical_to_bernoulli_diffusion_sample(pipe):
    d = pipe.diffusion
    seed = philox_seed(torch.Generator().manual_seed(7))
    ref = d.sample(5, steps=12, seed=seed, progress=False)
    assert torch.equal(_codes(pipe, 5, 12, torch.Generator().manual_seed(7)), ref)
    assert torch.equal(_codes(pipe, 5, 12, bf.PhiloxGenerator(seed)), ref)
    assert torch.equal(_codes(pipe, 2, 12, torch.Generator().manual_seed(7)), ref[:2])  # any batch size
    assert pipe.scheduler.timesteps.tolist() == bf.sampling_grid(d.num_timesteps, 12)
    # the diffusers-style scheduler loop with the pipeline's own scheduler agrees too
    sched = pipe.scheduler
    sched.set_timesteps(12)
    g = torch.Generator().manual_seed(7)
    x = sched.init_noise(5, d.length, d.channels, generator=g)
    for t in sched.timesteps:
        x = sched.step(pipe.denoiser(x, time_steps=torch.full((5,), int(t) - 1)), t, x, generator=g).prev_sample
    assert torch.equal(bf.pack_bits(x), ref)


def test_output_types_and_the_pixels_of_bldm_fast_decode(pipe):
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    out = pipe(4, num_inference_steps=8, generator=g())
    assert out[0] is out.images and len(out.images) == 4 and out.images[0].size == (16, 16)
    pixels = decode_codes(pipe.autoencoder.autoencoder, out.codes, (4, 4), batch_size=4)[0]
    assert np.array_equal(np.stack([np.asarray(im) for im in out.images]), pixels[:, 0].numpy())
    pt = pipe(4, num_inference_steps=8, generator=g(), output_type="pt").images
    npy = pipe(4, num_inference_steps=8, generator=g(), output_type="np").images
    assert pt.dtype == torch.float32 and pt.shape == (4, 1, 16, 16) and 0 <= pt.min() and pt.max() <= 1
    assert npy.dtype == np.float32 and npy.shape == (4, 16, 16, 1)
    assert np.array_equal(npy, pt.permute(0, 2, 3, 1).numpy())
    images, codes = pipe(4, num_inference_steps=8, generator=g(), output_type="codes", return_dict=False)
    assert images is codes and torch.equal(codes, out.codes)


def test_save_pretrained_from_pretrained_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["_class_name"] == "BinaryLatentDiffusionPipeline"
    assert index["denoiser"] == ["bldm_fast.pipelines.models", "BinaryTransformerModel"]
    assert index["autoencoder"] == ["bldm_fast.pipelines.models", "BinaryAutoencoderModel"]
    assert index["scheduler"] == ["bldm_fast.diffusion.scheduler", "BernoulliScheduler"]
    for part in ("denoiser", "autoencoder"):
        assert (tmp_path / "p" / part / "diffusion_pytorch_model.safetensors").is_file()
    cfg = json.loads((tmp_path / "p" / "denoiser" / "config.json").read_text())
    assert cfg["codebook_size"] == 32 and cfg["latent_size"] == 4 and cfg["total_steps"] == 32
    again = BinaryLatentDiffusionPipeline.from_pretrained(tmp_path / "p")
    again.set_progress_bar_config(disable=True)
    for name in ("denoiser", "autoencoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(_codes(again, 3, 10, g()), _codes(pipe, 3, 10, g()))
    one = pipe(3, num_inference_steps=10, generator=g()).images
    two = again(3, num_inference_steps=10, generator=g()).images
    assert [im.tobytes() for im in one] == [im.tobytes() for im in two]


def test_to_dtype(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    half = BinaryLatentDiffusionPipeline.from_pretrained(tmp_path / "p").to("cpu", torch.bfloat16)
    half.set_progress_bar_config(disable=True)
    assert half.denoiser.dtype == torch.bfloat16 and half.autoencoder.dtype == torch.bfloat16
    assert half.diffusion.input_dtype == torch.bfloat16 and half.device == torch.device("cpu")
    codes = _codes(half, 4, 8, torch.Generator().manual_seed(0))
    assert codes.dtype == torch.uint8 and codes.shape == (4, 16, 4)
    images = half(2, num_inference_steps=8, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


def test_class_conditional_guidance_and_round_trip(tmp_path):
    torch.manual_seed(0)
    den = bf.models.BinaryTransformer(16, n_embd=32, n_head=2, n_layers=1, latent_size=3, total_steps=10,
                                      num_classes=3).eval()
    d = bf.BernoulliDiffusion(den, 10, "sigmoid", latent_shape=(3, 3), channels=16, num_classes=3).eval()
    p = pipeline_from_models(d)
    p.set_progress_bar_config(disable=True)
    labels = torch.tensor([2, 0, 1, 1])
    seed = philox_seed(torch.Generator().manual_seed(1))
    ref = d.sample(labels=labels, steps=6, temperature=0.8, guidance=2.0, seed=seed, progress=False)
    got = p(labels=[2, 0, 1, 1], num_inference_steps=6, temperature=0.8, guidance_scale=3.0,
            generator=torch.Generator().manual_seed(1), output_type="codes").codes
    assert torch.equal(got, ref)
    p.save_pretrained(tmp_path / "c")
    assert json.loads((tmp_path / "c" / "model_index.json").read_text())["autoencoder"] == [None, None]
    again = BinaryLatentDiffusionPipeline.from_pretrained(tmp_path / "c")
    again.set_progress_bar_config(disable=True)
    assert again.autoencoder is None
    assert torch.equal(again(labels=labels, num_inference_steps=6, temperature=0.8, guidance_scale=3.0,
                             generator=torch.Generator().manual_seed(1), output_type="codes").codes, ref)
    with pytest.raises(ValueError, match="needs an autoencoder"):
        again(labels=labels, num_inference_steps=6)


def test_official_files_convert(tmp_path):
    torch.manual_seed(0)
    ae = bf.models.BinaryAutoencoder(32, in_channels=3, nf=32, emb_dim=32, ch_mult=(1, 1), res_blocks=1, img_size=8,
                                     attn_resolutions=()).eval()
    den = bf.models.BinaryTransformer(32, n_embd=32, n_head=2, n_layers=1, latent_size=4, total_steps=12).eval()
    ol.write_ae_run(tmp_path / "bae", ae)
    ol.write_sampler_run(tmp_path / "bld", den, ae, kind="cos")
    p = pipeline_from_official(tmp_path / "bld", tmp_path / "bae")
    p.set_progress_bar_config(disable=True)
    ref = bf.models.load_official_models(tmp_path / "bld", tmp_path / "bae").diffusion
    seed = philox_seed(torch.Generator().manual_seed(2))
    out = p(3, num_inference_steps=6, generator=torch.Generator().manual_seed(2), output_type="pt")
    assert torch.equal(out.codes, ref.sample(3, steps=6, seed=seed, progress=False))
    assert out.images.shape == (3, 3, 8, 8)
    assert p.scheduler.config.beta_schedule == "cos" and p.scheduler.config.num_train_timesteps == 12


def test_train_denoiser_run_converts(tmp_path):
    from bldm_fast.train import train_denoiser
    from train_data import AUTOENCODER, write_digits_dataset

    ds = write_digits_dataset(tmp_path / "ds", "deterministic", n=64, labels=False)
    train_denoiser(ds, tmp_path / "run", autoencoder=AUTOENCODER, device="cpu", steps=4, beta_type="cos", n_embd=32,
                   n_head=2, n_layers=1, total_steps=16, batch_size=16, warmup_steps=2, num_workers=0, progress=False,
                   ema_every=2, save_every=0, sample_every=0)
    p = pipeline_from_run(tmp_path / "run")
    p.set_progress_bar_config(disable=True)
    ref = bf.models.load_official_models(bf.train.export_official(tmp_path / "run", tmp_path / "off")["ema_file"])
    seed = philox_seed(torch.Generator().manual_seed(9))
    out = p(4, num_inference_steps=16, generator=torch.Generator().manual_seed(9))
    assert torch.equal(out.codes, ref.diffusion.sample(4, steps=16, seed=seed, progress=False))
    assert len(out.images) == 4 and p.autoencoder is not None


def test_bad_arguments(pipe):
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipe(1, output_type="latent")
    with pytest.raises(ValueError, match="guidance_scale must be a number >= 1"):
        pipe(1, guidance_scale=0.5)
    with pytest.raises(TypeError, match="generator must be"):
        pipe(1, generator=3)
    with pytest.raises(ValueError, match="steps"):
        pipe(1, num_inference_steps=99)
    with pytest.raises(TypeError, match="denoiser must be a BinaryTransformerModel"):
        BinaryLatentDiffusionPipeline(denoiser=torch.nn.Linear(2, 2), scheduler=pipe.scheduler)
    with pytest.raises(ValueError, match="num_train_timesteps = 8"):
        BinaryLatentDiffusionPipeline(denoiser=pipe.denoiser, scheduler=bf.BernoulliScheduler(8))


def _cli(*args, cwd):
    """`bldm-fast convert-pipeline ...` as a subprocess; registers the command if bldm_fast.cli does not yet."""
    code = ("import sys\nfrom bldm_fast import cli\n"
            "if 'convert-pipeline' not in cli.COMMANDS:\n"
            "    from bldm_fast.pipelines.convert import add_convert_pipeline_arguments, run_convert_pipeline\n"
            "    cli.register('convert-pipeline', 'convert', add_convert_pipeline_arguments, run_convert_pipeline)\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, "convert-pipeline", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_convert_pipeline(pipe, tmp_path):
    r = _cli("--out", "p", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "BinaryTransformerModel" in r.stdout
    loaded = BinaryLatentDiffusionPipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    assert torch.equal(_codes(loaded, 2, 6, g()), _codes(pipe, 2, 6, g()))
    r = _cli("--out", "p", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"bldm-fast convert-pipeline: error: --out {tmp_path / 'p'} exists and is not an empty folder; "
        "choose a new one"]
    r = _cli("--out", "q", "--run", "nowhere", "--n-head", "2", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "--run takes only" in r.stderr
    env = dict(os.environ, BLDM_FAST_NO_DIFFUSERS="1")
    r = subprocess.run([sys.executable, "-c", "import sys; from bldm_fast import cli\n"
                        "from bldm_fast.pipelines.convert import add_convert_pipeline_arguments as a, "
                        "run_convert_pipeline as r\ncli.register('convert-pipeline', 'c', a, r)\n"
                        "sys.exit(cli.main(sys.argv[1:]))", "convert-pipeline", "--out", "z"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "needs diffusers: pip install 'bldm_fast[diffusers]'" in r.stderr and not (tmp_path / "z").exists()
