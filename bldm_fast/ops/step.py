"""sample_step: one fused reverse step of the Bernoulli sampler (DESIGN.md section 5)."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import (ArgumentTypeError, check_bool, check_finite_f32, check_logits, check_out_dtype, check_packed,
                       check_same_device, check_temperature, check_tensor, compiling, index_arg, packed_size)
from ..rng import resolve_stream, stream_tensor
from ..schedule import BernoulliSchedule
from .packing import pack_bits
from .results import StepResult


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
        try:
            x = pack_bits(x, backend=backend)
        except ValueError:
            raise ValueError(f"{name} (unpacked {x.dtype}) must hold only 0 or 1, found another value") from None
    else:
        raise ArgumentTypeError(f"{name} must be uint8 (packed) or bool/float (unpacked), got {x.dtype}")
    shape = (*leading, packed_size(channels))
    try:
        return torch.broadcast_to(x, shape).contiguous()
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(x.shape)} does not broadcast to {shape}") from None


def _as_f32(value, device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float32).reshape(1)
    return torch.full((1,), value, dtype=torch.float32, device=device)


def guidance_scalars(temperature, guidance, device) -> torch.Tensor:
    """float32 ``(2,)`` ``[inv_temp, g]`` on ``device``: ``1 / temperature`` evaluated in float64
    and rounded once to float32 (a Python float or a 0-d tensor; validated by the caller)."""
    if isinstance(temperature, torch.Tensor):
        inv = (1.0 / temperature.to(device=device, dtype=torch.float64)).to(torch.float32).reshape(1)
    else:
        inv = torch.full((1,), 1.0 / temperature, dtype=torch.float64, device=device).to(torch.float32)
    return torch.cat((inv, _as_f32(guidance, device)))


def _index(value, device) -> torch.Tensor:
    """int64 ``(1,)`` on ``device`` from an int, SymInt or 0-d tensor (``torch.full`` keeps a SymInt
    symbolic; ``torch.as_tensor`` would specialise the graph on its value)."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.int64).reshape(1)
    return torch.full((1,), value, dtype=torch.int64, device=device)


def step_scalars(schedule: BernoulliSchedule, t, t_prev, guide: torch.Tensor) -> torch.Tensor:
    """The ``scalars`` argument of the backend ops: float32 ``(7,)`` ``[inv_temp, g, k_prev,
    b_prev, qh, ql, final]`` on ``guide``'s device, the last five from the schedule's
    ``step_table[t, t_prev]`` (ints or 0-d int64 tensors, validated by the caller). Ints index the
    table as a view when eager; compiled code and tensors index it on the device, so new values of
    ``t`` and ``t_prev`` never recompile."""
    table, _ = schedule.tables_on(guide.device)
    if not isinstance(t, torch.Tensor) and not isinstance(t_prev, torch.Tensor) and not compiling():
        row = table[t, t_prev]
    else:
        flat = _index(t, guide.device) * (schedule.num_steps + 1) + _index(t_prev, guide.device)
        row = table.view(-1, table.shape[-1]).index_select(0, flat).reshape(-1)
    return torch.cat((guide, row))


_SCALARS_CACHE: dict = {}
_SCALARS_CACHE_SIZE = 4096


def cached_step_scalars(schedule: BernoulliSchedule, t, t_prev, temperature, guidance, device) -> torch.Tensor:
    """:func:`step_scalars` of Python numbers, cached per (schedule, t, t_prev, temperature,
    guidance, device) when eager: the ops never write it, so calls may share it (a single eager
    step then builds no scalar tensor). Compiled code and tensor arguments build it each call."""
    plain = not any(isinstance(v, torch.Tensor) for v in (t, t_prev, temperature, guidance))
    if not plain or compiling():
        return step_scalars(schedule, t, t_prev, guidance_scalars(temperature, guidance, device))
    key = (id(schedule), t, t_prev, temperature, guidance, str(device))
    hit = _SCALARS_CACHE.get(key)
    if hit is not None and hit[0] is schedule:
        return hit[1]
    if len(_SCALARS_CACHE) >= _SCALARS_CACHE_SIZE:
        _SCALARS_CACHE.clear()
    scalars = step_scalars(schedule, t, t_prev, guidance_scalars(temperature, guidance, device))
    _SCALARS_CACHE[key] = (schedule, scalars)
    return scalars


