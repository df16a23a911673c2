"""train-denoiser bad input: one line on stderr (``bldm-fast train-denoiser: error: ...``), exit 1."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from bldm_fast.train import TrainConfig, train_denoiser
from train_data import SMALL, run_cli, write_digits_dataset


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("err") / "ds", "deterministic", n=64)


def _damaged(ds, tmp_path, how):
    bad = tmp_path / how
    shutil.copytree(ds, bad)
    if how == "no-meta":
        os.remove(bad / "meta.json")
    else:
        a = np.load(bad / "latents.npy", mmap_mode="r+")
        a[3, 2, 1] ^= 1
        a.flush()
    return bad


@pytest.mark.parametrize("case", ["no-meta", "checksum", "codebook", "batch", "not-a-folder", "bad-setting"])
def test_one_line_errors(ds, tmp_path, case):
    data, extra = ds, []
    expect = {"no-meta": "meta.json: missing", "checksum": "sha256", "codebook": "--codebook-size 64 does not match",
              "batch": "--batch-size 100 is larger than the dataset per rank (64 images / 1 rank = 64)",
              "not-a-folder": "is not a folder", "bad-setting": "n_embd must be a multiple of n_head"}[case]
    if case in ("no-meta", "checksum"):
        data = _damaged(ds, tmp_path, case)
    elif case == "codebook":
        extra = ["--codebook-size", "64"]
    elif case == "batch":
        extra = ["--batch-size", "100"]
    elif case == "not-a-folder":
        data = tmp_path / "missing"
    else:
        extra = ["--n-embd", "30"]
    r = run_cli("train-denoiser", data, "--out", tmp_path / "run", *SMALL, "--steps", "2", *extra)
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bldm-fast train-denoiser: error:") and expect in err[0], r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_python_entry_point_errors(ds, tmp_path):
    with pytest.raises(TypeError):
        train_denoiser(ds, tmp_path / "r", no_such_setting=1)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train_denoiser(ds, tmp_path / "r", lr=0.0)
    with pytest.raises(ValueError, match="beta_type must be one of"):
        TrainConfig(beta_type="cosine").validate()
    with pytest.raises(ValueError, match="--device: "):
        train_denoiser(ds, tmp_path / "r", device="gpu0")
