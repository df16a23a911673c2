"""Loading the checkpoints of ZeWang95/BinaryLatentDiffusion (and bare state dicts of this package's models).

What the official training scripts write (``utils/log_utils.save_model``: ``torch.save`` of a
``state_dict`` to ``<log_dir>/saved_models/<name>_<step>.th``, next to ``<log_dir>/log.txt``,
where ``start_training_log`` wrote every hparam as a ``> key: value`` line):

* autoencoder (``train_ae_dist.py``): ``binaryae_<step>.th`` and, with ``--ema``, the EMA copy
  ``binaryae_ema_<step>.th``; both are ``BinaryGAN`` state dicts saved without the DDP wrapper:
  keys ``ae.encoder.*``, ``ae.quantize.*``, ``ae.generator.*`` plus the training-only ``disc.*``
  and ``perceptual.*`` (LPIPS), which are dropped. The sampler scripts take the EMA file when it exists.
* sampler (``train_sampler_online.py``): the official ``BinaryDiffusion`` (a ``Sampler``) holds
  ``embedding_weight`` (the autoencoder's codebook ``quantize.embed.weight``, shape
  ``(codebook_size, emb_dim)``, registered as a parameter), ``_denoise_fn.*`` (the ``TransformerBD``)
  and ``scheduler.{k_final,b_final,beta,cumbeta}``. ``bld_<step>.th`` is saved from the
  DistributedDataParallel wrapper in multi-GPU runs (every key prefixed ``module.``), the EMA copy
  ``bld_ema_<step>.th`` from the bare module; ``gen_imgs.py`` samples with the EMA file.

Settings that the weights do not store are resolved, in this order, from an argument, the run's
``log.txt`` (see :mod:`.official_log`), what the tensors determine, and, only where the official
code documents a default that this package can trust, that default with a ``warnings.warn``
naming it; otherwise a ``ValueError`` names the argument and the official flag.
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping

import torch

from ..schedule import KINDS, BernoulliSchedule
from .autoencoder import BinaryAutoencoder
from .checkpoint_file import read_state_dict
from .official_log import find_log, read_hparams
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
        FileNotFoundError: ``path`` does not exist. ValueError: a directory without a matching
            checkpoint (the message lists what it looked for), ``kind`` unknown or needed.
    """
    if kind not in (None, "autoencoder", "sampler"):
        raise ValueError(f"kind must be None, 'autoencoder' or 'sampler', got {kind!r}")
    path = os.fspath(path)
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist")
    folder = os.path.join(path, "saved_models") if os.path.isdir(os.path.join(path, "saved_models")) else path
    found = []  # (kind, step, file)
    for name in os.listdir(folder):
        m = _FILE_RE.match(name)
        if m and bool(m.group(2)) == bool(ema) and (kind is None or _KIND_OF_NAME[m.group(1)] == kind):
            if step is None or int(m.group(3)) == step:
                found.append((_KIND_OF_NAME[m.group(1)], int(m.group(3)), name))
    if not found:
        what = f"{'EMA ' if ema else 'non-EMA '}{kind or 'autoencoder or sampler'} checkpoint"
        raise ValueError(
            f"no {what}{'' if step is None else f' of step {step}'} in {folder!r} (official names: "
            f"binaryae{'_ema' if ema else ''}_<step>.th, bld{'_ema' if ema else ''}_<step>.th; pass ema={not ema} "
            "for the other kind of weights)"
        )
    kinds = {f[0] for f in found}
    if len(kinds) > 1:
        raise ValueError(f"{folder!r} holds both autoencoder and sampler checkpoints: pass kind='autoencoder' or "
                         "kind='sampler'")
    return os.path.join(folder, max(found, key=lambda f: f[1])[2])


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

    ``n_head`` is not stored in the weights and must be given (``load_official`` resolves it from
    an argument or the run's ``log.txt``). ``total_steps`` comes from the sampler checkpoint's
    schedule, else must be given.

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
        raise ValueError("n_head is not stored in the weights: pass n_head= (official --bert_n_head)")
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
# settings the weights do not store
# ---------------------------------------------------------------------------------------------
_MISSING = object()


class _Settings:
    """Resolves settings for one file: argument, then each hparam source, then inferred, then an
    official default (collected for one warning), else a ValueError naming the argument and flag."""

    def __init__(self, file: str, overrides: dict, sources: list[tuple[dict, str]], own: int):
        self.file, self.overrides, self.sources = file, overrides, sources
        self.own = sources[:own]  # the file's own log.txt (checked against the weights)
        self.resolved: dict[str, dict] = {}
        self.defaults: list[str] = []

    def get(self, name: str, key: str, kind: type, *, inferred=_MISSING, inferred_from: str = "the weights",
            default=_MISSING, hint: str = ""):
        value = self.overrides.pop(name, None)
        source = "argument"
        if value is None:
            for hp, where in self.sources:
                if hp.get(key) is not None:
                    value, source = hp[key], where
                    if kind is bool and not isinstance(value, bool) or kind is int and (
                            isinstance(value, bool) or not isinstance(value, int)):
                        raise ValueError(f"{where}: hparam {key} = {value!r} is not a {kind.__name__}")
                    break
        if value is None and inferred is not _MISSING and inferred is not None:
            value, source = inferred, inferred_from
        if value is None and default is not _MISSING:
            value, source = default, "official default"
            self.defaults.append(f"{name}={default!r} (--{key})")
        if value is None:
            raise ValueError(f"{name} is not stored in {self.file!r} and no official log.txt gives {key}: pass "
                             f"{name}= (official --{key}){hint}")
        self.resolved[name] = {"value": value, "source": source, "hparam": key}
        return value

    def check(self, key: str, weights_value, what: str) -> None:
        """Raise when the file's own log describes another model than the weights (``key`` differs)."""
        for hp, where in self.own:
            v = hp.get(key)
            if isinstance(v, (list, tuple)):
                v = tuple(v)
            if v is not None and v != weights_value:
                raise ValueError(f"{where} does not describe {self.file!r}: {key} = {v!r} there, but the weights have "
                                 f"{what} = {weights_value!r}")

    def warn(self) -> None:
        if self.defaults:
            warnings.warn(f"{self.file}: settings not stored in the weights and found in no official log.txt; using "
                          f"the official defaults {', '.join(self.defaults)}; pass them to silence this",
                          UserWarning, stacklevel=3)


def _hparam_sources(path, file: str, log, hparams,
                    hparams_source: str) -> tuple[list[tuple[dict, str]], str | None, dict]:
    """``(sources, log file or None, its hparams)``: the run's log.txt first, then ``hparams``."""
    sources, log_file, log_hp = [], None, {}
    if log is not False:
        if log is None:
            log_file = find_log(path) or (find_log(file) if file != os.fspath(path) else None)
        else:
            log_file = os.fspath(log)
            if not os.path.isfile(log_file):
                raise FileNotFoundError(f"official log {log_file!r} does not exist")
        if log_file is not None:
            log_hp = read_hparams(log_file)
            if log_hp:
                sources.append((log_hp, log_file))
    if hparams:
        sources.append((dict(hparams), hparams_source))
    return sources, log_file, log_hp


def _build_autoencoder(weights: dict, st: _Settings) -> BinaryAutoencoder:
    factor = 2 ** (len(autoencoder_config(weights, img_size=2**16)["ch_mult"]) - 1)
    latent = next((hp["latent_shape"][-1] for hp, _ in st.sources
                   if isinstance(hp.get("latent_shape"), (list, tuple)) and hp["latent_shape"]), None)
    img_size = st.get("img_size", "img_size", int, default=256, inferred=None if latent is None else latent * factor,
                      inferred_from="latent_shape x the downsampling factor",
                      hint="; it only names attn_resolutions and the latent size")
    cfg = autoencoder_config(weights, img_size=img_size)
    for key, name in (("codebook_size", "codebook_size"), ("n_channels", "in_channels"), ("nf", "nf"),
                      ("emb_dim", "emb_dim"), ("ch_mult", "ch_mult"), ("res_blocks", "res_blocks"),
                      ("norm_first", "norm_first"), ("attn_resolutions", "attn_resolutions")):
        st.check(key, cfg[name], name)
    cfg["use_tanh"] = st.get("use_tanh", "use_tanh", bool, default=False)
    cfg["deterministic"] = st.get("deterministic", "deterministic", bool, default=False)
    model = BinaryAutoencoder(**{**cfg, **st.overrides})
    load_state_dict_strict(model, weights, source=repr(st.file))
    return model


def _load_denoiser(sd: dict, st: _Settings, info: dict) -> BinaryTransformer:
    weights, sched = {}, {}
    for k, v in sd.items():
        if k.startswith("_denoise_fn."):
            weights[k[len("_denoise_fn."):]] = v
        elif k.startswith("scheduler."):
            sched[k] = v
        elif k != "embedding_weight":
            weights[k] = v
    inferred_T = None
    if "scheduler.beta" in sched:
        inferred_T = sched["scheduler.beta"].numel() - 1
        info["beta_type"] = schedule_kind(sched["scheduler.beta"])
        st.check("beta_type", info["beta_type"], "scheduler tables of beta_type")
    total = st.get("total_steps", "total_steps", int, inferred=inferred_T, inferred_from="the scheduler tables")
    if inferred_T is not None and total != inferred_T:
        raise ValueError(f"total_steps={total} does not match the {inferred_T} steps of {st.file!r}'s scheduler tables")
    info["total_steps"] = total
    n_embd = int(weights["tok_emb.weight"].shape[1]) if "tok_emb.weight" in weights else None
    n_head = st.get("n_head", "bert_n_head", int, default=12 if n_embd == 768 else _MISSING,
                    hint=" (the official default 12 goes with bert_n_emb 768)")
    fix = bool(st.overrides.get("fix_time_scale", False))
    sample_steps = st.get("sample_steps", "sample_steps", int, inferred=total if fix else None,
                          inferred_from="fix_time_scale=True",
                          hint=": the S of the denoiser's time input t / S * 4000, the training run's --sample_steps "
                               "(the released runs use --sample_steps equal to --total_steps), or fix_time_scale=True")
    cfg = transformer_config(weights, n_head=n_head, total_steps=total)
    for key, name in (("codebook_size", "codebook_size"), ("bert_n_emb", "n_embd"), ("bert_n_layers", "n_layers")):
        st.check(key, cfg[name], name)
    for hp, where in st.own:
        shape = hp.get("latent_shape")
        if isinstance(shape, (list, tuple)) and shape and shape[-1] != cfg["latent_size"]:
            raise ValueError(f"{where} does not describe {st.file!r}: latent_shape = {shape} there, but the weights "
                             f"have a {cfg['latent_size']}x{cfg['latent_size']} grid")
    model = BinaryTransformer(**{**cfg, "sample_steps": sample_steps, **st.overrides})
    load_state_dict_strict(model, weights, source=repr(st.file))
    return model


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def load_official(path, *, map_location="cpu", ema: bool = True, kind: str | None = None, step: int | None = None,
                  log=None, hparams: Mapping | None = None, hparams_source: str = "the given hparams",
                  **overrides) -> BinaryAutoencoder | BinaryTransformer:
    """Build and strictly load the model of an official (or this package's bare) checkpoint.

    Args:
        path: a checkpoint file, or an official ``log_dir`` / ``saved_models`` directory (see
            ``find_checkpoint`` for ``ema``, ``kind`` and ``step``, which only apply to directories).
        map_location: passed to ``torch.load(..., weights_only=True)``.
        log: the run's official ``log.txt``: None finds it (``<log_dir>/log.txt`` of a
            ``saved_models`` file or of the directory), a path reads that one, False reads none.
        hparams: hparams of a related run consulted after ``log`` (e.g. a sampler run's, which
            also describe its autoencoder), as ``official_log.read_hparams`` returns them;
            ``hparams_source`` names them in ``settings`` and errors.
        **overrides: constructor arguments of the model (None counts as not given). The settings
            the weights do not store (official flag in brackets), resolved from an override, then
            the logs, then what the tensors determine:
            autoencoder ``img_size`` (``--img_size``; official default 256, warned), ``use_tanh``
            (``--use_tanh``; default False, warned), ``deterministic`` (``--deterministic``; default
            False, warned); denoiser ``n_head`` (``--bert_n_head``; default 12 only for 768-wide
            models, warned; else required), ``sample_steps`` (``--sample_steps``: the S of the time
            input; required unless ``fix_time_scale=True``), ``total_steps`` (``--total_steps``; read
            from a sampler file's scheduler tables).
    Returns:
        a ``BinaryAutoencoder`` or ``BinaryTransformer`` in eval mode, with ``official_info``: a dict
        with ``kind``, ``file``, ``ema`` (the file is an official ``*_ema_*`` copy), ``step``,
        ``log`` (the log.txt read, or None), ``hparams`` (its hparams), ``settings`` (each resolved
        setting: ``value``, ``source`` and the official ``hparam`` name) and, for sampler files,
        ``total_steps``, ``beta_type`` (from the scheduler tables, None when not an official kind).
        Sampler models also carry ``embedding_weight``: the autoencoder codebook stored in the
        file, float ``(codebook_size, emb_dim)`` (None for a bare denoiser state dict).
    Raises:
        FileNotFoundError: ``path`` or ``log`` does not exist. ValueError: an unreadable file (empty,
        truncated, not a torch file, Python objects refused by ``weights_only``), a directory
        without checkpoints, a file of neither kind (or not of ``kind``), keys or shapes that do
        not match the model, a setting neither given nor found (naming the argument and the
        official flag), or a log.txt describing another model. TypeError: an unknown override.
    Warns:
        UserWarning: an official default was used for a setting (see ``**overrides``).
    """
    file = find_checkpoint(path, ema=ema, kind=kind, step=step)
    sd = read_state_dict(file, map_location)
    m = _FILE_RE.match(os.path.basename(file))
    info = {"file": file, "ema": bool(m and m.group(2)), "step": int(m.group(3)) if m else None}
    if any(k.startswith("_denoise_fn.") for k in sd) or "tok_emb.weight" in sd:
        found = "sampler"
    elif any(k.startswith(("ae.", "encoder.", "quantize.", "generator.")) for k in sd):
        found = "autoencoder"
    else:
        raise ValueError(f"{file!r} is neither an autoencoder nor a sampler checkpoint (first keys: {_first(sd)})")
    if kind is not None and kind != found:
        raise ValueError(f"{file!r} is a{'n' if found[0] == 'a' else ''} {found} checkpoint, "
                         f"not a{'n' if kind[0] == 'a' else ''} {kind} one")
    info["kind"] = found
    sources, info["log"], info["hparams"] = _hparam_sources(path, file, log, hparams, hparams_source)
    st = _Settings(file, {k: v for k, v in overrides.items() if v is not None}, sources, int(bool(info["hparams"])))
    if found == "autoencoder":
        model = _build_autoencoder(_autoencoder_weights(sd), st)
    else:
        model = _load_denoiser(sd, st, info)
        emb = sd.get("embedding_weight")
        if emb is not None and (emb.dim() != 2 or emb.shape[0] != model.codebook_size):
            raise ValueError(f"{file!r}: embedding_weight has shape {tuple(emb.shape)}, expected (codebook_size = "
                             f"{model.codebook_size}, emb_dim)")
        model.embedding_weight = emb
    st.warn()
    info["settings"] = st.resolved
    model.official_info = info
    return model.eval()
