"""One reverse sampling step in plain PyTorch float32, in the exact operation order of
DESIGN.md section 5 (the stable form of the official ``sample()`` loop body)."""

import torch

from .packing import pack_bits, unpack_bits
from .philox import stream_uniform


def guided_logits(logits, uncond, inv_temp, g):
    """``l = cond * inv_temp``, or with guidance ``(cond + g * (cond - uncond)) * inv_temp``: the
    official ``(1 + g) * cond / T - g * uncond / T`` without its float32 cancellation."""
    cond = logits.float()
    if uncond is None:
        return cond * inv_temp
    return (cond + (cond - uncond.float()) * g) * inv_temp


def sigmoid_pair(l):
    """``(sigmoid(l), sigmoid(-l))`` from one exp, without cancellation."""
    e = torch.exp(-l.abs())
    hi = 1.0 / (1.0 + e)
    lo = e * hi
    pos = l >= 0
    return torch.where(pos, hi, lo), torch.where(pos, lo, hi)


def sample_step(logits, uncond, xt_packed, mask_packed, known_packed, scalars, stream, predict_flip: bool,
                return_probs: bool, out_dtype):
    """One step with the op's schema: ``scalars`` float32 ``(7,)`` ``[inv_temp, g, k_prev, b_prev,
    qh, ql, final]``, ``stream`` int64 ``(2,)`` ``[seed, offset]``, both on the logits' device.

    Returns ``(packed x_{t_prev}, probs or None, unpacked x_{t_prev} in out_dtype or None, nan)``
    with ``nan`` a bool 0-d tensor: whether the (guided) logits hold NaN. Both the posterior draw
    and the final threshold are evaluated and ``final`` selects, so no value is read on the host.
    """
    c = logits.shape[-1]
    inv_temp, g, k_prev, b_prev, qh, ql, final = scalars.unbind()
    l = guided_logits(logits, uncond, inv_temp, g)
    nan = torch.isnan(l).any()
    xt = unpack_bits(xt_packed, c, torch.bool)
    p, pc = sigmoid_pair(l)
    flip = xt & predict_flip
    p0 = torch.where(flip, pc, p)
    p0c = torch.where(flip, p, pc)
    a1 = k_prev * p0 + b_prev
    a0 = k_prev * p0c + b_prev
    n1 = a1 * torch.where(xt, qh, ql)
    posterior = n1 / (n1 + a0 * torch.where(xt, ql, qh))
    u = stream_uniform(stream, l.numel()).view(l.shape)
    is_final = final != 0
    x = torch.where(is_final, torch.where(flip, -l, l) > 0, u < posterior)
    prob = torch.where(is_final, p0, posterior)
    if mask_packed is not None:
        x = torch.where(unpack_bits(mask_packed, c, torch.bool), unpack_bits(known_packed, c, torch.bool), x)
    unpacked = x.to(out_dtype) if out_dtype is not None else None
    return pack_bits(x), prob if return_probs else None, unpacked, nan
