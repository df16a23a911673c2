"""The random-stream contract on the host side: seed/offset validation and ``PhiloxGenerator``.

Every backend draws element ``i`` of a call from word ``i % 4`` of Philox4x32-10 counter
``offset + i // 4`` under key ``seed`` (DESIGN.md section 4), so a call is reproducible from
``(seed, offset)`` alone.
"""

import threading

import torch

from ._checks import U64_MAX, ArgumentTypeError, check_int, check_seed_offset

__all__ = ["PhiloxGenerator", "U64_MAX", "as_int64", "check_seed_offset", "counters_for", "resolve_stream",
           "stream_tensor"]


def counters_for(numel: int) -> int:
    """Counters a call over ``numel`` elements consumes: ``ceil(numel / 4)``."""
    return (numel + 3) // 4


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
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PhiloxGenerator(seed={self.seed}, offset={self.offset})"

    def __getstate__(self):
        return {"seed": self.seed, "offset": self.offset}

    def __setstate__(self, state):
        self.seed, self.offset = state["seed"], state["offset"]
        self._lock = threading.Lock()

    def next_offset(self, numel: int) -> int:
        """Reserve the ``ceil(numel / 4)`` counters of a call over ``numel`` elements; returns the
        first of them and advances ``.offset`` past the last. Thread-safe: threads sharing a
        generator never get overlapping counters.

        Raises:
            ArgumentTypeError: ``numel`` is not an int. ValueError: ``numel < 0``, or the counters
            pass 2^64 - 1.
        """
        numel = check_int(numel, "numel", 0)
        if torch.compiler.is_compiling():  # dynamo traces the attribute update; locks do not trace
            return self._advance(numel)
        with self._lock:
            return self._advance(numel)

    def _advance(self, numel: int) -> int:
        check_seed_offset(self.seed, self.offset, numel)
        start = self.offset
        self.offset = start + counters_for(numel)
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
            raise ArgumentTypeError(f"generator must be a bldm_fast.PhiloxGenerator, got {type(generator).__name__}")
        return generator.seed, generator.next_offset(numel)
    if seed is None:
        if offset is not None:
            raise ValueError("offset was given without seed")
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    return check_seed_offset(seed, 0 if offset is None else offset, numel)


def as_int64(value: int) -> int:
    """The int64 bit pattern of a uint64 value, as the native ops take ``seed`` and ``offset``."""
    return value - 2**64 if value >= 2**63 else value


def stream_tensor(seed: int, offset: int, device) -> torch.Tensor:
    """The ``stream`` argument of the backend ops: int64 ``(2,)`` ``[seed, offset]`` (int64 bit
    patterns of the validated uint64 values) on ``device``; the kernels read it there. Under
    torch.compile SymInt values stay symbolic (no recompile per value)."""
    if torch.compiler.is_compiling():
        return torch.cat([torch.full((1,), as_int64(v), dtype=torch.int64, device=device) for v in (seed, offset)])
    return torch.tensor([as_int64(seed), as_int64(offset)], dtype=torch.int64, device=device)
