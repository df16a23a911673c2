"""The public fused ops; each validates its arguments, then runs on the chosen backend."""

from .binarize import binarize, quantize_probs
from .loss import flip_bce_loss
from .noise import bernoulli_noise
from .packing import pack_bits, unpack_bits
from .philox import philox_uniform, philox_words
from .results import NoiseResult, StepResult
from .step import sample_step

__all__ = ["NoiseResult", "StepResult", "bernoulli_noise", "binarize", "flip_bce_loss", "pack_bits", "quantize_probs",
           "philox_uniform", "philox_words", "sample_step", "unpack_bits"]
