"""The learning-rate schedule of the official recipe (``utils/lr_sched.lr_scheduler`` with
``lr_type='constant'``, ``start_warmup_value=1e-6``): a linear warm-up, then constant."""

from __future__ import annotations

WARMUP_START = 1e-6


def learning_rate(step: int, base: float, warmup_steps: int, start: float = WARMUP_START) -> float:
    """The learning rate of training step ``step`` (1-based: the step that makes update ``step``).

    Step ``s <= warmup_steps`` takes ``numpy.linspace(start, base, warmup_steps)[s - 1]``, i.e.
    ``start + (base - start) * (s - 1) / (warmup_steps - 1)`` (``base`` when ``warmup_steps == 1``);
    later steps (and every step when ``warmup_steps == 0``) take ``base``. This is the official
    table indexed by its 0-based step ``s - 1``.

    Raises:
        ValueError: ``step < 1`` or ``warmup_steps < 0``.
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if step > warmup_steps:
        return float(base)
    if warmup_steps == 1:
        return float(base)
    frac = (step - 1) / (warmup_steps - 1)
    return float(start + (base - start) * frac)
