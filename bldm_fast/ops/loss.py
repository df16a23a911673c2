"""flip_bce_loss: the per-bit binary cross-entropy of the training loss, against packed targets."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import ArgumentTypeError, check_logits, check_packed, check_same_device, check_tensor


def _check_weight(w, name: str, batch: int, device) -> None:
    check_tensor(w, name)
    if w.dtype != torch.float32:
        raise ArgumentTypeError(f"{name} must be float32, got {w.dtype}")
    if w.shape != (batch,):
        raise ValueError(f"{name} must have shape (B,) = ({batch},), got {tuple(w.shape)}")
    check_same_device(w, name, device, "logits")
    if w.requires_grad:
        raise ValueError(f"{name} must not require grad: the loss is differentiable with respect to logits only "
                         f"(pass {name}.detach())")


def flip_bce_loss(logits: torch.Tensor, target_packed: torch.Tensor, pos_weight: torch.Tensor,
                  neg_weight: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Weighted binary cross-entropy with logits against packed 0/1 targets, summed.

    ``loss = sum_i w_i * (max(l_i, 0) - l_i * y_i + log(1 + exp(-|l_i|)))`` with ``w_i =
    pos_weight[b]`` where the target bit ``y_i`` is 1 and ``neg_weight[b]`` where it is 0, ``b`` the
    sample of element ``i``. With ``predict_flip`` the targets are the packed flips ``x_0 XOR x_t``
    that :func:`bldm_fast.bernoulli_noise` returns; the weights carry the official class balancing,
    the ``loss_final`` time weighting and the ``1 / numel`` of a mean.

    Args:
        logits: ``(B, ..., C)`` float32/float16/bfloat16 denoiser output; the gradient flows to it.
        target_packed: uint8 ``(B, ..., ceil(C/8))`` packed targets.
        pos_weight, neg_weight: float32 ``(B,)`` per-sample weights of 1-targets and 0-targets.

    Returns:
        float32 scalar, differentiable with respect to ``logits``. The fused backends compute the
        gradient in the same pass as the loss (one read of the logits) and keep it for backward.

    Raises:
        TypeError: wrong dtypes. ValueError: shapes or devices that do not match, weights that
        require grad (every backend: no gradient flows to them).
    """
    check_logits(logits, min_dim=2)
    check_packed(target_packed, "target_packed", logits.shape[-1])
    check_same_device(target_packed, "target_packed", logits.device, "logits")
    if target_packed.shape[:-1] != logits.shape[:-1]:
        raise ValueError(f"target_packed must have the leading shape of logits {tuple(logits.shape[:-1])}, "
                         f"got {tuple(target_packed.shape)}")
    for w, name in ((pos_weight, "pos_weight"), (neg_weight, "neg_weight")):
        _check_weight(w, name, logits.shape[0], logits.device)
    ops = backend_ops(resolve_backend(backend, logits.device))
    return ops.flip_bce(logits, target_packed, pos_weight, neg_weight)[0]
