"""``bldm-fast train``: train the bundled digits model on this CPU, reproducibly.

1. The binary autoencoder (official ``BinaryAutoEncoder`` recipe, reduced): Bernoulli codes with
   the straight-through gradient, loss ``L1(recon, x) + codebook_weight * codebook_loss``, Adam.
2. The training images are encoded (deterministic codes) into a packed-latent dataset with
   :class:`bldm_fast.data.PackedLatentWriter` and read back with
   :class:`bldm_fast.data.PackedLatentDataset`.
3. The BinaryTransformer is trained on those packed codes with
   :meth:`bldm_fast.BernoulliDiffusion.loss` (the official loss, fused flip BCE), Adam.

Seeds: ``torch.manual_seed(seed)`` before each model's construction and loop, and a
``PhiloxGenerator(seed)`` for the noising stream, so a rerun with the same arguments and thread
count writes the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write the weights and digits_model.json (default: the package's assets folder)")
    p.add_argument("--ae-steps", type=int, default=1500, help="autoencoder Adam steps (default 1500)")
    p.add_argument("--denoiser-steps", type=int, default=2500, help="denoiser Adam steps (default 2500)")
    p.add_argument("--ae-batch", type=int, default=64, help="autoencoder batch size (default 64)")
    p.add_argument("--denoiser-batch", type=int, default=128, help="denoiser batch size (default 128)")
    p.add_argument("--ae-lr", type=float, default=2e-3, help="autoencoder learning rate (default 2e-3)")
    p.add_argument("--denoiser-lr", type=float, default=1e-3, help="denoiser learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: reproducible, and immune to OpenMP oversubscription on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    res = train(out=args.out, ae_steps=args.ae_steps, denoiser_steps=args.denoiser_steps, ae_batch=args.ae_batch,
                denoiser_batch=args.denoiser_batch, ae_lr=args.ae_lr, denoiser_lr=args.denoiser_lr,
                seed=args.seed, threads=args.threads, progress=not args.no_progress)
    m = res["metrics"]
    print(f"autoencoder: {res['ae_steps']} steps, final L1 {m['ae_final_loss']:.4f}; reconstruction MAE "
          f"train {m['recon_mae_train']:.4f}, held-out {m['recon_mae_heldout']:.4f}, all {m['recon_mae_all']:.4f}")
    print(f"denoiser: {res['denoiser_steps']} steps, final loss {m['denoiser_final_loss']:.4f} "
          f"(bit accuracy {m['denoiser_final_acc']:.4f})")
    print(f"total {res['timings']['total_s']:.0f} s; wrote {res['out']}")
    return 0


def _curve(values, every: int) -> list:
    """Means of consecutive windows of ``every`` values: the loss curve stored in the JSON."""
    out = []
    for i in range(0, len(values), every):
        w = values[i:i + every]
        out.append([i + len(w), round(sum(w) / len(w), 6)])
    return out


def _lr(step: int, total: int, base: float) -> float:
    """Linear warm-up over 100 steps, then cosine decay to 10% of ``base``."""
    import math

    if step < 100:
        return base * (step + 1) / 100
    frac = (step - 100) / max(1, total - 100)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def recon_mae(ae, images, batch: int = 256) -> float:
    """Mean absolute error in [0, 1] pixel units of ``decode(encode(x))`` (deterministic codes,
    reconstruction clamped to [0, 1])."""
    import torch

    total = 0.0
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            x = images[i:i + batch]
            r = ae.decode(ae.encode(x, deterministic=True)).clamp(0, 1)
            total += float((r - x).abs().sum())
    return total / images.numel()


def code_logits(ae, images):
    """The autoencoder's code logits ``(B, C, h, w)`` (the quantizer's input to its sigmoid)."""
    return ae.quantize.proj[0](ae.encoder(images))


def encode_packed(ae, images, out_dir, *, labels=None, batch: int = 256, progress: bool = False, backend="auto"):
    """Encode ``images`` with deterministic codes into a packed-latent dataset at ``out_dir``
    (:class:`PackedLatentWriter`, one chunk per ``batch`` images); returns the writer's meta."""
    import torch
    from tqdm.auto import tqdm

    from ..data import PackedLatentWriter
    from ..ops import binarize

    n = images.shape[0]
    side = ae.latent_size
    with PackedLatentWriter(out_dir, count=n, latent_hw=(side, side), channels=ae.codebook_size,
                            code_mode="deterministic", with_labels=labels is not None,
                            meta={"source": "sklearn.datasets.load_digits"}, chunk_rows=batch) as w:
        pending = w.pending_chunks()
        with torch.no_grad():
            for idx in tqdm(pending, desc="encoding", unit="chunk", disable=not progress, leave=False):
                s, e = w.chunk_range(idx)
                logits = code_logits(ae, images[s:e])
                # channels last: (B, C, h, w) -> (B, L, C) logits -> packed threshold codes
                tok = logits.flatten(2).transpose(1, 2).contiguous()
                packed = binarize(tok, "deterministic", backend=backend)
                w.write_chunk(idx, packed.numpy(), None if labels is None else labels[s:e].numpy())
        return w.finalize()


def train(out: str | None = None, *, ae_steps: int = 1500, denoiser_steps: int = 2500, ae_batch: int = 64,
          denoiser_batch: int = 128, ae_lr: float = 2e-3, denoiser_lr: float = 1e-3, seed: int = 0,
          codebook_weight: float = 0.1, threads: int | None = 1, progress: bool = True) -> dict:
    """Train both models and write the assets; returns the JSON metadata written (plus ``out``)."""
    from .bundle import cpu_settings

    with cpu_settings(threads):
        return _train(out, ae_steps, denoiser_steps, ae_batch, denoiser_batch, ae_lr, denoiser_lr, seed,
                      codebook_weight, progress)


