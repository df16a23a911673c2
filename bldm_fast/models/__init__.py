"""The official Binary Latent Diffusion networks with their official ``state_dict`` key names.

* ``BinaryAutoencoder``: images <-> binary codes (``encode``, ``encode_tokens``, ``decode``).
* ``BinaryTransformer``: the denoiser ``model(x, label=None, time_steps=t - 1) -> logits``.
* ``load_official(path)``: builds and strictly loads either from a file the official code wrote
  (or a bare state dict), with the settings the weights do not store read from the run's log.txt.
* ``load_official_models(sampler=..., autoencoder=...)``: both, as a ``BernoulliDiffusion`` and
  an autoencoder checked against the sampler's stored codebook.
* ``read_state_dict(path)``: one checkpoint file, every unreadable file a clear ``ValueError``.
* ``read_hparams(log_txt)``: the hparams an official run logged.
"""

from .autoencoder import BinaryAutoencoder
from .checkpoint_file import read_state_dict
from .official import find_checkpoint, load_official, load_state_dict_strict
from .official_log import read_hparams
from .pipeline import OfficialModels, load_official_models
from .transformer import BinaryTransformer

__all__ = ["BinaryAutoencoder", "BinaryTransformer", "OfficialModels", "find_checkpoint", "load_official",
           "load_official_models", "load_state_dict_strict", "read_hparams", "read_state_dict"]
