"""train-denoiser: kill -9 at a random moment and restart gives the losses of an uninterrupted run,
bit for bit (CPU, one process); atomic checkpoints; refusing a run folder of another configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bldm_fast.train.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from bldm_fast.train.metrics import METRICS_FILE, MetricsLog, read_metrics
from train_data import SMALL, cli_env, losses, run_cli, write_digits_dataset


@pytest.fixture(scope="module")
def probs_ds(tmp_path_factory):
    return write_digits_dataset(tmp_path_factory.mktemp("probs") / "ds", "probs", n=256)


def _train_args(ds, run, steps):
    return ["train-denoiser", ds, "--out", run, *SMALL, "--steps", steps, "--save-every", "10"]


def test_kill9_resume_is_bit_exact(probs_ds, tmp_path):
    steps = 120
    ref = tmp_path / "ref"
    r = run_cli(*_train_args(probs_ds, ref, steps))
    assert r.returncode == 0, r.stderr
    expected = losses(ref)
    assert len(expected) == steps

    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bldm_fast", *map(str, _train_args(probs_ds, run, steps))]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # kill between two checkpoints, past the second one
            recs = read_metrics(run) if (run / METRICS_FILE).exists() else []
            if recs and recs[-1]["step"] >= 27 and recs[-1]["step"] % 10 not in (0, 9):
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    logged = [r["step"] for r in read_metrics(run)]
    saved = [s for s, _ in list_checkpoints(run)]
    assert saved and max(logged) > max(saved)  # steps after the last checkpoint were lost in the kill
    assert max(logged) < steps

    r = run_cli(*_train_args(probs_ds, run, steps))
    assert r.returncode == 0, r.stderr
    assert "trained to step 120" in r.stdout
    got = losses(run)
    assert [rec["step"] for rec in read_metrics(run)] == list(range(1, steps + 1))
    assert got == expected  # bit for bit: the floats are written with repr precision
    a = latest_checkpoint(ref)
    b = latest_checkpoint(run)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])


def test_other_configuration_is_refused_unless_force(probs_ds, tmp_path):
    run = tmp_path / "run"
    assert run_cli(*_train_args(probs_ds, run, 10)).returncode == 0
    r = run_cli(*_train_args(probs_ds, run, 20), "--lr", "5e-4", "--seed", "3")
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("bldm-fast train-denoiser: error:")
    assert "lr: 0.001 -> 0.0005" in line and "seed: 0 -> 3" in line and "--force" in line
    r = run_cli(*_train_args(probs_ds, run, 20), "--steps", "20")  # more steps: same configuration
    assert r.returncode == 0, r.stderr
    r = run_cli(*_train_args(probs_ds, run, 25), "--lr", "5e-4", "--force")
    assert r.returncode == 0, r.stderr
    recs = read_metrics(run)
    assert [x["step"] for x in recs] == list(range(1, 26)) and recs[-1]["lr"] == 5e-4


def test_non_run_folder_is_refused(probs_ds, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    r = run_cli(*_train_args(probs_ds, tmp_path / "x", 5))
    assert r.returncode == 1 and "not a training run" in r.stderr and r.stderr.count("\n") == 1


def test_checkpoints_atomic_keep_and_fallback(tmp_path):
    run = str(tmp_path)
    for s in (10, 20, 30):
        save_checkpoint(run, {"step": s, "w": torch.full((3,), float(s))}, keep=2)
    assert [s for s, _ in list_checkpoints(run)] == [20, 30]
    # a torn newest file (what a crash without the rename would leave) falls back to the previous
    path30 = dict(list_checkpoints(run))[30]
    with open(path30, "r+b") as f:
        f.truncate(100)
    assert latest_checkpoint(run)["step"] == 20
    # a stray temporary file of a killed writer is ignored, and removed by the next save
    stray = os.path.join(run, "checkpoints", "step_40.pt.tmp-99999")
    open(stray, "wb").write(b"partial")
    assert [s for s, _ in list_checkpoints(run)] == [20, 30]
    save_checkpoint(run, {"step": 40, "w": torch.zeros(1)}, keep=2)
    assert not os.path.exists(stray) and [s for s, _ in list_checkpoints(run)] == [30, 40]


def test_metrics_cut_back_on_resume(tmp_path):
    run = str(tmp_path)
    log = MetricsLog(run, 0)
    for s in range(1, 8):
        log.write({"step": s, "loss": s / 10})
    log.close()
    with open(os.path.join(run, METRICS_FILE), "a") as f:
        f.write('{"step": 8, "lo')  # torn by a kill
    assert [r["step"] for r in read_metrics(run)] == list(range(1, 8))
    log = MetricsLog(run, 5)
    log.write({"step": 6, "loss": 0.25})
    log.close()
    with open(os.path.join(run, METRICS_FILE)) as f:
        assert [json.loads(x)["step"] for x in f] == [1, 2, 3, 4, 5, 6]
