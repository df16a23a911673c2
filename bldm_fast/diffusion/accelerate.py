"""accelerate(): the official ``BinaryDiffusion`` sampler with its loop body replaced by the fused step.

Duck-typed on the official class (ZeWang95/BinaryLatentDiffusion, ``models/binarylatent.py``):
it reads ``_denoise_fn``, ``scheduler`` (buffers ``k_final``, ``b_final``, ``beta``),
``num_timesteps``, ``p_flip``, ``shape``, ``codebook_size`` and ``dataset``. The object returned
keeps the official ``sample(temp, sample_steps, b, return_all, label, mask, guidance, full)``
signature and its results' form (float 0/1 tensors) and delegates every other attribute to the
official object.
"""

from __future__ import annotations

import math

import torch

from ..ops import unpack_bits
from ..rng import PhiloxGenerator
from ..schedule import KINDS, BernoulliSchedule
from .._backends import backend_ops, resolve_backend
from .diffusion import (FastSampler, _model_device, autocast_for, check_compute_dtype, check_guidance,
                        check_temperature, compile_options, denoiser_call, fused_step, packed_condition, sample_loop,
                        use_batched_guidance)
from .grid import check_region_capacity, reserve_stream, sampling_grid

_REQUIRED = ("_denoise_fn", "scheduler", "num_timesteps", "p_flip", "shape", "codebook_size", "dataset")


def match_schedule(scheduler, num_timesteps: int, atol: float = 1e-6) -> BernoulliSchedule:
    """The :class:`~bldm_fast.BernoulliSchedule` whose tables equal an official ``noise_scheduler``'s
    buffers ``k_final``, ``b_final``, ``beta`` (each of length ``T + 1``, within ``atol``).

    Raises:
        ValueError: a buffer is missing or of the wrong length, or no kind (linear, cos, sigmoid) matches.
    """
    tables = {}
    for name in ("k_final", "b_final", "beta"):
        buf = getattr(scheduler, name, None)
        if not isinstance(buf, torch.Tensor):
            raise ValueError(f"official scheduler has no tensor buffer {name!r}")
        if buf.shape != (num_timesteps + 1,):
            raise ValueError(f"official scheduler.{name} has shape {tuple(buf.shape)}, expected "
                             f"(num_timesteps + 1,) = ({num_timesteps + 1},)")
        tables[name] = buf.detach().to("cpu", torch.float64)
    errors = {}
    for kind in KINDS:
        s = BernoulliSchedule(num_timesteps, kind)
        err = max(float((tables[n] - ours.double()).abs().max())
                  for n, ours in (("k_final", s.k), ("b_final", s.b), ("beta", s.beta)))
        if err <= atol:
            return s
        errors[kind] = err
    raise ValueError("the official scheduler's k_final/b_final/beta match no BernoulliSchedule kind "
                     f"(max abs difference per kind: {errors})")