def _train(out, ae_steps, denoiser_steps, ae_batch, denoiser_batch, ae_lr, denoiser_lr, seed, codebook_weight,
           progress) -> dict:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..data import PackedLatentDataset
    from ..rng import PhiloxGenerator
    from . import bundle
    from .data import IMAGE_SIZE, NUM_TRAIN, load_digit_images

    out = os.path.abspath(out or bundle.ASSETS_DIR)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    images, labels = load_digit_images(IMAGE_SIZE)
    x_train = images[:NUM_TRAIN]

    # ---- 1. autoencoder --------------------------------------------------------------------
    torch.manual_seed(seed)
    ae = bundle.build_autoencoder()
    opt = torch.optim.Adam(ae.parameters(), lr=ae_lr, betas=(0.9, 0.99))
    ae.train()
    ae.deterministic = False  # train on Bernoulli codes (the official default)
    ae_losses, ae_l1 = [], []
    g = torch.Generator().manual_seed(seed)
    bar = tqdm(range(ae_steps), desc="autoencoder", unit="step", disable=not progress)
    for step in bar:
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, ae_steps, ae_lr)
        idx = torch.randint(0, NUM_TRAIN, (ae_batch,), generator=g)
        x = x_train[idx]
        recon, cb_loss, _ = ae(x, generator=g)
        l1 = (recon - x).abs().mean()
        loss = l1 + codebook_weight * cb_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ae_losses.append(float(loss.detach()))
        ae_l1.append(float(l1.detach()))
        if step % 50 == 0:
            bar.set_postfix(l1=f"{l1.item():.4f}")
    bar.close()
    ae.deterministic = True
    ae.eval()
    t_ae = time.perf_counter() - t0

    # ---- 2. packed codes -------------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="bldm_digits_") as tmp:
        encode_packed(ae, x_train, os.path.join(tmp, "codes"), labels=labels[:NUM_TRAIN], progress=progress)
        ds = PackedLatentDataset(os.path.join(tmp, "codes"), verify=True)
        codes = torch.from_numpy(np.stack([np.asarray(ds[i][0]) for i in range(len(ds))]))
    bit_balance = float(__import__("bldm_fast").unpack_bits(codes, ae.codebook_size, torch.float32).mean())

    # ---- 3. denoiser -----------------------------------------------------------------------
    t1 = time.perf_counter()
    torch.manual_seed(seed + 1)
    den = bundle.build_denoiser()
    model = bundle.build_diffusion(den)
    opt = torch.optim.AdamW(den.parameters(), lr=denoiser_lr, betas=(0.9, 0.99), weight_decay=0.01)
    gen = PhiloxGenerator(seed=seed)
    den.train()
    d_losses, d_acc = [], []
    bar = tqdm(range(denoiser_steps), desc="denoiser", unit="step", disable=not progress)
    for step in bar:
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, denoiser_steps, denoiser_lr)
        idx = torch.randint(0, codes.shape[0], (denoiser_batch,), generator=g)
        res = model.loss(codes[idx], generator=gen)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()
        d_losses.append(float(res["loss"].detach()))
        d_acc.append(float(res["acc"].detach()) if "acc" in res else float("nan"))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{d_losses[-1]:.4f}")
    bar.close()
    den.eval()
    t_den = time.perf_counter() - t1

    # ---- metrics and files -----------------------------------------------------------------
    tail = lambda v: float(sum(v[-100:]) / len(v[-100:]))
    metrics = dict(
        ae_final_loss=tail(ae_l1),
        recon_mae_train=recon_mae(ae, x_train),
        recon_mae_heldout=recon_mae(ae, images[NUM_TRAIN:]),
        recon_mae_all=recon_mae(ae, images),
        code_bit_balance=bit_balance,
        denoiser_final_loss=tail(d_losses),
        denoiser_final_acc=tail(d_acc),
    )
    torch.save(ae.state_dict(), os.path.join(out, bundle.AE_FILE))
    torch.save(den.state_dict(), os.path.join(out, bundle.DENOISER_FILE))
    meta = dict(
        data=dict(source="sklearn.datasets.load_digits (UCI ML hand-written digits)", licence="BSD-3-Clause",
                  sklearn_version=__import__("sklearn").__version__, image_size=IMAGE_SIZE, num_images=len(images),
                  num_train=NUM_TRAIN, preprocessing="images / 16, bilinear upscale 8 -> 16, 1 channel, ink = 1"),
        autoencoder_config=ae.config(),
        denoiser_config=den.config(),
        diffusion_config=dict(bundle.DIFFUSION_CONFIG),
        training=dict(ae_steps=ae_steps, denoiser_steps=denoiser_steps, ae_batch=ae_batch,
                      denoiser_batch=denoiser_batch, ae_lr=ae_lr, denoiser_lr=denoiser_lr, seed=seed,
                      codebook_weight=codebook_weight, threads=torch.get_num_threads(),
                      torch_version=torch.__version__),
        metrics=metrics,
        curves=dict(ae_l1=_curve(ae_l1, 100), ae_loss=_curve(ae_losses, 100), denoiser_loss=_curve(d_losses, 100),
                    denoiser_acc=_curve(d_acc, 100)),
        timings=dict(autoencoder_s=round(t_ae, 1), denoiser_s=round(t_den, 1),
                     total_s=round(time.perf_counter() - t0, 1)),
    )
    # JSON needs lists, not tuples
    meta = json.loads(json.dumps(meta))
    with open(os.path.join(out, bundle.META_FILE), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return dict(meta, out=out, ae_steps=ae_steps, denoiser_steps=denoiser_steps)
