"""The training loop of ``bldm-fast train-denoiser``: a BinaryTransformer on a packed-latent dataset.

One step (``s``, 1-based) on each rank: read the rank's batch of the data order
(:class:`~bldm_fast.data.ContiguousBatchSampler` split across ranks), turn it into packed clean
codes (:mod:`.sources`: stored bits, a stored draw, or a fresh fused Bernoulli draw from stored
probabilities), evaluate :func:`bldm_fast.training_loss` (the official ``_train_loss``; the draws
of :mod:`.streams`), backward (DDP averages the gradients), clip/measure the gradient norm, AdamW
at the scheduled learning rate, the EMA update every ``ema_every`` steps, a metrics record,
checkpoints every ``save_every`` steps (and at the end), a sample grid every ``sample_every``
steps (with an autoencoder).

The run folder ``RUN/``:

* ``run.json``: the configuration, the dataset's identity, the world size, the autoencoder path.
  A resume must match it (apart from :data:`~bldm_fast.train.config.MUTABLE` settings) unless
  ``force``.
* ``checkpoints/step_<s>.pt`` (:mod:`.checkpoint`), ``metrics.jsonl`` (:mod:`.metrics`),
  ``samples/step_<s>.png``; with ``export_official``, ``saved_models/`` and ``log.txt``
  (:mod:`.export`), so ``RUN/`` is also an official ``log_dir``.
"""

from __future__ import annotations

import json
import math
import os
import time

import torch

from ..data.durable import write_json_atomic
from .checkpoint import latest_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, differing_settings
from .distributed import all_mean, barrier, gather_objects, process_group, resolve_device

RUN_FILE = "run.json"


# ---------------------------------------------------------------------------------------------
# setup helpers
# ---------------------------------------------------------------------------------------------
def open_dataset(path, *, verify: bool = True, codebook_size: int | None = None):
    """The dataset (:class:`~bldm_fast.data.PackedLatentDataset`) and its geometry, checked.

    Returns:
        ``(dataset, info)`` with info keys ``count, latent_hw, channels, code_mode,
        samples_per_image, with_labels, num_classes, latents_sha256``.

    Raises:
        ValueError: no ``meta.json`` (unfinished), a size or checksum mismatch (``verify``), a
            non-square latent grid, a channel count other than ``codebook_size``.
    """
    from ..data import PackedLatentDataset

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"dataset {path!r} is not a folder (write one with `bldm-fast encode`)")
    try:
        ds = PackedLatentDataset(path, verify=verify)
    except ValueError as exc:
        raise ValueError(f"dataset {path}: {exc}") from None
    h, w = ds.latent_hw
    if h != w:
        raise ValueError(f"dataset {path}: latents are {h}x{w}; BinaryTransformer needs a square grid")
    if codebook_size is not None and codebook_size != ds.channels:
        raise ValueError(f"--codebook-size {codebook_size} does not match the dataset's {ds.channels} channels "
                         f"({path}/meta.json)")
    num_classes = None
    if ds.has_labels:
        import numpy as np

        lab = np.load(os.path.join(path, "labels.npy"), mmap_mode="r")
        if lab.size and int(lab.min()) < 0:
            raise ValueError(f"dataset {path}: labels.npy holds negative labels")
        num_classes = int(lab.max()) + 1 if lab.size else None
    info = dict(count=ds.count, latent_hw=[h, w], channels=ds.channels, code_mode=ds.code_mode,
                samples_per_image=ds.samples_per_image, with_labels=ds.has_labels, num_classes=num_classes,
                latents_sha256=ds.meta["files"]["latents.npy"]["sha256"])
    return ds, info


def _run_record(cfg: TrainConfig, data: dict, world: int, autoencoder) -> dict:
    return {"format": "bldm_fast.train_run", "config": cfg.to_dict(), "dataset": data, "world_size": world,
            "autoencoder": None if autoencoder is None else os.path.abspath(os.fspath(autoencoder))}


def check_run_folder(run: str, record: dict, force: bool) -> dict | None:
    """The saved ``run.json`` of ``run`` (None for a new run), after checking it matches ``record``.

    Raises:
        ValueError: ``run`` is a non-empty folder that is not a training run, or its run has
            another configuration (naming the differing settings) and not ``force``.
    """
    path = os.path.join(run, RUN_FILE)
    if not os.path.exists(path):
        if os.path.isdir(run) and os.listdir(run):
            raise ValueError(f"--out {run} is a non-empty folder without {RUN_FILE}: not a training run; "
                             "choose a new or empty folder")
        return None
    try:
        with open(path) as f:
            saved = json.load(f)
        old = {**saved["config"], "dataset": saved["dataset"], "world_size": saved["world_size"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None
    new = {**record["config"], "dataset": record["dataset"], "world_size": record["world_size"]}
    diff = differing_settings(old, new)
    if diff and not force:
        raise ValueError(f"{run} holds a run of another configuration ({'; '.join(diff)}); refusing to resume "
                         "(use the same settings, a new --out, or --force)")
    return saved


def load_autoencoder(path, channels: int):
    """The autoencoder at ``path`` (an official file or log folder, or a bldm_fast bundle folder, as
    ``bldm-fast decode`` reads them) in eval mode, checked to have ``channels`` bits.

    Raises:
        ValueError: no autoencoder at ``path``, or another codebook size.
    """
    from ..generate.loading import load_autoencoder as load_models

    try:
        ae = load_models(path).autoencoder
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"--autoencoder {path}: {exc}") from None
    if ae.codebook_size != channels:
        raise ValueError(f"--autoencoder {path} has codebook_size {ae.codebook_size}, the dataset {channels}")
    return ae.eval()


def _precision(cfg: TrainConfig, device: torch.device):
    p = cfg.precision
    if p == "auto":
        p = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]


