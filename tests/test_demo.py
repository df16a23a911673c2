"""The built-in digits model and ``bldm-fast demo`` / ``bldm-fast train`` (issue 7).

* the demo runs end to end at a reduced size (few images, samples and steps) and its bits check passes;
* the bundled weights load and reconstruct the built-in images within the documented error;
* generated images are not blank, not constant, and differ across seeds;
* ``train`` runs (a few steps) and writes weights that ``load_bundled`` reads back, by default into
  ``./digits_model`` of the working directory, atomically;
* bad arguments of ``bldm-fast demo`` / ``bldm-fast train`` (typed as a user would) are one-line
  errors with exit code 1, and nothing is written (issue 13).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from bldm_fast.demo import bundle
from bldm_fast.demo.data import load_digit_images
from bldm_fast.demo.demo import add_demo_arguments, decode_codes, demo, format_table, run_demo
from bldm_fast.demo.train import add_train_arguments, recon_mae, run_train, train

#: the reconstruction error documented in docs/MODEL_CARD.md (mean absolute error, [0, 1] pixels)
DOCUMENTED_MAE = 0.04


@pytest.fixture(scope="module")
def bundled():
    return bundle.load_bundled()


def test_assets_small_and_documented():
    files = [os.path.join(bundle.ASSETS_DIR, f) for f in (bundle.AE_FILE, bundle.DENOISER_FILE, bundle.META_FILE)]
    assert all(os.path.exists(f) for f in files)
    assert sum(os.path.getsize(f) for f in files) < 3 * 2**20
    with open(files[2]) as f:
        meta = json.load(f)
    assert meta["data"]["licence"] == "BSD-3-Clause"
    assert meta["metrics"]["recon_mae_all"] <= DOCUMENTED_MAE
    # the curves went down: a model really trained
    for key in ("ae_l1", "denoiser_loss"):
        curve = [v for _, v in meta["curves"][key]]
        assert curve[-1] < curve[0]


@pytest.mark.slow
def test_bundled_weights_reconstruct_builtin_images(bundled):
    ae, _, meta = bundled
    images, _ = load_digit_images(meta["data"]["image_size"])
    mae = recon_mae(ae, images)
    assert mae <= DOCUMENTED_MAE
    assert abs(mae - meta["metrics"]["recon_mae_all"]) < 2e-3   # the number in the model card
    assert recon_mae(ae, images[meta["data"]["num_train"]:]) <= DOCUMENTED_MAE  # held-out images too


def _generate(model, ae, seed, n=8, backend="auto"):
    codes = model.sample(batch_size=n, seed=seed, backend=backend, progress=False)
    return decode_codes(ae, codes)


@pytest.mark.slow
def test_generated_images_not_blank_not_constant_and_vary_with_seed(bundled):
    ae, model, _ = bundled
    a = _generate(model, ae, seed=0)
    b = _generate(model, ae, seed=1)
    for imgs in (a, b):
        flat = imgs.flatten(1)
        assert (flat.max(1).values > 0.5).all(), "an image has no ink (blank)"
        assert (flat.std(1) > 0.1).all(), "an image is (nearly) constant"
        ink = flat.mean(1)
        assert ((ink > 0.05) & (ink < 0.7)).all(), f"ink coverage out of the digits' range: {ink}"
        # the images of a batch are not all the same
        assert (flat[1:] - flat[:1]).abs().mean(1).min() > 0.02
    assert (a - b).abs().flatten(1).mean(1).min() > 0.02, "seeds 0 and 1 gave the same image"
    # same seed again: the same images
    assert torch.equal(_generate(model, ae, seed=0), a)


def test_demo_end_to_end_reduced(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_demo_arguments(p)
    args = p.parse_args(["--out", str(tmp_path / "demo"), "--samples", "6", "--steps", "6", "--images", "64",
                         "--repeats", "1", "--no-progress"])
    assert run_demo(args) == 0
    text = capsys.readouterr().out
    for needle in ("time per step", "speed-up", "bytes per latent", "same bits", "OK"):
        assert needle in text
    for name in ("samples.png", "samples_reference.png"):
        from PIL import Image

        with Image.open(tmp_path / "demo" / name) as im:
            assert im.size[0] > 16 and im.size[1] > 16
    assert (tmp_path / "demo" / "digits_codes" / "meta.json").exists()


def test_demo_result_fields(tmp_path):
    res = demo(out=str(tmp_path), samples=4, steps=4, images=32, repeats=1, progress=False)
    assert res["bits_ok"] and res["identical_samples"] == 4
    assert res["bytes_per_latent"] == 64 and res["float32_bytes_per_latent"] == 2048
    assert res["images"].shape == (4, 1, 16, 16)
    assert torch.equal(res["images"], res["images_reference"])
    assert "speed-up" in format_table(res)


@pytest.mark.slow
def test_train_runs_and_writes_loadable_weights(tmp_path, capsys):
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--out", str(tmp_path), "--ae-steps", "3", "--denoiser-steps", "3", "--no-progress"])
    assert run_train(args) == 0
    assert "wrote" in capsys.readouterr().out
    _, model, meta = bundle.load_bundled(str(tmp_path))
    assert meta["training"]["ae_steps"] == 3 and len(meta["curves"]["denoiser_loss"]) == 1
    assert model.num_classes == 10 and meta["training"]["saved_denoiser"] == "ema"
    assert model.sample(batch_size=2, steps=2, seed=0, progress=False).shape == (2, 16, 4)
    labels = torch.tensor([3, 7])
    assert model.sample(labels=labels, guidance=1.0, steps=2, seed=0, progress=False).shape == (2, 16, 4)
    # written atomically: no temporary file left beside the three
    assert sorted(os.listdir(tmp_path)) == sorted([bundle.AE_FILE, bundle.DENOISER_FILE, bundle.META_FILE])


@pytest.mark.slow
def test_train_cli_default_out_is_the_working_directory(tmp_path):
    proc = _cli(["train", "--ae-steps", "1", "--denoiser-steps", "1", "--unconditional", "-q"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""  # -q: no progress bars, no summary
    _, model, meta = bundle.load_bundled(str(tmp_path / "digits_model"))
    assert model.num_classes is None and meta["training"]["label_dropout"] == 0.0


@pytest.mark.slow
def test_train_is_deterministic(tmp_path):
    kw = dict(ae_steps=2, denoiser_steps=2, progress=False)
    train(str(tmp_path / "a"), **kw)
    train(str(tmp_path / "b"), **kw)
    for f in (bundle.AE_FILE, bundle.DENOISER_FILE):
        sa = torch.load(tmp_path / "a" / f, weights_only=True)
        sb = torch.load(tmp_path / "b" / f, weights_only=True)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------
# bad arguments, typed as a user would (issue 13)
# ---------------------------------------------------------------------------------------------


def _cli(argv, cwd):
    return subprocess.run([sys.executable, "-m", "bldm_fast", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def _read_only_folder(tmp_path):
    """A folder this process cannot write to: a chmod 555 folder, or (root ignores permissions)
    /sys/fs, which refuses new files even to root."""
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    for cand in (str(ro), "/sys/fs"):
        try:
            with open(os.path.join(cand, "probe"), "w"):
                pass
            os.remove(os.path.join(cand, "probe"))
        except OSError:
            return cand
    pytest.skip("no read-only folder on this machine (root, no /sys/fs)")


@pytest.mark.parametrize("cmd, args, needle", [
    ("demo", ["--steps", "0"], "steps must be an int >= 1, got 0"),
    ("demo", ["--steps", "33"], "steps must be in 1..32"),
    ("demo", ["--images", "-5"], "images must be an int in 1..1797, got -5"),
    ("demo", ["--samples", "0"], "samples must be an int >= 1"),
    ("demo", ["--repeats", "0"], "repeats must be an int >= 1"),
    ("demo", ["--temperature", "0"], "temperature must be a finite number > 0"),
    ("demo", ["--backend", "bogus"], "backend must be 'auto' or one of"),
    ("demo", ["--assets", "{tmp}/no_such_folder"], "assets folder not found"),
    ("demo", ["--assets", "{tmp}"], "bundled model file missing"),
    ("train", ["--ae-steps", "-1"], "ae_steps must be an int >= 1, got -1"),
    ("train", ["--ae-batch", "0"], "ae_batch must be an int >= 1, got 0"),
    ("train", ["--denoiser-steps", "0"], "denoiser_steps must be an int >= 1"),
    ("train", ["--denoiser-lr", "nan"], "denoiser_lr must be a finite number > 0"),
    ("train", ["--ema-decay", "1"], "ema_decay must be a finite number >= 0"),
    ("train", ["--label-dropout", "-0.1"], "label_dropout must be a finite number >= 0"),
    ("train", ["--threads", "0"], "threads must be an int >= 1"),
])
def test_cli_bad_argument_is_one_line_and_writes_nothing(tmp_path, cmd, args, needle):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = _cli([cmd, "--out", str(out), *args], cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bldm-fast {cmd}: error: "), proc.stderr
    assert needle in lines[0]
    assert not out.exists(), "a failed command wrote its output folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("cmd", ["demo", "train"])
@pytest.mark.parametrize("where", ["file", "below_a_file", "read_only"])
def test_cli_unwritable_out_is_one_line(tmp_path, cmd, where):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    out = {"file": str(a_file), "below_a_file": str(a_file / "sub"), "read_only": None}[where]
    out = out or _read_only_folder(tmp_path)
    proc = _cli([cmd, "--out", out], cwd=tmp_path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bldm-fast {cmd}: error: out "), proc.stderr
    assert ("not a folder" if where == "file" else "not a writable folder") in lines[0]
    assert a_file.read_text() == "keep me"
