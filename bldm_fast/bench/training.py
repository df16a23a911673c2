"""Training throughput: the packed-dataset trainer against the official online recipe.

Both paths train the same BinaryTransformer (same size, same initial weights) on 16x16x64 latents
with AdamW, one step = data -> codes -> loss forward -> backward -> optimizer step:

* ``packed``: ``bldm-fast train-denoiser``'s step on a ``probs`` dataset: the batch read from the
  ``latents.npy`` memmap (:class:`~bldm_fast.train.sources.StepReader`), a fresh Bernoulli code
  drawn and packed by one fused :func:`bldm_fast.binarize` call, :func:`bldm_fast.training_loss`
  (fused noising and flip BCE) through :class:`~bldm_fast.train.step.StepLoss`.
* ``online``: the official ``train_sampler_online.py`` step: the binary autoencoder's encoder
  on the image batch (``BinaryAutoEncoder(img, code_only=True)``: encoder, quantizer sigmoid,
  ``torch.bernoulli``), the ``(B, C, H, W) -> (B, L, C)`` permute, and the official
  ``_train_loss`` (``--p_flip``, focal 0, ``--loss_final mean``) op by op in eager PyTorch.

The autoencoder (the official BAE_C64 architecture, random weights: speed does not depend on them)
is timed on its own inside the online step, so the table shows its share.

Call :func:`training_throughput`; ``rows`` holds the numbers, ``table`` the formatted text.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

#: the "small official" denoiser of the comparison (the released models are 768 x 12 x 24)
DENOISER = dict(n_embd=256, n_head=4, n_layers=4)
AUTOENCODER = dict(codebook_size=64, nf=128, emb_dim=256, ch_mult=(1, 1, 2, 2, 4), res_blocks=2, img_size=256,
                   attn_resolutions=(16,), norm_first=True)


def official_recipe_loss(denoise_fn, x_0, k_final, b_final, T: int) -> dict:
    """The official ``_train_loss`` with ``p_flip``, ``focal = 0`` (alpha -1) and ``loss_final =
    'mean'``, op by op: ``t ~ U{1..T}``, ``x_t = bernoulli(k x_0 + b)``, the logits, the
    class-balanced focal loss against ``x_0 XOR x_t``, the mean, and the accuracy.

    Returns:
        dict: ``loss`` (differentiable scalar), ``bce_loss`` and ``acc`` (detached scalars).
    """
    t = torch.randint(1, T + 1, (x_0.size(0),), device=x_0.device)
    x_t_in = torch.bernoulli(k_final[t].view(-1, 1, 1) * x_0 + b_final[t].view(-1, 1, 1))
    logits = denoise_fn(x_t_in, time_steps=t - 1)
    target = torch.logical_xor(x_0, x_t_in) * 1.0
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = (1 - (p * target + (1 - p) * (1 - target))).clamp(min=1e-6, max=1 - 1e-6)
    kl = ce * p_t**0.0
    neg = (target.sum((-1, -2)) / target[0].numel()).view(-1, 1, 1)
    kl = ((1 - neg) * target + neg * (1 - target)) * kl
    flipped = x_t_in * (-logits) + (1 - x_t_in) * logits
    loss = kl.mean()
    with torch.no_grad():
        acc = (((flipped > 0.0) * 1.0 == x_0) * 1.0).sum() / float(x_0.numel())
    return {"loss": loss, "bce_loss": kl.detach().mean(), "acc": acc}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _write_probs_dataset(root: str, n: int, side: int, channels: int, seed: int = 0) -> None:
    from ..data import PackedLatentWriter

    rng = np.random.default_rng(seed)
    w = PackedLatentWriter(root, count=n, latent_hw=(side, side), channels=channels, code_mode="probs",
                           chunk_rows=n)
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, rng.integers(0, 256, (e - s, side * side, channels), dtype=np.uint8))
    w.finalize()


@contextlib.contextmanager
def training_paths(*, batch: int = 8, device: str = "cpu", denoiser: dict | None = None,
                   autoencoder: dict | None = None, seed: int = 0):
    """Yield ``(steps, config)``: ``steps["packed"]`` and ``steps["online"]`` each run one full
    training step (``fn(step)``, step 1-based) and return the seconds spent in the autoencoder
    (0 for packed). Both start from the same denoiser weights; the packed dataset lives in a
    temporary folder for the duration."""
    from ..models import BinaryAutoencoder, BinaryTransformer
    from ..schedule import BernoulliSchedule
    from ..train import TrainConfig
    from ..train.sources import StepReader
    from ..train.step import StepLoss
    from ..train.streams import StepStreams
    from ..train.trainer import open_dataset

    dev = torch.device(device)
    den_cfg = {**DENOISER, **(denoiser or {})}
    ae_cfg = {**AUTOENCODER, **(autoencoder or {})}
    T, C = 64, ae_cfg["codebook_size"]
    torch.manual_seed(seed)
    ae = BinaryAutoencoder(**ae_cfg).to(dev).eval()
    side = ae.latent_size
    L = side * side
    torch.manual_seed(seed)
    init = BinaryTransformer(C, latent_size=side, total_steps=T, **den_cfg).state_dict()

    def fresh():
        model = BinaryTransformer(C, latent_size=side, total_steps=T, **den_cfg).to(dev)
        model.load_state_dict(init)
        return model.train(), torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.9, 0.95), weight_decay=0.0)

    with tempfile.TemporaryDirectory(prefix="bldm_bench_train_") as tmp:
        root = os.path.join(tmp, "ds")
        _write_probs_dataset(root, 4 * batch, side, C, seed)
        ds, _data = open_dataset(root)
        cfg = TrainConfig(total_steps=T, batch_size=batch, loss_final="mean", **den_cfg)
        streams = StepStreams(seed, 0, 1, batch, L * C)
        reader = StepReader(ds, streams, labels=False)
        step_loss = StepLoss(cfg, "probs", C, streams, None, dev)
        packed_model, packed_optim = fresh()

        def packed_step(step: int) -> float:
            start = (step - 1) % 4 * batch
            codes, _lab, _ = reader.__getitems__((step, list(range(start, start + batch))))
            step_loss(packed_model, codes, None, step)["loss"].backward()
            packed_optim.step()
            packed_optim.zero_grad(set_to_none=True)
            return 0.0

        sched = BernoulliSchedule(T, "linear")
        k_final, b_final = sched.k.to(dev), sched.b.to(dev)
        images = torch.rand(batch, ae_cfg.get("in_channels", 3), ae_cfg["img_size"], ae_cfg["img_size"],
                            generator=torch.Generator().manual_seed(seed)).to(dev)
        online_model, online_optim = fresh()

        def online_step(_step: int) -> float:
            _sync(dev)
            t0 = time.perf_counter()
            with torch.no_grad():
                code = torch.bernoulli(ae.encode_probs(images))
                b, c = code.shape[:2]
                x = code.view(b, c, -1).permute(0, 2, 1).contiguous()
            _sync(dev)
            enc = time.perf_counter() - t0
            official_recipe_loss(online_model, x, k_final, b_final, T)["loss"].backward()
            online_optim.step()
            online_optim.zero_grad(set_to_none=True)
            return enc

        config = dict(batch=batch, device=str(dev), latent=f"{side}x{side}x{C}", denoiser=den_cfg,
                      autoencoder_img_size=ae_cfg["img_size"], total_steps=T, threads=torch.get_num_threads())
        yield {"packed": packed_step, "online": online_step}, config


def training_throughput(*, batch: int = 8, steps: int = 3, warmup: int = 1, device: str = "cpu",
                        denoiser: dict | None = None, autoencoder: dict | None = None, seed: int = 0,
                        progress: bool = False) -> dict:
    """Measure training steps per second of the packed and the online path (see the module
    docstring); the two paths' steps are interleaved, so a change in machine load hits both.

    Args:
        batch: samples per step. steps: timed steps per path (after ``warmup`` untimed ones).
        device: where the models run. denoiser / autoencoder: constructor overrides of
        :data:`DENOISER` / :data:`AUTOENCODER`.

    Returns:
        dict: ``rows`` (one per path: ``path``, ``ms_per_step``, ``samples_per_s``,
        ``autoencoder_ms`` and ``autoencoder_share`` (online), ``speedup`` vs online), ``config``
        and ``table`` (text).

    Raises:
        ValueError: ``batch``, ``steps`` < 1 or ``warmup`` < 0.
    """
    from tqdm.auto import tqdm

    if batch < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"batch and steps must be >= 1 and warmup >= 0, got {batch}, {steps}, {warmup}")
    dev = torch.device(device)
    total = {"packed": 0.0, "online": 0.0}
    enc = 0.0
    with training_paths(batch=batch, device=device, denoiser=denoiser, autoencoder=autoencoder, seed=seed) as (
            fns, config), tqdm(total=2 * (steps + warmup), desc="training throughput", unit="step",
                               disable=not progress) as bar:
        for i in range(warmup + steps):
            for name, fn in fns.items():
                _sync(dev)
                t0 = time.perf_counter()
                part = fn(i + 1)
                _sync(dev)
                if i >= warmup:
                    total[name] += time.perf_counter() - t0
                    enc += part
                bar.update(1)
    packed_s, online_s, enc_s = total["packed"] / steps, total["online"] / steps, enc / steps
    rows = [dict(path="packed (probs dataset, fused draw + fused loss)", ms_per_step=packed_s * 1e3,
                 samples_per_s=batch / packed_s, autoencoder_ms=0.0, autoencoder_share=0.0,
                 speedup=online_s / packed_s),
            dict(path="online official (encoder + torch.bernoulli + eager loss)", ms_per_step=online_s * 1e3,
                 samples_per_s=batch / online_s, autoencoder_ms=enc_s * 1e3, autoencoder_share=enc_s / online_s,
                 speedup=1.0)]
    config = dict(config, steps=steps, warmup=warmup)
    return dict(rows=rows, config=config, table=format_table(rows, config))


def format_table(rows: list[dict], config: dict) -> str:
    """The rows as a text table with the configuration above it."""
    d = config["denoiser"]
    head = (f"training throughput, {config['device']}, B={config['batch']}, latents {config['latent']}, denoiser "
            f"{d['n_embd']}x{d['n_head']}x{d['n_layers']}, T={config['total_steps']}, {config['steps']} timed steps, "
            f"{config['threads']} threads")
    lines = [head, f"{'path':<58} {'ms/step':>9} {'samples/s':>10} {'AE ms':>8} {'AE share':>9} {'speed-up':>9}"]
    for r in rows:
        lines.append(f"{r['path']:<58} {r['ms_per_step']:>9.1f} {r['samples_per_s']:>10.2f} "
                     f"{r['autoencoder_ms']:>8.1f} {r['autoencoder_share']:>8.0%} {r['speedup']:>8.2f}x")
    return "\n".join(lines)


def bench_section(quick: bool, device: str) -> dict:
    """``bldm-fast bench --train``: :func:`training_throughput` at B=8 (2 timed steps with ``quick``, else 5)."""
    res = training_throughput(batch=8, steps=2 if quick else 5, warmup=1, device=device, progress=True)
    return {"rows": res["rows"], "config": res["config"], "table": res["table"]}
