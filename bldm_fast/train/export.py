"""``bldm-fast export-official RUN``: a training run as the files the official code writes.

The official ``train_sampler_online.py`` saves, with ``utils/log_utils.save_model``
(``torch.save(module.state_dict(), <log_dir>/saved_models/<name>_<step>.th)``), a
``BinaryDiffusion`` state dict, whose entries are

* ``_denoise_fn.*``: the ``TransformerBD`` weights (``BinaryTransformer`` has the same keys);
* ``scheduler.k_final``, ``scheduler.b_final``, ``scheduler.beta``, ``scheduler.cumbeta``:
  float32 ``(T + 1,)`` buffers of ``noise_scheduler`` (``cumbeta = cumprod(beta)``);
* ``embedding_weight``: the autoencoder's codebook ``quantize.embed.weight``, ``(C, emb_dim)``
  (a parameter of the sampler object, assigned from the autoencoder).

``bld_ema_<step>.th`` is the EMA copy (not wrapped, keys as above) that ``gen_imgs.py`` and
:func:`bldm_fast.load_official` read; ``bld_<step>.th`` the raw weights as a DDP run saves them
(every key under ``module.``). ``log.txt`` holds what ``start_training_log`` logs: ``Using
following hparams:`` then ``> key: value`` for each hyperparameter in sorted order, each line
with the ``logging`` prefix ``<asctime> - ``. Optimizer and scaler states are not exported (the
official names would be ``bld_optim_<step>.th`` for *its* parameter order); resume from the
bldm_fast checkpoints instead. The exported step is the number of updates done.

Without an autoencoder, ``embedding_weight`` is left out (the official loader uses
``strict=False``; pass ``--autoencoder`` to get a complete file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

import torch

LOG_FILE = "log.txt"
SAVED_MODELS = "saved_models"


def scheduler_buffers(total_steps: int, beta_type: str) -> dict[str, torch.Tensor]:
    """The official ``noise_scheduler`` buffers, float32 ``(T + 1,)`` each, keyed ``scheduler.*``."""
    from ..schedule import BernoulliSchedule

    s = BernoulliSchedule(total_steps, beta_type)
    beta = s.beta.clone()
    return {"scheduler.k_final": s.k.clone(), "scheduler.b_final": s.b.clone(), "scheduler.beta": beta,
            "scheduler.cumbeta": torch.cumprod(beta, 0)}


def official_hparams(run_record: dict, step: int, batch_size: int, ae=None) -> dict:
    """The official hyperparameters (``H``) of a run, as ``train_sampler_online.py`` would log them."""
    cfg, data = run_record["config"], run_record["dataset"]
    h, w = data["latent_hw"]
    conditional = data["with_labels"] and not cfg["unconditional"] and data.get("num_classes") is not None
    H = dict(
        sampler="bld", dataset="imagenet" if conditional else "custom", codebook_size=data["channels"],
        latent_shape=[1, h, w], block_size=h * w, bert_n_emb=cfg["n_embd"], bert_n_head=cfg["n_head"],
        bert_n_layers=cfg["n_layers"], total_steps=cfg["total_steps"], sample_steps=cfg["total_steps"],
        beta_type=cfg["beta_type"], p_flip=cfg["p_flip"], focal=cfg["focal"], aux=cfg["aux"],
        loss_final=cfg["loss_final"], lr=cfg["lr"], warmup_iters=cfg["warmup_steps"],
        weight_decay=cfg["weight_decay"], grad_norm=cfg["grad_clip"], batch_size=batch_size, ema=True,
        ema_beta=cfg["ema_beta"], steps_per_update_ema=cfg["ema_every"], train_steps=cfg["steps"],
        steps_per_checkpoint=cfg["save_every"], amp=cfg["precision"] in ("fp16", "bf16"),
        guidance=conditional and cfg["label_dropout"] > 0, update_freq=1, attn_pdrop=0.0, embd_pdrop=0.0,
        resid_pdrop=0.0, drop_path=0.0, use_softmax=False, load_step=step, world_size=run_record["world_size"],
    )
    if conditional:
        H["num_classes"] = data["num_classes"]
    if ae is not None:
        H.update(emb_dim=ae.emb_dim, norm_first=ae.norm_first, use_tanh=ae.use_tanh,
                 nf=ae.nf, ch_mult=list(ae.ch_mult), res_blocks=ae.res_blocks,
                 attn_resolutions=list(ae.attn_resolutions), gen_mul=ae.gen_mul)
    return H


def _log_lines(H: dict) -> str:
    """``start_training_log``'s lines with the official ``logging`` format ``%(asctime)s - %(message)s``."""
    fmt = logging.Formatter("%(asctime)s - %(message)s")

    def line(msg: str) -> str:
        rec = logging.LogRecord("root", logging.INFO, __file__, 0, msg, None, None)
        return fmt.format(rec)

    out = [line("---------------------------------"), line("Setting up training for bld"),
           line("Using following hparams:")]
    out += [line(f"> {key}: {H[key]}") for key in sorted(H)]
    return "\n".join(out) + "\n"


