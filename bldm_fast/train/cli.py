"""``bldm-fast train-denoiser DATASET --out RUN``: the command line of :func:`train_denoiser`.

Under ``torchrun --nproc_per_node N -m bldm_fast train-denoiser ...`` every process is one DDP
rank (gloo on CPU, nccl on CUDA); ``--batch-size`` is per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .config import PRECISIONS, TrainConfig


def add_train_denoiser_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("dataset", metavar="DATASET", help="a packed-latent dataset folder (bldm-fast encode)")
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder (an existing run is resumed)")
    p.add_argument("--autoencoder", metavar="CKPT", default=None,
                   help="binary autoencoder checkpoint: sample grids (--sample-every) and embedding_weight in exports")
    g = p.add_argument_group("model (latent size and channels come from the dataset)")
    g.add_argument("--n-embd", type=int, default=d.n_embd, help=f"transformer width (default {d.n_embd})")
    g.add_argument("--n-head", type=int, default=d.n_head, help=f"attention heads (default {d.n_head})")
    g.add_argument("--n-layers", type=int, default=d.n_layers, help=f"transformer blocks (default {d.n_layers})")
    g.add_argument("--codebook-size", type=int, default=None,
                   help="expected bits per token; an error when the dataset has another channel count")
    g.add_argument("--unconditional", action="store_true",
                   help="ignore the dataset's labels (default: class-conditional when it has labels)")
    g = p.add_argument_group("diffusion and loss (the official _train_loss options)")
    g.add_argument("--total-steps", type=int, default=d.total_steps, help=f"T (default {d.total_steps})")
    g.add_argument("--beta-type", choices=("linear", "cos", "sigmoid"), default=d.beta_type,
                   help=f"noise schedule (default {d.beta_type})")
    g.add_argument("--p-flip", action=argparse.BooleanOptionalAction, default=d.p_flip,
                   help="predict bit flips (official --p_flip; default on)")
    g.add_argument("--focal", type=float, default=d.focal,
                   help=f"focal gamma; < 0: plain BCE (default {d.focal}: the class-balanced flip BCE)")
    g.add_argument("--aux", type=float, default=d.aux, help=f"auxiliary posterior loss weight (default {d.aux})")
    g.add_argument("--loss-final", choices=("weighted", "mean"), default=d.loss_final,
                   help=f"time weighting of the loss (default {d.loss_final}, as the official training command)")
    g.add_argument("--label-dropout", type=float, default=d.label_dropout,
                   help=f"probability of dropping a batch's labels, for guidance (default {d.label_dropout})")
    g = p.add_argument_group("optimisation (official recipe: AdamW betas 0.9/0.95)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"per process (default {d.batch_size})")
    g.add_argument("--run-length", type=int, default=None,
                   help="contiguous dataset rows per shuffled run (default: --batch-size; smaller mixes more)")
    g.add_argument("--lr", type=float, default=d.lr, help=f"learning rate after warm-up (default {d.lr})")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help=f"linear warm-up from 1e-6 (default {d.warmup_steps})")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default {d.weight_decay})")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm, 0: none (default 0)")
    g.add_argument("--ema-beta", type=float, default=d.ema_beta, help=f"(default {d.ema_beta})")
    g.add_argument("--ema-every", type=int, default=d.ema_every, help=f"EMA update period (default {d.ema_every})")
    g.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 autocast on CUDA, float32 on CPU (default auto)")
    g.add_argument("--steps", type=int, default=d.steps, help=f"train up to this step (default {d.steps})")
    g.add_argument("--seed", type=int, default=d.seed, help=f"(default {d.seed})")
    g = p.add_argument_group("run")
    g.add_argument("--save-every", type=int, default=d.save_every,
                   help=f"checkpoint period in steps, 0: only at the end (default {d.save_every})")
    g.add_argument("--keep", type=int, default=d.keep, help=f"checkpoints kept (default {d.keep})")
    g.add_argument("--sample-every", type=int, default=d.sample_every,
                   help=f"PNG sample grid period (needs --autoencoder; 0: never; default {d.sample_every})")
    g.add_argument("--sample-count", type=int, default=d.sample_count, help=f"(default {d.sample_count})")
    g.add_argument("--log-every", type=int, default=d.log_every, help="metrics.jsonl period (default 1)")
    g.add_argument("--export-official", action="store_true",
                   help="at the end, also write RUN/saved_models/bld_ema_<step>.th and RUN/log.txt")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    g.add_argument("--num-workers", type=int, default=d.num_workers,
                   help=f"DataLoader workers (default {d.num_workers})")
    g.add_argument("--force", action="store_true", help="resume RUN even if its configuration differs")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"progress"}
    return TrainConfig(**{n: getattr(args, n) for n in names}, progress=not args.no_progress)


def run_train_denoiser(args: argparse.Namespace) -> int:
    from .trainer import train_denoiser

    res = train_denoiser(args.dataset, args.out, config_from_args(args), autoencoder=args.autoencoder,
                         device=args.device, codebook_size=args.codebook_size, force=args.force)
    if res["rank"] == 0:
        print(res["summary"], file=sys.stdout)
    return 0
