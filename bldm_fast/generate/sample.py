"""``bldm-fast sample``: images from official checkpoints, a bldm_fast model bundle or the bundled digits model.

Writes into ``--out`` (a new or empty folder; written under a temporary name and renamed at the end):

* ``codes.npy``: the packed uint8 codes ``(N, L, ceil(C/8))``, the layout ``encode`` writes;
* ``images/<i>.png``: one PNG per sample; ``grid.png``: all of them, laid out like torchvision's
  ``save_image(images, nrow=--nrow, padding=--padding)`` (no enlargement unless ``--upscale``);
* ``sample.json``: every setting (seed, steps and grid, temperature, guidance, labels, backend,
  the model's files with sha256 and each setting the weights do not store with its source,
  versions).

Sample ``i`` draws from element ``i * L * C`` of every region of the seed's stream (DESIGN.md
section 4), so the codes do not depend on ``--batch-size`` or on the number of processes: under
``torchrun`` each rank samples its slice and decodes its share of the decode batches, rank 0
writes the files, and they equal one process's.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from .decode import add_image_arguments, check_image_arguments, decode_codes, write_images

__all__ = ["add_sample_arguments", "run_sample", "sample_codes"]


def add_sample_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast sample`` (standard library only)."""
    p.add_argument("--sampler", metavar="PATH", default=None,
                   help="official bld[_ema]_<step>.th or its log folder, or a bldm_fast bundle folder "
                        "(default, with no --autoencoder: the bundled digits model)")
    p.add_argument("--autoencoder", metavar="PATH", default=None,
                   help="official binaryae[_ema]_<step>.th or its log folder (required with an official --sampler)")
    p.add_argument("--num", "--num-samples", dest="num", type=int, default=64,
                   help="samples to draw (default 64; under torchrun write --num-samples: torchrun takes --num "
                        "for its own --numa-binding)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the denoiser's sample_steps when known, else T)")
    p.add_argument("--temperature", type=float, default=1.0, help="logits are divided by it (default 1.0)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance g (needs --labels)")
    p.add_argument("--labels", default=None,
                   help="class-conditional samplers: one label for all, one per sample (comma-separated), 'cycle' "
                        "(the classes in turn: 0, 1, ..., the default) or 'none' for unconditional samples")
    p.add_argument("--seed", type=int, default=0, help="Philox seed of the sampling stream (default 0)")
    p.add_argument("--backend", default="auto", help="bldm_fast backend of the sampling step (default auto)")
    p.add_argument("--fix-time-scale", action="store_true",
                   help="time input t / T * 4000 (the training scale) instead of the official t / sample_steps")
    p.add_argument("--n-head", type=int, default=None, help="official --bert_n_head when no log.txt says")
    p.add_argument("--denoiser-sample-steps", type=int, default=None,
                   help="official --sample_steps the denoiser was built with (its time scale) when no log.txt says")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--p-flip", dest="p_flip", action="store_const", const=True, default=None,
                      help="the sampler was trained with the official --p_flip (when no log.txt says)")
    flip.add_argument("--no-p-flip", dest="p_flip", action="store_const", const=False,
                      help="it was trained without --p_flip")
    add_image_arguments(p)


