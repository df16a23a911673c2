"""Baselines that ``bldm_fast`` is measured against.

* :func:`official_step` / :func:`official_noise`: the eager PyTorch op chain of the official
  Binary Latent Diffusion code (``models/binarylatent.py`` of ZeWang95/BinaryLatentDiffusion:
  the body of ``BinaryDiffusion.sample()`` and ``q_sample`` + ``torch.bernoulli`` of the training
  loss, with ``noise_scheduler.forward`` / ``one_step``), re-written here op by op. Bits are float32
  tensors, one element per bit, exactly as the official code keeps them.
* :func:`compiled`: ``torch.compile`` of any of those functions, cached per function so a graph
  is built once per process (plus one recompile per new shape / constant).
* :func:`numpy_pack` / :func:`numpy_unpack`: ``numpy.packbits`` / ``numpy.unpackbits`` with
  ``bitorder="little"`` (the layout oracle of DESIGN.md section 2).
* :func:`torch_pack` / :func:`torch_unpack`: the obvious shift-and-or bit packing in plain
  PyTorch ops (what a user would write without ``bldm_fast``; also the input to ``torch.compile``).

None of these is used by the package itself; they exist for ``bldm-fast bench`` and the
pytest-benchmark suites in ``benchmarks/``.
"""

from __future__ import annotations

import importlib
import threading
from typing import Callable

import numpy as np
import torch

__all__ = [
    "official_step",
    "official_noise",
    "official_tables",
    "scheduler_forward",
    "scheduler_one_step",
    "compiled",
    "compile_supported",
    "numpy_pack",
    "numpy_unpack",
    "torch_pack",
    "torch_unpack",
]


# ---------------------------------------------------------------------------------------------
# the official noise_scheduler, as two free functions over its three buffers
# ---------------------------------------------------------------------------------------------


