"""``BinaryLatentDiffusionPipeline``: a diffusers ``DiffusionPipeline`` for Binary Latent Diffusion.

Components (``model_index.json``): ``denoiser`` (:class:`.BinaryTransformerModel`), ``scheduler``
(:class:`~bldm_fast.BernoulliScheduler`) and ``autoencoder`` (:class:`.BinaryAutoencoderModel`,
optional: without it only ``output_type="codes"`` works). Sampling is
:meth:`bldm_fast.BernoulliDiffusion.sample` (every step one fused op, the state packed between
steps) on the scheduler's grid, schedule and ``predict_flip``, so a pipeline gives bit for bit the
codes of ``BernoulliDiffusion.sample`` with the same stream:

* ``generator=bf.PhiloxGenerator(s)``: as ``sample(generator=bf.PhiloxGenerator(s))``;
* ``generator=torch.Generator().manual_seed(n)``: as ``sample(seed=philox_seed(g))`` with
  :func:`bldm_fast.diffusion.scheduler.philox_seed` (one draw from the generator, offset 0);
* no generator: a seed drawn from torch's default generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..diffusion.diffusers_compat import require_diffusers

require_diffusers("bldm_fast.pipelines")

from diffusers import DiffusionPipeline  # noqa: E402
from diffusers.utils import BaseOutput  # noqa: E402

from ..diffusion import BernoulliDiffusion, BernoulliScheduler  # noqa: E402
from ..diffusion.grid import reserve_stream  # noqa: E402
from ..diffusion.scheduler import philox_seed  # noqa: E402
from ..rng import PhiloxGenerator  # noqa: E402
from .models import BinaryAutoencoderModel, BinaryTransformerModel  # noqa: E402

__all__ = ["OUTPUT_TYPES", "BinaryLatentDiffusionPipeline", "BinaryLatentDiffusionPipelineOutput"]

OUTPUT_TYPES = ("pil", "np", "pt", "codes")
_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class BinaryLatentDiffusionPipelineOutput(BaseOutput):
    """What the pipeline returns.

    Attributes:
        images: the output of ``output_type``: a list of PIL images (``"pil"``), float32 numpy
            ``(B, H, W, C)`` in [0, 1] (``"np"``), float32 tensor ``(B, C, H, W)`` in [0, 1] (``"pt"``)
            or the packed codes (``"codes"``).
        codes: the packed codes, uint8 ``(B, L, ceil(C/8))`` (``bldm_fast.unpack_bits`` gives the bits).
    """

    images: object
    codes: torch.Tensor


def _to_pil(pixels: torch.Tensor) -> list:
    from PIL import Image

    arr = pixels.permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


class BinaryLatentDiffusionPipeline(DiffusionPipeline):
    """Binary Latent Diffusion with diffusers' calls (``from_pretrained``, ``save_pretrained``, ``to``).

    Args:
        denoiser: :class:`.BinaryTransformerModel`.
        scheduler: :class:`~bldm_fast.BernoulliScheduler` whose ``num_train_timesteps`` is the
            denoiser's ``total_steps``.
        autoencoder: :class:`.BinaryAutoencoderModel` with the denoiser's ``codebook_size``, or None.

    Raises:
        TypeError: components of other types. ValueError: components that do not fit together.
    """

    model_cpu_offload_seq = "denoiser->autoencoder"
    _optional_components = ["autoencoder"]

    def __init__(self, denoiser: BinaryTransformerModel, scheduler: BernoulliScheduler,
                 autoencoder: BinaryAutoencoderModel | None = None):
        super().__init__()
        for name, value, cls in (("denoiser", denoiser, BinaryTransformerModel),
                                 ("scheduler", scheduler, BernoulliScheduler)):
            if not isinstance(value, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {type(value).__name__}")
        if autoencoder is not None and not isinstance(autoencoder, BinaryAutoencoderModel):
            raise TypeError(f"autoencoder must be a BinaryAutoencoderModel or None, got {type(autoencoder).__name__}")
        cfg = denoiser.config
        if scheduler.config.num_train_timesteps != cfg.total_steps:
            raise ValueError(f"the scheduler has num_train_timesteps = {scheduler.config.num_train_timesteps}, the "
                             f"denoiser was trained with total_steps = {cfg.total_steps}")
        if autoencoder is not None and autoencoder.config.codebook_size != cfg.codebook_size:
            raise ValueError(f"the autoencoder has codebook_size {autoencoder.config.codebook_size}, the denoiser "
                             f"{cfg.codebook_size}: they do not belong together")
        self.register_modules(denoiser=denoiser, scheduler=scheduler, autoencoder=autoencoder)

    @property
    def diffusion(self) -> BernoulliDiffusion:
        """The :class:`~bldm_fast.BernoulliDiffusion` the pipeline samples with (shares the
        denoiser's weights; the model input in the denoiser's dtype)."""
        den = self.denoiser.transformer
        n = den.latent_size
        dtype = self.denoiser.dtype if self.denoiser.dtype in _INPUT_DTYPES else torch.float32
        sc = self.scheduler.config
        return BernoulliDiffusion(den, sc.num_train_timesteps, sc.beta_schedule, latent_shape=(n, n),
                                  channels=den.codebook_size, predict_flip=sc.predict_flip,
                                  num_classes=den.num_classes, input_dtype=dtype).eval()

    def _stream(self, generator, steps: int) -> tuple[int, int]:
        if isinstance(generator, torch.Generator):
            return philox_seed(generator), 0
        if generator is None or isinstance(generator, PhiloxGenerator):
            return reserve_stream(generator, None, None, steps)
        raise TypeError(f"generator must be a torch.Generator, a bldm_fast.PhiloxGenerator or None, got "
                        f"{type(generator).__name__}")

    @torch.no_grad()
    def __call__(self, num_images: int | None = None, labels=None, num_inference_steps: int | None = None,
                 temperature: float = 1.0, guidance_scale: float | None = None, generator=None,
                 output_type: str = "pil", return_dict: bool = True, backend: str = "auto"):
        """Sample images.

        Args:
            num_images: batch size ``B`` (may be inferred from a tensor/list of ``labels``).
            labels: class-conditional denoisers: an int (every image) or ``B`` ints; None unconditional.
            num_inference_steps: sampling steps (default: the denoiser's ``sample_steps`` when set,
                else ``T``); ``scheduler.timesteps`` holds the grid afterwards.
            temperature: > 0, logits are divided by it.
            guidance_scale: classifier-free guidance in diffusers' convention ``s >= 1``
                (``s * cond - (s - 1) * uncond``, i.e. ``BernoulliDiffusion``'s ``g = s - 1``);
                None or 1 for none. Needs ``labels``.
            generator: ``torch.Generator``, :class:`~bldm_fast.PhiloxGenerator` or None (module docstring).
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"codes"``.
            return_dict: return :class:`BinaryLatentDiffusionPipelineOutput`, else ``(images, codes)``.
            backend: bldm_fast backend of the sampling step.

        Returns:
            :class:`BinaryLatentDiffusionPipelineOutput` (or the tuple).

        Raises:
            ValueError: a bad ``output_type``, images asked of a pipeline without autoencoder,
                ``guidance_scale < 1``, and every error of ``BernoulliDiffusion.sample``.
            TypeError: a generator of another type.
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if output_type != "codes" and self.autoencoder is None:
            raise ValueError(f"output_type={output_type!r} needs an autoencoder; this pipeline has none (use "
                             "output_type='codes')")
        g = None
        if guidance_scale is not None:
            if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
                    or not guidance_scale >= 1:
                raise ValueError(f"guidance_scale must be a number >= 1 (diffusers' scale, 1 = none), got "
                                 f"{guidance_scale!r}")
            g = float(guidance_scale) - 1.0
        if isinstance(labels, (list, tuple)):
            labels = torch.tensor(labels, dtype=torch.long)
        diffusion = self.diffusion
        steps = num_inference_steps
        if steps is None:
            steps = diffusion.denoiser.sample_steps or diffusion.num_timesteps
        self.scheduler.set_timesteps(steps, device=self.device)
        seed, offset = self._stream(generator, len(self.scheduler.timesteps))
        disable = bool(getattr(self, "_progress_bar_config", {}).get("disable", False))
        codes = diffusion.sample(num_images, labels=labels, steps=steps, temperature=temperature, guidance=g,
                                 seed=seed, offset=offset, backend=backend, progress=not disable,
                                 device=self.device)
        images = codes
        if output_type != "codes":
            n = diffusion.denoiser.latent_size
            x = self.autoencoder.decode_packed(codes, (n, n)).cpu()
            if output_type == "pt":
                images = x.clamp(0, 1)
            elif output_type == "np":
                images = x.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float32)
            else:  # the pixels of bldm-fast sample / decode: floor(clamp(x, 0, 1) * 255 + 0.5)
                images = _to_pil(x.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8))
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, codes
        return BinaryLatentDiffusionPipelineOutput(images=images, codes=codes)
