"""The Triton kernels as torch.library custom ops ``torch.ops.bldm_fast_triton.*``, with the same
schemas as the native ``torch.ops.bldm_fast.*`` (outputs not asked for are empty tensors), so
the public functions call either the same way, and torch.compile traces both."""

from typing import Optional

import torch

from .._ops_fake import register_fakes
from . import binarize as binarize_kernels
from . import loss, noise, packing, step, stream

NAMESPACE = "bldm_fast_triton"
_U64 = 2**64 - 1


def _empty(like: torch.Tensor) -> torch.Tensor:
    return like.new_empty((0,), dtype=torch.uint8)


@torch.library.custom_op(f"{NAMESPACE}::pack_bits", mutates_args=())
def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    return packing.pack_bits(bits)


@torch.library.custom_op(f"{NAMESPACE}::unpack_bits", mutates_args=())
def unpack_bits(packed: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    return packing.unpack_bits(packed, channels, dtype)


@torch.library.custom_op(f"{NAMESPACE}::philox_fill_", mutates_args=("out",))
def philox_fill_(out: torch.Tensor, seed: int, offset: int) -> None:
    stream.philox_fill_(out, seed & _U64, offset & _U64)


@torch.library.custom_op(f"{NAMESPACE}::bernoulli_noise", mutates_args=())
def bernoulli_noise(x0_packed: torch.Tensor, thresholds: torch.Tensor, channels: int, seed: int, offset: int,
                    out_dtype: Optional[torch.dtype], return_flip: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    packed, unpacked, flip = noise.bernoulli_noise(x0_packed, thresholds, channels, seed & _U64, offset & _U64,
                                                   out_dtype, return_flip)
    return packed, _empty(packed) if unpacked is None else unpacked, _empty(packed) if flip is None else flip


@torch.library.custom_op(f"{NAMESPACE}::sample_step", mutates_args=())
def sample_step(logits: torch.Tensor, uncond_logits: Optional[torch.Tensor], xt_packed: torch.Tensor,
                mask: Optional[torch.Tensor], known: Optional[torch.Tensor], inv_temp: float, g: float, k_prev: float,
                b_prev: float, qh: float, ql: float, final_step: bool, predict_flip: bool, seed: int, offset: int,
                return_probs: bool, out_dtype: Optional[torch.dtype]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    packed, probs, unpacked = step.sample_step(logits, uncond_logits, xt_packed, mask, known, inv_temp, g, k_prev,
                                               b_prev, qh, ql, final_step, predict_flip, seed & _U64, offset & _U64,
                                               return_probs, out_dtype)
    return packed, _empty(packed) if probs is None else probs, _empty(packed) if unpacked is None else unpacked


@torch.library.custom_op(f"{NAMESPACE}::flip_bce", mutates_args=())
def flip_bce(logits: torch.Tensor, target_packed: torch.Tensor, pos_weight: torch.Tensor,
             neg_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return loss.flip_bce(logits, target_packed, pos_weight, neg_weight)


@torch.library.custom_op(f"{NAMESPACE}::binarize", mutates_args=())
def binarize(logits: torch.Tensor, bernoulli: bool, seed: int, offset: int) -> torch.Tensor:
    return binarize_kernels.binarize(logits, bernoulli, seed & _U64, offset & _U64)


@torch.library.custom_op(f"{NAMESPACE}::quantize_probs", mutates_args=())
def quantize_probs(logits: torch.Tensor) -> torch.Tensor:
    return binarize_kernels.quantize_probs(logits)


register_fakes(NAMESPACE)
