"""The official sampler, for the end-to-end benchmarks: ``BinaryDiffusion.sample`` of
ZeWang95/BinaryLatentDiffusion (``models/binarylatent.py``) with its ``noise_scheduler``, written
here op by op in eager PyTorch over float32 bits, one element per bit, as the official code keeps
them. Two changes: tensors live on the denoiser's device (the official code says ``"cuda"``), and
the number of steps may be left ``None`` (all of them). The object carries the attributes
:func:`bldm_fast.accelerate` reads, so one instance serves both sides of a comparison with the
same weights.

Not used by the package itself; see :mod:`bldm_fast.bench.end_to_end` and
:mod:`bldm_fast.bench.inloop`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..schedule import BernoulliSchedule


class OfficialScheduler(nn.Module):
    """The official ``noise_scheduler``: float32 buffers ``k_final``, ``b_final``, ``beta`` (the
    float64 tables of a :class:`~bldm_fast.BernoulliSchedule` rounded once, as the official
    ``torch.Tensor(numpy float64)``) and its ``forward`` / ``one_step``."""

    def __init__(self, num_timesteps: int, kind: str = "linear"):
        super().__init__()
        s = BernoulliSchedule(num_timesteps, kind)
        self.register_buffer("k_final", s.k.float().clone())
        self.register_buffer("b_final", s.b.float().clone())
        self.register_buffer("beta", s.beta.float().clone())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dim = x.ndim - 1
        k = self.k_final[t].view(-1, *([1] * dim))
        b = self.b_final[t].view(-1, *([1] * dim))
        return k * x + b

    def one_step(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dim = x.ndim - 1
        k = self.beta[t].view(-1, *([1] * dim))
        return x * k + 0.5 * (1 - k)


class OfficialSampler(nn.Module):
    """``BinaryDiffusion`` reduced to its sampler: ``_denoise_fn``, ``scheduler``, ``num_timesteps``,
    ``p_flip``, ``shape`` (``(1, H, W)``), ``codebook_size``, ``dataset`` (``"imagenet"``: the
    denoiser gets labels, guidance is possible; anything else: unconditional)."""

    def __init__(self, denoise_fn: nn.Module, *, num_timesteps: int, kind: str = "cos", latent_hw=(16, 16),
                 codebook_size: int = 64, p_flip: bool = True, dataset: str = "imagenet"):
        super().__init__()
        self._denoise_fn = denoise_fn
        self.scheduler = OfficialScheduler(num_timesteps, kind)
        self.num_timesteps = num_timesteps
        self.p_flip = p_flip
        self.shape = (1, *latent_hw)
        self.codebook_size = codebook_size
        self.dataset = dataset

    @torch.no_grad()
    def sample(self, temp=1.0, sample_steps=None, b=5, return_all=False, label=None, mask=None, guidance=None,
               full=False):
        """The official loop: float32 0/1 ``(b, L, C)`` (or the trajectory with ``return_all``)."""
        device = next(self._denoise_fn.parameters()).device
        sample_steps = self.num_timesteps if sample_steps is None else sample_steps
        x_t = torch.bernoulli(0.5 * torch.ones((b, int(np.prod(self.shape)), self.codebook_size), device=device))
        if mask is not None:
            m = mask["mask"].unsqueeze(0)
            latent = mask["latent"].unsqueeze(0)
            x_t = latent * m + x_t * (1 - m)
        sampling_steps = np.array(range(1, self.num_timesteps + 1))
        if sample_steps != self.num_timesteps:
            idx = np.linspace(0.0, 1.0, sample_steps)
            idx = np.array(idx * (self.num_timesteps - 1), int)
            sampling_steps = sampling_steps[idx]
        x_all = [x_t] if return_all else None
        if self.dataset == "imagenet":
            if label is None:
                label = (torch.arange(b, device=device) * 100).long()
            else:
                label = torch.full((b,), label, device=device, dtype=torch.long)
        sampling_steps = sampling_steps[::-1]
        for i, t in enumerate(sampling_steps):
            t = torch.full((b,), t, device=device, dtype=torch.long)
            if self.dataset.startswith("imagenet") or self.dataset.startswith("laion"):
                x_0_logits = self._denoise_fn(x_t, label, time_steps=t - 1) / temp
                if guidance is not None:
                    x_0_logits_uncond = self._denoise_fn(x_t, None, time_steps=t - 1) / temp
                    x_0_logits = (1 + guidance) * x_0_logits - guidance * x_0_logits_uncond
            else:
                x_0_logits = self._denoise_fn(x_t, time_steps=t - 1) / temp
            x_0_logits = torch.sigmoid(x_0_logits)
            if self.p_flip:
                x_0_logits = x_t * (1 - x_0_logits) + (1 - x_t) * x_0_logits
            if not t[0].item() == 1:
                t_p = torch.full((b,), sampling_steps[i + 1], device=device, dtype=torch.long)
                x_0_logits = torch.cat([x_0_logits.unsqueeze(-1), (1 - x_0_logits).unsqueeze(-1)], dim=-1)
                x_t_logits = torch.cat([x_t.unsqueeze(-1), (1 - x_t).unsqueeze(-1)], dim=-1)
                p_ev = self.scheduler(x_0_logits, t_p)
                q_one_step = x_t_logits
                for mns in range(sampling_steps[i] - sampling_steps[i + 1]):
                    q_one_step = self.scheduler.one_step(q_one_step, t - mns)
                unnormed = p_ev * q_one_step
                unnormed = unnormed / unnormed.sum(-1, keepdims=True)
                x_t = torch.bernoulli(unnormed[..., 0])
            else:
                x_t = (x_0_logits > 0.5) * 1.0
            if mask is not None:
                x_t = latent * m + x_t * (1 - m)
            if return_all:
                x_all.append(x_t)
        return torch.cat(x_all, 0) if return_all else x_t
