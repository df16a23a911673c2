"""BernoulliDiffusion: the denoiser plus its Bernoulli schedule, with the fused, bit-packed sampler.

The sampling loop (:func:`sample_loop`) is the official ``BinaryDiffusion.sample`` with every
operation between two denoiser calls done by one fused :func:`bldm_fast.sample_step`: the state
stays packed (uint8 ``(B, L, ceil(C/8))``) and the step writes the next model input directly.
The random stream of a call is laid out in regions (see :mod:`bldm_fast.diffusion.grid`), so a
seed gives the same samples on every backend and for every batch size.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from typing import Callable

import torch
from torch import nn

from .._backends import backend_ops, resolve_backend
from .._checks import ArgumentTypeError, check_logits, check_temperature as _check_temperature
from .._checks import check_finite_f32, check_tensor_range, compiling
from ..ops import pack_bits
from ..ops.noise import noise_thresholds
from ..ops.step import guidance_scalars, run_step
from ..rng import PhiloxGenerator, as_int64
from ..schedule import BernoulliSchedule
from .grid import REGION_COUNTERS, check_region_capacity, region_offset, reserve_stream, sampling_grid, step_pairs

# x ~ Bernoulli(0.5) as the noising op of a one-step linear schedule: k[1] = 0, b[1] = 0.5, so from
# x_0 = 0 the op draws [u < 0.5] (the threshold 0.5 is exact in float32) on every backend.
_HALF = BernoulliSchedule(1, "linear")
_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.bool)

ModelFn = Callable[[torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor | None]"]
StepFn = Callable[..., "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]
#: the denoiser compute dtypes of ``sample(dtype=...)``
COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _nbytes(channels: int) -> int:
    return (channels + 7) // 8


def _pos_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_temperature(temperature):
    """A temperature > 0 whose reciprocal is a finite float32 (number or 0-d tensor); see
    :func:`bldm_fast._checks.check_temperature`."""
    return _check_temperature(temperature)


def check_guidance(guidance):
    """``None`` -> 0.0; else a number finite in float32 (or a 0-d tensor)."""
    if guidance is None:
        return 0.0
    return check_finite_f32(guidance, "guidance")


def packed_condition(x, name: str, batch: int, length: int, channels: int, device) -> torch.Tensor:
    """``mask`` / ``known`` as contiguous packed uint8 ``(batch, L, ceil(C/8))`` on ``device``.

    Accepts uint8 (packed, last dim ``ceil(C/8)``) or bool/float 0/1 (unpacked, last dim ``C``),
    of shape ``(L, *)`` (every sample) or ``(B, L, *)``.

    Raises:
        TypeError: not a tensor, or another dtype.
        ValueError: a shape that is neither of the above, or float values other than 0/1.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype == torch.uint8:
        last = _nbytes(channels)
    elif x.dtype == torch.bool or x.is_floating_point():
        last = channels
    else:
        raise TypeError(f"{name} must be uint8 (packed) or bool/float 0/1 (unpacked), got {x.dtype}")
    if x.dim() not in (2, 3) or tuple(x.shape[-2:]) != (length, last) or (x.dim() == 3 and x.shape[0] != batch):
        raise ValueError(f"{name} ({x.dtype}) must have shape ({length}, {last}) or ({batch}, {length}, {last}) "
                         f"(L = {length} tokens, {'packed ceil(C/8)' if x.dtype == torch.uint8 else 'C'} = {last}), "
                         f"got {tuple(x.shape)}")
    x = x.to(device)
    if x.dtype != torch.uint8:
        x = pack_bits(x)
    return torch.broadcast_to(x, (batch, length, _nbytes(channels))).contiguous()


def loop_streams(seed: int, base: int, element_start: int, regions: int, device) -> torch.Tensor:
    """int64 ``(regions, 2)``: row ``r`` is the ``stream`` ``[seed, offset]`` of region ``r`` of a
    sampling call (offset ``base + r * 2**40 + element_start // 4``), made on the device from
    scalars (fill/arange kernels, no host-to-device copy, so a CUDA graph can capture it). The
    offsets were validated by :func:`~bldm_fast.diffusion.grid.reserve_stream`; int64 arithmetic
    wraps exactly like the uint64 counters."""
    first = as_int64(region_offset(base, 0, element_start))
    r = torch.arange(regions, dtype=torch.int64, device=device)
    offsets = r * REGION_COUNTERS + torch.full((), first, dtype=torch.int64, device=device)
    return torch.stack((torch.full((regions,), as_int64(seed), dtype=torch.int64, device=device), offsets), dim=1)


