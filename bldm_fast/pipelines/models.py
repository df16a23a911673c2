"""diffusers ``ModelMixin`` modules around the BLD networks: a stored ``config.json`` and safetensors
weights each, so ``DiffusionPipeline.save_pretrained`` / ``from_pretrained`` handle them.

* :class:`BinaryTransformerModel`: ``.transformer`` is the :class:`~bldm_fast.models.BinaryTransformer`
  (the denoiser), the config its constructor arguments; weights keyed ``transformer.<official key>``.
* :class:`BinaryAutoencoderModel`: ``.autoencoder`` is the :class:`~bldm_fast.models.BinaryAutoencoder`;
  its config adds ``divide_codes`` (the official sampler scripts divide codes by ``codebook_size``
  before decoding with an autoencoder trained without ``norm_first``).

Both need diffusers (``pip install bldm_fast[diffusers]``); importing this module without it
raises ImportError.
"""

from __future__ import annotations

import torch

from ..diffusion.diffusers_compat import require_diffusers

require_diffusers("bldm_fast.pipelines")

from diffusers import ModelMixin  # noqa: E402  (after the check, for its error message)
from diffusers.configuration_utils import ConfigMixin, register_to_config  # noqa: E402

from ..models import BinaryAutoencoder, BinaryTransformer  # noqa: E402
from ..ops import unpack_bits  # noqa: E402

__all__ = ["BinaryAutoencoderModel", "BinaryTransformerModel"]


class BinaryTransformerModel(ModelMixin, ConfigMixin):
    """The denoiser as a diffusers model: arguments as :class:`~bldm_fast.models.BinaryTransformer`.

    ``forward(x, label=None, time_steps=None)``: float 0/1 ``(B, L, C)``, long ``(B,)`` labels or
    None, long ``(B,)`` ``t - 1``; returns logits ``(B, L, C)`` in the model's dtype.

    Raises:
        ValueError: as ``BinaryTransformer`` (bad sizes).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, codebook_size: int = 64, n_embd: int = 768, n_head: int = 12, n_layers: int = 24,
                 latent_size: int = 16, total_steps: int = 64, sample_steps: int | None = None,
                 fix_time_scale: bool = False, num_classes: int | None = None, cond_dim: int | None = None,
                 embd_pdrop: float = 0.0, resid_pdrop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.transformer = BinaryTransformer(
            codebook_size, n_embd=n_embd, n_head=n_head, n_layers=n_layers, latent_size=latent_size,
            total_steps=total_steps, sample_steps=sample_steps, fix_time_scale=fix_time_scale,
            num_classes=num_classes, cond_dim=cond_dim, embd_pdrop=embd_pdrop, resid_pdrop=resid_pdrop,
            drop_path=drop_path)

    @classmethod
    def from_transformer(cls, transformer: BinaryTransformer) -> "BinaryTransformerModel":
        """A model holding a copy of ``transformer``'s weights (its ``config()`` as the config).

        Raises:
            TypeError: not a ``BinaryTransformer``.
        """
        if not isinstance(transformer, BinaryTransformer):
            raise TypeError(f"transformer must be a bldm_fast.models.BinaryTransformer, got "
                            f"{type(transformer).__name__}")
        model = cls(**transformer.config())
        model.transformer.load_state_dict(transformer.state_dict())
        p = next(transformer.parameters())
        model = model.to(p.device)  # the dtype only when it differs: diffusers warns on every dtype cast
        return (model if p.dtype == torch.float32 else model.to(dtype=p.dtype)).train(transformer.training)

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None,
                time_steps: torch.Tensor | None = None) -> torch.Tensor:
        return self.transformer(x, label=label, time_steps=time_steps)


class BinaryAutoencoderModel(ModelMixin, ConfigMixin):
    """The binary autoencoder as a diffusers model: arguments as
    :class:`~bldm_fast.models.BinaryAutoencoder`, plus ``divide_codes`` (see the module docstring).

    Raises:
        ValueError: as ``BinaryAutoencoder`` (bad sizes).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, codebook_size: int = 64, in_channels: int = 3, nf: int = 128, emb_dim: int = 256,
                 ch_mult: tuple = (1, 1, 2, 2, 4), res_blocks: int = 2, img_size: int = 256,
                 attn_resolutions: tuple = (16,), norm_first: bool = True, gen_mul: float = 1.0,
                 use_tanh: bool = False, deterministic: bool = False, divide_codes: bool = False):
        super().__init__()
        self.autoencoder = BinaryAutoencoder(
            codebook_size, in_channels=in_channels, nf=nf, emb_dim=emb_dim, ch_mult=tuple(ch_mult),
            res_blocks=res_blocks, img_size=img_size, attn_resolutions=tuple(attn_resolutions),
            norm_first=norm_first, gen_mul=gen_mul, use_tanh=use_tanh, deterministic=deterministic)
        self.divide_codes = bool(divide_codes)

    @classmethod
    def from_autoencoder(cls, autoencoder: BinaryAutoencoder, *,
                         divide_codes: bool = False) -> "BinaryAutoencoderModel":
        """A model holding a copy of ``autoencoder``'s weights.

        Raises:
            TypeError: not a ``BinaryAutoencoder``.
        """
        if not isinstance(autoencoder, BinaryAutoencoder):
            raise TypeError(f"autoencoder must be a bldm_fast.models.BinaryAutoencoder, got "
                            f"{type(autoencoder).__name__}")
        model = cls(**autoencoder.config(), divide_codes=divide_codes)
        model.autoencoder.load_state_dict(autoencoder.state_dict())
        p = next(autoencoder.parameters())
        model = model.to(p.device)  # the dtype only when it differs: diffusers warns on every dtype cast
        return (model if p.dtype == torch.float32 else model.to(dtype=p.dtype)).train(autoencoder.training)

    @torch.no_grad()
    def decode_packed(self, packed: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
        """Images from packed codes, as ``bldm-fast decode`` computes them before rounding.

        Args:
            packed: uint8 ``(B, L, ceil(C/8))``, ``L = h * w``.
            latent_hw: ``(h, w)``.
        Returns:
            float32 ``(B, in_channels, H, W)``, not clamped.
        Raises:
            TypeError: ``packed`` is not a uint8 tensor. ValueError: its shape does not fit.
        """
        ae = self.autoencoder
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
            raise TypeError(f"packed must be a uint8 tensor, got {getattr(packed, 'dtype', type(packed).__name__)}")
        h, w = latent_hw
        C = ae.codebook_size
        if packed.dim() != 3 or packed.shape[1] != h * w or packed.shape[2] != (C + 7) // 8:
            raise ValueError(f"packed must have shape (B, {h * w}, {(C + 7) // 8}), got {tuple(packed.shape)}")
        bits = unpack_bits(packed.to(self.device), C, torch.float32).to(self.dtype)
        z = bits.permute(0, 2, 1).reshape(packed.shape[0], C, h, w)
        if self.divide_codes:
            if ae.use_tanh:
                z = (z - 0.5) * 2.0
            x = ae.generator(ae.quantize.embed_codes(z / float(C)))
        else:
            x = ae.decode(z)
        return x.float()
