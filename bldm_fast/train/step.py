"""The loss of one training step on one rank: clean codes, the draws of :mod:`.streams`, the
official loss (:func:`bldm_fast.training_loss`) under the run's precision."""

from __future__ import annotations

import torch

from ..diffusion.loss import training_loss
from ..schedule import BernoulliSchedule
from .sources import clean_codes
from .streams import StepStreams


class StepLoss:
    """``step_loss(model, codes, labels, step) -> training_loss's dict`` (differentiable ``loss``).

    Args:
        cfg: the :class:`~bldm_fast.train.TrainConfig`.
        code_mode, channels: the dataset's code mode and ``C``.
        streams: the rank's :class:`~bldm_fast.train.streams.StepStreams`.
        num_classes: classes of a class-conditional model, else None (labels are then ignored).
        device: where the model runs. amp: autocast dtype (bfloat16 / float16) or None (float32).
        backend: backend of the fused ops.
    """

    def __init__(self, cfg, code_mode: str, channels: int, streams: StepStreams, num_classes: int | None,
                 device: torch.device, amp: torch.dtype | None = None, backend: str = "auto"):
        self.cfg, self.code_mode, self.channels, self.streams = cfg, code_mode, channels, streams
        self.num_classes, self.device, self.amp, self.backend = num_classes, device, amp, backend
        self.schedule = BernoulliSchedule(cfg.total_steps, cfg.beta_type)

    def __call__(self, model, codes: torch.Tensor, labels: torch.Tensor | None, step: int) -> dict:
        """``codes``: the raw batch of :class:`~bldm_fast.train.sources.StepReader`; ``labels``
        int64 ``(B,)`` or None; ``step`` 1-based. The batch's labels are dropped with probability
        ``cfg.label_dropout`` (:meth:`StepStreams.drop_labels`)."""
        cfg, s = self.cfg, self.streams
        x0 = clean_codes(codes.to(self.device, non_blocking=True), self.code_mode, s, step, self.backend)
        lab = None
        if self.num_classes and labels is not None and not s.drop_labels(step, cfg.label_dropout):
            lab = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            return training_loss(model, x0, self.schedule, labels=lab, predict_flip=cfg.p_flip, focal=cfg.focal,
                                 aux=cfg.aux, loss_final=cfg.loss_final, num_classes=self.num_classes or 0,
                                 generator=s.philox(step, "noise"), t=s.t(step, cfg.total_steps),
                                 channels=self.channels, backend=self.backend)
