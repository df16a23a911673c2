"""Sample grids during training: the EMA denoiser, the fused sampler, the autoencoder's decoder."""

from __future__ import annotations

import torch


@torch.no_grad()
def save_sample_grid(denoiser, autoencoder, schedule, path: str, *, count: int = 16, seed: int = 0,
                     num_classes: int | None = None, backend: str = "auto") -> torch.Tensor:
    """Sample ``count`` latents with :meth:`bldm_fast.BernoulliDiffusion.sample` (all ``T`` steps,
    temperature 1, seed ``seed``; labels ``arange(count) % num_classes`` for a class-conditional
    denoiser), decode them with ``autoencoder.decode_tokens`` and write a PNG grid to ``path``.

    Returns:
        the packed codes, uint8 ``(count, L, ceil(C/8))``.
    """
    from ..demo.demo import save_grid
    from ..diffusion import BernoulliDiffusion
    from ..ops import unpack_bits

    side = denoiser.latent_size
    model = BernoulliDiffusion(denoiser, schedule.num_steps, schedule.kind, latent_shape=(side, side),
                               channels=denoiser.codebook_size, num_classes=num_classes)
    device = next(denoiser.parameters()).device
    labels = torch.arange(count, device=device) % num_classes if num_classes else None
    was_training = denoiser.training
    denoiser.eval()
    try:
        codes = model.sample(batch_size=None if labels is not None else count, labels=labels, seed=seed,
                             backend=backend, progress=False)
    finally:
        denoiser.train(was_training)
    ae_device = next(autoencoder.parameters()).device
    tokens = unpack_bits(codes.to(ae_device), denoiser.codebook_size, torch.float32)
    images = autoencoder.decode_tokens(tokens, (side, side)).float().clamp(0, 1)
    save_grid(images, path, scale=1 if images.shape[-1] >= 64 else 4)
    return codes
