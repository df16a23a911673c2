"""Fake (meta) implementations of the native ops, so they trace under torch.compile and pass
torch.library.opcheck. Imported only when bldm_fast._C is loaded."""

import torch


def _empty_or(x: torch.Tensor, wanted: bool, shape, dtype) -> torch.Tensor:
    return x.new_empty(shape, dtype=dtype) if wanted else x.new_empty((0,), dtype=torch.uint8)


@torch.library.register_fake("bldm_fast::pack_bits")
def _pack_bits(bits):
    return bits.new_empty((*bits.shape[:-1], (bits.shape[-1] + 7) // 8), dtype=torch.uint8)


@torch.library.register_fake("bldm_fast::unpack_bits")
def _unpack_bits(packed, channels, dtype):
    return packed.new_empty((*packed.shape[:-1], channels), dtype=dtype)


@torch.library.register_fake("bldm_fast::philox_fill_")
def _philox_fill(out, seed, offset):
    return None


@torch.library.register_fake("bldm_fast::bernoulli_noise")
def _bernoulli_noise(x0_packed, thresholds, channels, seed, offset, out_dtype, return_flip):
    unpacked_shape = (*x0_packed.shape[:-1], channels)
    return (
        torch.empty_like(x0_packed, memory_format=torch.contiguous_format),
        _empty_or(x0_packed, out_dtype is not None, unpacked_shape, out_dtype),
        _empty_or(x0_packed, return_flip, x0_packed.shape, torch.uint8),
    )


@torch.library.register_fake("bldm_fast::sample_step")
def _sample_step(logits, uncond_logits, xt_packed, mask, known, inv_temp, g, k_prev, b_prev, qh, ql,
                 final_step, predict_flip, seed, offset, return_probs, out_dtype):
    return (
        xt_packed.new_empty((*logits.shape[:-1], xt_packed.shape[-1]), dtype=torch.uint8),
        _empty_or(xt_packed, return_probs, logits.shape, torch.float32),
        _empty_or(xt_packed, out_dtype is not None, logits.shape, out_dtype),
    )
