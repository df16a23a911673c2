"""The autoencoder quantizer's output in plain PyTorch: threshold or Bernoulli codes, packed, and
probabilities quantised to bytes."""

import torch

from .packing import pack_bits
from .philox import stream_uniform
from .step import sigmoid_pair


def binarize(logits, bernoulli: bool, stream: torch.Tensor) -> torch.Tensor:
    """Packed ``[u < sigmoid(l)]`` (bernoulli) or ``[l > 0]`` of ``(..., C)`` logits; ``stream``
    int64 ``(2,)`` ``[seed, offset]``."""
    l = logits.float()
    if bernoulli:
        bits = stream_uniform(stream, l.numel()).view(l.shape) < sigmoid_pair(l)[0]
    else:
        bits = l > 0
    return pack_bits(bits)


def quantize_probs(logits) -> torch.Tensor:
    """uint8 ``floor(sigmoid(l) * 255 + 0.5)``, shape of ``logits``."""
    return (sigmoid_pair(logits.float())[0] * 255.0 + 0.5).to(torch.int32).to(torch.uint8)
