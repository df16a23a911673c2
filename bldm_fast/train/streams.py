"""The random draws of a training step, each a function of ``(seed, step, global sample position)``.

Nothing the trainer draws depends on a generator's history, so resuming at step ``s`` needs
only ``s`` (bit-exact resume), and a sample's draws do not depend on how the global batch is
split across ranks: rank ``r`` of ``R``, with ``B`` samples per rank, holds the global samples
``[r B, (r + 1) B)`` of step ``s`` and draws exactly what a single process with ``R B`` samples
draws for them (so the averaged-gradient DDP step equals the single-process step).

Per step ``s`` (1-based) and purpose:

* ``t``: ``torch.randint(1, T + 1, (R B,))`` from a ``torch.Generator`` seeded with
  ``mix(seed, "t", s)``; rank ``r`` takes its slice.
* stored-draw pick of ``bernoulli`` datasets: ``torch.randint(K, (R B,))`` from
  ``mix(seed, "pick", s)``, sliced the same way.
* label dropout (guidance): one decision per rank and step (the official code drops all labels
  of a rank's batch with probability 0.1): ``torch.rand(())`` from ``mix(seed, "drop", s, r)``.
* the Bernoulli noise ``x_t`` and the fresh code of ``probs`` datasets: Philox (DESIGN.md section
  4) with key ``mix(seed, "noise")`` / ``mix(seed, "code")`` and base counter ``s * 2**40``; the
  rank starts at element ``r B L C`` of the step's ``(R B, L, C)`` tensor, i.e. counter
  ``s * 2**40 + r B L C / 4`` (when ``B L C % 4 != 0`` the rank starts at
  ``r * ceil(B L C / 4)`` instead, still disjoint but no longer equal to the single process).
"""

from __future__ import annotations

import torch

from ..rng import PhiloxGenerator

REGION = 2**40  # counters per step: 2**42 elements, far more than one batch holds
_MASK = 2**64 - 1
_TAGS = {"t": 1, "pick": 2, "drop": 3, "noise": 4, "code": 5}


def mix(seed: int, tag: str, *values: int) -> int:
    """A 64-bit seed from ``seed``, a purpose and integers (splitmix64 over each)."""
    z = (int(seed) ^ (_TAGS[tag] * 0xD1B54A32D192ED03)) & _MASK
    for v in (*values, len(values)):
        z = (z + 0x9E3779B97F4A7C15 + int(v)) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
    return z


def _torch_gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed % 2**63)


class StepStreams:
    """The draws of one rank (see the module docstring).

    Args:
        seed: the run's seed. rank, world: this rank and the number of ranks. batch: samples per
        rank ``B``. elements: ``L * C`` per sample.
    """

    def __init__(self, seed: int, rank: int, world: int, batch: int, elements: int):
        self.seed, self.rank, self.world, self.batch = int(seed), int(rank), int(world), int(batch)
        per_rank = batch * elements
        self.rank_counter = rank * (per_rank // 4 if per_rank % 4 == 0 else -(-per_rank // 4))

    def _slice(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.rank * self.batch:(self.rank + 1) * self.batch]

    def t(self, step: int, T: int) -> torch.Tensor:
        """int64 ``(B,)`` time steps in ``1..T``."""
        g = _torch_gen(mix(self.seed, "t", step))
        return self._slice(torch.randint(1, T + 1, (self.world * self.batch,), generator=g, dtype=torch.int64))

    def pick(self, step: int, k: int) -> torch.Tensor:
        """int64 ``(B,)`` in ``0..k-1``: which stored draw each sample uses."""
        g = _torch_gen(mix(self.seed, "pick", step))
        return self._slice(torch.randint(k, (self.world * self.batch,), generator=g, dtype=torch.int64))

    def drop_labels(self, step: int, p: float) -> bool:
        """Whether this rank's batch trains unconditionally at ``step`` (probability ``p``)."""
        if p <= 0:
            return False
        g = _torch_gen(mix(self.seed, "drop", step, self.rank))
        return float(torch.rand((), generator=g)) < p

    def philox(self, step: int, purpose: str) -> PhiloxGenerator:
        """The Philox generator of ``purpose`` ("noise" or "code") for this rank's batch of ``step``."""
        return PhiloxGenerator(mix(self.seed, purpose), offset=step * REGION + self.rank_counter)