def official_tables(schedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(k_final, b_final, beta)`` float32 buffers of the official ``noise_scheduler`` for a
    :class:`bldm_fast.BernoulliSchedule` (its ``.k``, ``.b``, ``.beta``)."""
    return schedule.k.float(), schedule.b.float(), schedule.beta.float()


def _per_sample(table: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    # official: self.k_final[t].view(-1, *([1] * (x.ndim - 1)))
    return table[t].view(-1, *([1] * (ndim - 1)))


def scheduler_forward(x: torch.Tensor, t: torch.Tensor, k_final: torch.Tensor, b_final: torch.Tensor) -> torch.Tensor:
    """Official ``noise_scheduler.forward``: ``k[t] * x + b[t]`` with ``t`` a ``(B,)`` long tensor."""
    k = _per_sample(k_final, t, x.ndim)
    b = _per_sample(b_final, t, x.ndim)
    return k * x + b


def scheduler_one_step(x: torch.Tensor, t: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Official ``noise_scheduler.one_step``: ``x * beta[t] + 0.5 * (1 - beta[t])``."""
    k = _per_sample(beta, t, x.ndim)
    return x * k + 0.5 * (1 - k)


def _as_steps(t, batch: int, device) -> torch.Tensor:
    """The official loop builds ``torch.full((b,), t, dtype=long)`` per step; accept that or an int."""
    if isinstance(t, torch.Tensor):
        return t.to(device=device, dtype=torch.long).reshape(-1)
    return torch.full((batch,), int(t), device=device, dtype=torch.long)


# ---------------------------------------------------------------------------------------------
# official eager chains
# ---------------------------------------------------------------------------------------------


def official_step(
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    k_final: torch.Tensor,
    b_final: torch.Tensor,
    beta: torch.Tensor,
    temp: float = 1.0,
    guidance: float | None = None,
    p_flip: bool = True,
) -> torch.Tensor:
    """One reverse step ``t -> t_prev`` of the official ``BinaryDiffusion.sample()`` loop.

    Args:
        cond: denoiser logits ``(B, L, C)`` (any float dtype; kept as given, like the official
            code under autocast).
        uncond: unconditional logits, same shape, or ``None``. Guidance is applied exactly when
            ``uncond is not None and guidance is not None`` (the official ``if guidance is not None``).
        x_t: current bits as float32 ``(B, L, C)`` 0/1 (the official representation).
        t, t_prev: python ints ``0 <= t_prev < t`` (the loop's ``sampling_steps[i]`` and
            ``sampling_steps[i + 1]``; the number of ``one_step`` iterations is ``t - t_prev``).
        k_final, b_final, beta: the scheduler's float32 buffers (:func:`official_tables`).
        temp: sampling temperature (logits are divided by it).
        guidance: classifier-free guidance weight ``g``: ``(1 + g) * cond - g * uncond``.
        p_flip: the denoiser predicts bit flips (the official ``H.p_flip``).

    Returns:
        ``x_{t_prev}`` as float32 0/1 ``(B, L, C)``: a ``torch.bernoulli`` draw of the posterior,
        or on the final step (``t == 1`` in the official loop, here ``t_prev == 0``) the threshold
        ``p0 > 0.5``.
    """
    b = x_t.shape[0]
    tt = _as_steps(t, b, x_t.device)

    x_0_logits = cond / temp
    if guidance is not None and uncond is not None:
        x_0_logits_uncond = uncond / temp
        x_0_logits = (1 + guidance) * x_0_logits - guidance * x_0_logits_uncond

    x_0_logits = torch.sigmoid(x_0_logits)

    if p_flip:
        x_0_logits = x_t * (1 - x_0_logits) + (1 - x_t) * x_0_logits

    if t_prev == 0:
        # official: the loop's last step (t == 1) thresholds the clean-bit probability
        return (x_0_logits > 0.5) * 1.0

    t_p = _as_steps(t_prev, b, x_t.device)
    x_0_logits = torch.cat([x_0_logits.unsqueeze(-1), (1 - x_0_logits).unsqueeze(-1)], dim=-1)
    x_t_logits = torch.cat([x_t.unsqueeze(-1), (1 - x_t).unsqueeze(-1)], dim=-1)

    p_ev_qxtmin_x0 = scheduler_forward(x_0_logits, t_p, k_final, b_final)
    q_one_step = x_t_logits
    for mns in range(int(t) - int(t_prev)):
        q_one_step = scheduler_one_step(q_one_step, tt - mns, beta)

    unnormed = p_ev_qxtmin_x0 * q_one_step
    unnormed = unnormed / unnormed.sum(-1, keepdims=True)
    probs = unnormed[..., 0]
    return torch.bernoulli(probs)


def official_noise(
    x0_float: torch.Tensor, t: torch.Tensor, k_final: torch.Tensor, b_final: torch.Tensor
) -> torch.Tensor:
    """Official training-time noising: ``torch.bernoulli(q_sample(x_0, t))`` where
    ``q_sample = noise_scheduler.forward = k[t] * x_0 + b[t]``; ``x0_float`` float32 0/1
    ``(B, L, C)``, ``t`` a ``(B,)`` long tensor with values ``1..T``."""
    x_t = scheduler_forward(x0_float, t, k_final, b_final)
    return torch.bernoulli(x_t)


# ---------------------------------------------------------------------------------------------
# bit packing baselines
# ---------------------------------------------------------------------------------------------


def numpy_pack(bits: np.ndarray) -> np.ndarray:
    """``numpy.packbits(bits, axis=-1, bitorder="little")`` (LSB first, DESIGN.md section 2)."""
    return np.packbits(bits, axis=-1, bitorder="little")


def numpy_unpack(packed: np.ndarray, channels: int, dtype=np.float32) -> np.ndarray:
    """``numpy.unpackbits(..., bitorder="little")`` cut to ``channels`` and cast to ``dtype``
    (float32 by default: the model input, which is what ``bf.unpack_bits`` returns)."""
    out = np.unpackbits(packed, axis=-1, count=channels, bitorder="little")
    return out if dtype is None or out.dtype == dtype else out.astype(dtype)


def torch_pack(bits: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch LSB-first packing of 0/1 ``bits`` ``(..., C)`` (any dtype) into uint8
    ``(..., ceil(C/8))``: pad C to a multiple of 8, then OR the 8 bits of each byte in place.

    (An OR of shifted slices rather than a shift-and-sum reduction: both are as fast eager, but
    inductor fuses the elementwise form into one loop and the reduction form into a slow one.)
    """
    c = bits.shape[-1]
    nbytes = (c + 7) // 8
    x = (bits != 0).to(torch.uint8)
    if nbytes * 8 != c:
        x = torch.nn.functional.pad(x, (0, nbytes * 8 - c))
    x = x.reshape(*bits.shape[:-1], nbytes, 8)
    out = x[..., 0]
    for j in range(1, 8):
        out = out | (x[..., j] << j)
    return out


def torch_unpack(packed: torch.Tensor, channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plain-PyTorch LSB-first unpacking of uint8 ``(..., ceil(C/8))`` into 0/1 ``(..., C)``."""
    x = (packed.unsqueeze(-1) >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    x = x.reshape(*packed.shape[:-1], packed.shape[-1] * 8)[..., :channels]
    return x.to(dtype)


# ---------------------------------------------------------------------------------------------
# torch.compile, cached
# ---------------------------------------------------------------------------------------------

_COMPILED: dict[tuple, Callable] = {}
_LOCK = threading.Lock()


def compile_supported() -> tuple[bool, str]:
    """Whether ``torch.compile`` can be used here, and if not, why (a short reason)."""
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    try:
        importlib.import_module("torch._dynamo")
    except Exception as exc:  # pragma: no cover - broken installs
        return False, f"torch._dynamo unavailable: {type(exc).__name__}: {exc}"
    return True, ""


def compiled(fn: Callable, **options) -> Callable:
    """``torch.compile(fn, **options)``, built once per ``(fn, options)`` and cached.

    The first call for each new input shape (or new python constant such as ``t``) compiles;
    callers must warm the returned callable up with the exact inputs they time. ``dynamic``
    defaults to False so a graph is specialised to the benchmarked shape, as a user would run
    a fixed-shape sampler.
    """
    options.setdefault("dynamic", False)
    key = (fn, tuple(sorted(options.items())))
    with _LOCK:
        cfn = _COMPILED.get(key)
        if cfn is None:
            cfn = _COMPILED[key] = torch.compile(fn, **options)
    return cfn
