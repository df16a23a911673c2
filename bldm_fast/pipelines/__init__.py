"""diffusers pipelines for Binary Latent Diffusion (``pip install bldm_fast[diffusers]``).

* :class:`BinaryLatentDiffusionPipeline`: a ``DiffusionPipeline`` (denoiser + ``BernoulliScheduler``
  + autoencoder), bit-identical to ``BernoulliDiffusion.sample``; ``save_pretrained`` /
  ``from_pretrained`` / ``to(device, dtype)``.
* :class:`BinaryTransformerModel`, :class:`BinaryAutoencoderModel`: the networks as ``ModelMixin``
  modules (``config.json`` + safetensors weights).
* :func:`pipeline_from_official`, :func:`pipeline_from_run`, :func:`pipeline_from_models`,
  :func:`convert_to_pipeline` (``bldm-fast convert-pipeline``).

The names load on first use, so ``import bldm_fast.pipelines`` works without diffusers; using a
class then raises ImportError naming the extra.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "BinaryLatentDiffusionPipeline": "pipeline",
    "BinaryLatentDiffusionPipelineOutput": "pipeline",
    "BinaryTransformerModel": "models",
    "BinaryAutoencoderModel": "models",
    "convert_to_pipeline": "convert",
    "pipeline_from_models": "convert",
    "pipeline_from_official": "convert",
    "pipeline_from_run": "convert",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
