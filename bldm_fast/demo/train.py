"""``bldm-fast train``: train the bundled digits model on this CPU, reproducibly.

1. The binary autoencoder (official ``BinaryAutoEncoder`` recipe, reduced): Bernoulli codes with
   the straight-through gradient, loss ``L1(recon, x) + codebook_weight * codebook_loss``, Adam.
2. The training images are encoded (deterministic codes) into a packed-latent dataset with
   :class:`bldm_fast.data.PackedLatentWriter` and read back with
   :class:`bldm_fast.data.PackedLatentDataset`.
3. The BinaryTransformer is trained on those packed codes with
   :meth:`bldm_fast.BernoulliDiffusion.loss` (the official loss, fused flip BCE), AdamW with
   warm-up and cosine decay, and an exponential moving average of its weights (the official
   ``ema_beta``), which is what is saved. Class-conditional by default (the digit's label, dropped
   for a whole batch with probability ``label_dropout`` as the official classifier-free guidance
   recipe does), so it samples with and without labels.

Every argument is checked before anything is written; the three files are written atomically
(temporary files, fsync, rename) into ``out`` (default ``./digits_model``; never into the installed
package: copy the files into ``bldm_fast/assets`` or pass ``bldm-fast demo --assets DIR``).

Seeds: ``torch.manual_seed(seed)`` before each model's construction and loop, and a
``PhiloxGenerator(seed)`` for the noising stream, so a rerun with the same arguments and thread
count writes the same weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time

DEFAULT_OUT = "digits_model"
#: the training defaults (``bldm-fast train`` with no options reproduces bldm_fast/assets)
DEFAULTS = dict(ae_steps=1500, denoiser_steps=4000, ae_batch=64, denoiser_batch=128, ae_lr=2e-3, denoiser_lr=1e-3,
                seed=0, codebook_weight=0.1, ema_decay=0.995, label_dropout=0.1, conditional=True, threads=1)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where to write the weights and digits_model.json (default ./{DEFAULT_OUT})")
    p.add_argument("--ae-steps", type=int, default=d["ae_steps"],
                   help=f"autoencoder Adam steps (default {d['ae_steps']})")
    p.add_argument("--denoiser-steps", type=int, default=d["denoiser_steps"],
                   help=f"denoiser AdamW steps (default {d['denoiser_steps']})")
    p.add_argument("--ae-batch", type=int, default=d["ae_batch"],
                   help=f"autoencoder batch size (default {d['ae_batch']})")
    p.add_argument("--denoiser-batch", type=int, default=d["denoiser_batch"],
                   help=f"denoiser batch size (default {d['denoiser_batch']})")
    p.add_argument("--ae-lr", type=float, default=d["ae_lr"],
                   help=f"autoencoder learning rate (default {d['ae_lr']:g})")
    p.add_argument("--denoiser-lr", type=float, default=d["denoiser_lr"],
                   help=f"denoiser learning rate (default {d['denoiser_lr']:g})")
    p.add_argument("--ema-decay", type=float, default=d["ema_decay"],
                   help=f"decay of the denoiser's weight average, in [0, 1); 0 saves the raw weights "
                        f"(default {d['ema_decay']:g})")
    p.add_argument("--unconditional", action="store_true", help="no class labels (default: class-conditional)")
    p.add_argument("--label-dropout", type=float, default=d["label_dropout"],
                   help=f"probability that a batch is trained without labels (default {d['label_dropout']:g})")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"random seed (default {d['seed']})")
    p.add_argument("--threads", type=int, default=d["threads"],
                   help="torch threads (default 1: reproducible, and immune to OpenMP oversubscription on a "
                        "busy machine)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_train(args: argparse.Namespace) -> int:
    res = train(out=args.out, ae_steps=args.ae_steps, denoiser_steps=args.denoiser_steps, ae_batch=args.ae_batch,
                denoiser_batch=args.denoiser_batch, ae_lr=args.ae_lr, denoiser_lr=args.denoiser_lr,
                ema_decay=args.ema_decay, conditional=not args.unconditional, label_dropout=args.label_dropout,
                seed=args.seed, threads=args.threads, progress=not (args.no_progress or args.quiet))
    if args.quiet:
        return 0
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


def check_train_arguments(*, out, ae_steps, denoiser_steps, ae_batch, denoiser_batch, ae_lr, denoiser_lr, seed,
                          codebook_weight, ema_decay, label_dropout, conditional, threads) -> str:
    """Check every argument of :func:`train` and return ``out`` as an absolute, writable folder
    (created if missing). Raises ``TypeError`` / ``ValueError`` naming the argument."""
    from .args import check_float, check_int, check_out_dir

    for name, v in (("ae_steps", ae_steps), ("denoiser_steps", denoiser_steps), ("ae_batch", ae_batch),
                    ("denoiser_batch", denoiser_batch)):
        check_int(v, name)
    check_int(seed, "seed", 0, 2**63 - 1)
    if threads is not None:
        check_int(threads, "threads")
    check_float(ae_lr, "ae_lr")
    check_float(denoiser_lr, "denoiser_lr")
    check_float(codebook_weight, "codebook_weight", low_open=False)
    check_float(ema_decay, "ema_decay", low_open=False, high=0.999999)
    check_float(label_dropout, "label_dropout", low_open=False, high=1.0)
    if not isinstance(conditional, bool):
        raise TypeError(f"conditional must be a bool, got {type(conditional).__name__}")
    if out is None:
        out = DEFAULT_OUT
    return check_out_dir(out, "out")


def train(out: str | None = DEFAULT_OUT, *, ae_steps: int = DEFAULTS["ae_steps"],
          denoiser_steps: int = DEFAULTS["denoiser_steps"], ae_batch: int = DEFAULTS["ae_batch"],
          denoiser_batch: int = DEFAULTS["denoiser_batch"], ae_lr: float = DEFAULTS["ae_lr"],
          denoiser_lr: float = DEFAULTS["denoiser_lr"], seed: int = DEFAULTS["seed"],
          codebook_weight: float = DEFAULTS["codebook_weight"], ema_decay: float = DEFAULTS["ema_decay"],
          label_dropout: float = DEFAULTS["label_dropout"], conditional: bool = DEFAULTS["conditional"],
          threads: int | None = DEFAULTS["threads"], progress: bool = True) -> dict:
    """Train both models and write the three asset files into ``out``.

    Args:
        out: output folder (created; default ``./digits_model``; None means the default).
        ae_steps, denoiser_steps, ae_batch, denoiser_batch: ints >= 1.
        ae_lr, denoiser_lr: peak learning rates > 0 (100 warm-up steps, cosine decay to 10%).
        seed: >= 0. codebook_weight: >= 0, the autoencoder's codebook loss weight.
        ema_decay: in [0, 1): the saved denoiser is the exponential moving average of its weights
            (0: the last weights).
        label_dropout: in [0, 1], probability that a batch is trained unconditionally.
        conditional: a class-conditional denoiser (10 digits) or an unconditional one.
        threads: torch threads (>= 1; None leaves torch's).

    Returns:
        the JSON metadata written, plus ``out``, ``ae_steps`` and ``denoiser_steps``.

    Raises:
        TypeError / ValueError: a bad argument, or ``out`` is a file or not writable (before
            anything is written).
        OSError: writing the files failed (nothing half-written is left in ``out``).
    """
    from .bundle import cpu_settings

    out = check_train_arguments(out=out, ae_steps=ae_steps, denoiser_steps=denoiser_steps, ae_batch=ae_batch,
                                denoiser_batch=denoiser_batch, ae_lr=ae_lr, denoiser_lr=denoiser_lr, seed=seed,
                                codebook_weight=codebook_weight, ema_decay=ema_decay, label_dropout=label_dropout,
                                conditional=conditional, threads=threads)
    with cpu_settings(threads):
        return _train(out, ae_steps, denoiser_steps, ae_batch, denoiser_batch, ae_lr, denoiser_lr, seed,
                      codebook_weight, ema_decay, label_dropout if conditional else 0.0, conditional, progress)


def _train(out, ae_steps, denoiser_steps, ae_batch, denoiser_batch, ae_lr, denoiser_lr, seed, codebook_weight,
           ema_decay, label_dropout, conditional, progress) -> dict:
    import torch
    from tqdm.auto import tqdm

    from ..data import PackedLatentDataset
    from ..ops import unpack_bits
    from ..rng import PhiloxGenerator
    from . import bundle
    from .args import save_atomic
    from .data import IMAGE_SIZE, NUM_TRAIN, load_digit_images

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
        items = [ds[i] for i in range(len(ds))]
        codes = torch.stack([c for c, _ in items])
        code_labels = torch.tensor([lab for _, lab in items], dtype=torch.long)
    bit_balance = float(unpack_bits(codes, ae.codebook_size, torch.float32).mean())

    # ---- 3. denoiser -----------------------------------------------------------------------
    t1 = time.perf_counter()
    torch.manual_seed(seed + 1)
    den = bundle.build_denoiser(dict(bundle.DENOISER_CONFIG, num_classes=10 if conditional else None))
    model = bundle.build_diffusion(den)
    ema = copy.deepcopy(den).eval().requires_grad_(False)
    opt = torch.optim.AdamW(den.parameters(), lr=denoiser_lr, betas=(0.9, 0.99), weight_decay=0.01)
    gen = PhiloxGenerator(seed=seed)
    den.train()
    d_losses, d_acc = [], []
    bar = tqdm(range(denoiser_steps), desc="denoiser", unit="step", disable=not progress)
    for step in bar:
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, denoiser_steps, denoiser_lr)
        idx = torch.randint(0, codes.shape[0], (denoiser_batch,), generator=g)
        res = model.loss(codes[idx], labels=code_labels[idx] if conditional else None, generator=gen,
                         label_dropout=label_dropout)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # the official EMA: ema = decay * ema + (1 - decay) * weights
            for p_ema, p in zip(ema.parameters(), den.parameters()):
                p_ema.lerp_(p, 1.0 - ema_decay)
        d_losses.append(float(res["loss"].detach()))
        d_acc.append(float(res["acc"].detach()) if "acc" in res else float("nan"))
        if step % 50 == 0:
            bar.set_postfix(loss=f"{d_losses[-1]:.4f}")
    bar.close()
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
    meta = dict(
        data=dict(source="sklearn.datasets.load_digits (UCI ML hand-written digits)", licence="BSD-3-Clause",
                  sklearn_version=__import__("sklearn").__version__, image_size=IMAGE_SIZE, num_images=len(images),
                  num_train=NUM_TRAIN, preprocessing="images / 16, bilinear upscale 8 -> 16, 1 channel, ink = 1",
                  labels="the digit 0..9" if conditional else "unused"),
        autoencoder_config=ae.config(),
        denoiser_config=ema.config(),
        diffusion_config=dict(bundle.DIFFUSION_CONFIG),
        training=dict(ae_steps=ae_steps, denoiser_steps=denoiser_steps, ae_batch=ae_batch,
                      denoiser_batch=denoiser_batch, ae_lr=ae_lr, denoiser_lr=denoiser_lr, seed=seed,
                      codebook_weight=codebook_weight, ema_decay=ema_decay, label_dropout=label_dropout,
                      saved_denoiser="ema" if ema_decay > 0 else "last", threads=torch.get_num_threads(),
                      torch_version=torch.__version__),
        metrics=metrics,
        curves=dict(ae_l1=_curve(ae_l1, 100), ae_loss=_curve(ae_losses, 100), denoiser_loss=_curve(d_losses, 100),
                    denoiser_acc=_curve(d_acc, 100)),
        timings=dict(autoencoder_s=round(t_ae, 1), denoiser_s=round(t_den, 1),
                     total_s=round(time.perf_counter() - t0, 1)),
    )
    meta = json.loads(json.dumps(meta))  # JSON needs lists, not tuples
    save_atomic([(os.path.join(out, bundle.AE_FILE), ae.state_dict()),
                 (os.path.join(out, bundle.DENOISER_FILE), ema.state_dict()),
                 (os.path.join(out, bundle.META_FILE), json.dumps(meta, indent=1) + "\n")])
    return dict(meta, out=out, ae_steps=ae_steps, denoiser_steps=denoiser_steps)
