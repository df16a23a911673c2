"""The autoencoder quantizer's output in plain PyTorch: threshold or Bernoulli codes, packed, and
probabilities quantised to bytes."""

import torch

from .packing import pack_bits
from .philox import philox_uniform
from .step import sigmoid_pair


def binarize(logits, bernoulli: bool, seed: int, offset: int) -> torch.Tensor:
    """Packed ``[u < sigmoid(l)]`` (bernoulli) or ``[l > 0]`` of ``(..., C)`` logits."""
    l = logits.float()
    if bernoulli:
        bits = philox_uniform(seed, offset, l.numel(), l.device).view(l.shape) < sigmoid_pair(l)[0]
    else:
        bits = l > 0
    return pack_bits(bits)


def quantize_probs(logits) -> torch.Tensor:
    """uint8 ``floor(sigmoid(l) * 255 + 0.5)``, shape of ``logits``."""
    return (sigmoid_pair(logits.float())[0] * 255.0 + 0.5).to(torch.int32).to(torch.uint8)
