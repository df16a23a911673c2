"""The boundary checks of the backend ops, in Python: the same rules and messages as the C++
TORCH_CHECKs of kernels/op_checks.h, for the Triton and reference backends and the fake (meta)
implementations, so a direct ``torch.ops.*`` / backend-table call with bad input raises the same
exception type on every backend (TypeError for dtypes, ValueError for shapes and devices).

They read metadata only (dtype, shape, device), never data, so they also run on fake tensors.
"""

import torch

from ._checks import ArgumentTypeError, packed_size

STEP_SCALARS = ("inv_temp", "g", "k_prev", "b_prev", "qh", "ql", "final")
N_STEP_SCALARS = len(STEP_SCALARS)
_LOGITS = (torch.float32, torch.float16, torch.bfloat16)


def _type(ok: bool, *msg) -> None:
    if not ok:
        raise ArgumentTypeError("".join(str(m) for m in msg))


def _value(ok: bool, *msg) -> None:
    if not ok:
        raise ValueError("".join(str(m) for m in msg))


def _device(t: torch.Tensor, op: str, name: str, device_type: str | None) -> None:
    if device_type is not None:
        _value(t.device.type == device_type, op, ": ", name, " must be a ", device_type.upper(),
               " tensor for this backend, got ", t.device)


def _same(t: torch.Tensor, op: str, name: str, ref: torch.Tensor) -> None:
    _value(t.device == ref.device, op, ": ", name, " is on ", t.device, " but the data is on ", ref.device)


def check_small(t: torch.Tensor, op: str, name: str, dtype: torch.dtype, n: int, ref: torch.Tensor,
                layout: str) -> None:
    _type(isinstance(t, torch.Tensor), op, ": ", name, " must be a tensor")
    _same(t, op, name, ref)
    _type(t.dtype == dtype, op, ": ", name, " must be ", dtype, " ", layout, ", got ", t.dtype)
    _value(t.dim() == 1 and t.shape[0] == n and t.is_contiguous(), op, ": ", name, " must be a contiguous (", n,
           ",) tensor ", layout, ", got shape ", tuple(t.shape))


def check_stream(stream: torch.Tensor, op: str, ref: torch.Tensor) -> None:
    check_small(stream, op, "stream", torch.int64, 2, ref, "[seed, offset]")


def check_packed(t: torch.Tensor, op: str, name: str, leading, channels: int, device_type) -> None:
    _device(t, op, name, device_type)
    _type(t.dtype == torch.uint8, op, ": ", name, " must be uint8 packed bits, got ", t.dtype)
    want = (*leading, packed_size(channels))
    _value(tuple(t.shape) == want, op, ": ", name, " must have shape ", want, " (ceil(", channels,
           " / 8) bytes per row), got ", tuple(t.shape))


def check_logits(logits: torch.Tensor, op: str, min_dim: int, device_type) -> None:
    _device(logits, op, "logits", device_type)
    _type(logits.dtype in _LOGITS, op, ": logits must be float32, float16 or bfloat16, got ", logits.dtype)
    _value(logits.dim() >= min_dim and logits.shape[-1] >= 1, op, ": logits must have at least ", min_dim,
           " dims, the last (channels) of size >= 1, got shape ", tuple(logits.shape))


def check_pack(bits: torch.Tensor, device_type) -> None:
    _device(bits, "pack_bits", "bits", device_type)
    _value(bits.dim() >= 1 and bits.shape[-1] >= 1,
           "pack_bits: bits must have a last (channel) dimension of size >= 1, got shape ", tuple(bits.shape))
    _type(bits.dtype in (torch.bool, torch.uint8) or bits.dtype.is_floating_point,
          "pack_bits: bits must be bool, uint8 or floating point, got ", bits.dtype)


def check_unpack(packed: torch.Tensor, channels: int, dtype: torch.dtype, device_type) -> None:
    _value(channels >= 1, "unpack_bits: channels must be >= 1, got ", channels)
    _value(packed.dim() >= 1, "unpack_bits: packed must have a last (byte) dimension")
    check_packed(packed, "unpack_bits", "packed", packed.shape[:-1], channels, device_type)
    _type(dtype in (torch.bool, torch.uint8) or dtype.is_floating_point,
          "unpack_bits: dtype must be bool, uint8 or floating point, got ", dtype)


def check_philox(out: torch.Tensor, stream: torch.Tensor, device_type) -> None:
    _device(out, "philox_fill_", "out", device_type)
    check_stream(stream, "philox_fill_", out)
    _value(out.is_contiguous(), "philox_fill_: out must be contiguous")
    _type(out.dtype in (torch.float32, torch.int64),
          "philox_fill_: out must be float32 (uniforms) or int64 (words), got ", out.dtype)


def check_noise(x0_packed: torch.Tensor, thresholds: torch.Tensor, channels: int, stream: torch.Tensor,
                device_type) -> None:
    op = "bernoulli_noise"
    _value(channels >= 1, op, ": channels must be >= 1, got ", channels)
    _value(x0_packed.dim() >= 2, op, ": x0_packed must be (B, ..., ceil(C/8)), got shape ", tuple(x0_packed.shape))
    check_packed(x0_packed, op, "x0_packed", x0_packed.shape[:-1], channels, device_type)
    check_stream(stream, op, x0_packed)
    _same(thresholds, op, "thresholds", x0_packed)
    _type(thresholds.dtype == torch.float32, op, ": thresholds must be float32")
    batch = x0_packed.shape[0]
    _value(tuple(thresholds.shape) == (batch, 2), op, ": thresholds must have shape (B, 2) = (", batch,
           ", 2), got ", tuple(thresholds.shape))


def check_step(logits, uncond, xt_packed, mask, known, scalars, stream, device_type) -> None:
    op = "sample_step"
    check_logits(logits, op, 1, device_type)
    check_small(scalars, op, "scalars", torch.float32, N_STEP_SCALARS, logits,
                "[inv_temp, g, k_prev, b_prev, qh, ql, final]")
    check_stream(stream, op, logits)
    if uncond is not None:
        _device(uncond, op, "uncond_logits", device_type)
        _type(uncond.dtype == logits.dtype, op, ": uncond_logits must have the dtype of logits (", logits.dtype,
              "), got ", uncond.dtype)
        _value(uncond.shape == logits.shape, op, ": uncond_logits must have the shape of logits ",
               tuple(logits.shape), ", got ", tuple(uncond.shape))
    leading, c = logits.shape[:-1], logits.shape[-1]
    check_packed(xt_packed, op, "xt_packed", leading, c, device_type)
    _value((mask is None) == (known is None), op, ": mask and known must be given together")
    if mask is not None:
        check_packed(mask, op, "mask", leading, c, device_type)
        check_packed(known, op, "known", leading, c, device_type)


def check_flip_bce(logits, target_packed, pos_weight, neg_weight, device_type) -> None:
    op = "flip_bce"
    check_logits(logits, op, 2, device_type)
    check_packed(target_packed, op, "target_packed", logits.shape[:-1], logits.shape[-1], device_type)
    for w, name in ((pos_weight, "pos_weight"), (neg_weight, "neg_weight")):
        _device(w, op, name, device_type)
        _type(w.dtype == torch.float32, op, ": ", name, " must be float32, got ", w.dtype)
        _value(tuple(w.shape) == (logits.shape[0],), op, ": ", name, " must have shape (B,) = (", logits.shape[0],
               ",), got ", tuple(w.shape))


def check_binarize(logits, stream, device_type) -> None:
    check_logits(logits, "binarize", 1, device_type)
    check_stream(stream, "binarize", logits)