def loop_scalars(schedule: BernoulliSchedule, pairs, temperature, guidance, device) -> torch.Tensor:
    """float32 ``(S, 7)``: row ``i`` is the ``scalars`` argument of step ``i`` (see
    :func:`bldm_fast.ops.step.step_scalars`), gathered from views of the schedule's device table."""
    table, _ = schedule.tables_on(device)
    guide = guidance_scalars(temperature, guidance, device)
    rows = torch.stack([table[t, t_prev] for t, t_prev in pairs])
    return torch.cat((guide.expand(len(pairs), 2), rows), dim=1)


def check_nan_flags(flags: torch.Tensor, pairs) -> None:
    """Raise for the first step whose NaN flag is set (one device-to-host read for the loop; under
    torch.compile a device assert, which raises RuntimeError on the CPU, instead of a graph break).

    Raises:
        ValueError: some step's (guided) logits held NaN.
    """
    if compiling():
        torch._assert_async(flags.sum() == 0, "sample_step: logits contain NaN (or guidance combined infinite "
                                              "logits into NaN)")
        return
    bad = flags.nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        t, t_prev = pairs[i]
        raise ValueError(f"sample_step: logits contain NaN (or guidance combined infinite logits into NaN), first at "
                         f"step {i} (t={t} -> t_prev={t_prev})")


def _check_outputs(logits, uncond, expected, t, shape_hint) -> None:
    for name, out in (("logits", logits), ("unconditional logits", uncond)):
        if out is not None and (not isinstance(out, torch.Tensor) or tuple(out.shape) != expected):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the denoiser returned {name} of shape {got} at t={t}, expected (B, L, C) = "
                             f"{expected}{shape_hint}")
    check_logits(logits)
    if uncond is not None and uncond.dtype != logits.dtype:
        raise ArgumentTypeError(f"the denoiser's unconditional logits must have the dtype of its logits "
                                f"({logits.dtype}), got {uncond.dtype}")


@torch.no_grad()
def sample_loop(model_fn: ModelFn, schedule: BernoulliSchedule, grid: list[int], *, batch_size: int, length: int,
                channels: int, device, seed: int, base: int, element_start: int = 0, temperature: float = 1.0,
                guidance: float = 0.0, predict_flip: bool = True, mask: torch.Tensor | None = None,
                known: torch.Tensor | None = None, return_all: bool = False, backend: str = "auto",
                progress: bool = False, input_dtype: torch.dtype = torch.float32, shape_hint: str = "",
                check_nan: bool = True, step_fn: StepFn | None = None):
    """The fused sampling loop shared by :class:`BernoulliDiffusion`, :func:`accelerate` and
    :func:`sample_distributed`.

    The loop reads nothing back from the device until it returns: the steps' scalars and streams
    are device tensors made before the first step, each step records its NaN flag on the device,
    and the flags are read once at the end (``check_nan``), so on CUDA the whole loop can be
    captured in a CUDA graph (after one eager call has put the schedule tables on the device).

    Args:
        model_fn: ``model_fn(x_in, t) -> (logits, uncond_logits or None)``; ``x_in`` is the
            unpacked state ``(B, L, C)`` in ``input_dtype``, ``t`` the current step (int, 1..T);
            logits ``(B, L, C)`` float32/float16/bfloat16 on ``device``.
        schedule: the :class:`~bldm_fast.BernoulliSchedule`.
        grid: descending steps (:func:`~bldm_fast.diffusion.grid.sampling_grid`).
        batch_size, length, channels: ``B``, ``L``, ``C``.
        seed, base: the stream; region 0 at ``base`` holds the initial noise, region ``i + 1`` step ``i``.
        element_start: flat element of ``(B_global, L, C)`` where this batch starts (a multiple of 4).
        temperature, guidance: validated numbers (or 0-d tensors).
        mask, known: packed uint8 ``(B, L, ceil(C/8))`` (see :func:`packed_condition`) or None.
        return_all: also return the packed trajectory.
        check_nan: read the steps' NaN flags at the end and raise; False returns them instead.
        step_fn: instead of ``model_fn`` and the step, one callable per step (e.g. the
            ``torch.compile``'d denoiser + step of :class:`FastSampler`):
            ``step_fn(x_in, xt, t, mask, known, scalars, stream) -> (x_prev packed, next model input,
            int32 (1,) NaN flag)`` with ``t`` an int64 0-d device tensor; it writes the model input
            on every step (the last one is discarded), so one graph serves every step.

    Returns:
        ``(x0_packed, trajectory or None)``: uint8 ``(B, L, ceil(C/8))`` and uint8
        ``(S + 1, B, L, ceil(C/8))`` (the initial noise, then the state after each step); with
        ``check_nan=False`` also the int32 ``(S,)`` NaN flags of the steps.

    Raises:
        ValueError: the denoiser returns logits of another shape, NaN logits (naming the first step
            that had them), or stream offsets out of range.
        TypeError: logits of a non-float dtype.
    """
    B, L, C = batch_size, length, channels
    nb = _nbytes(C)
    pairs = step_pairs(grid)
    ops = backend_ops(resolve_backend(backend, torch.device(device)))
    streams = loop_streams(seed, base, element_start, len(pairs) + 1, device)
    scalars = loop_scalars(schedule, pairs, temperature, guidance, device)
    guided = isinstance(guidance, torch.Tensor) or guidance != 0
    traj = torch.empty((len(pairs) + 1, B, L, nb), dtype=torch.uint8, device=device) if return_all else None
    zeros = torch.zeros((B, L, nb), dtype=torch.uint8, device=device)
    xt, x_in, _ = ops.bernoulli_noise(zeros, noise_thresholds(_HALF, 1, B, zeros.device), C, streams[0], input_dtype,
                                      False)
    if mask is not None:
        xt = (xt & ~mask) | (known & mask)
        x_in = ops.unpack_bits(xt, C, input_dtype)
    if traj is not None:
        traj[0] = xt
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pairs), desc="sampling", unit="step", leave=False)
        except ImportError:  # tqdm is a dependency; sampling must not fail without it
            bar = None
    nan_flags = []
    try:
        for i, (t, t_prev) in enumerate(pairs):
            if step_fn is not None:
                t_dev = torch.full((), t, dtype=torch.int64, device=device)  # a fill kernel, no host copy
                xt, x_in, nan = step_fn(x_in, xt, t_dev, mask, known, scalars[i], streams[i + 1])
            else:
                logits, uncond = model_fn(x_in, t)
                _check_outputs(logits, uncond, (B, L, C), t, shape_hint)
                last = i + 1 == len(pairs)
                res, nan = run_step(ops, logits, uncond if guided else None, xt, mask, known, scalars[i],
                                    streams[i + 1], predict_flip, False, None if last else input_dtype, False)
                xt, x_in = res.packed, res.model_input
            nan_flags.append(nan)
            if traj is not None:
                traj[i + 1] = xt
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    flags = torch.cat(nan_flags)
    if not check_nan:
        return xt, traj, flags
    check_nan_flags(flags, pairs)
    return xt, traj


