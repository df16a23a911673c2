"""The exponential moving average of the denoiser's weights (official ``utils/train_utils.EMA``).

The official update, every ``steps_per_update_ema`` (10) steps after the optimizer step, is
``ema = ema * beta + (1 - beta) * param`` over ``parameters()`` only; the EMA model starts as a
copy of the freshly built model. Buffers (BinaryTransformer has none) are copied as they are.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """EMA copy of a module.

    Args:
        model: the module being trained (unwrapped, not the DDP wrapper).
        beta: decay (official ``ema_beta``, 0.995).
        every: update after every ``every``-th step (official ``steps_per_update_ema``, 10).

    Attributes:
        module: the EMA model (eval mode, no gradients).
    """

    def __init__(self, model: torch.nn.Module, beta: float = 0.995, every: int = 10):
        self.beta = float(beta)
        self.every = int(every)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def due(self, step: int) -> bool:
        """Whether training step ``step`` (1-based) ends with an EMA update."""
        return step % self.every == 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """``ema = ema * beta + (1 - beta) * param`` for every parameter (the official order of
        operations); buffers copied."""
        for e, p in zip(self.module.parameters(), model.parameters()):
            e.copy_(e * self.beta + (1 - self.beta) * p.detach())
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state, strict=True)