# ---------------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------------
def train_denoiser(dataset, out, config: TrainConfig | None = None, *, autoencoder=None, device=None,
                   codebook_size: int | None = None, force: bool = False, backend: str = "auto", **settings) -> dict:
    """Train (or resume training) a :class:`~bldm_fast.models.BinaryTransformer` on a dataset.

    Run it as one process or under ``torchrun`` (one DDP process per rank; ``batch_size`` is per
    process). Restarted with the same arguments after a crash or ``kill -9``, it resumes from the
    newest checkpoint in ``out``; on CPU in one process the losses then equal, bit for bit, those of
    an uninterrupted run.

    Args:
        dataset: a dataset folder written by ``bldm-fast encode`` (any code mode).
        out: the run folder ``RUN/`` (created; an existing run is resumed).
        config: a :class:`TrainConfig`; ``**settings`` override its fields (or build one).
        autoencoder: checkpoint of the binary autoencoder (for sample grids and the exported
            ``embedding_weight``), optional.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default CUDA when available.
        codebook_size: expected channel count (checked against the dataset).
        force: resume even when ``RUN/`` holds a run of another configuration.
        backend: backend of the fused ops.

    Returns:
        dict: ``run``, ``rank``, ``world_size``, ``step`` (last step), ``steps_run`` (this call),
        ``resumed_from`` (a step or None), ``elapsed_s``, ``summary`` (the one-line summary),
        ``records`` (this call's metrics).

    Raises:
        ValueError: bad settings; an unfinished or corrupt dataset; a channel count other than
            ``codebook_size``; a batch larger than the dataset per rank; a run folder of another
            configuration (without ``force``); an unreadable checkpoint.
        TypeError: unknown settings.
    """
    import dataclasses

    cfg = dataclasses.replace(config or TrainConfig(), **settings).validate()
    dev = resolve_device(device)
    with process_group(dev) as (rank, world):
        return _train(os.path.abspath(os.fspath(dataset)), os.path.abspath(os.fspath(out)), cfg, autoencoder, dev,
                      codebook_size, force, backend, rank, world)


