"""The bare random stream of DESIGN.md section 4, for tests, oracles and benchmarks."""

import torch

from .._backends import backend_ops, resolve_backend
from .._checks import check_device_arg, check_int, check_seed_offset
from ..rng import stream_tensor

# The largest tensor torch can allocate has fewer than 2^63 elements.
_MAX_NUMEL = 2**63 - 1


def _stream(seed, offset, numel, device, backend, dtype):
    numel = check_int(numel, "numel", 0, _MAX_NUMEL)
    seed, offset = check_seed_offset(seed, offset, numel)
    device = check_device_arg(device)
    backend = resolve_backend(backend, device)
    try:
        out = torch.empty(numel, dtype=dtype, device=device)
    except (RuntimeError, MemoryError) as exc:
        raise ValueError(f"numel = {numel} elements cannot be allocated on {device}: {exc}") from None
    backend_ops(backend).philox_fill_(out, stream_tensor(seed, offset, device))
    return out


def philox_words(seed: int, offset: int, numel: int, *, device="cpu", backend: str = "auto") -> torch.Tensor:
    """The Philox4x32-10 words of elements ``0..numel-1``: int64 ``(numel,)`` holding uint32 values.

    Element ``i`` takes word ``i % 4`` of counter ``offset + i // 4`` under key ``seed``.

    Raises:
        TypeError (ArgumentTypeError, also a ValueError): seed/offset/numel not ints, device not a
            str or torch.device.
        ValueError: ``seed``/``offset`` outside [0, 2^64), ``numel < 0`` or too large to allocate,
            the counters run past 2^64 - 1, or a CUDA device on a torch without CUDA.
    """
    return _stream(seed, offset, numel, device, backend, torch.int64)


def philox_uniform(seed: int, offset: int, numel: int, *, device="cpu", backend: str = "auto") -> torch.Tensor:
    """float32 uniforms ``(word >> 8) * 2^-24`` of elements ``0..numel-1``, shape ``(numel,)``.

    Raises:
        As :func:`philox_words`.
    """
    return _stream(seed, offset, numel, device, backend, torch.float32)
