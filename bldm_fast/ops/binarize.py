"""binarize / quantize_probs: the binary autoencoder's quantizer output, fused with packing."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import check_logits
from ..rng import resolve_stream, stream_tensor

MODES = ("deterministic", "bernoulli")


def binarize(logits: torch.Tensor, mode: str = "deterministic", *, generator=None, seed: int | None = None,
             offset: int | None = None, backend: str = "auto") -> torch.Tensor:
    """Binary codes of the autoencoder's code logits, packed: the sigmoid, the threshold or
    Bernoulli draw, and the packing in one pass.

    Args:
        logits: ``(..., C)`` float32/float16/bfloat16 channels-last code logits (the quantizer's
            input to its sigmoid; ``(B, C, H, W)`` codes become ``(B, H*W, C)``).
        mode: ``"deterministic"``: ``[l > 0]``, the official ``sigmoid(l) > 0.5`` (they differ
            only where float32 sigmoid rounds to 0.5, |l| < 6e-8); ``"bernoulli"``:
            ``[u < sigmoid(l)]`` with ``u`` from the random stream (DESIGN.md section 4).
        generator / seed / offset: the stream of the Bernoulli draw (ignored when deterministic).

    Returns:
        uint8 ``(..., ceil(C/8))``, LSB first, padding bits 0.

    Raises:
        TypeError: logits of another dtype. ValueError: unknown mode, no channel dim, bad seed/offset,
        NaN logits (flagged in the same pass; on CUDA the flag is read back once).
    """
    check_logits(logits)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    bernoulli = mode == "bernoulli"
    seed, offset = resolve_stream(generator, seed, offset, logits.numel()) if bernoulli else (0, 0)
    backend = resolve_backend(backend, logits.device)
    return backend_ops(backend).binarize(logits, bernoulli, stream_tensor(seed, offset, logits.device))


def quantize_probs(logits: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Code probabilities quantised to bytes, ``floor(sigmoid(l) * 255 + 0.5)``: the compact form
    from which training can draw a fresh Bernoulli code every epoch.

    Args:
        logits: ``(..., C)`` float32/float16/bfloat16 code logits.

    Returns:
        uint8 ``(..., C)``.

    Raises:
        TypeError: logits of another dtype. ValueError: no channel dim, NaN logits.
    """
    check_logits(logits)
    return backend_ops(resolve_backend(backend, logits.device)).quantize_probs(logits)
