"""The Triton kernels as torch.library custom ops ``torch.ops.bldm_fast_triton.*``, with the same
schemas as the native ``torch.ops.bldm_fast.*`` (kernels/ops.cpp; outputs not asked for are empty
tensors) and the same boundary checks (:mod:`bldm_fast._boundary`), so the public functions call
either the same way, and torch.compile traces both."""

from typing import Optional

import torch

from .. import _boundary as checks
from .._ops_fake import register_fakes
from . import binarize as binarize_kernels
from . import loss, noise, packing, step
from . import stream as stream_kernels

NAMESPACE = "bldm_fast_triton"


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,), dtype=torch.uint8)


@torch.library.custom_op(f"{NAMESPACE}::pack_bits", mutates_args=())
def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    checks.check_pack(bits, None)
    return packing.pack_bits(bits)


@torch.library.custom_op(f"{NAMESPACE}::unpack_bits", mutates_args=())
def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    checks.check_unpack(packed, channels, dtype, None)
    return packing.unpack_bits(packed, channels, dtype)


@torch.library.custom_op(f"{NAMESPACE}::philox_fill_", mutates_args=("out",))
def philox_fill_(out: torch.Tensor, stream: torch.Tensor) -> None:
    checks.check_philox(out, stream, None)
    stream_kernels.philox_fill_(out, stream)


@torch.library.custom_op(f"{NAMESPACE}::bernoulli_noise", mutates_args=())
def bernoulli_noise(x0_packed: torch.Tensor, thresholds: torch.Tensor, channels: int, stream: torch.Tensor,
                    out_dtype: Optional[torch.dtype],
                    return_flip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    checks.check_noise(x0_packed, thresholds, channels, stream, None)
    packed, unpacked, flip = noise.bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip)
    return packed, _empty(packed) if unpacked is None else unpacked, _empty(packed) if flip is None else flip


@torch.library.custom_op(f"{NAMESPACE}::sample_step", mutates_args=())
def sample_step(logits: torch.Tensor, uncond_logits: Optional[torch.Tensor], xt_packed: torch.Tensor,
                mask: Optional[torch.Tensor], known: Optional[torch.Tensor], scalars: torch.Tensor,
                stream: torch.Tensor, predict_flip: bool, return_probs: bool, out_dtype: Optional[torch.dtype],
                check_nan: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    checks.check_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream, None)
    packed, probs, unpacked, nan = step.sample_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream,
                                                    predict_flip, return_probs, out_dtype, check_nan)
    return packed, _empty(packed) if probs is None else probs, _empty(packed) if unpacked is None else unpacked, nan


@torch.library.custom_op(f"{NAMESPACE}::flip_bce", mutates_args=())
def flip_bce(logits: torch.Tensor, target_packed: torch.Tensor, pos_weight: torch.Tensor,
             neg_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    checks.check_flip_bce(logits, target_packed, pos_weight, neg_weight, None)
    return loss.flip_bce(logits, target_packed, pos_weight, neg_weight)


@torch.library.custom_op(f"{NAMESPACE}::binarize", mutates_args=())
def binarize(logits: torch.Tensor, bernoulli: bool, stream: torch.Tensor) -> torch.Tensor:
    checks.check_binarize(logits, stream, None)
    return binarize_kernels.binarize(logits, bernoulli, stream)


@torch.library.custom_op(f"{NAMESPACE}::quantize_probs", mutates_args=())
def quantize_probs(logits: torch.Tensor) -> torch.Tensor:
    checks.check_logits(logits, "quantize_probs", 1, None)
    return binarize_kernels.quantize_probs(logits)


register_fakes(NAMESPACE)