def check_step_args(logits, xt_packed, t, t_prev, schedule, temperature, guidance, uncond_logits, predict_flip,
                    mask, known, return_probs, out_dtype):
    """Validate :func:`sample_step`'s arguments (one set of rules, :mod:`bldm_fast._checks`);
    returns ``(t, t_prev, temperature, guidance, predict_flip, return_probs)`` normalised."""
    check_logits(logits)
    channels, leading, device = logits.shape[-1], logits.shape[:-1], logits.device
    check_packed(xt_packed, "xt_packed", channels)
    check_same_device(xt_packed, "xt_packed", device, "logits")
    if xt_packed.shape[:-1] != leading:
        raise ValueError(f"xt_packed must have shape {(*leading, packed_size(channels))} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(xt_packed.shape)}")
    if not isinstance(schedule, BernoulliSchedule):
        raise ArgumentTypeError(f"schedule must be a bldm_fast.BernoulliSchedule, got {type(schedule).__name__}")
    t = index_arg(t, "t", 1, schedule.num_steps)
    t_prev = index_arg(t_prev, "t_prev", 0, schedule.num_steps - 1)
    if isinstance(t, torch.Tensor) or isinstance(t_prev, torch.Tensor):
        if compiling():
            torch._assert_async(torch.as_tensor(t_prev) < torch.as_tensor(t), "t_prev must be < t")
        elif int(t_prev) >= int(t):
            raise ValueError(f"t_prev must be in [0, {int(t) - 1}] (below t = {int(t)}), got {int(t_prev)}")
    elif t_prev >= t:
        raise ValueError(f"t_prev must be in [0, {t - 1}] (below t = {t}), got {t_prev}")
    temperature = check_temperature(temperature)
    guidance = check_finite_f32(guidance, "guidance")
    predict_flip = check_bool(predict_flip, "predict_flip")
    return_probs = check_bool(return_probs, "return_probs")
    if uncond_logits is not None:
        check_tensor(uncond_logits, "uncond_logits")
        if uncond_logits.dtype != logits.dtype:
            raise ArgumentTypeError(f"uncond_logits must have the dtype of logits ({logits.dtype}), "
                                    f"got {uncond_logits.dtype}")
        check_same_device(uncond_logits, "uncond_logits", device, "logits")
        if uncond_logits.shape != logits.shape:
            raise ValueError(f"uncond_logits must have the shape of logits {tuple(logits.shape)}, "
                             f"got {tuple(uncond_logits.shape)}")
    if uncond_logits is None and (isinstance(guidance, torch.Tensor) or guidance != 0):
        raise ValueError("guidance != 0 needs uncond_logits (the unconditional denoiser output)")
    if (mask is None) != (known is None):
        raise ValueError("mask and known must be given together (known holds the bits that mask re-imposes)")
    check_out_dtype(out_dtype)
    return t, t_prev, temperature, guidance, predict_flip, return_probs


def run_step(ops, logits, uncond, xt_packed, mask, known, scalars, stream, predict_flip, return_probs, out_dtype,
             check_nan):
    """Call a backend table's sample_step; ``(StepResult, int32 (1,) NaN flag)``."""
    packed, probs, unpacked, nan = ops.sample_step(logits, uncond, xt_packed, mask, known, scalars, stream,
                                                   predict_flip, return_probs, out_dtype, check_nan)
    return StepResult(packed, probs if return_probs else None, unpacked if out_dtype is not None else None), nan


