"""sample_step: one fused reverse step of the Bernoulli sampler (DESIGN.md section 5)."""

import functools
import math

import numpy as np
import torch

from .._backends import fused_ops, resolve_backend
from .._checks import (LOGIT_DTYPES, check_int, check_out_dtype, check_packed, check_positive_finite,
                       check_same_device, check_tensor)
from ..reference import step as ref
from ..reference.packing import packed_size
from ..rng import as_int64, resolve_stream
from ..schedule import BernoulliSchedule
from .packing import pack_bits


def _packed_condition(x, name: str, channels: int, leading: torch.Size, device, backend: str) -> torch.Tensor:
    """``mask``/``known`` as contiguous packed uint8 of shape ``leading + (ceil(C/8),)``.

    uint8 is read as packed bits; bool and float as unpacked 0/1 ``(..., C)``. Either form may
    broadcast over the leading dims (e.g. ``(L, C)`` for every sample).
    """
    check_tensor(x, name)
    check_same_device(x, name, device, "logits")
    if x.dtype == torch.uint8:
        check_packed(x, name, channels)
    elif x.dtype == torch.bool or x.is_floating_point():
        if x.dim() < 1 or x.shape[-1] != channels:
            raise ValueError(f"{name} (unpacked {x.dtype}) must have last dim C = {channels}, got {tuple(x.shape)}")
        x = pack_bits(x, backend=backend)
    else:
        raise TypeError(f"{name} must be uint8 (packed) or bool/float (unpacked), got {x.dtype}")
    shape = (*leading, packed_size(channels))
    try:
        return torch.broadcast_to(x, shape).contiguous()
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not broadcast to {shape}") from None


def _f32(x: float) -> float:
    return float(np.float32(x))


@functools.lru_cache(maxsize=16)
def _schedule(num_steps: int, kind: str) -> BernoulliSchedule:
    return BernoulliSchedule(num_steps, kind)


@torch.compiler.assume_constant_result
def _host_scalars(num_steps: int, kind: str, t: int, t_prev: int, temperature: float, guidance: float):
    """The float32 scalars every backend takes: ``(inv_temp, g, k_prev, b_prev, qh, ql)``.

    Constants for torch.compile: they depend on Python numbers only (the schedule is named by its
    ``(num_steps, kind)``, since torch 2.11's compiler takes no object as a constant argument).
    """
    final = t_prev == 0
    k_prev, b_prev, qh, ql = (0.0, 0.0, 0.0, 0.0) if final else _schedule(num_steps, kind).step_constants(t, t_prev)
    return _f32(1.0 / temperature), _f32(guidance), k_prev, b_prev, qh, ql


