"""The reference backend's op table: plain-PyTorch functions with exactly the schemas of the
native and Triton ops (``torch.ops.bldm_fast.*``: outputs not asked for are empty tensors), and
the same boundary checks (:mod:`bldm_fast._boundary`), so a public op calls every backend the
same way."""

import torch

from .. import _boundary as checks
from . import binarize as _binarize
from . import loss as _loss
from . import noise as _noise
from . import packing as _packing
from . import step as _step
from .philox import stream_uniform, stream_words

_NAN = {
    "sample_step": "sample_step: logits contain NaN (or guidance combined infinite logits into NaN)",
    "binarize": "binarize: logits contain NaN",
    "quantize_probs": "quantize_probs: logits contain NaN",
}


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,), dtype=torch.uint8)


def _raise_if_nan(logits: torch.Tensor, op: str) -> None:
    if torch.isnan(logits).any():
        raise ValueError(_NAN[op])


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    checks.check_pack(bits, None)
    if bits.is_floating_point() and ((bits != 0) & (bits != 1)).any():
        raise ValueError("pack_bits: bits must hold only 0 or 1, found another value")
    return _packing.pack_bits(bits)


def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    checks.check_unpack(packed, channels, dtype, None)
    return _packing.unpack_bits(packed, channels, dtype)


def philox_fill_(out: torch.Tensor, stream: torch.Tensor) -> None:
    checks.check_philox(out, stream, None)
    fill = stream_uniform if out.dtype == torch.float32 else stream_words
    out.copy_(fill(stream, out.numel()).view(out.shape))


def bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip):
    checks.check_noise(x0_packed, thresholds, channels, stream, None)
    packed, unpacked, flip = _noise.bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip)
    return packed, _empty(packed) if unpacked is None else unpacked, _empty(packed) if flip is None else flip


def sample_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream, predict_flip, return_probs,
                out_dtype, check_nan):
    checks.check_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream, None)
    packed, probs, unpacked, nan = _step.sample_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream,
                                                     predict_flip, return_probs, out_dtype)
    if check_nan and bool(nan):
        raise ValueError(_NAN["sample_step"])
    return (packed, _empty(packed) if probs is None else probs, _empty(packed) if unpacked is None else unpacked,
            nan.to(torch.int32).view(1))


def flip_bce(logits, target_packed, pos_weight, neg_weight):
    """``(loss, empty)``: the loss is differentiable through autograd (the fused backends return
    their gradient as the second output instead)."""
    checks.check_flip_bce(logits, target_packed, pos_weight, neg_weight, None)
    return _loss.flip_bce_loss(logits, target_packed, pos_weight, neg_weight), _empty(target_packed)


def binarize(logits, bernoulli, stream):
    checks.check_binarize(logits, stream, None)
    _raise_if_nan(logits, "binarize")
    return _binarize.binarize(logits, bernoulli, stream)


def quantize_probs(logits):
    checks.check_logits(logits, "quantize_probs", 1, None)
    _raise_if_nan(logits, "quantize_probs")
    return _binarize.quantize_probs(logits)