def _train(dataset, run, cfg, autoencoder, dev, codebook_size, force, backend, rank, world) -> dict:
    from tqdm.auto import tqdm

    from ..data import ContiguousBatchSampler
    from ..models import BinaryTransformer
    from .ema import EMA
    from .lr_schedule import learning_rate
    from .metrics import MetricsLog, summary_line
    from .sources import StepBatches, StepReader, collate_step
    from .step import StepLoss
    from .streams import StepStreams

    # ---- data, run folder -------------------------------------------------------------------
    ds, data = open_dataset(dataset, verify=rank == 0, codebook_size=codebook_size)
    conditional = data["with_labels"] and not cfg.unconditional and data["num_classes"] is not None
    num_classes = data["num_classes"] if conditional else None
    sampler = ContiguousBatchSampler(ds.count, cfg.batch_size, run_length=cfg.run_length, seed=cfg.seed,
                                     num_replicas=world, rank=rank, drop_last=True)
    if len(sampler) == 0:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the dataset per rank ({ds.count} images / "
                         f"{world} rank{'s' if world > 1 else ''} = {sampler.per_rank})")
    record = _run_record(cfg, data, world, autoencoder)
    saved = check_run_folder(run, record, force)
    ae = load_autoencoder(autoencoder, data["channels"]) if autoencoder is not None else None
    barrier(world)  # every rank has read the folder before rank 0 writes to it
    if rank == 0:
        os.makedirs(run, exist_ok=True)
        write_json_atomic(os.path.join(run, RUN_FILE), record)

    # ---- model, EMA, optimizer --------------------------------------------------------------
    C, (side, _) = data["channels"], data["latent_hw"]
    L = side * side
    torch.manual_seed(cfg.seed)
    model = BinaryTransformer(C, n_embd=cfg.n_embd, n_head=cfg.n_head, n_layers=cfg.n_layers, latent_size=side,
                              total_steps=cfg.total_steps, num_classes=num_classes).to(dev)
    ema = EMA(model, cfg.ema_beta, cfg.ema_every)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay,
                              eps=1e-8)
    amp = _precision(cfg, dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)

    ckpt = latest_checkpoint(run, map_location=dev) if saved is not None else None
    start = 1
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"], strict=True)
            ema.load_state_dict(ckpt["ema"])
            optim.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot resume {run} from step {ckpt.get('step')}: {exc}") from None
        rngs = ckpt["rng"]
        if len(rngs) == world:
            set_rng_state(rngs[rank])
        start = int(ckpt["step"]) + 1
    resumed_from = start - 1 if ckpt is not None else None
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=conditional and cfg.label_dropout > 0)
    else:
        ddp_model = model

    streams = StepStreams(cfg.seed, rank, world, cfg.batch_size, L * C)
    step_loss = StepLoss(cfg, data["code_mode"], C, streams, num_classes, dev, amp, backend)
    schedule = step_loss.schedule
    reader = StepReader(ds, streams, labels=conditional)
    batches = StepBatches(sampler, start, cfg.steps)
    loader = torch.utils.data.DataLoader(reader, batch_sampler=batches, collate_fn=collate_step,
                                         num_workers=cfg.num_workers, pin_memory=dev.type == "cuda")
    log = MetricsLog(run, start - 1) if rank == 0 else None

    # ---- the loop ---------------------------------------------------------------------------
    t0 = time.time()
    records: list[dict] = []
    bar = tqdm(total=cfg.steps, initial=start - 1, desc="train-denoiser", unit="step",
               disable=not cfg.progress or rank != 0, dynamic_ncols=True)
    model.train()
    last = start - 1
    try:
        t_step = time.perf_counter()
        for codes, labels, step in loader:
            lr = learning_rate(step, cfg.lr, cfg.warmup_steps)
            for group in optim.param_groups:
                group["lr"] = lr
            out = step_loss(ddp_model, codes, labels, step)
            scaler.scale(out["loss"]).backward()
            scaler.unscale_(optim)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
            scaler.step(optim)
            scaler.update()
            optim.zero_grad(set_to_none=True)
            if ema.due(step):
                ema.update(model)
            last = step

            if step % cfg.log_every == 0 or step == cfg.steps:
                aux = float(out["aux_loss"]) if "aux_loss" in out else math.nan
                loss, bce, acc, aux = all_mean([float(out["loss"].detach()), float(out["bce_loss"]),
                                                float(out["acc"]), aux], world, dev)
                now = time.perf_counter()
                rec = dict(step=step, loss=loss, bce=bce, acc=acc, aux=None if math.isnan(aux) else aux, lr=lr,
                           grad_norm=float(grad_norm), samples_per_s=cfg.batch_size * world / max(now - t_step, 1e-9),
                           time=time.time() - t0, epoch=(step - 1) // batches.per_epoch)
                if log is not None:
                    log.write(rec)
                records.append(rec)
                bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rec['samples_per_s']:.0f}", refresh=False)
            if cfg.save_every and step % cfg.save_every == 0:
                _save(run, cfg, record, step, batches, model, ema, optim, scaler, lr, world, rank)
            if ae is not None and cfg.sample_every and step % cfg.sample_every == 0 and rank == 0:
                from .samples import save_sample_grid

                save_sample_grid(ema.module, ae, schedule, os.path.join(run, "samples", f"step_{step}.png"),
                                 count=cfg.sample_count, seed=cfg.seed, num_classes=num_classes, backend=backend)
            bar.update(1)
            t_step = time.perf_counter()
        if last >= start and (not cfg.save_every or last % cfg.save_every):
            _save(run, cfg, record, last, batches, model, ema, optim, scaler,
                  learning_rate(last, cfg.lr, cfg.warmup_steps), world, rank)
    finally:
        bar.close()
        if log is not None:
            log.close()
    elapsed = time.time() - t0
    from .metrics import read_metrics

    summary = summary_line(read_metrics(run) if rank == 0 else records, steps_done=max(0, last - start + 1),
                           elapsed=elapsed, run=run)
    if cfg.export_official and rank == 0 and last >= 1:
        from .export import export_official

        export_official(run, autoencoder=autoencoder)
    return dict(run=run, rank=rank, world_size=world, step=last, steps_run=max(0, last - start + 1),
                resumed_from=resumed_from,
                elapsed_s=elapsed, summary=summary, records=records)


def _save(run, cfg, record, step, batches, model, ema, optim, scaler, lr, world, rank):
    """Checkpoint after ``step`` (every rank's RNG states gathered; rank 0 writes)."""
    rngs = gather_objects(rng_state(), world)
    if rank != 0:
        return
    epoch, batch = divmod(step, batches.per_epoch)
    save_checkpoint(run, dict(step=step, epoch=epoch, batch=batch, config=record["config"], dataset=record["dataset"],
                              world_size=world, model=model.state_dict(), ema=ema.state_dict(),
                              optimizer=optim.state_dict(), scaler=scaler.state_dict(),
                              lr=dict(base=cfg.lr, warmup_steps=cfg.warmup_steps, last=lr), rng=rngs), keep=cfg.keep)
