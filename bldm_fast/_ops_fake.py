"""Fake (meta) implementations of the fused ops, so they trace under torch.compile / torch.export
and pass torch.library.opcheck. The native ops (``bldm_fast::*``, when bldm_fast._C is loaded) and
the Triton ops (``bldm_fast_triton::*``) share one schema and these fakes; each fake runs the
backend's boundary checks (metadata only), so compiled code raises what eager code raises."""

import torch

from . import _boundary as checks


def _empty_or(x: torch.Tensor, wanted: bool, shape, dtype) -> torch.Tensor:
    return x.new_empty(shape, dtype=dtype) if wanted else x.new_empty((0,), dtype=torch.uint8)


def _pack_bits(bits):
    checks.check_pack(bits, None)
    return bits.new_empty((*bits.shape[:-1], (bits.shape[-1] + 7) // 8), dtype=torch.uint8)


def _unpack_bits(packed, channels, dtype):
    checks.check_unpack(packed, channels, dtype, None)
    return packed.new_empty((*packed.shape[:-1], channels), dtype=dtype)


def _philox_fill(out, stream):
    checks.check_philox(out, stream, None)


def _bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip):
    checks.check_noise(x0_packed, thresholds, channels, stream, None)
    unpacked_shape = (*x0_packed.shape[:-1], channels)
    return (
        torch.empty_like(x0_packed, memory_format=torch.contiguous_format),
        _empty_or(x0_packed, out_dtype is not None, unpacked_shape, out_dtype),
        _empty_or(x0_packed, return_flip, x0_packed.shape, torch.uint8),
    )


def _sample_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream, predict_flip, return_probs,
                 out_dtype, check_nan):
    checks.check_step(logits, uncond_logits, xt_packed, mask, known, scalars, stream, None)
    return (
        xt_packed.new_empty((*logits.shape[:-1], xt_packed.shape[-1]), dtype=torch.uint8),
        _empty_or(xt_packed, return_probs, logits.shape, torch.float32),
        _empty_or(xt_packed, out_dtype is not None, logits.shape, out_dtype),
        xt_packed.new_empty((1,), dtype=torch.int32),
    )


def _flip_bce(logits, target_packed, pos_weight, neg_weight):
    checks.check_flip_bce(logits, target_packed, pos_weight, neg_weight, None)
    return logits.new_empty((), dtype=torch.float32), torch.empty_like(logits, memory_format=torch.contiguous_format)


def _binarize(logits, bernoulli, stream):
    checks.check_binarize(logits, stream, None)
    return logits.new_empty((*logits.shape[:-1], (logits.shape[-1] + 7) // 8), dtype=torch.uint8)


def _quantize_probs(logits):
    checks.check_logits(logits, "quantize_probs", 1, None)
    return torch.empty_like(logits, dtype=torch.uint8, memory_format=torch.contiguous_format)


_FAKES = {
    "pack_bits": _pack_bits,
    "unpack_bits": _unpack_bits,
    "philox_fill_": _philox_fill,
    "bernoulli_noise": _bernoulli_noise,
    "sample_step": _sample_step,
    "flip_bce": _flip_bce,
    "binarize": _binarize,
    "quantize_probs": _quantize_probs,
}


def _flip_bce_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])


def _flip_bce_backward(ctx, grad_loss, grad_of_grad):
    """flip_bce returns its own gradient ``d loss / d logits``: the backward only scales it."""
    (grad,) = ctx.saved_tensors
    return grad * grad_loss, None, None, None


_REGISTERED: set[str] = set()


def register_fakes(namespace: str) -> None:
    """Register (once) the fake implementation of every op of ``namespace`` (``bldm_fast`` or
    ``bldm_fast_triton``), and flip_bce's backward."""
    if namespace in _REGISTERED:
        return
    _REGISTERED.add(namespace)
    for name, fake in _FAKES.items():
        torch.library.register_fake(f"{namespace}::{name}", fake)
    torch.library.register_autograd(f"{namespace}::flip_bce", _flip_bce_backward, setup_context=_flip_bce_setup)
