"""BernoulliScheduler: a diffusers scheduler for Bernoulli diffusion (diffusers optional).

The loop::

    sched = BernoulliScheduler(num_train_timesteps=T, beta_schedule="cos")
    sched.set_timesteps(steps)
    x = sched.init_noise(B, L, C, generator=gen)          # float 0/1 (B, L, C) (mask=, known= to inpaint)
    for t in sched.timesteps:
        logits = denoiser(x, time_steps=torch.full((B,), int(t) - 1))   # official: t - 1
        x = sched.step(logits, t, x, generator=gen).prev_sample

gives the same samples as ``BernoulliDiffusion.sample(B, steps=steps, generator=gen')`` with a
fresh ``gen'`` of the same seed (same random-stream layout, :mod:`bldm_fast.diffusion.grid`).

With diffusers installed (``pip install bldm_fast[diffusers]``) the class is a
``diffusers.SchedulerMixin`` + ``ConfigMixin`` and :class:`SchedulerOutput` a ``BaseOutput``;
without it :mod:`.diffusers_compat` supplies the same calls for local folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from ..ops import bernoulli_noise, pack_bits, sample_step, unpack_bits
from ..rng import PhiloxGenerator
from ..schedule import KINDS, BernoulliSchedule
from .diffusers_compat import DIFFUSERS_AVAILABLE, BaseOutput, ConfigMixin, SchedulerMixin
from .diffusion import _HALF, check_guidance, check_temperature, packed_condition
from .grid import check_region_capacity, region_offset, reserve_stream, sampling_grid

CONFIG_NAME = "scheduler_config.json"
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def philox_seed(generator: torch.Generator) -> int:
    """The Philox seed a ``torch.Generator`` stands for in :meth:`BernoulliScheduler.step` and the
    pipeline: ``torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device)``,
    one draw (so the generator advances like any torch sampling call, and the same generator state
    always gives the same seed), used with offset 0.

    Raises:
        TypeError: ``generator`` is not a ``torch.Generator``.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device).item())


