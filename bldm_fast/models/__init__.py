"""The official Binary Latent Diffusion networks with their official ``state_dict`` key names.

* ``BinaryAutoencoder``: images <-> binary codes (``encode``, ``encode_tokens``, ``decode``).
* ``BinaryTransformer``: the denoiser ``model(x, label=None, time_steps=t - 1) -> logits``.
* ``load_official(path)``: builds and strictly loads either from a released checkpoint.
"""

from .autoencoder import BinaryAutoencoder
from .official import find_checkpoint, load_official, load_state_dict_strict
from .transformer import BinaryTransformer

__all__ = ["BinaryAutoencoder", "BinaryTransformer", "find_checkpoint", "load_official", "load_state_dict_strict"]