class AcceleratedBinaryDiffusion:
    """The official ``BinaryDiffusion`` with a fused, bit-packed ``sample``; made by :func:`accelerate`.

    Attributes:
        official: the wrapped official object (every attribute not defined here is read from it).
        schedule: the matching :class:`~bldm_fast.BernoulliSchedule`.
        length, channels: ``L = prod(official.shape)`` and ``C = official.codebook_size``.
    """

    def __init__(self, official):
        missing = [n for n in _REQUIRED if not hasattr(official, n)]
        if missing:
            raise ValueError(f"accelerate() needs an official BinaryDiffusion-like object; missing {missing}")
        self.official = official
        T = int(official.num_timesteps)
        self.schedule = match_schedule(official.scheduler, T)
        self.length = int(math.prod(official.shape))
        self.channels = int(official.codebook_size)
        self.fast = FastSampler()

    def __getattr__(self, name):
        if name in ("official", "fast"):  # not set yet (during construction / unpickling)
            raise AttributeError(name)
        return getattr(self.official, name)

    def __repr__(self) -> str:
        return f"accelerate({type(self.official).__name__}, kind={self.schedule.kind!r}, T={self.schedule.num_steps})"

    @torch.no_grad()
    def sample(self, temp=1.0, sample_steps=None, b=5, return_all=False, label=None, mask=None, guidance=None,
               full=False, *, generator: PhiloxGenerator | None = None, seed: int | None = None,
               backend: str = "auto", progress: bool = False, device=None, dtype: torch.dtype | None = None,
               compile=False, batch_guidance: bool | None = None) -> torch.Tensor:
        """The official ``BinaryDiffusion.sample``, each step one fused op on packed bits.

        Same arguments and semantics as the official method: ``b`` samples of ``x_T ~ Bernoulli(0.5)``
        of shape ``(b, prod(shape), codebook_size)``; ``mask = {"mask": (L, C), "latent": (L, C)}``
        re-imposed on the initial noise and after every step; for ``dataset == "imagenet"`` a
        ``label`` int becomes ``full((b,), label)`` and ``None`` ``arange(b) * 100``; datasets
        starting with ``imagenet``/``laion`` call ``_denoise_fn(x, label, time_steps=t - 1)`` (and
        with ``guidance`` not None a second call with ``None``), others
        ``_denoise_fn(x, time_steps=t - 1)`` and ignore ``guidance``; ``full`` is unused (as in the
        official code). Differences: ``sample_steps=None`` means ``num_timesteps`` (the official
        code fails on it); tensors live on the denoiser's device, not always ``"cuda"``; the random
        numbers come from the bldm_fast stream (keyword-only ``generator`` / ``seed``; layout as
        :meth:`bldm_fast.BernoulliDiffusion.sample`). ``dtype``, ``compile`` and ``batch_guidance``
        (keyword-only) are those of :meth:`bldm_fast.BernoulliDiffusion.sample` (``compile`` without
        ``fullgraph``: the official denoiser is not known to trace whole; the caches live on
        ``self.fast``); the default keeps today's bits.

        Returns:
            float32 0/1 ``(b, L, C)``, or with ``return_all`` ``((S + 1) * b, L, C)``: the initial
            noise and the state after every step, concatenated along dim 0 like the official code.

        Raises:
            ValueError: ``sample_steps`` outside ``1..num_timesteps``, ``temp`` not > 0, ``b`` < 1,
                a malformed ``mask`` dict, logits of the wrong shape or NaN, bad seed,
                ``batch_guidance=True`` for a denoiser without ``guided_forward``.
            TypeError: ``dtype``, ``compile`` or ``batch_guidance`` of the wrong type.
        """
        off = self.official
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"b must be a positive int, got {b!r}")
        temp = check_temperature(temp)
        grid = sampling_grid(self.schedule.num_steps, sample_steps)
        g = check_guidance(guidance)
        device = torch.device(device) if device is not None else _model_device(off._denoise_fn)
        L, C = self.length, self.channels
        check_region_capacity(b * L * C, "b * L * C")
        dataset = str(off.dataset)
        if dataset == "imagenet":
            if label is None:
                label = torch.arange(b, device=device).long() * 100
            elif isinstance(label, torch.Tensor):
                label = label.to(device=device, dtype=torch.long).expand(b) if label.dim() == 0 else \
                    label.to(device=device, dtype=torch.long)
            else:
                label = torch.full((b,), label, device=device, dtype=torch.long)
        conditional = dataset.startswith("imagenet") or dataset.startswith("laion")
        m = known = None
        if mask is not None:
            if not isinstance(mask, dict) or "mask" not in mask or "latent" not in mask:
                raise ValueError("mask must be a dict {'mask': (L, C), 'latent': (L, C)} like the official code's")
            m = packed_condition(mask["mask"], "mask['mask']", b, L, C, device)
            known = packed_condition(mask["latent"], "mask['latent']", b, L, C, device)
        dtype = check_compute_dtype(dtype)
        options = compile_options(compile, fullgraph=False)
        use_guidance = conditional and guidance is not None and (isinstance(g, torch.Tensor) or g != 0)
        batched = use_batched_guidance(batch_guidance, off._denoise_fn, device, use_guidance)
        den = self.fast.denoiser(off._denoise_fn, dtype)
        call = denoiser_call(den, conditional=conditional, guided=use_guidance, batched=batched, label_keyword=False)
        input_dtype = torch.float32 if dtype is None else dtype
        hint = f" (official shape {tuple(off.shape)}, codebook_size {C})"

        def model_fn(x_in, t):
            ts = torch.full((b,), t - 1, device=device, dtype=torch.long)
            with autocast_for(device, dtype):
                return call(x_in, ts, label)

        step_fn = None
        if options is not None:
            resolved = resolve_backend(backend, device)
            config = (dtype, id(den), resolved, str(device), use_guidance, batched, conditional, m is not None,
                      bool(off.p_flip))
            compiled = self.fast.compiled_step(config, lambda: fused_step(
                call, backend_ops(resolved), channels=C, guided=use_guidance, predict_flip=bool(off.p_flip),
                input_dtype=input_dtype, device=device, dtype=dtype, shape_hint=hint), options)

            def step_fn(x_in, xt, t, mask_, known_, scalars, stream):
                return compiled(x_in, xt, t, label, mask_, known_, scalars, stream)

        s, base = reserve_stream(generator, seed, None, len(grid))
        x, traj = sample_loop(model_fn, self.schedule, grid, batch_size=b, length=L, channels=C, device=device,
                              seed=s, base=base, temperature=temp, guidance=g if use_guidance else 0.0,
                              predict_flip=bool(off.p_flip), mask=m, known=known, return_all=return_all,
                              backend=backend, progress=progress, input_dtype=input_dtype, shape_hint=hint,
                              step_fn=step_fn)
        if return_all:
            return unpack_bits(traj, C, torch.float32, backend=backend).reshape(-1, L, C)
        return unpack_bits(x, C, torch.float32, backend=backend)


def accelerate(official_sampler) -> AcceleratedBinaryDiffusion:
    """Wrap an official ``BinaryDiffusion`` so that ``sample(...)`` runs the fused, packed step.

    The official object is not modified; the wrapper reads its denoiser and settings on every call
    and delegates every other attribute to it.

    Raises:
        ValueError: the object lacks an attribute of the official class, or its scheduler's tables
            match no :class:`~bldm_fast.BernoulliSchedule` kind.
    """
    return AcceleratedBinaryDiffusion(official_sampler)