@dataclass
class SchedulerOutput(BaseOutput):
    """Output of :meth:`BernoulliScheduler.step` (``out.prev_sample``, ``out[0]``, ``out.to_tuple()``).

    Attributes:
        prev_sample: float 0/1 ``(B, L, C)`` (dtype of the input ``sample``): ``x_{t_prev}``.
        pred_original_sample: float32 ``(B, L, C)``: ``P(x_0 = 1)`` predicted at this step
            (after temperature and guidance).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class BernoulliScheduler(SchedulerMixin, ConfigMixin):
    """Diffusers scheduler for Bernoulli (binary latent) diffusion.

    Args:
        num_train_timesteps: ``T``, the training steps.
        beta_schedule: ``"linear"``, ``"cos"`` or ``"sigmoid"`` (the official ``beta_type``).
        predict_flip: the model predicts flip logits (official ``p_flip``), else ``x_0 = 1`` logits.

    Attributes:
        config: a frozen dict (diffusers' ``FrozenDict``) of the three arguments, also readable as
            attributes (``config.beta_schedule``).
        schedule: the :class:`~bldm_fast.BernoulliSchedule`.
        timesteps: long tensor of the official grid, descending (after :meth:`set_timesteps`;
            before it, ``T..1``). The official denoiser takes ``time_steps = t - 1``.
        num_inference_steps, init_noise_sigma (1.0), order (1); ``len(scheduler)`` is ``T``.
        step_index: index in :attr:`timesteps` of the next step (None until the run's first
            step); begin_index: set by :meth:`set_begin_index`, else None.

    Random stream: one sampling run uses the regions of :mod:`bldm_fast.diffusion.grid`: the
    first of :meth:`init_noise` / :meth:`step` after :meth:`set_timesteps` that gets a
    ``generator`` / ``seed`` reserves the run's stream (``(S + 1) * 2**40`` counters of a
    :class:`~bldm_fast.PhiloxGenerator`; a ``torch.Generator`` gives the seed :func:`philox_seed`,
    offset 0); later calls of the run reuse it (passing the same generator or seed again is
    allowed), step ``i`` of :attr:`timesteps` drawing from region ``i + 1``. The final step (to
    ``t = 0``) ends the run: the next call reserves a new stream.

    Raises:
        ValueError: bad ``num_train_timesteps`` or ``beta_schedule``.
    """

    config_name = CONFIG_NAME
    _compatibles: list = []
    order = 1
    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps: int = 256, beta_schedule: str = "linear", predict_flip: bool = True):
        if beta_schedule not in KINDS:
            raise ValueError(f"beta_schedule must be one of {KINDS}, got {beta_schedule!r}")
        self.schedule = BernoulliSchedule(num_train_timesteps, beta_schedule)
        self.register_to_config(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                                predict_flip=bool(predict_flip))
        self.predict_flip = bool(predict_flip)
        self.set_timesteps(num_train_timesteps)

    def __len__(self) -> int:
        return self.num_train_timesteps

    def __repr__(self) -> str:
        return f"BernoulliScheduler({json.dumps(dict(self.config))})"

    # ------------------------------------------------------------------------------------------
    # config
    # ------------------------------------------------------------------------------------------
    def save_config(self, save_directory, push_to_hub: bool = False, **kwargs) -> str:
        """Write ``scheduler_config.json`` (``_class_name`` and the three arguments) into
        ``save_directory`` (created if needed); returns its path. ``save_pretrained`` writes the
        same. ``push_to_hub`` (diffusers only) uses diffusers' own writer and upload instead."""
        if push_to_hub:
            if not DIFFUSERS_AVAILABLE:
                raise ValueError("push_to_hub needs diffusers (pip install bldm_fast[diffusers])")
            ConfigMixin.save_config(self, save_directory, push_to_hub=True, **kwargs)
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, CONFIG_NAME)
        data = {"_class_name": type(self).__name__, **self.config}
        with open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        return path

    @classmethod
    def from_config(cls, config, return_unused_kwargs: bool = False, **overrides) -> "BernoulliScheduler":
        """Build from a dict (a ``config``), a JSON file or a directory holding
        ``scheduler_config.json``; ``overrides`` replace entries. Keys starting with ``_`` are
        ignored; ``kind`` is read as ``beta_schedule``. ``from_pretrained(path, subfolder=...)``
        (diffusers' with diffusers installed, Hub names included) ends here too.

        Returns:
            the scheduler, or ``(scheduler, {})`` with ``return_unused_kwargs`` (diffusers' form).

        Raises:
            ValueError: unknown keys or bad values; FileNotFoundError: no such file.
        """
        if isinstance(config, (str, os.PathLike)):
            path = os.fspath(config)
            if os.path.isdir(path):
                path = os.path.join(path, CONFIG_NAME)
            with open(path) as f:
                config = json.load(f)
        if not isinstance(config, dict):  # FrozenDict is a dict in both forms
            raise ValueError(f"config must be a dict or a path, got {type(config).__name__}")
        data = {k: v for k, v in {**config, **overrides}.items() if not k.startswith("_")}
        if "kind" in data:
            data.setdefault("beta_schedule", data.pop("kind"))
        unknown = set(data) - {"num_train_timesteps", "beta_schedule", "predict_flip"}
        if unknown:
            raise ValueError(f"unknown BernoulliScheduler config keys: {sorted(unknown)}")
        return (cls(**data), {}) if return_unused_kwargs else cls(**data)

    # ------------------------------------------------------------------------------------------
    # timesteps
    # ------------------------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.num_steps

    def set_timesteps(self, num_inference_steps: int | None = None, device=None) -> None:
        """Set :attr:`timesteps` to the official grid of ``num_inference_steps`` (default ``T``),
        descending (long, on ``device``), and start a new run of the random stream.

        Raises:
            ValueError: ``num_inference_steps`` outside ``1..T``.
        """
        grid = sampling_grid(self.num_train_timesteps, num_inference_steps)
        self._grid = grid
        self._index = {t: i for i, t in enumerate(grid)}
        self.num_inference_steps = len(grid)
        self.timesteps = torch.tensor(grid, dtype=torch.long, device=device)
        self._stream = None
        self._stream_source = None
        self._step_index = None
        self._begin_index = None

    @property
    def step_index(self) -> int | None:
        """Index in :attr:`timesteps` of the next step of the run (None before its first step)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The first step's index set by :meth:`set_begin_index`, else None."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the run at ``timesteps[begin_index]`` (diffusers' API, e.g. for a partly noised
        start from :meth:`add_noise`); the first :meth:`step` must then get that timestep.

        Raises:
            ValueError: ``begin_index`` not an int in ``0..num_inference_steps - 1``.
        """
        n = self.num_inference_steps
        if isinstance(begin_index, bool) or not isinstance(begin_index, int) or not 0 <= begin_index < n:
            raise ValueError(f"begin_index must be an int in 0..{n - 1}, got {begin_index!r}")
        self._begin_index = begin_index

    def previous_timestep(self, timestep) -> int:
        """The grid's next (smaller) timestep after ``timestep``, 0 after the last."""
        i = self._index_of(timestep)
        return self._grid[i + 1] if i + 1 < len(self._grid) else 0

    def _index_of(self, timestep) -> int:
        t = int(timestep.reshape(-1)[0]) if isinstance(timestep, torch.Tensor) else timestep
        if isinstance(t, bool) or not isinstance(t, int) or t not in self._index:
            raise ValueError(f"timestep {timestep!r} is not in the scheduler's timesteps {self._grid}")
        return self._index[t]

    def _run_stream(self, generator, seed) -> tuple[int, int]:
        if generator is not None and not isinstance(generator, (PhiloxGenerator, torch.Generator)):
            raise TypeError(f"generator must be a bldm_fast.PhiloxGenerator or a torch.Generator, got "
                            f"{type(generator).__name__}")
        if self._stream is None:
            if isinstance(generator, torch.Generator):
                if seed is not None:
                    raise ValueError("give a generator or a seed, not both")
                self._stream = reserve_stream(None, philox_seed(generator), None, self.num_inference_steps)
            else:
                self._stream = reserve_stream(generator, seed, None, self.num_inference_steps)
            self._stream_source = generator
            return self._stream
        s = self._stream[0]
        if isinstance(generator, torch.Generator):
            if generator is not self._stream_source:
                raise ValueError("this sampling run started with another generator; pass the torch.Generator it "
                                 "started with (call set_timesteps to start a new run)")
        elif generator is not None and generator.seed != s:
            raise ValueError("generator has another seed than the one this sampling run started with "
                             "(call set_timesteps to start a new run)")
        if seed is not None and seed != s:
            raise ValueError(f"seed {seed} differs from the seed {s} this sampling run started with "
                             "(call set_timesteps to start a new run)")
        return self._stream

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """Identity (diffusers API)."""
        return sample

    # ------------------------------------------------------------------------------------------
    # noise
    # ------------------------------------------------------------------------------------------
    def init_noise(self, batch_size: int, length: int, channels: int, *,
                   generator: PhiloxGenerator | torch.Generator | None = None,
                   seed: int | None = None, device=None, dtype: torch.dtype = torch.float32,
                   mask: torch.Tensor | None = None, known: torch.Tensor | None = None,
                   backend: str = "auto") -> torch.Tensor:
        """The initial ``x_T ~ Bernoulli(0.5)`` of a run, float 0/1 ``(B, L, C)`` in ``dtype``,
        from region 0 of the run's stream (starts the run's stream). With ``mask``/``known``
        (inpainting, forms as in :meth:`step`) the known bits are imposed, as the official sampler
        does before its first step.

        Raises:
            ValueError: sizes < 1, bad seed, mask without known or of a wrong shape;
            TypeError: a non-float ``dtype``, mask/known of another dtype.
        """
        for name, v in (("batch_size", batch_size), ("length", length), ("channels", channels)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be a float dtype, got {dtype}")
        check_region_capacity(batch_size * length * channels)
        s, base = self._run_stream(generator, seed)
        zeros = torch.zeros((batch_size, length, (channels + 7) // 8), dtype=torch.uint8, device=device)
        if (mask is None) != (known is None):
            raise ValueError("mask and known must be given together (known holds the bits that mask re-imposes)")
        packed, x, _ = bernoulli_noise(zeros, 1, _HALF, channels, seed=s, offset=region_offset(base, 0),
                                       out_dtype=dtype, backend=backend)
        if mask is not None:
            m = packed_condition(mask, "mask", batch_size, length, channels, zeros.device)
            k = packed_condition(known, "known", batch_size, length, channels, zeros.device)
            x = unpack_bits((packed & ~m) | (k & m), channels, dtype, backend=backend)
        return x

    def add_noise(self, original_samples: torch.Tensor, timesteps, *, generator: PhiloxGenerator | None = None,
                  seed: int | None = None, backend: str = "auto") -> torch.Tensor:
        """Training forward process ``q(x_t | x_0)`` of float 0/1 ``(B, L, C)`` samples at
        ``timesteps`` (int or long ``(B,)`` in ``1..T``); returns float 0/1 of the input dtype.
        Uses its own generator/seed (not the sampling run's stream)."""
        c = original_samples.shape[-1]
        packed = pack_bits(original_samples, backend=backend)
        _, x, _ = bernoulli_noise(packed, timesteps, self.schedule, c, generator=generator, seed=seed,
                                  out_dtype=original_samples.dtype, backend=backend)
        return x

    # ------------------------------------------------------------------------------------------
    # step
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, *, temperature: float = 1.0,
             guidance: float | None = None, uncond_model_output: torch.Tensor | None = None,
             mask: torch.Tensor | None = None, known: torch.Tensor | None = None,
             generator: PhiloxGenerator | torch.Generator | None = None, seed: int | None = None,
             return_dict: bool = True,
             backend: str = "auto"):
        """One reverse step from ``timestep`` to the next grid value (0 after the last: threshold).

        Args:
            model_output: logits ``(B, L, C)`` float32/float16/bfloat16 (flip logits when ``predict_flip``).
            timestep: a value of :attr:`timesteps` (int or tensor).
            sample: ``x_t``, float 0/1 ``(B, L, C)`` (bool/uint8 0/1 accepted too).
            temperature: > 0; guidance / uncond_model_output: classifier-free guidance
                ``(1 + g) cond - g uncond``.
            mask, known: inpainting, as :func:`bldm_fast.sample_step` (``(L, C)`` or ``(B, L, C)``).
            generator / seed: the run's stream (see the class docstring): a
                :class:`~bldm_fast.PhiloxGenerator`, a ``torch.Generator`` (seed :func:`philox_seed`,
                drawn once per run) or a seed.
            return_dict: return :class:`SchedulerOutput`, else the tuple ``(prev_sample, pred_original_sample)``.

        Returns:
            ``SchedulerOutput(prev_sample, pred_original_sample)``: float 0/1 ``x_{t_prev}`` in
            ``sample``'s dtype (float32 for bool/uint8 input), and float32 ``P(x_0 = 1)`` (computed
            without autograd).

        Raises:
            ValueError: ``timestep`` not in :attr:`timesteps` (or not ``timesteps[begin_index]`` on
                the first step after :meth:`set_begin_index`), shapes that do not match, guidance
                without ``uncond_model_output``, a seed or generator other than the run's, NaN logits.
            TypeError: tensors of unsupported dtypes, a generator of another type.
        """
        i = self._index_of(timestep)
        if self._step_index is None and self._begin_index is not None and i != self._begin_index:
            raise ValueError(f"timestep {int(self._grid[i])} is not timesteps[begin_index = {self._begin_index}] = "
                             f"{self._grid[self._begin_index]}, where set_begin_index starts the run")
        t = self._grid[i]
        t_prev = self._grid[i + 1] if i + 1 < len(self._grid) else 0
        temperature = check_temperature(temperature)
        g = check_guidance(guidance)
        if (isinstance(g, torch.Tensor) or g != 0) and uncond_model_output is None:
            raise ValueError("guidance needs uncond_model_output (the unconditional model output)")
        if not isinstance(sample, torch.Tensor):
            raise TypeError(f"sample must be a torch.Tensor, got {type(sample).__name__}")
        if not isinstance(model_output, torch.Tensor):
            raise TypeError(f"model_output must be a torch.Tensor, got {type(model_output).__name__}")
        if sample.shape != model_output.shape:
            raise ValueError(f"sample {tuple(sample.shape)} and model_output {tuple(model_output.shape)} "
                             "must have the same shape (B, L, C)")
        check_region_capacity(sample.numel(), "sample.numel()")
        s, base = self._run_stream(generator, seed)
        c = sample.shape[-1]
        out_dtype = sample.dtype if sample.dtype in _FLOAT_DTYPES else torch.float32
        xt = pack_bits(sample, backend=backend)
        unc = uncond_model_output if isinstance(g, torch.Tensor) or g != 0 else None
        _, _, prev = sample_step(model_output, xt, t, t_prev, self.schedule, seed=s,
                                 offset=region_offset(base, i + 1), temperature=temperature, guidance=g,
                                 uncond_logits=unc, predict_flip=self.predict_flip, mask=mask, known=known,
                                 out_dtype=out_dtype, backend=backend)
        p0 = self._p0(model_output, unc, g, temperature, xt, c, backend)
        self._step_index = i + 1
        if t_prev == 0:  # the run is over: the next one reserves a fresh stream
            self._stream = None
            self._stream_source = None
        if not return_dict:
            return prev, p0
        return SchedulerOutput(prev_sample=prev, pred_original_sample=p0)

    def _p0(self, cond, uncond, g, temperature, xt_packed, channels, backend) -> torch.Tensor:
        """float32 ``P(x_0 = 1)``: sigmoid of the guided, tempered logit, flipped where ``x_t = 1``
        for flip predictions (each side from its own sigmoid, so no ``1 - p`` rounding)."""
        l = cond.float()
        if uncond is not None:
            l = l + g * (l - uncond.float())
        l = l * (1.0 / temperature)
        if self.predict_flip:
            x = unpack_bits(xt_packed, channels, torch.bool, backend=backend)
            l = torch.where(x, -l, l)
        return torch.sigmoid(l)