def sample_step(logits: torch.Tensor, xt_packed: torch.Tensor, t: int, t_prev: int, schedule: BernoulliSchedule, *,
                generator=None, seed: int | None = None, offset: int | None = None, temperature: float = 1.0,
                guidance: float = 0.0, uncond_logits: torch.Tensor | None = None, predict_flip: bool = True,
                mask: torch.Tensor | None = None, known: torch.Tensor | None = None, return_probs: bool = False,
                out_dtype: torch.dtype | None = None, backend: str = "auto"):
    """One reverse step from ``t`` to ``t_prev`` of the official ``sample()`` loop, fused.

    Args:
        logits: ``(..., C)`` float32/float16/bfloat16 denoiser output (usually ``(B, L, C)``);
            the logit that a bit flips (``predict_flip``) or that ``x_0 = 1``.
        xt_packed: uint8 ``(..., ceil(C/8))``, the packed current state ``x_t``.
        t, t_prev: ints with ``0 <= t_prev < t <= T``; ``t_prev = 0`` is the final, deterministic
            step (``x = [p0 > 0.5]``).
        schedule: the :class:`~bldm_fast.BernoulliSchedule`.
        generator / seed / offset: the random stream; element ``i`` of ``(..., C)`` draws uniform ``i``.
            Every call reserves ``ceil(numel / 4)`` counters of a generator, the final step too.
        temperature: > 0; logits are scaled by ``1 / temperature``.
        guidance: ``g``; when nonzero ``l = (1 + g) * l - g * l_uncond`` (needs ``uncond_logits``),
            evaluated as ``(cond + g * (cond - uncond)) / temperature`` to avoid float32 cancellation.
        uncond_logits: the unconditional logits, shape and dtype of ``logits``.
        predict_flip: the logits predict a flip of ``x_t`` (the official ``p_flip``).
        mask, known: inpainting; where ``mask`` is 1 the output bit is ``known``'s. uint8 means packed
            ``(..., ceil(C/8))``, bool/float unpacked ``(..., C)``; both broadcast over leading dims.
        return_probs: also return float32 ``(..., C)`` probabilities: the posterior
            ``P(x_{t_prev} = 1)``, or ``p0 = P(x_0 = 1)`` on the final step (before the mask).
        out_dtype: also return ``x_{t_prev}`` unpacked in this dtype (the next model input).

    Returns:
        packed ``x_{t_prev}`` (uint8, shape of ``xt_packed``); with ``return_probs`` or ``out_dtype``
        the tuple ``(packed, probs or None, unpacked or None)``.

    Raises:
        TypeError: a tensor of the wrong dtype (integer logits, non-uint8 ``xt_packed``, ...).
        ValueError: shapes or devices that do not match, ``t``/``t_prev`` out of range, temperature
            not finite and > 0, guidance without ``uncond_logits``, ``mask`` without ``known``,
            bad seed/offset, or NaN in the (guided) logits.
    """
    check_tensor(logits, "logits")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have a last (channel) dim of size >= 1, got shape {tuple(logits.shape)}")
    channels, leading, device = logits.shape[-1], logits.shape[:-1], logits.device
    check_packed(xt_packed, "xt_packed", channels)
    check_same_device(xt_packed, "xt_packed", device, "logits")
    if xt_packed.shape[:-1] != leading:
        raise ValueError(f"xt_packed must have shape {(*leading, packed_size(channels))} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(xt_packed.shape)}")
    if not isinstance(schedule, BernoulliSchedule):
        raise ValueError(f"schedule must be a bldm_fast.BernoulliSchedule, got {type(schedule).__name__}")
    t = check_int(t, "t", 1, schedule.num_steps)
    t_prev = check_int(t_prev, "t_prev", 0, t - 1)
    temperature = check_positive_finite(temperature, "temperature")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if uncond_logits is not None:
        check_tensor(uncond_logits, "uncond_logits")
        if uncond_logits.dtype != logits.dtype:
            raise TypeError(f"uncond_logits must have the dtype of logits ({logits.dtype}), got {uncond_logits.dtype}")
        check_same_device(uncond_logits, "uncond_logits", device, "logits")
        if uncond_logits.shape != logits.shape:
            raise ValueError(f"uncond_logits must have the shape of logits {tuple(logits.shape)}, "
                             f"got {tuple(uncond_logits.shape)}")
    if guidance != 0 and uncond_logits is None:
        raise ValueError("guidance != 0 needs uncond_logits (the unconditional denoiser output)")
    if (mask is None) != (known is None):
        raise ValueError("mask and known must be given together (known holds the bits that mask re-imposes)")
    check_out_dtype(out_dtype)
    backend = resolve_backend(backend, device)
    if mask is not None:
        mask = _packed_condition(mask, "mask", channels, leading, device, backend)
        known = _packed_condition(known, "known", channels, leading, device, backend)
    seed, offset = resolve_stream(generator, seed, offset, logits.numel())
    uncond = uncond_logits if guidance != 0 else None
    args = (*_host_scalars(schedule.num_steps, schedule.kind, t, t_prev, temperature, float(guidance)), t_prev == 0,
            bool(predict_flip))
    if backend == "reference":
        packed, probs, unpacked = ref.sample_step(logits, uncond, xt_packed, mask, known, *args, seed, offset,
                                                  return_probs, out_dtype)
    else:
        packed, probs, unpacked = fused_ops(backend).sample_step(
            logits, uncond, xt_packed, mask, known, *args, as_int64(seed), as_int64(offset), return_probs, out_dtype)
        probs = probs if return_probs else None
        unpacked = unpacked if out_dtype is not None else None
    if not return_probs and out_dtype is None:
        return packed
    return packed, probs, unpacked
