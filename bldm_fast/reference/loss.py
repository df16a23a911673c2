"""The flip-BCE training loss in plain PyTorch (autograd gives its gradient)."""

import torch
import torch.nn.functional as F

from .packing import unpack_bits


def flip_bce_loss(logits, target_packed, pos_weight, neg_weight):
    """``sum_i w_i * BCEWithLogits(l_i, y_i)`` with ``w_i = pos_weight[b]`` where ``y_i = 1`` and
    ``neg_weight[b]`` where ``y_i = 0`` (``b`` the sample of element ``i``); a float32 scalar
    (float64 for float64 logits, which the tests use for gradcheck)."""
    l = logits if logits.dtype == torch.float64 else logits.float()
    y = unpack_bits(target_packed, l.shape[-1], l.dtype)
    view = (-1,) + (1,) * (l.dim() - 1)
    w = torch.where(y > 0, pos_weight.view(view), neg_weight.view(view)).to(l.dtype)
    return F.binary_cross_entropy_with_logits(l, y, weight=w, reduction="sum")
