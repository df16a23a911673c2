"""Bernoulli noising (training ``q_sample``) in plain PyTorch (DESIGN.md section 5)."""

import torch

from .packing import pack_bits, unpack_bits
from .philox import stream_uniform


def bernoulli_noise(x0_packed, thresholds, channels, stream, out_dtype, return_flip):
    """``x_t = [u < thr(x_0)]`` with per-sample float32 ``thresholds`` ``(B, 2)`` = ``[thr1, thr0]``
    and the int64 ``(2,)`` ``stream`` ``[seed, offset]``, both on the codes' device.

    Returns ``(packed x_t, unpacked x_t in out_dtype or None, packed x_0 XOR x_t or None)``.
    """
    x0 = unpack_bits(x0_packed, channels, torch.bool)
    u = stream_uniform(stream, x0.numel()).view(x0.shape)
    view = (-1,) + (1,) * (x0.dim() - 1)
    thr = torch.where(x0, thresholds[:, 0].view(view), thresholds[:, 1].view(view))
    xt = u < thr
    packed = pack_bits(xt)
    unpacked = xt.to(out_dtype) if out_dtype is not None else None
    flip = pack_bits(xt ^ x0) if return_flip else None
    return packed, unpacked, flip
