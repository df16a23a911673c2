"""Model files -> a diffusers pipeline folder, in one call or ``bldm-fast convert-pipeline``.

* :func:`pipeline_from_models`: a ``BernoulliDiffusion`` (+ ``BinaryAutoencoder``) -> pipeline.
* :func:`pipeline_from_official`: official checkpoint files or log folders (via
  :func:`bldm_fast.models.load_official_models`), a bldm_fast bundle folder, or, with neither
  path, the bundled digits model; the models ``bldm-fast sample`` would load.
* :func:`pipeline_from_run`: a ``bldm-fast train-denoiser`` run folder (its EMA weights at a
  checkpoint, as ``bldm-fast export-official`` writes them) with its autoencoder.
* :func:`convert_to_pipeline`: either of the last two, written with ``save_pretrained`` into a
  new folder (written beside it and renamed into place, so a folder that exists is complete).

The CLI functions import diffusers only when run; without it they fail with one line naming the
extra to install.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

__all__ = ["add_convert_pipeline_arguments", "convert_to_pipeline", "pipeline_from_models", "pipeline_from_official",
           "pipeline_from_run", "run_convert_pipeline"]


def pipeline_from_models(diffusion, autoencoder=None, *, divide_codes: bool = False):
    """A :class:`~bldm_fast.pipelines.BinaryLatentDiffusionPipeline` holding copies of the models.

    Args:
        diffusion: a ``BernoulliDiffusion`` whose denoiser is a ``BinaryTransformer`` (its schedule
            and ``predict_flip`` become the scheduler's config).
        autoencoder: a ``BinaryAutoencoder`` or None.
        divide_codes: decode as the official sampler scripts do for autoencoders without ``norm_first``.
    Raises:
        TypeError: other model types. ValueError: models that do not fit together.
    """
    from ..diffusion import BernoulliDiffusion, BernoulliScheduler
    from .models import BinaryAutoencoderModel, BinaryTransformerModel
    from .pipeline import BinaryLatentDiffusionPipeline

    if not isinstance(diffusion, BernoulliDiffusion):
        raise TypeError(f"diffusion must be a bldm_fast.BernoulliDiffusion, got {type(diffusion).__name__}")
    den = BinaryTransformerModel.from_transformer(diffusion.denoiser).eval()
    sched = BernoulliScheduler(diffusion.num_timesteps, diffusion.kind, predict_flip=diffusion.predict_flip)
    ae = None
    if autoencoder is not None:
        ae = BinaryAutoencoderModel.from_autoencoder(autoencoder, divide_codes=divide_codes).eval()
    return BinaryLatentDiffusionPipeline(denoiser=den, scheduler=sched, autoencoder=ae)


def pipeline_from_official(sampler=None, autoencoder=None, *, ema: bool = True, fix_time_scale: bool = False,
                           **settings):
    """The pipeline of the models ``bldm-fast sample`` loads from these paths (see
    ``bldm_fast.generate.loading.load_models``): both official files / log folders (``settings``:
    ``n_head``, ``img_size``, ``p_flip``, ``use_tanh``, ``sample_steps`` where no log.txt gives
    them), a bundle folder, or neither for the bundled digits model.

    Raises:
        ValueError / FileNotFoundError: as ``load_models`` (``load_official_models``).
    """
    from ..generate.loading import load_models

    models = load_models(sampler, autoencoder, ema=ema, fix_time_scale=fix_time_scale, **settings)
    return pipeline_from_models(models.diffusion, models.autoencoder, divide_codes=models.decode_divides)


def pipeline_from_run(run, *, step: int | None = None, autoencoder=None):
    """The pipeline of a ``bldm-fast train-denoiser`` run: the EMA denoiser of checkpoint ``step``
    (default: the newest), the run's schedule and ``p_flip``, and its autoencoder (``autoencoder``
    overrides the one the run was given; a run without one gives a codes-only pipeline).

    Raises:
        ValueError: not a run folder, no such checkpoint, an autoencoder that does not fit.
    """
    import json

    from ..models import load_official_models
    from ..train.export import export_official
    from ..train.trainer import RUN_FILE, load_autoencoder

    run = os.fspath(run)
    with tempfile.TemporaryDirectory(prefix="bldm-fast-run-") as tmp:
        res = export_official(run, tmp, step=step)
        diffusion = load_official_models(sampler=res["ema_file"]).diffusion
    with open(os.path.join(run, RUN_FILE)) as f:
        path = autoencoder if autoencoder is not None else json.load(f).get("autoencoder")
    ae = load_autoencoder(path, diffusion.channels) if path else None
    return pipeline_from_models(diffusion, ae)


def convert_to_pipeline(out, *, sampler=None, autoencoder=None, run=None, step: int | None = None,
                        ema: bool = True, fix_time_scale: bool = False, **settings) -> dict:
    """Write the pipeline of a run (``run``) or of model files (``sampler``/``autoencoder``; neither:
    the bundled digits model) to the new folder ``out`` with ``save_pretrained``.

    Returns:
        dict: ``out`` (absolute path), ``components`` (name -> class name), ``seconds``.
    Raises:
        ValueError: ``out`` exists and is not empty; ``run`` together with ``sampler`` or settings;
            every error of the loaders.
    """
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new one")
    if run is not None:
        given = [k for k, v in (("--sampler", sampler), *((k, v) for k, v in settings.items())) if v is not None]
        if given or fix_time_scale or not ema:
            raise ValueError(f"--run takes only --step and --autoencoder, not {', '.join(given) or 'those options'}")
        pipe = pipeline_from_run(run, step=step, autoencoder=autoencoder)
    else:
        if step is not None:
            raise ValueError("--step applies to --run")
        pipe = pipeline_from_official(sampler, autoencoder, ema=ema, fix_time_scale=fix_time_scale, **settings)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        pipe.save_pretrained(tmp)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    comps = {k: type(v).__name__ for k, v in pipe.components.items() if v is not None}
    return dict(out=out, components=comps, seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_convert_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast convert-pipeline`` (standard library only)."""
    p.add_argument("--out", metavar="DIR", required=True, help="the new pipeline folder (save_pretrained layout)")
    p.add_argument("--run", metavar="RUN", default=None, help="a train-denoiser run folder")
    p.add_argument("--step", type=int, default=None, help="--run: the checkpoint step (default: the newest)")
    p.add_argument("--sampler", metavar="PATH", default=None,
                   help="official bld[_ema]_<step>.th or its log folder, or a bldm_fast bundle folder "
                        "(default, with no --autoencoder and no --run: the bundled digits model)")
    p.add_argument("--autoencoder", metavar="PATH", default=None,
                   help="official binaryae[_ema]_<step>.th or its log folder (with --run: instead of the run's)")
    p.add_argument("--raw", action="store_true", help="official log folders: the raw weights instead of the EMA copy")
    p.add_argument("--fix-time-scale", action="store_true",
                   help="time input t / T * 4000 (the training scale) instead of the official t / sample_steps")
    p.add_argument("--n-head", type=int, default=None, help="official --bert_n_head when no log.txt says")
    p.add_argument("--denoiser-sample-steps", dest="sample_steps", type=int, default=None,
                   help="official --sample_steps the denoiser was built with when no log.txt says")
    p.add_argument("--img-size", type=int, default=None, help="official autoencoder --img_size when no log.txt says")
    flip = p.add_mutually_exclusive_group()
    flip.add_argument("--p-flip", dest="p_flip", action="store_const", const=True, default=None,
                      help="the sampler was trained with the official --p_flip (when no log.txt says)")
    flip.add_argument("--no-p-flip", dest="p_flip", action="store_const", const=False,
                      help="it was trained without --p_flip")
    tanh = p.add_mutually_exclusive_group()
    tanh.add_argument("--use-tanh", dest="use_tanh", action="store_const", const=True, default=None,
                      help="the autoencoder uses the official --use_tanh (when no log.txt says)")
    tanh.add_argument("--no-use-tanh", dest="use_tanh", action="store_const", const=False,
                      help="it does not")


def run_convert_pipeline(args: argparse.Namespace) -> int:
    try:
        import bldm_fast.pipelines.pipeline  # noqa: F401  (fails early without diffusers)
    except ImportError as exc:
        raise RuntimeError(str(exc)) from None
    settings = {k: getattr(args, k) for k in ("n_head", "sample_steps", "img_size", "p_flip", "use_tanh")}
    res = convert_to_pipeline(args.out, sampler=args.sampler, autoencoder=args.autoencoder, run=args.run,
                              step=args.step, ema=not args.raw, fix_time_scale=args.fix_time_scale, **settings)
    parts = ", ".join(f"{k}: {v}" for k, v in res["components"].items())
    print(f"wrote {res['out']} ({parts}) in {res['seconds']:.1f} s; load it with "
          f"BinaryLatentDiffusionPipeline.from_pretrained({res['out']!r})")
    return 0
