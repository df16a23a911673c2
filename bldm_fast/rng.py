"""The random-stream contract on the host side: seed/offset validation and ``PhiloxGenerator``.

Every backend draws element ``i`` of a call from word ``i % 4`` of Philox4x32-10 counter
``offset + i // 4`` under key ``seed`` (DESIGN.md section 4), so a call is reproducible from
``(seed, offset)`` alone.
"""

import torch

U64_MAX = 2**64 - 1


def counters_for(numel: int) -> int:
    """Counters a call over ``numel`` elements consumes: ``ceil(numel / 4)``."""
    return (numel + 3) // 4


def check_seed_offset(seed, offset, numel: int) -> tuple[int, int]:
    """Validate ``seed`` and ``offset`` for a call over ``numel`` elements.

    Raises:
        ValueError: either is not an int in [0, 2^64), or the last counter the call needs,
            ``offset + ceil(numel / 4) - 1``, passes 2^64 - 1.
    """
    for name, value in (("seed", seed), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int in [0, 2**64), got {type(value).__name__}")
        if not 0 <= value <= U64_MAX:
            raise ValueError(f"{name} must be in [0, 2**64), got {value}")
    if offset + counters_for(numel) - 1 > U64_MAX:
        raise ValueError(
            f"offset {offset} + {counters_for(numel)} counters for {numel} elements passes the "
            "last Philox counter 2**64 - 1"
        )
    return seed, offset


class PhiloxGenerator:
    """Hands out Philox offsets so that consecutive calls never reuse a counter.

    Args:
        seed: the Philox key, an int in [0, 2^64).
        offset: the first counter to hand out (default 0).

    Raises:
        ValueError: seed or offset out of range, or the stream runs past counter 2^64 - 1.
    """

    def __init__(self, seed: int, offset: int = 0):
        self.seed, self.offset = check_seed_offset(seed, offset, 0)

    def __repr__(self) -> str:
        return f"PhiloxGenerator(seed={self.seed}, offset={self.offset})"

    def next_offset(self, numel: int) -> int:
        """Reserve the ``ceil(numel / 4)`` counters of a call over ``numel`` elements; returns the
        first of them and advances ``.offset`` past the last."""
        check_seed_offset(self.seed, self.offset, numel)
        start = self.offset
        self.offset += counters_for(numel)
        return start


def resolve_stream(generator, seed, offset, numel: int) -> tuple[int, int]:
    """``(seed, offset)`` for one op call from the op's ``generator | seed + offset`` arguments.

    With a generator, its seed and its next offset. With only ``seed``, ``offset`` defaults to 0.
    With neither, the seed is drawn from torch's default generator (so ``torch.manual_seed``
    makes runs repeatable) and the offset is 0.

    Raises:
        ValueError: a generator together with seed/offset, offset without seed, or values out of
            range (see :func:`check_seed_offset`).
    """
    if generator is not None:
        if seed is not None or offset is not None:
            raise ValueError("pass either generator or seed/offset, not both")
        if not isinstance(generator, PhiloxGenerator):
            raise ValueError(f"generator must be a bldm_fast.PhiloxGenerator, got {type(generator).__name__}")
        return generator.seed, generator.next_offset(numel)
    if seed is None:
        if offset is not None:
            raise ValueError("offset was given without seed")
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return check_seed_offset(seed, 0 if offset is None else offset, numel)


def as_int64(value: int) -> int:
    """The int64 bit pattern of a uint64 value, as the native ops take ``seed`` and ``offset``."""
    return value - 2**64 if value >= 2**63 else value
