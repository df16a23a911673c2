"""An official sampler and its autoencoder, loaded together and checked against each other.

``load_official_models(sampler=..., autoencoder=...)`` loads the files with
:func:`~bldm_fast.models.load_official`, builds the :class:`~bldm_fast.BernoulliDiffusion` the
official ``BinaryDiffusion`` amounts to (its ``total_steps``, ``beta_type`` and ``p_flip``), and
checks the sampler's stored ``embedding_weight`` against the autoencoder's codebook. A sampler
run's ``log.txt`` also describes its autoencoder (the official sampler hparams include the
autoencoder's), so the autoencoder's settings fall back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..schedule import KINDS
from .autoencoder import BinaryAutoencoder
from .official import load_official
from .transformer import BinaryTransformer

__all__ = ["OfficialModels", "load_official_models"]


@dataclass
class OfficialModels:
    """What :func:`load_official_models` returns.

    Attributes:
        diffusion: the ``BernoulliDiffusion`` around the sampler's denoiser, or None.
        autoencoder: the ``BinaryAutoencoder``, or None.
        embedding_weight: the sampler file's ``embedding_weight``, float ``(C, emb_dim)``, or None.
        settings: ``{"sampler": {...}, "autoencoder": {...}, "diffusion": {...}}``, each setting
            the weights do not store with its ``value``, ``source`` and official ``hparam``.
        files: ``{"sampler": path, "autoencoder": path}`` of the files read.
    """

    diffusion: object | None
    autoencoder: BinaryAutoencoder | None
    embedding_weight: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)

    @property
    def denoiser(self) -> BinaryTransformer | None:
        return None if self.diffusion is None else self.diffusion.denoiser


def _p_flip(p_flip, info: dict) -> dict:
    if p_flip is not None:
        if not isinstance(p_flip, bool):
            raise TypeError(f"p_flip must be a bool or None, got {type(p_flip).__name__}")
        return {"value": p_flip, "source": "argument", "hparam": "p_flip"}
    got = info["hparams"].get("p_flip")
    if isinstance(got, bool):
        return {"value": got, "source": info["log"], "hparam": "p_flip"}
    raise ValueError(f"p_flip is not stored in {info['file']!r} and no official log.txt gives it: pass p_flip=True "
                     "(official --p_flip: the denoiser predicts which bits flip; every released sampler) or "
                     "p_flip=False")


def _beta_type(info: dict) -> dict:
    if "beta_type" in info:  # the file holds the scheduler tables
        if info["beta_type"] is None:
            raise ValueError(f"{info['file']!r}: the scheduler tables match no official beta_type ({', '.join(KINDS)})")
        return {"value": info["beta_type"], "source": "the scheduler tables", "hparam": "beta_type"}
    logged = info["hparams"].get("beta_type")
    if logged in KINDS:
        return {"value": logged, "source": info["log"], "hparam": "beta_type"}
    raise ValueError(f"the schedule is not stored in {info['file']!r} (no scheduler tables) and no official "
                     "log.txt gives it (official --beta_type): pass the sampler file the official code saved, or its "
                     "log folder")


def check_codebook(embedding_weight: torch.Tensor, autoencoder: BinaryAutoencoder, sampler_file: str,
                   autoencoder_file: str) -> None:
    """Raise ValueError when a sampler's ``embedding_weight`` is not the autoencoder's codebook."""
    code = autoencoder.quantize.embed.weight.detach()
    if tuple(embedding_weight.shape) != tuple(code.shape):
        raise ValueError(f"the sampler {sampler_file!r} was trained on another autoencoder: its embedding_weight has "
                         f"shape {tuple(embedding_weight.shape)} (codebook size, emb_dim), the autoencoder "
                         f"{autoencoder_file!r} has {tuple(code.shape)}")
    a, b = embedding_weight.detach().float().cpu(), code.float().cpu()
    if not torch.equal(a, b):
        raise ValueError(f"the sampler {sampler_file!r} was trained on another autoencoder: its embedding_weight "
                         f"differs from the codebook of {autoencoder_file!r} (max |difference| "
                         f"{(a - b).abs().max().item():.3g}; another checkpoint, step or EMA copy?)")


def load_official_models(sampler=None, autoencoder=None, *, ema: bool = True, step: int | None = None,
                         autoencoder_step: int | None = None,
                         p_flip: bool | None = None, n_head: int | None = None, sample_steps: int | None = None,
                         fix_time_scale: bool = False, img_size: int | None = None, use_tanh: bool | None = None,
                         map_location="cpu") -> OfficialModels:
    """Load an official sampler and/or autoencoder (files or log folders) as a ready pipeline.

    Args:
        sampler: ``bld[_ema]_<step>.th`` or its official log folder; None for none.
        autoencoder: ``binaryae[_ema]_<step>.th`` or its log folder; None for none.
        ema: in log folders, the EMA copies (the official sampler scripts' choice) or the raw weights.
        step, autoencoder_step: the sampler's / autoencoder's step in a log folder (default: latest).
        p_flip: whether the denoiser predicts flips (official ``--p_flip``); None: the sampler's
            log.txt, else a ValueError.
        n_head, sample_steps, fix_time_scale: the denoiser's settings (see ``load_official``).
        img_size, use_tanh: the autoencoder's settings (see ``load_official``); after its own
            log.txt, the sampler's is read, and ``img_size`` also follows from the sampler's latent grid.
        map_location: passed to ``torch.load``.
    Returns:
        an :class:`OfficialModels`.
    Raises:
        ValueError: a file of the wrong kind (an autoencoder given as the sampler or the reverse),
            a setting neither given nor found, a sampler trained on another autoencoder (codebook
            shape or values differ), and every error of ``load_official``.
        FileNotFoundError: a path does not exist.
    """
    from ..diffusion import BernoulliDiffusion

    if sampler is None and autoencoder is None:
        raise ValueError("give sampler=, autoencoder= or both")
    out = OfficialModels(None, None)
    sampler_hp: dict = {}
    sampler_log = None
    if sampler is not None:
        den = load_official(sampler, kind="sampler", ema=ema, step=step, n_head=n_head, sample_steps=sample_steps,
                            fix_time_scale=fix_time_scale or None, map_location=map_location)
        info = den.official_info
        flip = _p_flip(p_flip, info)
        kind = _beta_type(info)
        out.files["sampler"] = info["file"]
        out.embedding_weight = den.embedding_weight
        n = den.latent_size
        out.diffusion = BernoulliDiffusion(den, den.total_steps, kind["value"], latent_shape=(n, n),
                                           channels=den.codebook_size, predict_flip=flip["value"],
                                           num_classes=den.num_classes).eval()
        out.settings["sampler"] = info["settings"]
        out.settings["diffusion"] = {"p_flip": flip, "beta_type": kind}
        sampler_hp, sampler_log = {**info["hparams"]}, info["log"]
        sampler_hp.setdefault("latent_shape", [1, n, n])
    if autoencoder is not None:
        ae = load_official(autoencoder, kind="autoencoder", ema=ema, step=autoencoder_step, hparams=sampler_hp or None,
                           hparams_source=sampler_log or "the sampler's latent grid",
                           img_size=img_size, use_tanh=use_tanh, map_location=map_location)
        out.autoencoder = ae
        out.files["autoencoder"] = ae.official_info["file"]
        out.settings["autoencoder"] = ae.official_info["settings"]
        if out.diffusion is not None:
            if ae.codebook_size != out.diffusion.channels:
                raise ValueError(f"the sampler {out.files['sampler']!r} has {out.diffusion.channels} code "
                                 f"channels, the autoencoder {out.files['autoencoder']!r} {ae.codebook_size}: they do "
                                 "not belong together")
            if out.embedding_weight is not None:
                check_codebook(out.embedding_weight, ae, out.files["sampler"], out.files["autoencoder"])
    return out