def sample_step(logits: torch.Tensor, xt_packed: torch.Tensor, t, t_prev, schedule: BernoulliSchedule, *,
                generator=None, seed: int | None = None, offset: int | None = None, temperature=1.0,
                guidance=0.0, uncond_logits: torch.Tensor | None = None, predict_flip: bool = True,
                mask: torch.Tensor | None = None, known: torch.Tensor | None = None, return_probs: bool = False,
                out_dtype: torch.dtype | None = None, backend: str = "auto") -> StepResult:
    """One reverse step from ``t`` to ``t_prev`` of the official ``sample()`` loop, fused.

    Args:
        logits: ``(..., C)`` float32/float16/bfloat16 denoiser output (usually ``(B, L, C)``);
            the logit that a bit flips (``predict_flip``) or that ``x_0 = 1``.
        xt_packed: uint8 ``(..., ceil(C/8))``, the packed current state ``x_t``.
        t, t_prev: ints (Python, numpy or 0-d integer tensors) with ``0 <= t_prev < t <= T``;
            ``t_prev = 0`` is the final, deterministic step (``x = [p0 > 0.5]``). The step's
            constants come from the schedule's device table, so under torch.compile new values
            (and new seeds/offsets) do not recompile.
        schedule: the :class:`~bldm_fast.BernoulliSchedule`.
        generator / seed / offset: the random stream; element ``i`` of ``(..., C)`` draws uniform ``i``.
            Every call reserves ``ceil(numel / 4)`` counters of a generator, the final step too.
        temperature: > 0 (number or 0-d tensor) whose reciprocal is a finite float32; logits are
            scaled by ``1 / temperature``.
        guidance: ``g`` (number or 0-d tensor, finite in float32); when nonzero
            ``l = (1 + g) * l - g * l_uncond`` (needs ``uncond_logits``), evaluated as
            ``(cond + g * (cond - uncond)) / temperature`` to avoid float32 cancellation. A tensor
            guidance always uses ``uncond_logits``.
        uncond_logits: the unconditional logits, shape and dtype of ``logits``.
        predict_flip: bool; the logits predict a flip of ``x_t`` (the official ``p_flip``).
        mask, known: inpainting; where ``mask`` is 1 the output bit is ``known``'s. uint8 means packed
            ``(..., ceil(C/8))``, bool/float unpacked ``(..., C)``; both broadcast over leading dims.
        return_probs: bool; also return float32 ``(..., C)`` probabilities: the posterior
            ``P(x_{t_prev} = 1)``, or ``p0 = P(x_0 = 1)`` on the final step (before the mask).
        out_dtype: also return ``x_{t_prev}`` unpacked in this dtype (the next model input).

    Returns:
        :class:`~bldm_fast.StepResult` ``(packed, probs, model_input)``: packed ``x_{t_prev}``
        (uint8, shape of ``xt_packed``), probs or None, model_input or None.

    Raises:
        TypeError (ArgumentTypeError, also a ValueError): an argument of the wrong type or dtype.
        ValueError: shapes or devices that do not match, ``t``/``t_prev`` out of range, a bad
            temperature or guidance, guidance without ``uncond_logits``, ``mask`` without ``known``
            or holding values other than 0/1, bad seed/offset, or NaN in the (guided) logits.
    """
    t, t_prev, temperature, guidance, predict_flip, return_probs = check_step_args(
        logits, xt_packed, t, t_prev, schedule, temperature, guidance, uncond_logits, predict_flip, mask, known,
        return_probs, out_dtype)
    channels, leading, device = logits.shape[-1], logits.shape[:-1], logits.device
    backend = resolve_backend(backend, device)
    if mask is not None:
        mask = _packed_condition(mask, "mask", channels, leading, device, backend)
        known = _packed_condition(known, "known", channels, leading, device, backend)
    seed, offset = resolve_stream(generator, seed, offset, logits.numel())
    uncond = uncond_logits if isinstance(guidance, torch.Tensor) or guidance != 0 else None
    scalars = cached_step_scalars(schedule, t, t_prev, temperature, guidance, device)
    result, _ = run_step(backend_ops(backend), logits, uncond, xt_packed.contiguous(), mask, known, scalars,
                         stream_tensor(seed, offset, device), predict_flip, return_probs, out_dtype, True)
    return result