def _write_atomic(path: str, save) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        save(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def export_official(run, out=None, *, step: int | None = None, autoencoder=None) -> dict:
    """Write the official-layout files of a training run.

    Args:
        run: the ``RUN/`` folder of ``train-denoiser``.
        out: where to write ``saved_models/`` and ``log.txt`` (default: ``run`` itself, which then
            reads as an official ``log_dir`` too).
        step: the checkpoint to export (default: the newest).
        autoencoder: autoencoder checkpoint for ``embedding_weight`` (default: the run's).

    Returns:
        dict: ``ema_file``, ``raw_file``, ``log_file``, ``step``, ``embedding_weight`` (bool).

    Raises:
        ValueError: ``run`` is not a training run, has no (such) checkpoint, or the autoencoder
            does not fit.
    """
    from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
    from .trainer import RUN_FILE, load_autoencoder

    run = os.path.abspath(os.fspath(run))
    rec_path = os.path.join(run, RUN_FILE)
    if not os.path.exists(rec_path):
        raise ValueError(f"{run} is not a train-denoiser run folder (no {RUN_FILE})")
    with open(rec_path) as f:
        record = json.load(f)
    if step is None:
        ckpt = latest_checkpoint(run)
    else:
        paths = dict(list_checkpoints(run))
        if step not in paths:
            raise ValueError(f"{run} has no checkpoint of step {step} (has: {sorted(paths) or 'none'})")
        ckpt = load_checkpoint(paths[step])
    if ckpt is None:
        raise ValueError(f"{run} has no checkpoint yet (train for at least --save-every steps)")
    step = int(ckpt["step"])
    cfg = ckpt["config"]
    autoencoder = autoencoder if autoencoder is not None else record.get("autoencoder")
    ae = load_autoencoder(autoencoder, record["dataset"]["channels"]) if autoencoder else None
    extra = scheduler_buffers(cfg["total_steps"], cfg["beta_type"])
    if ae is not None:
        extra["embedding_weight"] = ae.quantize.embed.weight.detach().cpu().float().clone()
    ema = {f"_denoise_fn.{k}": v.cpu() for k, v in ckpt["ema"].items()}
    raw = {f"module._denoise_fn.{k}": v.cpu() for k, v in ckpt["model"].items()}
    raw.update({f"module.{k}": v for k, v in extra.items()})
    ema.update(extra)

    out = os.path.abspath(os.fspath(out)) if out is not None else run
    folder = os.path.join(out, SAVED_MODELS)
    os.makedirs(folder, exist_ok=True)
    ema_file = os.path.join(folder, f"bld_ema_{step}.th")
    raw_file = os.path.join(folder, f"bld_{step}.th")
    _write_atomic(ema_file, lambda f: torch.save(ema, f))
    _write_atomic(raw_file, lambda f: torch.save(raw, f))
    log_file = os.path.join(out, LOG_FILE)
    H = official_hparams({**record, "config": cfg}, step, cfg["batch_size"], ae)
    H["log_dir"] = out
    H["ae_load_dir"] = "" if not autoencoder else os.path.abspath(os.fspath(autoencoder))
    _write_atomic(log_file, lambda f: f.write(_log_lines(H).encode()))
    return dict(ema_file=ema_file, raw_file=raw_file, log_file=log_file, step=step, embedding_weight=ae is not None)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_export_official_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a train-denoiser run folder")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write saved_models/ and log.txt (default: RUN itself)")
    p.add_argument("--step", type=int, default=None, help="the checkpoint step to export (default: the newest)")
    p.add_argument("--autoencoder", metavar="CKPT", default=None,
                   help="autoencoder checkpoint for embedding_weight (default: the one the run was given)")


def run_export_official(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    res = export_official(args.run, args.out, step=args.step, autoencoder=args.autoencoder)
    note = "" if res["embedding_weight"] else " (no embedding_weight: pass --autoencoder)"
    print(f"exported step {res['step']}: {res['ema_file']}, {res['raw_file']}, {res['log_file']}{note} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
