"""The official sampling grid and the random-stream layout of a sampling call.

Grid (``BinaryDiffusion.sample`` of the official code): ``sampling_steps = arange(1, T + 1)``;
when ``steps != T``, ``idx = (linspace(0, 1, steps) * (T - 1)).astype(int)`` and
``sampling_steps = sampling_steps[idx]``; the loop runs it in reverse. The last step is always
``t = 1``, which thresholds (``t_prev = 0``).

Random stream of one sampling call (DESIGN.md section 4; seed ``s``, base offset ``o``):

* region 0, counters ``o + [0, 2**40)``: the initial noise ``x_T ~ Bernoulli(0.5)``
  (``u < 0.5``);
* region ``r = i + 1``, counters ``o + r * 2**40 + [0, 2**40)``: step ``i`` of the grid
  (``i = 0`` is the first step, from ``t = T``); the final threshold step owns a region too.

Inside a region, element ``e`` of the flat ``(B, L, C)`` tensor takes word ``e % 4`` of counter
``region start + e // 4``, so sample ``b`` draws from ``b * L * C`` on, whatever the batch size,
and a process that samples rows ``b0..`` of a larger batch starts at element ``b0 * L * C`` (an
offset in counters only when ``b0 * L * C % 4 == 0``). A call reserves ``(S + 1) * 2**40``
counters (``S`` steps) of a :class:`~bldm_fast.PhiloxGenerator`; one region holds at most
``2**42`` elements.
"""

from __future__ import annotations

from .._checks import check_int
from ..rng import PhiloxGenerator, check_seed_offset, resolve_stream

REGION_BITS = 40
REGION_COUNTERS = 2**REGION_BITS  # counters per region
REGION_ELEMENTS = 4 * REGION_COUNTERS  # elements per region


def sampling_grid(num_timesteps: int, steps: int | None = None) -> list[int]:
    """The official reverse grid, descending: ``[T, ..., 1]`` (``steps`` values, last one 1).

    Args:
        num_timesteps: ``T >= 1``, the training steps of the schedule.
        steps: number of sampling steps, ``1 <= steps <= T``; ``None`` means ``T``.

    Returns:
        list of ``steps`` distinct ints, strictly decreasing, first ``T`` (unless ``steps == 1``),
        last ``1``.

    Raises:
        ValueError: ``steps`` not an int in ``1..T`` (naming ``steps``), or ``T < 1``.
    """
    T = check_int(num_timesteps, "num_timesteps", 1)
    steps = T if steps is None else check_int(steps, "steps", 1, T)
    if steps == T:
        return list(range(T, 0, -1))
    # numpy's linspace(0, 1, steps) is i * (1 / (steps - 1)) + 0.0 with the last value set to 1.0;
    # times (T - 1), truncated (astype(int)): the same float64 operations in plain Python, so the
    # grid needs no numpy (it runs inside torch.compile'd sampling).
    step = 1.0 / (steps - 1) if steps > 1 else 0.0
    fractions = [i * step + 0.0 for i in range(steps - 1)] + [1.0] if steps > 1 else [0.0]
    return [int(f * (T - 1)) + 1 for f in reversed(fractions)]


def step_pairs(grid: list[int]) -> list[tuple[int, int]]:
    """``(t, t_prev)`` of each step of a descending grid; the last step goes to ``t_prev = 0``."""
    return [(t, grid[i + 1] if i + 1 < len(grid) else 0) for i, t in enumerate(grid)]


def stream_counters(num_steps: int) -> int:
    """Counters one sampling call of ``num_steps`` steps reserves: ``(num_steps + 1) * 2**40``."""
    return (num_steps + 1) * REGION_COUNTERS


def reserve_stream(generator: PhiloxGenerator | None, seed: int | None, offset: int | None,
                   num_steps: int) -> tuple[int, int]:
    """``(seed, base offset)`` of a sampling call, reserving its whole region of a generator.

    With a generator: its seed, and ``generator.next_offset`` of ``(S + 1) * 2**42`` elements (the
    generator advances past the call's regions). With ``seed`` (and optional ``offset``, default
    0): those. With neither: a seed drawn from torch's default generator, offset 0.

    Raises:
        ValueError: generator together with seed/offset, bad seed/offset, or the regions pass the
            last Philox counter ``2**64 - 1``.
    """
    return resolve_stream(generator, seed, offset, stream_counters(num_steps) * 4)


def region_offset(base: int, region: int, element_start: int = 0) -> int:
    """First counter for element ``element_start`` of region ``region`` (0: initial noise,
    ``i + 1``: step ``i``) of a call with base offset ``base``.

    Raises:
        ValueError: ``element_start`` is not a multiple of 4 (a slice of a batch must start on a
            counter boundary) or passes the region.
    """
    if element_start % 4:
        raise ValueError(f"element_start {element_start} must be a multiple of 4 (a counter boundary)")
    if not 0 <= element_start < REGION_ELEMENTS:
        raise ValueError(f"element_start {element_start} outside a region of {REGION_ELEMENTS} elements")
    offset = base + region * REGION_COUNTERS + element_start // 4
    check_seed_offset(0, offset, 0)
    return offset


def check_region_capacity(numel: int, name: str = "batch_size * L * C") -> None:
    """Raise ValueError when one region cannot hold ``numel`` elements (``2**42``)."""
    if numel > REGION_ELEMENTS:
        raise ValueError(f"{name} = {numel} elements exceeds the {REGION_ELEMENTS} (2**42) elements one step "
                         "of the random stream holds")