def _model_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def check_compute_dtype(dtype) -> torch.dtype | None:
    """``None`` (the denoiser as it is) or one of :data:`COMPUTE_DTYPES`.

    Raises:
        TypeError: anything else.
    """
    if dtype is not None and dtype not in COMPUTE_DTYPES:
        raise ArgumentTypeError(f"dtype must be None, torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
    return dtype


def compile_options(compile, fullgraph: bool) -> dict | None:
    """``torch.compile`` keyword arguments of ``sample(compile=...)``: None for False; for True
    ``{"fullgraph": fullgraph}``; a dict is used as given (``fullgraph`` defaulting as for True).

    Raises:
        TypeError: ``compile`` is neither a bool nor a dict.
    """
    if isinstance(compile, bool):
        return {"fullgraph": fullgraph} if compile else None
    if isinstance(compile, dict):
        return {"fullgraph": fullgraph, **compile}
    raise ArgumentTypeError(f"compile must be a bool or a dict of torch.compile options, got {type(compile).__name__}")


def use_batched_guidance(batch_guidance, denoiser: nn.Module, device: torch.device, guided: bool) -> bool:
    """Whether the conditional and unconditional passes run as one forward (``guided_forward``).

    ``None`` (default): on CUDA when guided and the denoiser has ``guided_forward`` (on the CPU
    the two passes are as fast as one batched pass); True: whenever guided.

    Raises:
        TypeError: ``batch_guidance`` is not None or a bool.
        ValueError: True for a denoiser without ``guided_forward``.
    """
    if batch_guidance is not None and not isinstance(batch_guidance, bool):
        raise ArgumentTypeError(f"batch_guidance must be None or a bool, got {type(batch_guidance).__name__}")
    able = callable(getattr(denoiser, "guided_forward", None))
    if batch_guidance and not able:
        raise ValueError(f"batch_guidance=True needs a denoiser with guided_forward(x, label, time_steps) "
                         f"(e.g. bldm_fast.models.BinaryTransformer), got {type(denoiser).__name__}")
    if batch_guidance is None:
        batch_guidance = able and device.type == "cuda"
    return guided and batch_guidance


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` for float16/bfloat16, else a null context."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(device.type, dtype=dtype)
    return contextlib.nullcontext()


def denoiser_call(den: nn.Module, *, conditional: bool, guided: bool, batched: bool, label_keyword: bool = True):
    """``call(x_in, ts, labels) -> (cond logits, uncond logits or None)``: the denoiser calls of one
    step as the official loop makes them (``ts = t - 1``, int64 ``(B,)``); with ``batched`` one
    ``den.guided_forward(x_in, labels, ts)``. ``label_keyword``: pass the label as ``label=`` (the
    :class:`BernoulliDiffusion` contract) or positionally (the official ``_denoise_fn(x, label, ...)``)."""

    def labelled(x_in, ts, label):
        return den(x_in, label=label, time_steps=ts) if label_keyword else den(x_in, label, time_steps=ts)

    def call(x_in, ts, labels):
        if not conditional:
            return den(x_in, time_steps=ts), None
        if batched:
            return den.guided_forward(x_in, labels, ts)
        return labelled(x_in, ts, labels), (labelled(x_in, ts, None) if guided else None)

    return call


def fused_step(call, ops, *, channels: int, guided: bool, predict_flip: bool, input_dtype: torch.dtype,
               device: torch.device, dtype: torch.dtype | None, shape_hint: str = ""):
    """The denoiser calls and the fused step of one sampling step as one function (what
    ``compile=True`` hands to ``torch.compile``):
    ``step(x_in, xt, t, labels, mask, known, scalars, stream) -> (x_prev packed, next model input
    in input_dtype, int32 (1,) NaN flag)``, ``t`` an int64 0-d tensor (so new steps never
    recompile), the denoiser under :func:`autocast_for` ``dtype``."""

    def step(x_in, xt, t, labels, mask, known, scalars, stream):
        B, L = x_in.shape[0], x_in.shape[1]
        with autocast_for(device, dtype):
            logits, uncond = call(x_in, (t - 1).expand(B), labels)
        _check_outputs(logits, uncond, (B, L, channels), "(compiled step)", shape_hint)
        res, nan = run_step(ops, logits, uncond if guided else None, xt, mask, known, scalars, stream, predict_flip,
                            False, input_dtype, False)
        return res.packed, res.model_input, nan

    return step


class FastSampler:
    """Per-sampler caches of ``sample(dtype=..., compile=...)``: the denoiser cast to a compute
    dtype (re-made when a parameter or buffer of the original changes: a new tensor or an
    in-place update) and the ``torch.compile``'d :func:`fused_step` of each configuration, so a
    second call compiles nothing. Pickling or deep-copying drops the caches."""

    def __init__(self):
        self._cast: dict = {}  # dtype -> (key of the original's tensors, cast copy)
        self._steps: dict = {}  # configuration -> compiled step

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()

    def __deepcopy__(self, memo):
        return FastSampler()

    def denoiser(self, module: nn.Module, dtype: torch.dtype | None) -> nn.Module:
        """``module`` itself when ``dtype`` is None or every floating tensor of it has that dtype;
        else a cached copy with floating parameters and buffers in ``dtype`` (no gradients)."""
        if dtype is None:
            return module
        floats = [x for x in itertools.chain(module.parameters(), module.buffers()) if x.is_floating_point()]
        if all(x.dtype == dtype for x in floats):
            return module
        key = (id(module), tuple((id(x), x._version) for x in floats))
        hit = self._cast.get(dtype)
        if hit is not None and hit[0] == key:
            return hit[1]
        cast = copy.deepcopy(module).to(dtype).train(module.training).requires_grad_(False)
        self._steps = {k: v for k, v in self._steps.items() if k[0] != dtype}
        self._cast[dtype] = (key, cast)
        return cast

    def compiled_step(self, config: tuple, make: Callable[[], Callable], options: dict) -> Callable:
        """``torch.compile(make(), **options)``, made once per ``config`` (whose first item is the
        compute dtype) and options."""
        key = config + (tuple(sorted((k, repr(v)) for k, v in options.items())),)
        fn = self._steps.get(key)
        if fn is None:
            fn = self._steps[key] = torch.compile(make(), **options)
        return fn


def _first_attr(obj, names):
    for n in names:
        v = getattr(obj, n, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return n, v
    return None, None


class BernoulliDiffusion(nn.Module):
    """A binary-latent denoiser with its Bernoulli schedule: the training loss and the fused sampler.

    Args:
        denoiser: ``nn.Module`` with the official forward ``denoiser(x, label=None, time_steps=None)``:
            ``x`` float 0/1 ``(B, L, C)``, ``time_steps`` long ``(B,)`` holding ``t - 1``, ``label``
            long ``(B,)`` (class-conditional models) or None; returns logits ``(B, L, C)``. Models
            without labels are called ``denoiser(x, time_steps=...)``.
        num_timesteps: ``T``, the training steps of the schedule.
        kind: schedule, ``"linear"``, ``"cos"`` or ``"sigmoid"``.
        latent_shape: ``(H, W)`` of the latent grid; ``L = H * W`` tokens (row-major).
        channels: ``C``, bits per token.
        predict_flip: the denoiser predicts the logit that a bit of ``x_t`` flips (official ``p_flip``);
            else the logit that ``x_0 = 1``.
        num_classes: number of classes of a class-conditional denoiser; ``None`` for unconditional.
        input_dtype: dtype of the model input the sampler writes (float32; float16/bfloat16 for
            half-precision models).
        focal, loss_final, aux, label_dropout: defaults of :meth:`loss` (see ``training_loss``).

    Attributes:
        denoiser, schedule (:class:`~bldm_fast.BernoulliSchedule`), num_timesteps, latent_shape,
        length (``L``), channels, predict_flip, num_classes, input_dtype.

    Raises:
        ValueError: bad sizes, an unknown kind, or a denoiser whose own size attributes
            (``codebook_size``/``channels``, ``block_size``/``seq_len``/``num_tokens``,
            ``latent_shape``) disagree with ``channels`` / ``latent_shape``.
        TypeError: ``denoiser`` is not an ``nn.Module``.
    """

    def __init__(self, denoiser: nn.Module, num_timesteps: int, kind: str = "linear", *,
                 latent_shape=(16, 16), channels: int = 64, predict_flip: bool = True,
                 num_classes: int | None = None, input_dtype: torch.dtype = torch.float32,
                 focal: float = 0.0, loss_final: str = "weighted", aux: float = 0.0, label_dropout: float = 0.0):
        super().__init__()
        if not isinstance(denoiser, nn.Module):
            raise TypeError(f"denoiser must be a torch.nn.Module, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.schedule = BernoulliSchedule(num_timesteps, kind)
        if isinstance(latent_shape, int):
            latent_shape = (latent_shape,)
        latent_shape = tuple(latent_shape)
        if not latent_shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in latent_shape):
            raise ValueError(f"latent_shape must be a tuple of positive ints (H, W), got {latent_shape!r}")
        self.latent_shape = latent_shape
        self.length = math.prod(latent_shape)
        self.channels = _pos_int(channels, "channels")
        self.predict_flip = bool(predict_flip)
        if num_classes is not None:
            num_classes = _pos_int(num_classes, "num_classes")
        self.num_classes = num_classes
        if input_dtype not in _INPUT_DTYPES:
            raise TypeError(f"input_dtype must be one of {_INPUT_DTYPES}, got {input_dtype!r}")
        self.input_dtype = input_dtype
        self.loss_defaults = dict(focal=focal, loss_final=loss_final, aux=aux, label_dropout=label_dropout)
        self._fast = FastSampler()
        self._check_denoiser_geometry()

    # ------------------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return self.schedule.num_steps

    @property
    def kind(self) -> str:
        return self.schedule.kind

    def extra_repr(self) -> str:
        return (f"num_timesteps={self.num_timesteps}, kind={self.kind!r}, latent_shape={self.latent_shape}, "
                f"channels={self.channels}, predict_flip={self.predict_flip}, num_classes={self.num_classes}")

    def _shape_hint(self) -> str:
        return f" (latent_shape={self.latent_shape} -> L = {self.length}, channels = {self.channels})"

    def _check_denoiser_geometry(self) -> None:
        name, c = _first_attr(self.denoiser, ("codebook_size", "channels", "latent_channels"))
        if c is not None and c != self.channels:
            raise ValueError(f"channels = {self.channels} does not match the denoiser's {name} = {c}")
        name, n = _first_attr(self.denoiser, ("block_size", "seq_len", "num_tokens"))
        if n is not None and n != self.length:
            raise ValueError(f"latent_shape {self.latent_shape} gives L = {self.length} tokens but the denoiser's "
                             f"{name} = {n}")
        shape = getattr(self.denoiser, "latent_shape", None)
        if isinstance(shape, (tuple, list)) and shape and all(isinstance(d, int) for d in shape):
            if math.prod(shape) != self.length:
                raise ValueError(f"latent_shape {self.latent_shape} (L = {self.length}) does not match the "
                                 f"denoiser's latent_shape {tuple(shape)}")

    # ------------------------------------------------------------------------------------------
    def forward(self, x0_packed: torch.Tensor, labels=None, **kwargs) -> dict:
        """The training loss; same as :meth:`loss`."""
        return self.loss(x0_packed, labels=labels, **kwargs)

    def loss(self, x0_packed: torch.Tensor, labels=None, *, generator=None, seed=None, backend: str = "auto",
             **kwargs) -> dict:
        """Training loss of a batch of packed clean codes: ``bldm_fast.diffusion.loss.training_loss``.

        Args:
            x0_packed: uint8 ``(B, L, ceil(C/8))``.
            labels: long ``(B,)`` for class-conditional models, else None.
            kwargs: override the constructor's ``focal``, ``loss_final``, ``aux``, ``label_dropout``
                (and ``channels`` / ``input_dtype``, passed from the model); others go to
                ``training_loss`` as they are (e.g. ``t``, ``alpha``).

        Returns:
            the dict of ``training_loss`` (``"loss"`` first).
        """
        from .loss import training_loss

        opts = {**self.loss_defaults, "channels": self.channels, "input_dtype": self.input_dtype, **kwargs}
        return training_loss(self.denoiser, x0_packed, self.schedule, labels=labels, predict_flip=self.predict_flip,
                             num_classes=self.num_classes, generator=generator, seed=seed, backend=backend, **opts)

    # ------------------------------------------------------------------------------------------
    def _labels(self, labels, batch_size: int | None, device) -> tuple[torch.Tensor | None, int | None]:
        if labels is None:
            return None, batch_size
        if self.num_classes is None:
            raise ValueError("labels were given but this model is unconditional (num_classes=None)")
        if isinstance(labels, bool):
            raise ValueError(f"labels must be an int or an integer tensor (B,), got {labels!r}")
        if isinstance(labels, int):
            if batch_size is None:
                raise ValueError("batch_size is needed with a single int label")
            labels = torch.full((batch_size,), labels, dtype=torch.long)
        elif not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if labels.dim() != 1 or (batch_size is not None and labels.shape[0] != batch_size):
            raise ValueError(f"labels must have shape (batch_size,) = ({batch_size},), got {tuple(labels.shape)}")
        check_tensor_range(labels, "labels", 0, self.num_classes - 1)
        return labels.to(device=device, dtype=torch.long), labels.shape[0]

    def prepare_sampling(self, batch_size=None, labels=None, steps=None, temperature=1.0, guidance=None,
                         mask=None, known=None, device=None) -> dict:
        """Validate the arguments of :meth:`sample` and return them normalised (a dict with
        ``batch_size, labels, grid, temperature, guidance, mask, known, device``; mask/known packed
        ``(B, L, ceil(C/8))``). Raises as :meth:`sample`."""
        device = torch.device(device) if device is not None else _model_device(self.denoiser)
        if batch_size is not None:
            batch_size = _pos_int(batch_size, "batch_size")
        labels, batch_size = self._labels(labels, batch_size, device)
        if batch_size is None:
            for x in (mask, known):
                if isinstance(x, torch.Tensor) and x.dim() == 3:
                    batch_size = x.shape[0]
                    break
        if batch_size is None:
            raise ValueError("batch_size is needed (or labels / mask of shape (B, ...) to infer it from)")
        grid = sampling_grid(self.num_timesteps, steps)
        temperature = check_temperature(temperature)
        guidance = check_guidance(guidance)
        if isinstance(guidance, torch.Tensor) or guidance != 0:
            if self.num_classes is None:
                raise ValueError("guidance needs a class-conditional model (num_classes set); this one is "
                                 "unconditional")
            if labels is None:
                raise ValueError("guidance needs labels (the conditional call; the unconditional one gets label=None)")
        if (mask is None) != (known is None):
            raise ValueError("mask and known must be given together (known holds the bits that mask re-imposes)")
        if mask is not None:
            mask = packed_condition(mask, "mask", batch_size, self.length, self.channels, device)
            known = packed_condition(known, "known", batch_size, self.length, self.channels, device)
        check_region_capacity(batch_size * self.length * self.channels)
        return dict(batch_size=batch_size, labels=labels, grid=grid, temperature=temperature, guidance=guidance,
                    mask=mask, known=known, device=device)

    def model_fn(self, labels: torch.Tensor | None, guidance: float, *, dtype: torch.dtype | None = None,
                 batched: bool = False) -> ModelFn:
        """The denoiser calls of one step as the official loop makes them: ``time_steps = t - 1``;
        ``label`` for class-conditional models; with guidance a second call with ``label=None``
        (with ``batched`` one ``guided_forward`` for both). ``dtype``: the denoiser in that compute
        dtype (a cached cast copy, under autocast for float16/bfloat16)."""
        guided = isinstance(guidance, torch.Tensor) or guidance != 0
        den = self._fast.denoiser(self.denoiser, dtype)
        call = denoiser_call(den, conditional=self.num_classes is not None, guided=guided, batched=batched)

        def model(x_in: torch.Tensor, t: int):
            ts = torch.full((x_in.shape[0],), t - 1, dtype=torch.long, device=x_in.device)
            with autocast_for(x_in.device, dtype):
                return call(x_in, ts, labels)

        return model

    def step_fn(self, labels: torch.Tensor | None, guidance, device, *, backend: str = "auto",
                dtype: torch.dtype | None = None, batched: bool = False, masked: bool = False,
                options: dict | None = None) -> StepFn:
        """The ``step_fn`` of :func:`sample_loop` for ``sample(compile=...)``: the cached
        ``torch.compile``'d :func:`fused_step` (denoiser + fused step), called with ``labels``."""
        guided = isinstance(guidance, torch.Tensor) or guidance != 0
        device = torch.device(device)
        den = self._fast.denoiser(self.denoiser, dtype)
        resolved = resolve_backend(backend, device)
        input_dtype = dtype if dtype is not None else self.input_dtype
        conditional = self.num_classes is not None and labels is not None
        config = (dtype, id(den), resolved, str(device), guided, batched, conditional, masked)

        def make():
            call = denoiser_call(den, conditional=conditional, guided=guided, batched=batched)
            return fused_step(call, backend_ops(resolved), channels=self.channels, guided=guided,
                              predict_flip=self.predict_flip, input_dtype=input_dtype, device=device, dtype=dtype,
                              shape_hint=self._shape_hint())

        compiled = self._fast.compiled_step(config, make, options or {})

        def step(x_in, xt, t, mask, known, scalars, stream):
            return compiled(x_in, xt, t, labels, mask, known, scalars, stream)

        return step

    @torch.no_grad()
    def sample(self, batch_size: int | None = None, labels=None, steps: int | None = None, temperature: float = 1.0,
               guidance: float | None = None, mask: torch.Tensor | None = None, known: torch.Tensor | None = None,
               return_all: bool = False, generator: PhiloxGenerator | None = None, seed: int | None = None,
               backend: str = "auto", progress: bool = True, device=None, *, offset: int | None = None,
               distributed: bool = False, group=None, dtype: torch.dtype | None = None, compile=False,
               batch_guidance: bool | None = None) -> torch.Tensor:
        """Sample packed latents with the official loop, every step one fused op.

        The initial ``x_T`` is Bernoulli(0.5) (``u < 0.5``); for each step ``t -> t_prev`` of the
        official grid (``steps`` values, descending, last ``t = 1 -> 0`` the threshold
        ``P(x_0 = 1) > 0.5``) the denoiser gets the unpacked state and ``time_steps = t - 1``, then
        :func:`bldm_fast.sample_step` draws the packed ``x_{t_prev}`` and writes the next model input.

        Random stream (seed ``s``, base offset ``o``): region 0 (counters ``o + [0, 2**40)``) holds
        the initial noise, region ``i + 1`` (``o + (i + 1) * 2**40 + [0, 2**40)``) step ``i``; element
        ``e`` of the flat ``(B, L, C)`` tensor takes counter ``region + e // 4``, word ``e % 4``. So a
        seed gives the same samples for every batch size (sample ``b`` is the same) and every backend
        (bits inside the 1e-5 guard band of DESIGN.md aside). A generator reserves
        ``(steps + 1) * 2**40`` counters per call.

        Args:
            batch_size: ``B >= 1``; may be inferred from ``labels`` (tensor) or a ``(B, L, *)`` mask.
            labels: class-conditional models only: an int (every sample) or integer ``(B,)`` in
                ``0..num_classes-1``; ``None`` samples unconditionally (``label=None``).
            steps: sampling steps ``1..T`` (default ``T``).
            temperature: > 0, logits are divided by it.
            guidance: classifier-free guidance ``g`` (``(1 + g) cond - g uncond``), needs a
                class-conditional model and ``labels``; ``None``/0 for none.
            mask, known: inpainting: where ``mask`` is 1 the bits of ``known`` are imposed on the initial
                noise and after every step. uint8 packed ``(..., ceil(C/8))`` or bool/float 0/1
                ``(..., C)``; shape ``(L, *)`` or ``(B, L, *)``.
            return_all: return the packed trajectory instead of the final state.
            generator / seed (/ offset): the stream; with neither, a seed from torch's default generator.
            backend: op backend (``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"``, ``"cuda"``).
            progress: show a tqdm progress bar.
            device: device of the sampling tensors (default: the denoiser's).
            distributed: sample under ``torch.distributed`` (see :func:`sample_distributed`);
                ``group`` is its process group.
            dtype: denoiser compute dtype: None (default) runs the denoiser as it is (a float32
                model keeps its bits exactly); ``torch.bfloat16`` / ``torch.float16`` run a cached
                copy cast to that dtype under ``torch.autocast`` and write the model input in it
                (the step still computes in float32; samples differ from float32 where a logit's
                rounding moves a draw); ``torch.float32`` casts a half-precision model up.
            compile: True (or a dict of ``torch.compile`` options) compiles the denoiser calls and
                the fused step of a step as one function (``fullgraph=True`` for a
                :class:`~bldm_fast.models.BinaryTransformer`), cached on this object: a second call
                with the same configuration compiles nothing; ``t``, seed, temperature, guidance,
                labels and the step count never recompile. The first call pays the compilation.
            batch_guidance: run the conditional and unconditional passes as one forward of twice
                the batch (``denoiser.guided_forward``: the missing class token masked out of the
                attention, equal to the two passes within float rounding); None (default): on
                CUDA where the denoiser has ``guided_forward``, else two passes.

        Returns:
            uint8 ``(B, L, ceil(C/8))`` packed ``x_0`` (``bf.unpack_bits(x, C)`` gives ``(B, L, C)``),
            or with ``return_all`` uint8 ``(S + 1, B, L, ceil(C/8))``: the initial noise and the state
            after each of the ``S`` steps (the last one ``x_0``).

        Raises:
            ValueError: ``batch_size`` missing or < 1; ``labels`` for an unconditional model, out of
                range or of the wrong shape; ``guidance`` without a class-conditional model or without
                labels; ``steps`` outside ``1..T``; ``temperature`` not > 0; mask/known alone or of
                the wrong shape; the denoiser returning logits of the wrong shape (a latent shape
                the model was not built for); NaN logits; bad seed/offset; ``batch_guidance=True``
                for a denoiser without ``guided_forward``; dtype/compile/batch_guidance with
                ``distributed``.
            TypeError: mask/known or logits of an unsupported dtype; ``dtype`` not a compute dtype;
                ``compile`` not a bool or dict; ``batch_guidance`` not a bool.
        """
        dtype = check_compute_dtype(dtype)
        options = compile_options(compile, fullgraph=type(self.denoiser).__name__ == "BinaryTransformer")
        if distributed and (dtype is not None or options is not None or batch_guidance):
            raise ValueError("dtype, compile and batch_guidance are not supported with distributed=True")
        if distributed:
            from .distributed import sample_distributed

            return sample_distributed(self, batch_size, labels=labels, steps=steps, temperature=temperature,
                                      guidance=guidance, mask=mask, known=known, return_all=return_all,
                                      generator=generator, seed=seed, offset=offset, backend=backend,
                                      progress=progress, device=device, group=group)
        a = self.prepare_sampling(batch_size, labels, steps, temperature, guidance, mask, known, device)
        g = a["guidance"]
        batched = use_batched_guidance(batch_guidance, self.denoiser, a["device"],
                                       isinstance(g, torch.Tensor) or g != 0)
        step_fn = None if options is None else self.step_fn(
            a["labels"], g, a["device"], backend=backend, dtype=dtype, batched=batched,
            masked=a["mask"] is not None, options=options)
        seed, base = reserve_stream(generator, seed, offset, len(a["grid"]))
        x, traj = sample_loop(self.model_fn(a["labels"], g, dtype=dtype, batched=batched), self.schedule, a["grid"],
                              batch_size=a["batch_size"], length=self.length, channels=self.channels,
                              device=a["device"], seed=seed, base=base, temperature=a["temperature"],
                              guidance=a["guidance"], predict_flip=self.predict_flip, mask=a["mask"],
                              known=a["known"], return_all=return_all, backend=backend, progress=progress,
                              input_dtype=self.input_dtype if dtype is None else dtype,
                              shape_hint=self._shape_hint(), step_fn=step_fn)
        return traj if return_all else x
