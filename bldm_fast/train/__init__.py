"""Training a BLD denoiser on a packed-latent dataset (``bldm-fast train-denoiser``).

* :func:`train_denoiser` / :class:`TrainConfig`: the official recipe, DDP under torchrun,
  kill -9-safe exact resume (:mod:`.trainer`, :mod:`.checkpoint`, :mod:`.streams`).
* :func:`export_official`: a run as official-layout files (``bldm-fast export-official``).
"""

from .config import TrainConfig
from .export import export_official
from .trainer import train_denoiser

__all__ = ["TrainConfig", "export_official", "train_denoiser"]
