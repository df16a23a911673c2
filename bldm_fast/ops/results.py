"""The results of the ops that return more than one tensor: NamedTuples with one field order,
always (``None`` where a part was not asked for)."""

from typing import NamedTuple, Optional

import torch


class StepResult(NamedTuple):
    """:func:`bldm_fast.sample_step`'s result.

    Attributes:
        packed: uint8 ``(..., ceil(C/8))`` packed ``x_{t_prev}``.
        probs: float32 ``(..., C)`` posterior ``P(x_{t_prev} = 1)`` (``p0`` on the final step) when
            ``return_probs``, else None.
        model_input: ``x_{t_prev}`` unpacked in ``out_dtype`` (the next model input), else None.
    """

    packed: torch.Tensor
    probs: Optional[torch.Tensor]
    model_input: Optional[torch.Tensor]


class NoiseResult(NamedTuple):
    """:func:`bldm_fast.bernoulli_noise`'s result.

    Attributes:
        packed: uint8 packed ``x_t``, the shape of ``x0_packed``.
        model_input: ``x_t`` unpacked in ``out_dtype`` (the denoiser's input) when asked, else None.
        flip: uint8 packed ``x_0 XOR x_t`` (the flip target) when ``return_flip``, else None.
    """

    packed: torch.Tensor
    model_input: Optional[torch.Tensor]
    flip: Optional[torch.Tensor]
