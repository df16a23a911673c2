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
                              channels=denoiser.codebook_size)


def load_bundled(assets_dir: str | None = None):
    """``(autoencoder, diffusion, meta)``: the bundled models in eval mode and their JSON metadata.

    Raises:
        FileNotFoundError: the weights are missing (run ``bldm-fast train``).
    """
    import torch

    root = assets_dir or ASSETS_DIR
    paths = [os.path.join(root, f) for f in (AE_FILE, DENOISER_FILE, META_FILE)]
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"bundled model file missing: {p} (run `bldm-fast train`)")
    with open(paths[2]) as f:
        meta = json.load(f)
    ae = build_autoencoder(meta["autoencoder_config"])
    ae.load_state_dict(torch.load(paths[0], map_location="cpu", weights_only=True))
    den = build_denoiser(meta["denoiser_config"])
    den.load_state_dict(torch.load(paths[1], map_location="cpu", weights_only=True))
    diff = build_diffusion(den, meta["diffusion_config"])
    return ae.eval(), diff.eval(), meta
