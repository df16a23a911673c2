"""The model layer: Bernoulli diffusion sampling (fused, bit-packed), a diffusers-style scheduler,
acceleration of the official sampler and distributed sampling.

* :class:`BernoulliDiffusion`: denoiser + schedule; ``sample(...)`` (packed output) and ``loss(...)``.
* :class:`BernoulliScheduler`: ``set_timesteps`` / ``step`` like a diffusers scheduler.
* :func:`accelerate`: wraps an official ``BinaryDiffusion`` object, same ``sample`` signature.
* :func:`sample_distributed`: one global batch sampled across ``torch.distributed`` ranks.
* :func:`sampling_grid`: the official step grid; the random-stream layout is in :mod:`.grid`.
* :func:`training_loss`: the official training loss with every option, fused where elementwise.
"""

from .accelerate import AcceleratedBinaryDiffusion, accelerate, match_schedule
from .diffusion import BernoulliDiffusion, sample_loop
from .distributed import batch_slice, sample_distributed
from .grid import REGION_COUNTERS, region_offset, sampling_grid, step_pairs
from .loss import training_loss
from .scheduler import BernoulliScheduler, SchedulerOutput

__all__ = [
    "AcceleratedBinaryDiffusion",
    "BernoulliDiffusion",
    "BernoulliScheduler",
    "REGION_COUNTERS",
    "SchedulerOutput",
    "accelerate",
    "batch_slice",
    "match_schedule",
    "region_offset",
    "sample_distributed",
    "sample_loop",
    "sampling_grid",
    "step_pairs",
    "training_loss",
]
