"""``bldm-fast sample`` and ``bldm-fast decode`` end to end, run as a user types them (subprocesses).

Oracles: ``BernoulliDiffusion.sample`` of the same model and seed for the codes, the autoencoder
itself for the pixels, the torchvision grid layout (derived in this file) for grid.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import official_layout as ol
from bldm_fast.demo import load_bundled
from bldm_fast.generate import make_grid, save_image_grid
from test_official_files import make_ae, make_denoiser

STEPS = "4"


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "bldm_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def ok(res):
    assert res.returncode == 0, res.stderr
    return res


def one_line_error(res, cmd):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and lines[0].startswith(f"bldm-fast {cmd}: error: "), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def pngs(folder):
    names = sorted(os.listdir(os.path.join(folder, "images")))
    return names, [np.asarray(Image.open(os.path.join(folder, "images", n))) for n in names]


def no_partial(parent):
    return not [n for n in os.listdir(parent) if ".partial-" in n]


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundled")
    ok(cli("sample", "--out", root / "s", "--num", 6, "--batch-size", 4, "--steps", STEPS, "--seed", 3,
           "--no-progress"))
    return root


# ---------------------------------------------------------------------------------------------
# grid layout
# ---------------------------------------------------------------------------------------------
def test_grid_layout_is_torchvisions():
    imgs = torch.rand(5, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    g = make_grid(imgs, nrow=2, padding=1, pad_value=0.25)
    # 2 columns, 3 rows; cells (3+1) x (4+1); one more padding at the bottom/right; grey -> 3 channels
    assert g.shape == (3, 3 * 4 + 1, 2 * 5 + 1)
    for k in range(5):
        y, x = divmod(k, 2)
        assert torch.equal(g[:, 1 + 4 * y:4 + 4 * y, 1 + 5 * x:5 + 5 * x], imgs[k].expand(3, -1, -1))
    mask = torch.ones(g.shape[1:], dtype=torch.bool)
    for k in range(6):
        y, x = divmod(k, 2)
        mask[1 + 4 * y:4 + 4 * y, 1 + 5 * x:5 + 5 * x] = False
    assert (g[:, mask] == 0.25).all()  # padding, and the empty 6th cell
    assert torch.equal(make_grid(imgs[:1]), imgs[0].expand(3, -1, -1))  # one image: no padding


def test_save_image_grid_pixels(tmp_path):
    imgs = torch.tensor([[[[0.0, 0.5], [1.0, 2.0]]], [[[-1.0, 0.002], [0.998, 0.25]]]])
    bf_path = tmp_path / "g.png"
    import bldm_fast as bf

    bf.save_image_grid(imgs, bf_path, nrow=2, padding=0)
    got = np.asarray(Image.open(bf_path))
    want = np.floor(np.clip(np.concatenate([imgs[0, 0].numpy(), imgs[1, 0].numpy()], 1), 0, 1) * 255 + 0.5)
    assert got.shape == (2, 4, 3) and (got == want[:, :, None]).all()
    with pytest.raises(ValueError, match="nrow must be an int >= 1"):
        save_image_grid(imgs, bf_path, nrow=0)
    with pytest.raises(TypeError, match="images must be a floating tensor"):
        save_image_grid(imgs.long(), bf_path)


# ---------------------------------------------------------------------------------------------
# the bundled model
# ---------------------------------------------------------------------------------------------
def test_sample_bundled_outputs(bundled_run):
    out = bundled_run / "s"
    assert sorted(os.listdir(out)) == ["codes.npy", "grid.png", "images", "sample.json"] and no_partial(bundled_run)
    codes = np.load(out / "codes.npy")
    ae, diff, _ = load_bundled()
    want = diff.sample(labels=torch.arange(6) % 10, steps=int(STEPS), seed=3, progress=False)  # --labels cycle
    assert codes.dtype == np.uint8 and codes.shape == (6, 16, 4) and np.array_equal(codes, want.numpy())
    names, images = pngs(out)
    assert names == [f"{i:05d}.png" for i in range(6)]
    with torch.no_grad():
        x = ae.decode_tokens(__import__("bldm_fast").unpack_bits(want, 32, torch.float32))
    pix = x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    # the bundled decoder is batch-independent to within one grey level of rounding
    assert all(np.abs(img.astype(int) - p.astype(int)).max() <= 1 for img, p in zip(images, pix))
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (16 + 4, 6 * 18 + 2, 3)
    assert np.array_equal(grid[2:18, 2 + 18 * 5:18 + 18 * 5, 0], images[5])
    meta = json.loads((out / "sample.json").read_text())
    assert meta["seed"] == 3 and meta["steps"] == 4 and meta["grid"] == [32, 21, 11, 1]
    assert meta["labels"] == [0, 1, 2, 3, 4, 5]
    assert meta["model"]["source"] == "bundled" and all(len(f["sha256"]) == 64 for f in meta["model"]["files"])
    assert meta["versions"]["torch"] == torch.__version__
    from bldm_fast.quality import quality_report

    want_quality = quality_report(torch.from_numpy(np.stack(images))[:, None].float() / 255)
    assert meta["quality"]["samples"] == want_quality["samples"]


def test_decode_of_sample_codes_gives_sample_pngs(bundled_run):
    out = bundled_run / "d"
    ok(cli("decode", bundled_run / "s", "--out", out, "--batch-size", 4, "--no-progress"))
    assert (out / "grid.png").read_bytes() == (bundled_run / "s" / "grid.png").read_bytes()
    for name in os.listdir(bundled_run / "s" / "images"):
        assert (out / "images" / name).read_bytes() == (bundled_run / "s" / "images" / name).read_bytes()
    ok(cli("decode", bundled_run / "s" / "codes.npy", "--out", bundled_run / "d2", "--indices", "1,4:6",
           "--batch-size", 4, "-q"))
    assert sorted(os.listdir(bundled_run / "d2" / "images")) == ["00001.png", "00004.png", "00005.png"]


def test_codes_do_not_depend_on_the_batch_size(bundled_run, tmp_path):
    ok(cli("sample", "--out", tmp_path / "b1", "--num", 6, "--batch-size", 1, "--steps", STEPS, "--seed", 3, "-q"))
    assert np.array_equal(np.load(tmp_path / "b1" / "codes.npy"), np.load(bundled_run / "s" / "codes.npy"))


@pytest.mark.slow
def test_torchrun_equals_one_process(bundled_run, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", 2, "--master_port", 29533, "-m",
           "bldm_fast", "sample", "--out", tmp_path / "tr", "--num-samples", 6, "--batch-size", 4, "--steps", STEPS,
           "--seed", 3, "--no-progress"]
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    for name in ("codes.npy", "grid.png", "sample.json"):
        assert (tmp_path / "tr" / name).read_bytes() == (bundled_run / "s" / name).read_bytes(), name
    for name in os.listdir(bundled_run / "s" / "images"):
        assert (tmp_path / "tr" / "images" / name).read_bytes() == (bundled_run / "s" / "images" / name).read_bytes()


# ---------------------------------------------------------------------------------------------
# official files
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("official_cli")
    ae, den = make_ae(0), make_denoiser(0)
    ol.write_ae_run(root / "bae", ae)
    ol.write_sampler_run(root / "bld", den, ae, kind="linear")
    other = make_ae(4)
    ol.write_ae_run(root / "other", other)
    return dict(root=root, ae=ae, den=den)


def test_sample_and_decode_official_files(official_runs, tmp_path):
    r = official_runs["root"]
    ok(cli("sample", "--sampler", r / "bld", "--autoencoder", r / "bae", "--out", tmp_path / "s", "--num", 3,
           "--steps", 3, "--seed", 1, "--no-progress"))
    from bldm_fast import BernoulliDiffusion

    ref = BernoulliDiffusion(official_runs["den"], 8, "linear", latent_shape=(8, 8), channels=8, predict_flip=True)
    want = ref.sample(batch_size=3, steps=3, seed=1, progress=False)
    assert np.array_equal(np.load(tmp_path / "s" / "codes.npy"), want.numpy())
    meta = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert meta["model"]["source"] == "official" and meta["model"]["predict_flip"] is True
    assert meta["model"]["settings"]["sampler"]["n_head"]["source"].endswith("log.txt")
    assert {f["role"] for f in meta["model"]["files"]} == {"sampler", "autoencoder"}
    ok(cli("decode", tmp_path / "s" / "codes.npy", "--autoencoder", r / "bae", "--out", tmp_path / "d", "-q"))
    for name in os.listdir(tmp_path / "s" / "images"):
        assert (tmp_path / "d" / "images" / name).read_bytes() == (tmp_path / "s" / "images" / name).read_bytes()
    names, images = pngs(tmp_path / "s")
    assert images[0].shape == (16, 16, 3)


@pytest.mark.slow
def test_official_sampler_without_log_needs_the_settings(official_runs, tmp_path):
    lone = tmp_path / "bld_ema_40.th"
    lone.write_bytes((official_runs["root"] / "bld" / "saved_models" / "bld_ema_40.th").read_bytes())
    ae = official_runs["root"] / "bae"
    line = one_line_error(cli("sample", "--sampler", lone, "--autoencoder", ae, "--out", tmp_path / "s"), "sample")
    assert "n_head" in line and "--bert_n_head" in line
    line = one_line_error(cli("sample", "--sampler", lone, "--autoencoder", ae, "--out", tmp_path / "s",
                              "--n-head", 4, "--denoiser-sample-steps", 8), "sample")
    assert "p_flip" in line and not (tmp_path / "s").exists()
    ok(cli("sample", "--sampler", lone, "--autoencoder", ae, "--out", tmp_path / "s", "--n-head", 4,
           "--denoiser-sample-steps", 8, "--p-flip", "--num", 2, "--steps", 2, "-q"))


@pytest.mark.slow
def test_sample_bad_input_is_one_line(official_runs, tmp_path):
    r = official_runs["root"]
    (tmp_path / "empty_dir").mkdir()
    cases = [
        (["--sampler", tmp_path / "missing.th", "--autoencoder", r / "bae"], "does not exist"),
        (["--sampler", tmp_path / "empty_dir", "--autoencoder", r / "bae"], "no EMA sampler checkpoint"),
        (["--sampler", r / "bae" / "saved_models" / "binaryae_ema_20.th", "--autoencoder", r / "bae"],
         "is an autoencoder checkpoint, not a sampler one"),
        (["--sampler", r / "bld", "--autoencoder", r / "bld" / "saved_models" / "bld_ema_40.th"],
         "is a sampler checkpoint, not an autoencoder one"),
        (["--sampler", r / "bld", "--autoencoder", r / "other"], "trained on another autoencoder"),
        (["--sampler", r / "bld"], "--autoencoder is required"),
        (["--num", 0], "--num must be >= 1"),
        (["--temperature", 0], "--temperature"),
        (["--backend", "bogus"], "--backend 'bogus'"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--labels", "10"], "--labels: 10 is not a class of this sampler"),
        (["--n-head", 4], "apply to official checkpoints"),
    ]
    for extra, why in cases:
        line = one_line_error(cli("sample", "--out", tmp_path / "out", "--steps", 2, *extra), "sample")
        assert why in line, (extra, line)
        assert not (tmp_path / "out").exists() and no_partial(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    line = one_line_error(cli("sample", "--out", tmp_path / "full", "--num", 1, "--steps", 2), "sample")
    assert "is not empty; pass --overwrite" in line and os.listdir(tmp_path / "full") == ["keep.txt"]
    (tmp_path / "a_file").write_text("x")
    assert "not an existing folder" in one_line_error(cli("sample", "--out", tmp_path / "a_file" / "sub"), "sample")
    ok(cli("sample", "--out", tmp_path / "full", "--num", 1, "--steps", 2, "--overwrite", "-q"))
    assert sorted(os.listdir(tmp_path / "full")) == ["codes.npy", "grid.png", "images", "sample.json"]


def test_decode_bad_input_is_one_line(bundled_run, official_runs, tmp_path):
    wide = np.zeros((2, 16, 5), np.uint8)
    np.save(tmp_path / "wide.npy", wide)
    assert "5 bytes per token" in one_line_error(cli("decode", tmp_path / "wide.npy", "--out", tmp_path / "o"),
                                                 "decode")
    np.save(tmp_path / "f.npy", np.zeros((2, 16, 4), np.float32))
    assert "packed uint8" in one_line_error(cli("decode", tmp_path / "f.npy", "--out", tmp_path / "o"), "decode")
    line = one_line_error(cli("decode", bundled_run / "s", "--out", tmp_path / "o", "--indices", "7"), "decode")
    assert "--indices '7'" in line
    line = one_line_error(cli("decode", bundled_run / "s", "--autoencoder", official_runs["root"] / "bae", "--out",
                              tmp_path / "o"), "decode")
    assert "4 bytes per token" in line or "channels" in line
    assert not (tmp_path / "o").exists() and no_partial(tmp_path)


@pytest.mark.slow
def test_encode_inspect_decode_tour_with_the_bundled_autoencoder(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(rng.randint(0, 256, (20, 24, 3)).astype(np.uint8)).save(tmp_path / "imgs" / f"rgb{i}.png")
        Image.fromarray(rng.randint(0, 256, (24, 20, 4)).astype(np.uint8), "RGBA").save(tmp_path / "imgs" / f"a{i}.png")
    res = ok(cli("encode", tmp_path / "imgs", tmp_path / "ds", "--no-progress"))
    assert "convert('L')" in res.stdout and "16 px" in res.stdout
    ok(cli("inspect", tmp_path / "ds"))
    ok(cli("decode", tmp_path / "ds", "--out", tmp_path / "rec", "-q"))
    assert len(os.listdir(tmp_path / "rec" / "images")) == 6
    # the grey conversion: RGBA composited over black, then PIL's ITU-R 601 luma
    from bldm_fast.data.transforms import to_channels

    rgba = Image.open(tmp_path / "imgs" / "a0.png")
    arr = np.asarray(rgba).astype(np.float64)
    over_black = np.round(arr[..., :3] * arr[..., 3:] / 255.0)
    luma = (over_black[..., 0] * 299 + over_black[..., 1] * 587 + over_black[..., 2] * 114) / 1000
    assert np.abs(np.asarray(to_channels(rgba, 1)).astype(np.float64) - luma).max() <= 1.0


def test_encode_rejects_bad_options_before_writing(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    for extra, why in ((["--device", "cuda"], "CUDA is not available"), (["--backend", "bogus"], "--backend 'bogus'"),
                       (["--workers", "-1"], "--workers must be >= 1"),
                       (["--json", tmp_path / "missing" / "s.json"], "does not exist")):
        assert why in one_line_error(cli("encode", tmp_path / "imgs", tmp_path / "ds", *extra), "encode")
        assert not (tmp_path / "ds").exists()
    res = ok(cli("encode", tmp_path / "imgs", tmp_path / "ds", "-q", "--json", "-"))
    summary = json.loads(res.stdout)
    assert summary["count"] == 1 and res.stderr == ""


def test_encode_stops_on_nan_code_logits(tmp_path):
    from bldm_fast.data.encode import encode_folder

    (tmp_path / "imgs").mkdir()
    for i in range(5):
        Image.new("RGB", (16, 16), (i * 40, 10, 10)).save(tmp_path / "imgs" / f"{i}.png")
    ae, _, _ = load_bundled()
    with torch.no_grad():
        ae.quantize.proj[0].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN code logits .*Nothing of chunk 0"):
        encode_folder(tmp_path / "imgs", tmp_path / "ds", ae, code_mode="deterministic", chunk_rows=8,
                      progress=False)
    assert not (tmp_path / "ds" / "meta.json").exists()
    assert not os.path.exists(tmp_path / "ds" / ".commits") or not os.listdir(tmp_path / "ds" / ".commits")
