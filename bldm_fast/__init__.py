"""bldm_fast: fused, bit-packed kernels and a thin PyTorch API for Binary Latent Diffusion.

Contracts (math, bit layout, random stream, public names): docs/DESIGN.md.

The public names load on first use (PEP 562 ``__getattr__``): ``import bldm_fast`` imports neither
torch's compiler (torch._dynamo) nor the model and data layers, and ``bldm_fast.cli`` imports
without torch at all. ``from bldm_fast import X`` and ``bldm_fast.X`` work as for eager imports.
"""

import importlib

__version__ = "0.1.0"

# public name -> (submodule, attribute in it; None: the submodule itself)
_LAZY = {
    "AcceleratedBinaryDiffusion": ("diffusion", "AcceleratedBinaryDiffusion"),
    "BernoulliDiffusion": ("diffusion", "BernoulliDiffusion"),
    "BernoulliScheduler": ("diffusion", "BernoulliScheduler"),
    "SchedulerOutput": ("diffusion", "SchedulerOutput"),
    "accelerate": ("diffusion", "accelerate"),
    "sample_distributed": ("diffusion", "sample_distributed"),
    "sampling_grid": ("diffusion", "sampling_grid"),
    "training_loss": ("diffusion", "training_loss"),
    "BernoulliSchedule": ("schedule", "BernoulliSchedule"),
    "PhiloxGenerator": ("rng", "PhiloxGenerator"),
    "available_backends": ("_backends", "available_backends"),
    "backend_status": ("_native", "backend_status"),
    "native_available": ("_backends", "native_available"),
    "NoiseResult": ("ops", "NoiseResult"),
    "StepResult": ("ops", "StepResult"),
    "bernoulli_noise": ("ops", "bernoulli_noise"),
    "binarize": ("ops", "binarize"),
    "flip_bce_loss": ("ops", "flip_bce_loss"),
    "pack_bits": ("ops", "pack_bits"),
    "philox_uniform": ("ops", "philox_uniform"),
    "philox_words": ("ops", "philox_words"),
    "quantize_probs": ("ops", "quantize_probs"),
    "sample_step": ("ops", "sample_step"),
    "unpack_bits": ("ops", "unpack_bits"),
    "load_official": ("models", "load_official"),
    "save_image_grid": ("generate.grid", "save_image_grid"),
    "data": ("data", None),
    "models": ("models", None),
}

# Submodules reachable as attributes (``bldm_fast.diffusion.sampling_grid``) without an import.
_SUBMODULES = ("bench", "data", "demo", "diffusion", "generate", "models", "ops", "pipelines", "quality", "reference",
               "rng", "schedule", "train")

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Import the submodule that defines public ``name`` and cache it in this module's globals.

    Raises:
        AttributeError: ``name`` is not a public name of bldm_fast.
    """
    if name in _SUBMODULES and name not in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name not in _LAZY:
        raise AttributeError(f"module 'bldm_fast' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
