"""The bare random stream of DESIGN.md section 4, for tests, oracles and benchmarks."""

import torch

from .._backends import fused_ops, resolve_backend
from .._checks import check_int
from ..reference import philox as ref
from ..rng import as_int64, check_seed_offset


def _stream(seed, offset, numel, device, backend, dtype):
    numel = check_int(numel, "numel", 0)
    seed, offset = check_seed_offset(seed, offset, numel)
    device = torch.device(device)
    backend = resolve_backend(backend, device)
    if backend == "reference":
        words = ref.philox_words(seed, offset, numel, device)
        return ref.words_to_uniform(words) if dtype == torch.float32 else words
    out = torch.empty(numel, dtype=dtype, device=device)
    fused_ops(backend).philox_fill_(out, as_int64(seed), as_int64(offset))
    return out


def philox_words(seed: int, offset: int, numel: int, *, device="cpu", backend: str = "auto") -> torch.Tensor:
    """The Philox4x32-10 words of elements ``0..numel-1``: int64 ``(numel,)`` holding uint32 values.

    Element ``i`` takes word ``i % 4`` of counter ``offset + i // 4`` under key ``seed``.

    Raises:
        ValueError: ``seed``/``offset`` not ints in [0, 2^64), ``numel < 0``, or the counters run
            past 2^64 - 1.
    """
    return _stream(seed, offset, numel, device, backend, torch.int64)


def philox_uniform(seed: int, offset: int, numel: int, *, device="cpu", backend: str = "auto") -> torch.Tensor:
    """float32 uniforms ``(word >> 8) * 2^-24`` of elements ``0..numel-1``, shape ``(numel,)``.

    Raises:
        ValueError: as :func:`philox_words`.
    """
    return _stream(seed, offset, numel, device, backend, torch.float32)
