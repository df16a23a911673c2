"""bernoulli_noise: the training forward process ``q(x_t | x_0)`` from packed clean codes."""

import torch

from .._backends import fused_ops, resolve_backend
from .._checks import check_channels, check_int, check_out_dtype, check_packed
from ..reference import noise as ref
from ..rng import as_int64, resolve_stream
from ..schedule import BernoulliSchedule


def _thresholds(t, batch: int, schedule: BernoulliSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample float32 thresholds ``(thr1, thr0)``, each ``(batch,)`` on the CPU, for ``t``.

    An int ``t`` is checked on the host without touching tensor data (so it traces under
    torch.compile); a tensor ``t`` is checked by reading its min and max.
    """
    T = schedule.num_steps
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"t must be an integer tensor, got {t.dtype}")
        if t.dim() != 1 or t.shape[0] != batch:
            raise ValueError(f"t must have shape (B,) = ({batch},), got {tuple(t.shape)}")
        t = t.to("cpu", torch.int64)
        if batch and (int(t.min()) < 1 or int(t.max()) > T):
            raise ValueError(f"t must be in 1..{T}, got values in {int(t.min())}..{int(t.max())}")
        return schedule.noise_thresholds(t)
    t = check_int(t, "t", 1, T)
    thr1, thr0 = schedule.noise_thresholds(torch.tensor([t]))
    return thr1.expand(batch), thr0.expand(batch)


def bernoulli_noise(x0_packed: torch.Tensor, t, schedule: BernoulliSchedule, channels: int, *,
                    generator=None, seed: int | None = None, offset: int | None = None,
                    out_dtype: torch.dtype | None = None, return_flip: bool = False, backend: str = "auto"):
    """Noise packed clean codes: ``x_t = [u < thr(x_0)]``, ``thr(1) = k[t] + b[t]``, ``thr(0) = b[t]``.

    Args:
        x0_packed: uint8 ``(B, ..., ceil(C/8))`` packed clean codes, any strides.
        t: int (every sample) or integer tensor ``(B,)``, values in ``1..T``.
        schedule: the :class:`~bldm_fast.BernoulliSchedule` with ``T`` steps.
        channels: ``C``, the unpacked last dim.
        generator / seed / offset: the random stream (see :func:`bldm_fast.rng.resolve_stream`);
            element ``i`` of the logical ``(B, ..., C)`` tensor draws uniform ``i``.
        out_dtype: also return ``x_t`` unpacked in this dtype (the denoiser's input).
        return_flip: also return the packed flip target ``x_0 XOR x_t``.

    Returns:
        packed ``x_t`` (uint8, shape of ``x0_packed``, padding bits 0); with ``out_dtype`` or
        ``return_flip`` the tuple ``(packed, unpacked or None, flip or None)``.

    Raises:
        TypeError: ``x0_packed`` not uint8, ``t`` a float tensor, ``out_dtype`` unsupported.
        ValueError: wrong packed last dim, ``t`` of the wrong shape or outside 1..T, bad seed/offset.
    """
    channels = check_channels(channels)
    check_packed(x0_packed, "x0_packed", channels, min_dim=2)
    if not isinstance(schedule, BernoulliSchedule):
        raise ValueError(f"schedule must be a bldm_fast.BernoulliSchedule, got {type(schedule).__name__}")
    check_out_dtype(out_dtype)
    thr1, thr0 = _thresholds(t, x0_packed.shape[0], schedule)
    numel = x0_packed[..., :1].numel() * channels
    seed, offset = resolve_stream(generator, seed, offset, numel)
    backend = resolve_backend(backend, x0_packed.device)
    if backend == "reference":
        packed, unpacked, flip = ref.bernoulli_noise(x0_packed, thr1, thr0, channels, seed, offset, out_dtype,
                                                     return_flip)
    else:
        thresholds = torch.stack([thr1, thr0], dim=1).to(x0_packed.device)
        packed, unpacked, flip = fused_ops(backend).bernoulli_noise(
            x0_packed, thresholds, channels, as_int64(seed), as_int64(offset), out_dtype, return_flip)
        unpacked = unpacked if out_dtype is not None else None
        flip = flip if return_flip else None
    if out_dtype is None and not return_flip:
        return packed
    return packed, unpacked, flip
