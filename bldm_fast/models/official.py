"""Loading the released checkpoints of ZeWang95/BinaryLatentDiffusion (and this package's own).

What the official training scripts write (``utils/log_utils.save_model``: ``torch.save`` of a
``state_dict`` to ``<log_dir>/saved_models/<name>_<step>.th``):

* autoencoder (``train_ae_dist.py``): ``binaryae_<step>.th`` and, with ``--ema``, the EMA copy
  ``binaryae_ema_<step>.th``; both are ``BinaryGAN`` state dicts, keys ``ae.encoder.*``,
  ``ae.quantize.*``, ``ae.generator.*`` plus the training-only ``disc.*`` and ``perceptual.*``
  (LPIPS). The official sampler scripts load the EMA file when it exists.
* sampler (``train_sampler_online.py``): ``bld_<step>.th`` (DDP-wrapped: keys
  ``module._denoise_fn.*``, ``module.scheduler.*``) and the EMA copy ``bld_ema_<step>.th`` (keys
  ``_denoise_fn.*``, ``scheduler.{k_final,b_final,beta,cumbeta}``); ``gen_imgs.py`` samples with
  the EMA file of the latest step.

Bare ``BinaryAutoencoder`` / ``BinaryTransformer`` state dicts (``model.state_dict()``) load too.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import torch

from ..schedule import KINDS, BernoulliSchedule
from .autoencoder import BinaryAutoencoder
from .transformer import BinaryTransformer

_FILE_RE = re.compile(r"^(binaryae|bld)(_ema)?_(\d+)\.th$")
_KIND_OF_NAME = {"binaryae": "autoencoder", "bld": "sampler"}
_AE_TRAINING_ONLY = ("disc.", "perceptual.")  # BinaryGAN parts that are not the autoencoder
_SHOW = 5


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def find_checkpoint(path, *, ema: bool = True, kind: str | None = None, step: int | None = None) -> str:
    """The checkpoint file that ``load_official`` reads for ``path``.

    A file is returned as is. In a directory (an official ``log_dir`` or its ``saved_models``) the
    official names ``binaryae[_ema]_<step>.th`` / ``bld[_ema]_<step>.th`` are searched: the EMA
    copies when ``ema`` else the raw weights, of ``kind`` ("autoencoder" or "sampler"; needed
    only when both are there), at ``step`` (default: the latest).

    Raises:
        FileNotFoundError: nothing matches. ValueError: ``kind`` is unknown or needed.
    """
    if kind not in (None, "autoencoder", "sampler"):
        raise ValueError(f"kind must be None, 'autoencoder' or 'sampler', got {kind!r}")
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"path {path!r} is neither a checkpoint file nor a directory")
    folder = os.path.join(path, "saved_models") if os.path.isdir(os.path.join(path, "saved_models")) else path
    found = []  # (kind, step, file)
    for name in os.listdir(folder):
        m = _FILE_RE.match(name)
        if m and bool(m.group(2)) == bool(ema) and (kind is None or _KIND_OF_NAME[m.group(1)] == kind):
            if step is None or int(m.group(3)) == step:
                found.append((_KIND_OF_NAME[m.group(1)], int(m.group(3)), name))
    if not found:
        what = f"{'EMA ' if ema else 'non-EMA '}{kind or 'autoencoder or sampler'} checkpoint"
        raise FileNotFoundError(
            f"no {what}{'' if step is None else f' of step {step}'} in {folder!r} (official names: "
            f"binaryae{'_ema' if ema else ''}_<step>.th, bld{'_ema' if ema else ''}_<step>.th; pass ema={not ema} "
            "for the other kind of weights)"
        )
    kinds = {f[0] for f in found}
    if len(kinds) > 1:
        raise ValueError(f"{folder!r} holds both autoencoder and sampler checkpoints: pass kind='autoencoder' or "
                         "kind='sampler'")
    return os.path.join(folder, max(found, key=lambda f: f[1])[2])


def _read_state_dict(file: str, map_location) -> dict[str, torch.Tensor]:
    sd = torch.load(file, map_location=map_location, weights_only=True)
    ok = isinstance(sd, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items())
    if not ok:
        raise ValueError(f"{file!r} is not a state_dict (a mapping of names to tensors)")
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):  # saved from a DistributedDataParallel wrapper
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# ---------------------------------------------------------------------------------------------
# strict loading
# ---------------------------------------------------------------------------------------------
def _first(keys) -> str:
    keys = list(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"):
    """``model.load_state_dict(state_dict, strict=True)`` that first checks key names and shapes.

    Raises:
        ValueError: missing keys, unexpected keys or shape mismatches, listing the first few of each.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or extra or shapes:
        found = (("missing keys", missing), ("unexpected keys", extra),
                 ("shape mismatches (checkpoint vs model)", shapes))
        parts = [f"{label}: {_first(keys)}" for label, keys in found if keys]
        raise ValueError(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
    return model


# ---------------------------------------------------------------------------------------------
# autoencoder
# ---------------------------------------------------------------------------------------------
def _block_kinds(sd: Mapping[str, torch.Tensor], prefix: str) -> list[tuple[str, dict]]:
    groups: dict[int, dict] = {}
    for k, v in sd.items():
        if k.startswith(prefix):
            idx, _, rest = k[len(prefix):].partition(".")
            if idx.isdigit():
                groups.setdefault(int(idx), {})[rest] = v
    if not groups or sorted(groups) != list(range(len(groups))):
        raise ValueError(f"cannot read the {prefix}* blocks of the checkpoint")
    out = []
    for i in range(len(groups)):
        g = groups[i]
        if "conv1.weight" in g:
            out.append(("res", g))
        elif "q.weight" in g:
            out.append(("attn", g))
        elif "conv.weight" in g:
            out.append(("resample", g))
        elif "weight" in g and g["weight"].dim() in (1, 4):
            out.append(("norm" if g["weight"].dim() == 1 else "conv", g))
        else:
            raise ValueError(f"cannot read block {prefix}{i} of the checkpoint (keys {sorted(g)})")
    return out


def _levels(body, where: str) -> list[list[tuple[str, dict]]]:
    levels: list[list] = [[]]
    for kind, g in body:
        if kind == "resample":
            levels.append([])
        elif kind in ("res", "attn"):
            levels[-1].append((kind, g))
        else:
            raise ValueError(f"unexpected {kind} block inside the {where} levels")
    return levels


def autoencoder_config(sd: Mapping[str, torch.Tensor], img_size: int = 256) -> dict:
    """``BinaryAutoencoder`` keyword arguments read off a bare autoencoder state dict's shapes.

    ``img_size`` (not stored in the weights; released models: 256) turns the levels that carry
    attention into ``attn_resolutions``. ``use_tanh`` and ``deterministic`` are not stored either
    (defaults False, as the released models).

    Raises:
        ValueError: the blocks do not have the official layout.
    """
    if "quantize.embed.weight" not in sd:
        raise ValueError("missing keys: quantize.embed.weight")
    enc = _block_kinds(sd, "encoder.blocks.")
    tail = ["res", "attn", "res", "norm", "conv"]
    if len(enc) < 7 or enc[0][0] != "conv" or [k for k, _ in enc[-5:]] != tail:
        raise ValueError("encoder.blocks do not have the official layout (conv, levels, res-attn-res, norm, conv)")
    nf, in_channels = enc[0][1]["weight"].shape[:2]
    levels = _levels(enc[1:-5], "encoder")
    counts = {sum(k == "res" for k, _ in lvl) for lvl in levels}
    if len(counts) != 1 or 0 in counts:
        raise ValueError("encoder levels have different numbers of ResBlocks")
    res_blocks = counts.pop()
    ch_mult = [[g for k, g in lvl if k == "res"][-1]["conv1.weight"].shape[0] // nf for lvl in levels]
    attn_levels = [i for i, lvl in enumerate(levels) if any(k == "attn" for k, _ in lvl)]
    if img_size % 2 ** (len(levels) - 1):
        raise ValueError(f"img_size must be a multiple of {2 ** (len(levels) - 1)}, got {img_size}")
    gen = _block_kinds(sd, "generator.blocks.")
    norm_first = gen[0][0] == "norm"
    start = 5 if norm_first else 4
    gen_levels = _levels(gen[start:-2], "generator")
    gen_blocks = sum(k == "res" for k, _ in gen_levels[0])
    gen_mul = gen_blocks / res_blocks
    while int(res_blocks * gen_mul) < gen_blocks:  # float rounding of the official int(res_blocks * gen_mul)
        gen_mul = math.nextafter(gen_mul, math.inf)
    return dict(codebook_size=sd["quantize.embed.weight"].shape[0], in_channels=int(in_channels), nf=int(nf),
                emb_dim=int(enc[-1][1]["weight"].shape[0]), ch_mult=tuple(int(m) for m in ch_mult),
                res_blocks=res_blocks, img_size=img_size,
                attn_resolutions=tuple(img_size // 2**i for i in attn_levels), norm_first=norm_first, gen_mul=gen_mul)


def _autoencoder_weights(sd: dict) -> dict:
    if any(k.startswith("ae.") for k in sd):  # a BinaryGAN state dict (the official training object)
        return {(k[3:] if k.startswith("ae.") else k): v for k, v in sd.items() if not k.startswith(_AE_TRAINING_ONLY)}
    return sd


# ---------------------------------------------------------------------------------------------
# sampler / denoiser
# ---------------------------------------------------------------------------------------------
def schedule_kind(beta: torch.Tensor) -> str | None:
    """The official ``beta_type`` whose float32 ``beta`` table equals ``beta`` (length T+1), or None."""
    T = beta.numel() - 1
    for kind in KINDS:
        ref = BernoulliSchedule(T, kind).beta
        if torch.allclose(beta.detach().cpu().float(), ref, rtol=1e-6, atol=1e-7):
            return kind
    return None


def transformer_config(sd: Mapping[str, torch.Tensor], n_head: int | None = None,
                       total_steps: int | None = None) -> dict:
    """``BinaryTransformer`` keyword arguments read off a bare denoiser state dict's shapes.

    ``n_head`` is not stored: default ``n_embd // 64`` (the released 768-wide models have 12).
    ``total_steps`` comes from the sampler checkpoint's schedule, else must be given.

    Raises:
        ValueError: keys missing, ``pos_emb`` not a square grid, ``n_head`` or ``total_steps``
            not inferable, or a cross-attention (``CrossBlock``) model.
    """
    for key in ("tok_emb.weight", "pos_emb"):
        if key not in sd:
            raise ValueError(f"missing keys: {key}")
    if any(".cross." in k or ".ln1_5." in k for k in sd):
        raise ValueError("cross-attention text-to-image denoisers (official CrossBlock) are not supported")
    codebook_size, n_embd = sd["tok_emb.weight"].shape
    L = sd["pos_emb"].shape[1]
    side = math.isqrt(L)
    if side * side != L:
        raise ValueError(f"pos_emb holds {L} positions, not a square latent grid")
    if n_head is None:
        if n_embd % 64:
            raise ValueError(f"cannot infer n_head for n_embd={n_embd} (not a multiple of 64): pass n_head=")
        n_head = n_embd // 64
    if total_steps is None:
        raise ValueError("cannot infer total_steps (the checkpoint has no scheduler tables): pass total_steps=")
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    cfg = dict(codebook_size=int(codebook_size), n_embd=int(n_embd), n_head=n_head, n_layers=len(layers),
               latent_size=side, total_steps=total_steps)
    if "cls_embedding.bias" in sd:
        cfg["cond_dim"] = int(sd["cls_embedding.weight"].shape[1])
    elif "cls_embedding.weight" in sd:
        cfg["num_classes"] = int(sd["cls_embedding.weight"].shape[0])
    return cfg


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def load_official(path, *, map_location="cpu", ema: bool = True, kind: str | None = None, step: int | None = None,
                  **overrides) -> BinaryAutoencoder | BinaryTransformer:
    """Build and strictly load the model of an official (or this package's) checkpoint.

    Args:
        path: a checkpoint file, or an official ``log_dir`` / ``saved_models`` directory (see
            ``find_checkpoint`` for ``ema``, ``kind`` and ``step``, which only apply to directories).
        map_location: passed to ``torch.load(..., weights_only=True)``.
        **overrides: constructor arguments of the model, over those read from the shapes; needed
            for what the weights do not store: autoencoder ``img_size`` (default 256), ``use_tanh``,
            ``deterministic``; denoiser ``n_head`` (default ``n_embd // 64``), ``total_steps``
            (read from sampler checkpoints' schedule), ``sample_steps``, ``fix_time_scale``.
    Returns:
        a ``BinaryAutoencoder`` or ``BinaryTransformer`` in eval mode, with ``official_info``: a dict
        with ``kind``, ``file``, ``ema`` (the file is an official ``*_ema_*`` copy), ``step`` and,
        for sampler checkpoints, ``total_steps`` and ``beta_type`` (from the scheduler tables).
    Raises:
        FileNotFoundError: no checkpoint found. ValueError: the file is not a state dict, is of
        neither kind (or not of ``kind``), or its keys or shapes do not match the model (the
        message lists the first missing / unexpected / mis-shaped keys). TypeError: an unknown
        override.
    """
    file = find_checkpoint(path, ema=ema, kind=kind, step=step)
    sd = _read_state_dict(file, map_location)
    m = _FILE_RE.match(os.path.basename(file))
    info = {"file": file, "ema": bool(m and m.group(2)), "step": int(m.group(3)) if m else None}
    if any(k.startswith("_denoise_fn.") for k in sd) or "tok_emb.weight" in sd:
        found = "sampler"
    elif any(k.startswith(("ae.", "encoder.", "quantize.", "generator.")) for k in sd):
        found = "autoencoder"
    else:
        raise ValueError(f"{file!r} is neither an autoencoder nor a sampler checkpoint (first keys: {_first(sd)})")
    if kind is not None and kind != found:
        raise ValueError(f"{file!r} is a {found} checkpoint, not a {kind} one")
    info["kind"] = found

    if found == "autoencoder":
        weights = _autoencoder_weights(sd)
        cfg = autoencoder_config(weights, img_size=overrides.get("img_size", 256))
        model = BinaryAutoencoder(**{**cfg, **overrides})
    else:
        weights, sched = {}, {}
        for k, v in sd.items():
            if k.startswith("_denoise_fn."):
                weights[k[len("_denoise_fn."):]] = v
            elif k.startswith("scheduler."):
                sched[k] = v
            else:
                weights[k] = v
        if "scheduler.beta" in sched:
            info["total_steps"] = sched["scheduler.beta"].numel() - 1
            info["beta_type"] = schedule_kind(sched["scheduler.beta"])
        total = overrides.pop("total_steps", info.get("total_steps"))
        cfg = transformer_config(weights, n_head=overrides.pop("n_head", None), total_steps=total)
        model = BinaryTransformer(**{**cfg, **overrides})
    load_state_dict_strict(model, weights, source=repr(file))
    model.official_info = info
    return model.eval()
