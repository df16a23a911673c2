"""The bundled models: architecture constants, building and loading.

Files in ``bldm_fast/assets`` (written by ``bldm-fast train``):

* ``digits_autoencoder.pt``: ``BinaryAutoencoder`` state_dict (float32).
* ``digits_denoiser.pt``: ``BinaryTransformer`` state_dict (float32).
* ``digits_model.json``: the configs, the training settings, loss curves and metrics.
"""

from __future__ import annotations

import contextlib
import json
import os

ASSETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
AE_FILE = "digits_autoencoder.pt"
DENOISER_FILE = "digits_denoiser.pt"
META_FILE = "digits_model.json"

#: 16x16x1 images -> 4x4 latents of 32 bits (512 bits per image, 64 packed bytes)
AE_CONFIG = dict(codebook_size=32, in_channels=1, nf=32, emb_dim=32, ch_mult=(1, 1, 1), res_blocks=1,
                 img_size=16, attn_resolutions=(), norm_first=True, gen_mul=1.0, use_tanh=False,
                 deterministic=True)
DENOISER_CONFIG = dict(codebook_size=32, n_embd=96, n_head=4, n_layers=3, latent_size=4, total_steps=32,
                       fix_time_scale=True)
DIFFUSION_CONFIG = dict(num_timesteps=32, kind="cos")


@contextlib.contextmanager
def cpu_settings(threads: int | None):
    """For one demo or training run: torch's thread count (when given) and flush-to-zero of
    denormals (faster on the CPU); both are process-wide, so they are restored afterwards (leaking
    them changed other tests' float results in the same process)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(before)


def build_autoencoder(config: dict | None = None):
    from ..models import BinaryAutoencoder

    return BinaryAutoencoder(**(config or AE_CONFIG))


def build_denoiser(config: dict | None = None):
    from ..models import BinaryTransformer

    return BinaryTransformer(**(config or DENOISER_CONFIG))


def build_diffusion(denoiser, config: dict | None = None):
    from ..diffusion import BernoulliDiffusion

    cfg = config or DIFFUSION_CONFIG
    n = denoiser.latent_size
    return BernoulliDiffusion(denoiser, cfg["num_timesteps"], cfg["kind"], latent_shape=(n, n),
                              channels=denoiser.codebook_size, num_classes=denoiser.num_classes)


def _read_state_dict(path: str) -> dict:
    """``torch.load(path, weights_only=True)``; every failure as a ValueError naming the file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, EOFError, RuntimeError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "empty or truncated"
        raise ValueError(f"cannot read the weights file {path}: not a readable torch state_dict "
                         f"({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise ValueError(f"the weights file {path} holds a {type(state).__name__}, expected a state_dict")
    return state


def load_bundled(assets_dir: str | None = None):
    """``(autoencoder, diffusion, meta)``: the bundled models in eval mode and their JSON metadata.

    Args:
        assets_dir: folder holding the three files (default: ``bldm_fast/assets``).

    Raises:
        FileNotFoundError: the folder or a file is missing (run ``bldm-fast train``).
        ValueError: a file that cannot be read (not JSON, not a torch state_dict, weights that do
            not fit the configured models).
    """
    root = ASSETS_DIR if assets_dir is None else os.fspath(assets_dir)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"assets folder not found: {root} (a folder written by `bldm-fast train --out`)")
    paths = [os.path.join(root, f) for f in (AE_FILE, DENOISER_FILE, META_FILE)]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"bundled model file missing: {p} (run `bldm-fast train --out {root}`)")
    try:
        with open(paths[2]) as f:
            meta = json.load(f)
        ae = build_autoencoder(meta["autoencoder_config"])
        den = build_denoiser(meta["denoiser_config"])
        diff = build_diffusion(den, meta["diffusion_config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{paths[2]} is not a bldm-fast train metadata file: {type(exc).__name__}: {exc}") from None
    for module, path in ((ae, paths[0]), (den, paths[1])):
        try:
            module.load_state_dict(_read_state_dict(path))
        except RuntimeError as exc:
            raise ValueError(f"the weights in {path} do not fit the model in {paths[2]}: "
                             f"{str(exc).splitlines()[0]}") from None
    return ae.eval(), diff.eval(), meta
