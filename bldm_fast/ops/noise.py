"""bernoulli_noise: the training forward process ``q(x_t | x_0)`` from packed clean codes."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import (ArgumentTypeError, check_bool, check_channels, check_int, check_out_dtype, check_packed,
                       check_tensor_range, is_int_tensor)
from ..rng import resolve_stream, stream_tensor
from ..schedule import BernoulliSchedule
from .results import NoiseResult


def _check_t(t, batch: int, T: int):
    """``t`` as an int in ``1..T`` or an int64 ``(B,)`` tensor (values checked: one read when eager,
    a device assert when compiling)."""
    if isinstance(t, torch.Tensor):
        if not is_int_tensor(t):
            raise ArgumentTypeError(f"t must be an int or an integer tensor, got {t.dtype}")
        if t.dim() == 0:
            t = t.expand(batch)
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"t must have shape (B,) = ({batch},), got {tuple(t.shape)}")
        check_tensor_range(t, "t", 1, T)
        return t.to(torch.int64)
    return check_int(t, "t", 1, T)


def noise_thresholds(schedule: BernoulliSchedule, t, batch: int, device) -> torch.Tensor:
    """The ``thresholds`` argument of the backend ops: float32 ``(B, 2)`` ``[thr1, thr0]`` on
    ``device``, gathered from the schedule's device table (no host read of ``t``, no host-to-device
    copy once the table is on the device)."""
    _, table = schedule.tables_on(device)
    if isinstance(t, torch.Tensor):
        return table.index_select(0, t.to(device))
    index = torch.full((1,), t, dtype=torch.int64, device=device)
    return table.index_select(0, index).expand(batch, 2)


def bernoulli_noise(x0_packed: torch.Tensor, t, schedule: BernoulliSchedule, channels: int, *,
                    generator=None, seed: int | None = None, offset: int | None = None,
                    out_dtype: torch.dtype | None = None, return_flip: bool = False,
                    backend: str = "auto") -> NoiseResult:
    """Noise packed clean codes: ``x_t = [u < thr(x_0)]``, ``thr(1) = k[t] + b[t]``, ``thr(0) = b[t]``.

    Args:
        x0_packed: uint8 ``(B, ..., ceil(C/8))`` packed clean codes, any strides.
        t: int (every sample; Python, numpy or 0-d tensor) or integer tensor ``(B,)`` on any
            device, values in ``1..T``.
        schedule: the :class:`~bldm_fast.BernoulliSchedule` with ``T`` steps.
        channels: ``C``, the unpacked last dim.
        generator / seed / offset: the random stream (see :func:`bldm_fast.rng.resolve_stream`);
            element ``i`` of the logical ``(B, ..., C)`` tensor draws uniform ``i``.
        out_dtype: also return ``x_t`` unpacked in this dtype (the denoiser's input).
        return_flip: bool; also return the packed flip target ``x_0 XOR x_t``.

    Returns:
        :class:`~bldm_fast.NoiseResult` ``(packed, model_input, flip)``: packed ``x_t`` (uint8,
        shape of ``x0_packed``, padding bits 0), the unpacked ``x_t`` or None, the flip or None.

    Raises:
        TypeError (ArgumentTypeError, also a ValueError): ``x0_packed`` not uint8, ``t`` a float
            tensor, ``out_dtype`` unsupported, ``return_flip`` not a bool.
        ValueError: wrong packed last dim, ``t`` of the wrong shape or outside 1..T, bad seed/offset.
    """
    channels = check_channels(channels)
    check_packed(x0_packed, "x0_packed", channels, min_dim=2)
    if not isinstance(schedule, BernoulliSchedule):
        raise ArgumentTypeError(f"schedule must be a bldm_fast.BernoulliSchedule, got {type(schedule).__name__}")
    check_out_dtype(out_dtype)
    return_flip = check_bool(return_flip, "return_flip")
    batch, device = x0_packed.shape[0], x0_packed.device
    t = _check_t(t, batch, schedule.num_steps)
    numel = x0_packed[..., :1].numel() * channels
    seed, offset = resolve_stream(generator, seed, offset, numel)
    backend = resolve_backend(backend, device)
    packed, unpacked, flip = backend_ops(backend).bernoulli_noise(
        x0_packed, noise_thresholds(schedule, t, batch, device), channels, stream_tensor(seed, offset, device),
        out_dtype, return_flip)
    return NoiseResult(packed, unpacked if out_dtype is not None else None, flip if return_flip else None)