def _labels(spec: str | None, diffusion, num: int):
    import torch

    conditional = diffusion.num_classes is not None
    if getattr(diffusion.denoiser, "cond_dim", None) is not None:
        raise ValueError("text-conditional (official laion, cond_dim) samplers need text embeddings; bldm-fast sample "
                         "does not support them")
    if spec is None:
        spec = "cycle" if conditional else "none"
    if spec.strip().lower() == "none":
        return None
    if not conditional:
        raise ValueError("--labels: this sampler is unconditional")
    if spec.strip().lower() == "cycle":
        return torch.arange(num, dtype=torch.long) % diffusion.num_classes
    try:
        values = [int(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError(f"--labels {spec!r}: expected integers separated by commas, or 'none'") from None
    if len(values) not in (1, num):
        raise ValueError(f"--labels: give one label or --num = {num} labels, got {len(values)}")
    bad = [v for v in values if not 0 <= v < diffusion.num_classes]
    if bad:
        raise ValueError(f"--labels: {bad[0]} is not a class of this sampler (0..{diffusion.num_classes - 1})")
    return torch.tensor(values * num if len(values) == 1 else values, dtype=torch.long)


def sample_codes(diffusion, *, num: int, batch_size: int, steps: int | None, temperature: float = 1.0,
                 guidance: float | None = None, labels=None, seed: int = 0, backend: str = "auto", device="cpu",
                 rank: int = 0, world: int = 1, progress: bool = False):
    """This rank's rows of ``num`` samples, in batches of ``batch_size``; sample ``i`` takes
    element ``i * L * C`` of every region of the seed's stream.

    Returns:
        ``(codes, prepared)``: uint8 ``(n, L, ceil(C/8))`` of rows ``b0 .. b0 + n`` (see
        ``bldm_fast.diffusion.distributed.batch_slice``) and ``diffusion.prepare_sampling``'s dict.
    Raises:
        ValueError: as ``BernoulliDiffusion.sample``; ``L * C`` not a multiple of 4 when the rows
            are split into batches or over processes.
    """
    import torch
    from tqdm.auto import tqdm

    from ..diffusion.diffusion import sample_loop
    from ..diffusion.distributed import batch_slice
    from ..diffusion.grid import reserve_stream

    a = diffusion.prepare_sampling(num, labels, steps, temperature, guidance, None, None, device)
    s, base = reserve_stream(None, seed, 0, len(a["grid"]))
    L, C = diffusion.length, diffusion.channels
    if (L * C) % 4 and (batch_size < num or world > 1):
        raise ValueError(f"--batch-size {batch_size} < --num {num} (or torchrun) needs L * C % 4 == 0 so that each "
                         f"batch starts on a Philox counter; got L * C = {L * C}: pass --batch-size {num}")
    b0, n = batch_slice(num, world, rank)
    parts = []
    starts = range(b0, b0 + n, batch_size)
    for start in tqdm(starts, desc="sample", unit="batch", disable=not progress):
        end = min(start + batch_size, b0 + n)
        lab = a["labels"][start:end] if a["labels"] is not None else None
        x, _ = sample_loop(diffusion.model_fn(lab, a["guidance"]), diffusion.schedule, a["grid"],
                           batch_size=end - start, length=L, channels=C, device=a["device"], seed=s, base=base,
                           element_start=start * L * C, temperature=a["temperature"], guidance=a["guidance"],
                           predict_flip=diffusion.predict_flip, backend=backend, progress=progress,
                           input_dtype=diffusion.input_dtype, shape_hint=diffusion._shape_hint())
        parts.append(x)
    nb = (C + 7) // 8
    codes = torch.cat(parts) if parts else torch.empty((0, L, nb), dtype=torch.uint8, device=a["device"])
    return codes, a


def _check_args(args) -> None:
    check_image_arguments(args)
    for name, low in (("num", 1), ("steps", 1), ("n_head", 1), ("denoiser_sample_steps", 1)):
        v = getattr(args, name)
        if v is not None and v < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {v}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ValueError(f"--temperature must be a finite number > 0, got {args.temperature}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise ValueError(f"--guidance must be finite, got {args.guidance}")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2^64), got {args.seed}")


def _model_record(models, diffusion) -> dict:
    den = diffusion.denoiser
    ae_settings = models.settings.get("autoencoder", {})
    return {"source": models.source, "files": models.files, "settings": models.settings,
            "num_timesteps": diffusion.num_timesteps, "beta_type": diffusion.kind,
            "predict_flip": diffusion.predict_flip, "latent_shape": list(diffusion.latent_shape),
            "channels": diffusion.channels, "num_classes": diffusion.num_classes,
            "denoiser_time_scale_steps": den.time_scale_steps() if hasattr(den, "time_scale_steps") else None,
            "fix_time_scale": bool(getattr(den, "fix_time_scale", False)),
            "autoencoder_settings": {k: ae_settings[k]["value"] for k in ("img_size", "use_tanh") if k in ae_settings}}


def run_sample(args: argparse.Namespace) -> int:
    """Run ``bldm-fast sample``; errors are raised as ValueError/RuntimeError/OSError (one line from the CLI)."""
    import numpy as np
    import torch

    from ..diffusion.distributed import _gather_rows, batch_slice
    from .loading import load_models
    from .outputs import OutputDir
    from .runtime import Ranks, check_backend, check_device, check_json_path, cli_warnings, versions, write_json

    t0 = time.perf_counter()
    _check_args(args)
    check_json_path(args.json)
    device = check_device(args.device)
    backend_used = check_backend(args.backend, device)
    ranks = Ranks(device.type)
    if ranks.on and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    progress = not (args.no_progress or args.quiet) and ranks.rank == 0
    out = None
    try:
        with cli_warnings("sample"):
            err = None
            try:
                out = OutputDir(args.out, args.overwrite, create=ranks.rank == 0)
                models = load_models(args.sampler, args.autoencoder, ema=not args.no_ema,
                                     fix_time_scale=args.fix_time_scale, n_head=args.n_head, img_size=args.img_size,
                                     p_flip=args.p_flip, use_tanh=args.use_tanh,
                                     sample_steps=args.denoiser_sample_steps)
                diffusion = models.diffusion.to(device).eval()
                ae = models.autoencoder.to(device).eval()
                labels = _labels(args.labels, diffusion, args.num)
                den_steps = getattr(diffusion.denoiser, "sample_steps", None)
                steps = args.steps or (den_steps if den_steps and den_steps <= diffusion.num_timesteps else None)
            except Exception as exc:  # noqa: BLE001 - shared with the other ranks, then re-raised
                err = exc
            ranks.agree(err)
            t1 = time.perf_counter()
            codes, prep = sample_codes(diffusion, num=args.num, batch_size=args.batch_size, steps=steps,
                                       temperature=args.temperature, guidance=args.guidance, labels=labels,
                                       seed=args.seed, backend=args.backend, device=device, rank=ranks.rank,
                                       world=ranks.world, progress=progress)
            if ranks.on:
                counts = [batch_slice(args.num, ranks.world, r)[1] for r in range(ranks.world)]
                codes = _gather_rows(codes, counts, 0, None)
            t_sample = time.perf_counter() - t1
            codes = codes.cpu()
            n_batches = math.ceil(args.num / args.batch_size)
            parts = decode_codes(ae, codes.numpy(), diffusion.latent_shape, divide=models.decode_divides,
                                 batch_size=args.batch_size, device=device,
                                 batches=range(ranks.rank, n_batches, ranks.world), progress=progress)
            if ranks.on:
                everyone = [None] * ranks.world
                ranks.dist.all_gather_object(everyone, parts)
                parts = {j: p for d in everyone for j, p in d.items()}
            t_decode = time.perf_counter() - t1 - t_sample
            record = {
                "command": "sample", "num": args.num, "batch_size": args.batch_size, "steps": len(prep["grid"]),
                "grid": prep["grid"], "temperature": prep["temperature"], "guidance": prep["guidance"],
                "labels": None if labels is None else labels.tolist(), "seed": args.seed, "stream_offset": 0,
                "backend": args.backend, "backend_used": backend_used, "device": str(device),
                "model": _model_record(models, diffusion),
                "decode": {"divide_by_codebook_size": models.decode_divides, "batch_size": args.batch_size},
                "outputs": {"codes": "codes.npy", "images": "images/<index>.png", "grid": "grid.png",
                            "nrow": args.nrow, "padding": args.padding, "upscale": args.upscale},
                "versions": versions(),
            }
            if ranks.rank == 0:
                pixels = torch.cat([parts[j] for j in sorted(parts)])
                if models.source == "bundled":  # the digits classifier scores what the bundled model draws
                    from ..quality import quality_report

                    record["quality"] = quality_report(pixels.float() / 255)
                np.save(out.path("codes.npy"), codes.numpy())
                write_images(out.tmp, pixels, range(args.num), args.num, nrow=args.nrow, padding=args.padding,
                             upscale=args.upscale, progress=progress)
                write_json(record, out.path("sample.json"))
                out.commit()
            ranks.agree()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        ranks.close()
    if ranks.rank == 0:
        summary = {**record, "out": out.out, "world_size": ranks.world,
                   "seconds": {"sample": t_sample, "decode_all_ranks": t_decode, "total": time.perf_counter() - t0}}
        if not args.quiet:
            print(f"sampled {args.num} image(s) in {len(prep['grid'])} steps ({models.source} model, backend "
                  f"{backend_used}, seed {args.seed}) into {out.out}: codes.npy, images/*.png, grid.png, sample.json "
                  f"({t_sample:.2f} s sampling, {t_decode:.2f} s decoding)",
                  file=sys.stderr if args.json == "-" else sys.stdout)
            if "quality" in record:
                from ..quality import format_quality

                print("\n".join(format_quality(record["quality"])), file=sys.stderr if args.json == "-" else sys.stdout)
        if args.json:
            write_json(summary, args.json)
    return 0
