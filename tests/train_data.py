"""Small packed-latent datasets for the training tests: the bundled digits autoencoder's codes of
scikit-learn's digits, written with PackedLatentWriter in each code mode (the layout
``bldm-fast encode`` writes; encode itself takes RGB folders, the digits model is 1-channel)."""

from __future__ import annotations

import os

import torch

import bldm_fast as bf
from bldm_fast.data import PackedLatentWriter


def digits_code_logits(n: int | None = None):
    """``(code logits (N, L, C) float32, labels (N,) int64)`` of the digits under the bundled autoencoder."""
    from bldm_fast.demo import bundle
    from bldm_fast.demo.data import IMAGE_SIZE, load_digit_images
    from bldm_fast.demo.train import code_logits

    ae, _diff, _meta = bundle.load_bundled()
    images, labels = load_digit_images(IMAGE_SIZE)
    if n is not None:
        images, labels = images[:n], labels[:n]
    with torch.no_grad():
        z = code_logits(ae, images)
    return z.flatten(2).transpose(1, 2).contiguous(), torch.as_tensor(labels, dtype=torch.int64)


def write_digits_dataset(root, mode: str = "deterministic", *, n: int | None = 512, k: int = 2, labels: bool = True,
                         seed: int = 0) -> str:
    """Write the digits codes as a dataset of code ``mode`` at ``root``; returns ``root``."""
    logits, lab = digits_code_logits(n)
    N, L, C = logits.shape
    if mode == "deterministic":
        data = bf.binarize(logits, "deterministic")
    elif mode == "bernoulli":
        rep = logits.unsqueeze(1).expand(N, k, L, C).contiguous()
        data = bf.binarize(rep, "bernoulli", seed=seed, offset=0)
    else:
        data = bf.quantize_probs(logits)
    w = PackedLatentWriter(root, count=N, latent_hw=(4, 4), channels=C, code_mode=mode,
                           samples_per_image=k if mode == "bernoulli" else 1, with_labels=labels, chunk_rows=256)
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, data[s:e].numpy(), lab[s:e].numpy() if labels else None)
    w.finalize()
    return os.fspath(root)


AUTOENCODER = os.path.join(os.path.dirname(bf.__file__), "assets", "digits_autoencoder.pt")

#: a tiny denoiser and schedule: every test run takes seconds on two shared cores
SMALL = ["--n-embd", "32", "--n-head", "2", "--n-layers", "1", "--total-steps", "16", "--batch-size", "16",
         "--warmup-steps", "5", "--lr", "1e-3", "--num-workers", "0", "--no-progress"]


def cli_env() -> dict:
    """The environment of a CLI subprocess: one thread (steady and bit-reproducible), no GPU."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TRITON_INTERPRET", None)
    return env


def run_cli(*args, timeout: float = 300):
    """``python -m bldm_fast *args`` as a user types it; returns the CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "bldm_fast", *map(str, args)], capture_output=True, text=True,
                          env=cli_env(), timeout=timeout)


def losses(run) -> list:
    """The ``loss`` column of ``RUN/metrics.jsonl``."""
    import json

    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f]
