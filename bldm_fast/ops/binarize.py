"""binarize / quantize_probs: the binary autoencoder's quantizer output, fused with packing."""

import torch

from .._backends import fused_ops, resolve_backend
from .._checks import LOGIT_DTYPES, check_tensor
from ..reference import binarize as ref
from ..rng import as_int64, resolve_stream

MODES = ("deterministic", "bernoulli")


def _check_logits(logits) -> None:
    check_tensor(logits, "logits")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last (channel) dim of size >= 1, got shape {tuple(logits.shape)}")


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
        TypeError: logits of another dtype. ValueError: unknown mode, no channel dim, bad seed/offset.
    """
    _check_logits(logits)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    bernoulli = mode == "bernoulli"
    seed, offset = resolve_stream(generator, seed, offset, logits.numel()) if bernoulli else (0, 0)
    backend = resolve_backend(backend, logits.device)
    if backend == "reference":
        return ref.binarize(logits, bernoulli, seed, offset)
    return fused_ops(backend).binarize(logits, bernoulli, as_int64(seed), as_int64(offset))


def quantize_probs(logits: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Code probabilities quantised to bytes, ``floor(sigmoid(l) * 255 + 0.5)``: the compact form
    from which training can draw a fresh Bernoulli code every epoch.

    Args:
        logits: ``(..., C)`` float32/float16/bfloat16 code logits.

    Returns:
        uint8 ``(..., C)``.

    Raises:
        TypeError: logits of another dtype. ValueError: no channel dim.
    """
    _check_logits(logits)
    backend = resolve_backend(backend, logits.device)
    if backend == "reference":
        return ref.quantize_probs(logits)
    return fused_ops(backend).quantize_probs(logits)
