"""bldm_fast: fused, bit-packed kernels and a thin PyTorch API for Binary Latent Diffusion.

Contracts (math, bit layout, random stream, public names): docs/DESIGN.md.
"""

from . import data, models
from ._backends import available_backends, native_available
from .diffusion import (AcceleratedBinaryDiffusion, BernoulliDiffusion, BernoulliScheduler, SchedulerOutput,
                        accelerate, sample_distributed, sampling_grid, training_loss)
from .models import load_official
from .ops import (bernoulli_noise, binarize, flip_bce_loss, pack_bits, philox_uniform, philox_words, quantize_probs,
                  sample_step, unpack_bits)
from .rng import PhiloxGenerator
from .schedule import BernoulliSchedule
from .generate import save_image_grid

if native_available():
    from ._ops_fake import register_fakes

    register_fakes("bldm_fast")

__version__ = "0.1.0"

__all__ = [
    "AcceleratedBinaryDiffusion",
    "BernoulliDiffusion",
    "BernoulliScheduler",
    "SchedulerOutput",
    "accelerate",
    "sample_distributed",
    "sampling_grid",
    "training_loss",
    "BernoulliSchedule",
    "PhiloxGenerator",
    "available_backends",
    "bernoulli_noise",
    "binarize",
    "flip_bce_loss",
    "data",
    "load_official",
    "models",
    "native_available",
    "pack_bits",
    "philox_uniform",
    "philox_words",
    "quantize_probs",
    "sample_step",
    "unpack_bits",
]
