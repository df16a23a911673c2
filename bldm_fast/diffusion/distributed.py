"""Sampling across processes (torchrun / ``torch.distributed``): each rank samples its slice of
the global batch with its slice of the random stream; the gathered result equals what one process
sampling the whole batch returns.

Rank ``r`` of ``W`` takes rows ``b0 .. b0 + n`` of the global batch ``B`` (``n = B // W``, plus one
for the first ``B % W`` ranks) and draws, in every region of the stream, from element
``b0 * L * C`` on, i.e. counter ``region + b0 * L * C / 4``: hence ``L * C`` must be a multiple
of 4. Every rank must hold the same seed and base offset: with ``seed``/``generator`` each rank
uses its own (they are checked to agree); with neither, rank 0 draws the seed and broadcasts it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..rng import PhiloxGenerator
from .grid import reserve_stream
from .diffusion import sample_loop


def batch_slice(batch_size: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, count)`` of rank ``rank``'s rows of a global batch split over ``world_size`` ranks."""
    base, extra = divmod(batch_size, world_size)
    count = base + (rank < extra)
    start = rank * base + min(rank, extra)
    return start, count


def _split64(v: int) -> list[int]:
    return [v >> 32, v & 0xFFFFFFFF]


def _agree_stream(generator, seed, offset, num_steps: int, group, device) -> tuple[int, int]:
    """The ``(seed, base)`` every rank uses; rank 0's draw when no seed/generator is given."""
    given = generator is not None or seed is not None
    if given:
        s, base = reserve_stream(generator, seed, offset, num_steps)
    elif dist.get_rank(group) == 0:
        s, base = reserve_stream(None, None, offset, num_steps)
    else:
        s, base = 0, 0
    local = torch.tensor([int(given), *_split64(s), *_split64(base)], dtype=torch.int64, device=device)
    everyone = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(everyone, local, group=group)
    rows = [[int(v) for v in e.tolist()] for e in everyone]
    if any(r[0] != rows[0][0] for r in rows):
        raise ValueError("either every rank or none must pass seed/generator to sample_distributed")
    first = rows[0][1:]
    if given and any(r[1:] != first for r in rows):
        raise ValueError("the ranks hold different seeds / generator offsets; every rank must sample from the same "
                         "stream (same seed, same generator state)")
    return (first[0] << 32) | first[1], (first[2] << 32) | first[3]


def _gather_rows(x: torch.Tensor, counts: list[int], dim: int, group) -> torch.Tensor:
    """All-gather a tensor split unevenly along ``dim`` (pads to the largest slice)."""
    most = max(counts)
    if x.shape[dim] < most:
        pad_shape = list(x.shape)
        pad_shape[dim] = most - x.shape[dim]
        x = torch.cat([x, x.new_zeros(pad_shape)], dim=dim)
    parts = [torch.empty_like(x) for _ in counts]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat([p.narrow(dim, 0, c) for p, c in zip(parts, counts)], dim=dim)


@torch.no_grad()
def sample_distributed(diffusion, batch_size: int | None = None, labels=None, steps: int | None = None,
                       temperature: float = 1.0, guidance: float | None = None, mask=None, known=None,
                       return_all: bool = False, generator: PhiloxGenerator | None = None, seed: int | None = None,
                       offset: int | None = None, backend: str = "auto", progress: bool = True, device=None,
                       group=None, gather: bool = True) -> torch.Tensor:
    """:meth:`BernoulliDiffusion.sample` of a global batch split over the ranks of ``group``.

    Every rank calls it with the same global arguments (``batch_size``, global ``labels (B,)``,
    ``mask``/``known`` of shape ``(L, *)`` or ``(B, L, *)``, ...); the denoiser must treat samples
    independently (true of the official transformer), so the result equals
    ``diffusion.sample(...)`` of the whole batch in one process with the same seed.

    Args:
        diffusion: a :class:`~bldm_fast.BernoulliDiffusion`.
        group: the process group (default: the world).
        gather: return the whole batch on every rank (all_gather); else this rank's rows only.
        others: as :meth:`BernoulliDiffusion.sample` (the progress bar shows on rank 0 only).

    Returns:
        uint8 ``(B, L, ceil(C/8))`` (or ``(S + 1, B, L, ceil(C/8))`` with ``return_all``); with
        ``gather=False`` this rank's rows ``(n, ...)`` (see :func:`batch_slice`).

    Raises:
        RuntimeError: ``torch.distributed`` is not initialised.
        ValueError: ``L * C`` not a multiple of 4, ranks with different seeds/generator states, and
            every error of :meth:`BernoulliDiffusion.sample`.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sample_distributed needs torch.distributed initialised (torchrun + init_process_group)")
    L, C = diffusion.length, diffusion.channels
    if (L * C) % 4:
        raise ValueError(f"distributed sampling needs L * C % 4 == 0 so that each rank's slice of the random stream "
                         f"starts on a Philox counter; got L * C = {L} * {C} = {L * C}")
    a = diffusion.prepare_sampling(batch_size, labels, steps, temperature, guidance, mask, known, device)
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    # collectives of the gloo/nccl group run on the sampling device (nccl needs CUDA tensors)
    s, base = _agree_stream(generator, seed, offset, len(a["grid"]), group, a["device"])
    B = a["batch_size"]
    counts = [batch_slice(B, world, r)[1] for r in range(world)]
    b0, n = batch_slice(B, world, rank)
    nb = (C + 7) // 8
    if n:
        rows = slice(b0, b0 + n)
        lab = a["labels"][rows] if a["labels"] is not None else None
        m = a["mask"][rows] if a["mask"] is not None else None
        k = a["known"][rows] if a["known"] is not None else None
        x, traj = sample_loop(diffusion.model_fn(lab, a["guidance"]), diffusion.schedule, a["grid"], batch_size=n,
                              length=L, channels=C, device=a["device"], seed=s, base=base, element_start=b0 * L * C,
                              temperature=a["temperature"], guidance=a["guidance"],
                              predict_flip=diffusion.predict_flip, mask=m, known=k, return_all=return_all,
                              backend=backend, progress=progress and rank == 0, input_dtype=diffusion.input_dtype,
                              shape_hint=diffusion._shape_hint())
        local = traj if return_all else x
    else:  # more ranks than samples
        shape = (len(a["grid"]) + 1, 0, L, nb) if return_all else (0, L, nb)
        local = torch.empty(shape, dtype=torch.uint8, device=a["device"])
    if not gather:
        return local
    return _gather_rows(local, counts, 1 if return_all else 0, group)
