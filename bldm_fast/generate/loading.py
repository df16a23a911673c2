"""The models behind ``bldm-fast sample`` / ``decode``: the bundled digits model, a folder holding
a bldm_fast model bundle (the ``bldm_fast/assets`` layout), or official checkpoint files / log folders.

Every loaded file is listed with its sha256 (recorded in ``sample.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["BUNDLED", "LoadedModels", "is_bundle", "load_autoencoder", "load_models"]

BUNDLED = "bundled"  # the name sample.json records for the bundled digits model


@dataclass
class LoadedModels:
    """``autoencoder`` (a ``BinaryAutoencoder``), ``diffusion`` (a ``BernoulliDiffusion`` or None),
    ``source`` (``"bundled"``, ``"bundle"`` or ``"official"``), ``settings`` (each setting the
    weights do not store, with its value and source), ``files`` (``[{"role", "path", "sha256"}]``)
    and ``decode_divides`` (the official sampler scripts divide codes by ``codebook_size`` before
    decoding when the autoencoder has no ``norm_first``)."""

    autoencoder: object
    diffusion: object | None
    source: str
    settings: dict = field(default_factory=dict)
    files: list = field(default_factory=list)

    @property
    def decode_divides(self) -> bool:
        return self.source == "official" and self.diffusion is not None and not self.autoencoder.norm_first


def is_bundle(path) -> bool:
    """Whether ``path`` is a folder holding a bldm_fast model bundle (``digits_model.json`` + weights)."""
    from ..demo.bundle import META_FILE

    return path is not None and os.path.isdir(path) and os.path.isfile(os.path.join(path, META_FILE))


def _file_entry(role: str, path: str) -> dict:
    from ..data.images import file_sha256

    return {"role": role, "path": os.path.abspath(path), "sha256": file_sha256(path)}


def _bundle(root: str | None, with_sampler: bool) -> LoadedModels:
    from ..demo.bundle import AE_FILE, ASSETS_DIR, DENOISER_FILE, META_FILE, load_bundled

    root = root or ASSETS_DIR
    ae, diff, _ = load_bundled(root)
    names = [("autoencoder", AE_FILE), ("config", META_FILE)] + ([("sampler", DENOISER_FILE)] if with_sampler else [])
    return LoadedModels(ae, diff if with_sampler else None, BUNDLED if root == ASSETS_DIR else "bundle",
                        files=[_file_entry(r, os.path.join(root, n)) for r, n in names])


_OFFICIAL_ONLY = ("n_head", "img_size", "p_flip", "use_tanh", "sample_steps")
_FLAG = {"n_head": "--n-head", "img_size": "--img-size", "p_flip": "--p-flip/--no-p-flip",
         "use_tanh": "--use-tanh/--no-use-tanh", "sample_steps": "--denoiser-sample-steps"}


def load_models(sampler=None, autoencoder=None, *, ema: bool = True, fix_time_scale: bool = False,
                **settings) -> LoadedModels:
    """The sampler and autoencoder of ``bldm-fast sample``.

    Neither given: the bundled digits model. A bundle folder (as ``sampler`` or ``autoencoder``):
    its models. Otherwise official files or log folders, both required (see
    ``bldm_fast.models.load_official_models``; ``settings``: ``n_head``, ``img_size``, ``p_flip``,
    ``use_tanh``, ``sample_steps``, None meaning not given).

    Raises:
        ValueError: only one official path given, settings given for a bundle, and every error of
            ``load_official_models``. FileNotFoundError: a missing path.
    """
    from ..models import load_official_models

    given = [k for k in _OFFICIAL_ONLY if settings.get(k) is not None]
    bundle = sampler is None and autoencoder is None or is_bundle(sampler) or is_bundle(autoencoder)
    if bundle:
        if sampler is not None and autoencoder is not None and not (is_bundle(sampler) and is_bundle(autoencoder)):
            raise ValueError("--sampler and --autoencoder must both be official checkpoints or both one bldm_fast "
                             "model bundle")
        if given:
            raise ValueError(f"{', '.join(_FLAG[k] for k in given)}: these settings apply to official checkpoints; "
                             "a bldm_fast bundle stores its configuration")
        models = _bundle(sampler or autoencoder, with_sampler=True)
        if fix_time_scale:
            models.diffusion.denoiser.fix_time_scale = True
        return models
    for name, path in (("--sampler", sampler), ("--autoencoder", autoencoder)):
        if path is None:
            other = "--autoencoder" if name == "--sampler" else "--sampler"
            raise ValueError(f"{name} is required with an official {other} (pass both files or log folders)")
    loaded = load_official_models(sampler, autoencoder, ema=ema, fix_time_scale=fix_time_scale,
                                  **{k: settings.get(k) for k in _OFFICIAL_ONLY})
    files = [_file_entry("sampler", loaded.files["sampler"]), _file_entry("autoencoder", loaded.files["autoencoder"])]
    return LoadedModels(loaded.autoencoder, loaded.diffusion, "official", loaded.settings, files)


def load_autoencoder(path=None, *, ema: bool = True, img_size: int | None = None,
                     use_tanh: bool | None = None) -> LoadedModels:
    """The autoencoder of ``bldm-fast decode`` / ``encode``: the bundled one when ``path`` is None,
    a bundle folder's, or an official file / log folder's (``img_size``, ``use_tanh`` as in
    ``load_official``).

    Raises:
        ValueError: settings given for a bundle, a sampler file, and every error of ``load_official``.
        FileNotFoundError: a missing path.
    """
    from ..models import load_official

    if path is None or is_bundle(path):
        if img_size is not None or use_tanh is not None:
            raise ValueError("--img-size/--use-tanh apply to official checkpoints; a bldm_fast bundle stores its "
                             "configuration")
        return _bundle(path, with_sampler=False)
    ae = load_official(path, kind="autoencoder", ema=ema, img_size=img_size, use_tanh=use_tanh)
    return LoadedModels(ae, None, "official", {"autoencoder": ae.official_info["settings"]},
                        [_file_entry("autoencoder", ae.official_info["file"])])
