"""The training loss of Binary Latent Diffusion from packed clean codes (official ``_train_loss``).

Source of the algorithm: ZeWang95/BinaryLatentDiffusion, ``models/binarylatent.py``,
``BinaryDiffusion._train_loss`` with its helpers ``sample_time``, ``noise_scheduler`` (``forward``,
``one_step``) and ``focal_loss``. Every option of the official code is reproduced:

* ``t ~ U{1..T}`` per sample, ``x_t ~ Bernoulli(k[t] x_0 + b[t])`` (here one fused
  :func:`bldm_fast.bernoulli_noise` call on the packed codes, which also returns the denoiser's
  unpacked input and the packed flip target ``x_0 XOR x_t``);
* ``denoiser(x_t, label=..., time_steps=t - 1)`` (unconditional: no ``label`` argument), with the
  classifier-free-guidance dropout of *all* labels of a batch;
* ``predict_flip`` / not, ``focal >= 0`` (focal loss) / ``focal < 0`` (plain BCE), the class
  balancing ``alpha = -1``, ``loss_final`` "weighted" / "mean", the auxiliary posterior loss.

The common configuration (``predict_flip``, ``focal == 0``, class balancing) runs the per-bit
BCE as one fused :func:`bldm_fast.flip_bce_loss` against the packed flip targets, with the class
balancing, the time weighting and the ``1 / numel`` of the mean folded into two per-sample
weights; every other option runs the official formulas in plain PyTorch (float32, or float64
when the denoiser returns float64).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .._checks import ArgumentTypeError, check_int, check_tensor, check_tensor_range, is_int, is_int_tensor
from ..ops import bernoulli_noise, flip_bce_loss, pack_bits, unpack_bits
from ..rng import PhiloxGenerator, check_seed_offset
from ..schedule import BernoulliSchedule

LOSS_FINALS = ("weighted", "mean")
_FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MASK64 = 2**64 - 1


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def _splitmix64(seed: int, offset: int) -> int:
    """A well-mixed 64-bit torch.Generator seed from a Philox (seed, offset) pair."""
    z = (seed + 0x9E3779B97F4A7C15 * (offset + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _fraction(count: torch.Tensor, total: int) -> torch.Tensor:
    """``count / total`` in float32, correctly rounded on every device: CUDA divides a tensor by a
    Python number as a multiplication by its reciprocal (1 ulp off), by a tensor it does not.
    ``torch.full`` makes that tensor on the device without a host-to-device copy."""
    return count.to(torch.float32) / torch.full((), float(total), dtype=torch.float32, device=count.device)


def _popcount_per_sample(packed: torch.Tensor) -> torch.Tensor:
    """Set bits per sample of uint8 ``(B, ..., nb)`` packed bits, int64 ``(B,)`` (SWAR popcount)."""
    x = packed.reshape(packed.shape[0], -1)
    x = x - ((x >> 1) & 0x55)
    x = (x & 0x33) + ((x >> 2) & 0x33)
    x = (x + (x >> 4)) & 0x0F
    return x.sum(1, dtype=torch.int64)


def _check_number(value, name: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return float(value)


def _bview(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-sample ``(B,)`` tensor viewed to broadcast against a ``(B, ...)`` tensor of ``ndim`` dims."""
    return v.view((-1,) + (1,) * (ndim - 1))


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = -1, gamma: float = 1) -> torch.Tensor:
    """The official ``focal_loss``, elementwise (``reduction="none"``), in the dtype of its inputs.

    ``p_t = clamp(1 - [p y + (1 - p)(1 - y)], 1e-6, 1 - 1e-6)`` with ``p = sigmoid(logits)``;
    ``loss = BCEWithLogits(logits, y) * p_t ** gamma``, then times ``alpha_t``:
    ``alpha == -1``: ``alpha_t = (1 - f) y + f (1 - y)`` with ``f`` the per-sample fraction of
    1-targets (the official ``neg_weight``; summed over all non-batch dims, which is the official
    ``sum((-1, -2))`` for ``(B, L, C)``); ``alpha > 0``: ``alpha_t = alpha y + (1 - alpha)(1 - y)``
    (no check that alpha <= 1, as official); any other alpha (0 included): no class weighting.

    Args:
        logits, targets: floating ``(B, ..., C)`` of one shape; targets hold 0/1.

    Returns:
        the per-element loss, shape and dtype of ``logits``.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = 1 - (p * targets + (1 - p) * (1 - targets))
    p_t = p_t.clamp(min=1e-6, max=1 - 1e-6)
    loss = ce * p_t**gamma
    if alpha == -1:
        frac = targets.sum(tuple(range(1, targets.dim()))) / targets[0].numel()
        frac = _bview(frac, targets.dim())
        loss = ((1 - frac) * targets + frac * (1 - targets)) * loss
    elif alpha > 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


# ------------------------------------------------------------------------------------------------
# argument handling
# ------------------------------------------------------------------------------------------------


def _resolve_t(t, batch: int, T: int) -> torch.Tensor:
    """``t`` as an int64 ``(B,)`` tensor (on its own device; an int gives a CPU tensor) with values
    in 1..T (checked by one read when eager, by a device assert under torch.compile)."""
    if isinstance(t, torch.Tensor):
        if not is_int_tensor(t):
            raise ArgumentTypeError(f"t must be an int or an integer tensor, got {t.dtype}")
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or have shape (B,) = ({batch},), got {tuple(t.shape)}")
        t = t.to(torch.int64)
    elif is_int(t):
        t = torch.full((batch,), check_int(t, "t", 1, T), dtype=torch.int64)
    else:
        raise ArgumentTypeError(f"t must be None, an int or an integer tensor, got {type(t).__name__}")
    check_tensor_range(t, "t", 1, T)
    return t


def _resolve_classes(denoiser, num_classes):
    """The number of classes (0: unconditional; None: unknown, labels are passed unchecked)."""
    if num_classes is None:
        if getattr(denoiser, "conditional", None) is False:  # e.g. bldm_fast.models.BinaryTransformer
            return 0
        num_classes = getattr(denoiser, "num_classes", None)
        if num_classes is None:
            return None
        name = "denoiser.num_classes"
    else:
        name = "num_classes"
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 0:
        raise ValueError(f"{name} must be an int >= 0 (0: unconditional) or None, got {num_classes!r}")
    return int(num_classes)


def _check_labels(labels, batch: int, device: torch.device, classes) -> None:
    if labels is None:
        return
    check_tensor(labels, "labels")
    if classes == 0:
        raise ValueError("labels were given but the denoiser is unconditional (num_classes=0 or "
                         "denoiser.conditional is False); pass labels=None")
    if labels.dim() < 1 or labels.shape[0] != batch:
        raise ValueError(f"labels must have the batch size {batch} as first dim, got shape {tuple(labels.shape)}")
    if labels.device != device:
        raise ValueError(f"labels is on {labels.device} but x0_packed is on {device}")
    if classes:
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integer class ids for a {classes}-class denoiser, got {labels.dtype}")
        if labels.dim() != 1:
            raise ValueError(f"labels must have shape (B,) = ({batch},), got {tuple(labels.shape)}")
        check_tensor_range(labels, "labels", 0, classes - 1)


# ------------------------------------------------------------------------------------------------
# the loss
# ------------------------------------------------------------------------------------------------


def training_loss(denoiser, x0_packed: torch.Tensor, schedule: BernoulliSchedule, *, labels=None,
                  predict_flip: bool = True, focal: float = 0.0, alpha: float | None = None,
                  loss_final: str = "weighted", aux: float = 0.0, label_dropout: float = 0.0,
                  num_classes: int | None = None, generator: PhiloxGenerator | None = None,
                  seed: int | None = None, t=None, channels: int | None = None,
                  input_dtype: torch.dtype = torch.float32, backend: str = "auto") -> dict:
    """One training loss evaluation of Binary Latent Diffusion (official ``_train_loss``).

    Steps: ``t ~ U{1..T}`` per sample (``torch.randint``; or the given ``t``); ``x_t ~
    Bernoulli(k[t] x_0 + b[t])`` from the packed codes (Philox stream of DESIGN.md section 4);
    ``logits = denoiser(x_t, label=labels, time_steps=t - 1)`` (``denoiser(x_t, time_steps=t - 1)``
    when ``labels is None``; ``label=None`` when the batch's labels are dropped); then the loss:

    ========================  ====================================================================
    ``predict_flip, focal>=0`` ``focal_loss(l, x_0 XOR x_t, alpha, gamma=focal)``; default alpha -1
                              (per-sample class balancing, applied for ``focal == 0`` too)
    ``predict_flip, focal<0``  ``BCEWithLogits(l', x_0)`` with the flipped-back logit
                              ``l' = x_t (-l) + (1 - x_t) l``
    ``not predict_flip, >=0``  ``focal_loss(l, x_0, alpha=focal, gamma=focal)``: the official call
                              passes ``self.focal`` as alpha too (default alpha = focal)
    ``not predict_flip, <0``   ``BCEWithLogits(l, x_0)``
    ========================  ====================================================================

    ``loss = mean(w_b * kl)`` with ``w_b = 1 - (t_b - 1)/T`` ("weighted") or 1 ("mean");
    ``bce_loss = mean(kl)``; ``acc = mean([l' > 0] == x_0)`` (``l' = l`` without predict_flip).
    With ``aux > 0``: the official auxiliary loss, the BCE between the posterior
    ``q(x_{t-1} | x_t, x_0)`` at the predicted ``x_0`` probability (``p`` itself where ``t == 1``)
    and at the true ``x_0``, both normalised with ``+ 1e-6``, clamped as official, weighted by
    ``w_b`` and averaged; ``loss += aux * aux_loss``.

    Random stream: with ``seed``, the noise uses Philox ``(seed, offset 0)`` and ``t`` / the label
    dropout a ``torch.Generator`` seeded from ``seed``; with a :class:`~bldm_fast.PhiloxGenerator`,
    the noise takes the generator's next offset and the torch.Generator is seeded from its seed and
    current offset (so ``seed=s`` equals a fresh ``PhiloxGenerator(s)``); with neither, all draws
    come from torch's default generator. ``t`` is drawn first, then the noise, then the dropout.

    Args:
        denoiser: callable ``(x_t, [label=...,] time_steps=...) -> logits``; ``x_t`` is
            ``(B, ..., C)`` 0/1 of ``input_dtype``, ``time_steps`` int64 ``(B,)`` on the codes'
            device; logits must be floating ``(B, ..., C)`` (float32/16/bf16; float64 runs the
            plain-PyTorch path in float64).
        x0_packed: uint8 ``(B, ..., ceil(C/8))`` packed clean codes (LSB first).
        schedule: the :class:`~bldm_fast.BernoulliSchedule` (``T`` steps).
        labels: ``None`` (unconditional call) or a tensor with first dim ``B`` on the codes'
            device (class ids ``(B,)`` int for a class-conditional denoiser; anything the denoiser
            takes otherwise).
        predict_flip: the denoiser predicts per-bit flip logits (official ``p_flip``).
        focal: the official ``focal``: ``>= 0`` focal loss with gamma ``focal``, ``< 0`` plain BCE.
        alpha: class weighting of the focal loss (used only when ``focal >= 0``): ``-1`` per-sample
            balancing, ``> 0`` fixed weight, else none. ``None`` (default) = the official choice:
            ``-1`` with ``predict_flip``, ``focal`` without.
        loss_final: ``"weighted"`` or ``"mean"``.
        aux: weight of the auxiliary posterior loss (``0`` disables it).
        label_dropout: probability of dropping all labels of the batch (official: 0.1 with
            ``H.guidance``); drawn from the seeded torch.Generator.
        num_classes: classes of a class-conditional denoiser (labels must then be int ``(B,)`` in
            ``0..num_classes-1``); ``0`` for an unconditional one (labels are then an error);
            ``None`` (default): unconditional when ``denoiser.conditional`` is False (as on
            :class:`bldm_fast.models.BinaryTransformer`), else ``denoiser.num_classes`` when it is
            an int, else labels (e.g. text embeddings) are passed unchecked.
        generator, seed: the random stream (see above); not both.
        t: ``None`` (sampled), an int, or an integer ``(B,)`` tensor with values in ``1..T``.
        channels: ``C``; default ``8 * ceil(C/8)`` (the packed last dim times 8).
        input_dtype: dtype of the denoiser's 0/1 input (default float32, as official).
        backend: backend of the fused ops (``"auto"`` or a name from :func:`bldm_fast.available_backends`).

    Returns:
        dict: ``loss`` (scalar, float32 or float64 like the plain path, differentiable),
        ``bce_loss`` (``mean(kl)``), ``acc``, ``aux_loss`` (only when ``aux > 0``), all detached
        scalars, and ``t`` (int64 ``(B,)`` CPU, the time steps used).

    Raises:
        TypeError: ``x0_packed`` not uint8; ``t`` or class labels not integer; ``input_dtype``
            unsupported; logits not floating.
        ValueError: ``loss_final`` unknown; ``focal``, ``aux``, ``label_dropout``, ``alpha`` not
            finite numbers in range; ``t`` out of range or of the wrong shape; labels given to an
            unconditional denoiser or of the wrong batch size, device or range; generator together
            with seed; bad seed; the denoiser's output of the wrong shape or device; bad
            ``channels`` or ``schedule``.
    """
    # ---- arguments -----------------------------------------------------------------------------
    check_tensor(x0_packed, "x0_packed")
    if x0_packed.dtype != torch.uint8:
        raise TypeError(f"x0_packed must be uint8 packed bits (bldm_fast.pack_bits), got {x0_packed.dtype}")
    if x0_packed.dim() < 2 or x0_packed.numel() == 0:
        raise ValueError(f"x0_packed must be a non-empty (B, ..., ceil(C/8)), got shape {tuple(x0_packed.shape)}")
    if not isinstance(schedule, BernoulliSchedule):
        raise ValueError(f"schedule must be a bldm_fast.BernoulliSchedule, got {type(schedule).__name__}")
    if loss_final not in LOSS_FINALS:
        raise ValueError(f"loss_final must be one of {LOSS_FINALS}, got {loss_final!r}")
    focal = _check_number(focal, "focal")
    aux = _check_number(aux, "aux", 0.0)
    label_dropout = _check_number(label_dropout, "label_dropout", 0.0, 1.0)
    if alpha is None:
        alpha = -1.0 if predict_flip else focal  # the official focal_loss(x, x_0, self.focal, gamma=self.focal)
    alpha = _check_number(alpha, "alpha")
    nb = x0_packed.shape[-1]
    if channels is None:
        channels = 8 * nb
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or (int(channels) + 7) // 8 != nb:
        raise ValueError(f"channels must be an int C with ceil(C/8) = {nb} (x0_packed's last dim), got {channels!r}")
    channels = int(channels)
    device = x0_packed.device
    batch = x0_packed.shape[0]
    T = schedule.num_steps
    numel = x0_packed[..., :1].numel() * channels
    classes = _resolve_classes(denoiser, num_classes)
    _check_labels(labels, batch, device, classes)
    predict_flip = bool(predict_flip)

    # ---- random streams: t, the noise, the label dropout ---------------------------------------
    # The torch.Generator is made only when t or the label dropout is drawn, so a call with a given
    # t (and no dropout) creates none and compiles with fullgraph=True.
    draws = t is None or (labels is not None and label_dropout > 0)
    torch_gen = None  # torch's default generator
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator or seed, not both")
        if not isinstance(generator, PhiloxGenerator):
            raise ArgumentTypeError(f"generator must be a bldm_fast.PhiloxGenerator, got {type(generator).__name__}")
        if draws:
            torch_gen = torch.Generator().manual_seed(_splitmix64(generator.seed, generator.offset))
        stream = {"generator": generator}
    elif seed is not None:
        check_seed_offset(seed, 0, numel)
        if draws:
            torch_gen = torch.Generator().manual_seed(_splitmix64(seed, 0))
        stream = {"seed": seed, "offset": 0}
    else:
        stream = {}
    if t is None:
        t = torch.randint(1, T + 1, (batch,), generator=torch_gen, dtype=torch.int64)  # official sample_time
    else:
        t = _resolve_t(t, batch, T)

    xt_packed, x_in, flip = bernoulli_noise(x0_packed, t, schedule, channels, out_dtype=input_dtype,
                                            return_flip=predict_flip, backend=backend, **stream)

    drop = False
    if labels is not None and label_dropout > 0:
        drop = float(torch.rand((), generator=torch_gen)) < label_dropout

    # ---- the denoiser --------------------------------------------------------------------------
    time_steps = (t - 1).to(device, non_blocking=True)
    if labels is None:
        logits = denoiser(x_in, time_steps=time_steps)
    else:
        logits = denoiser(x_in, label=None if drop else labels, time_steps=time_steps)
    check_tensor(logits, "the denoiser's output")
    if not logits.is_floating_point():
        raise TypeError(f"the denoiser's output must be floating logits, got {logits.dtype}")
    if logits.shape != x_in.shape or logits.device != device:
        raise ValueError(f"the denoiser's output must have the shape {tuple(x_in.shape)} of its input on {device}, "
                         f"got {tuple(logits.shape)} on {logits.device}")

    # ---- the loss ------------------------------------------------------------------------------
    ft = torch.float64 if logits.dtype == torch.float64 else torch.float32
    w = 1 - (t - 1).to(ft) / T if loss_final == "weighted" else torch.ones(batch, dtype=ft)
    w = w.to(device)
    nd = x_in.dim()
    fused = predict_flip and focal == 0 and alpha == -1 and logits.dtype in _FUSED_DTYPES
    x0 = x_t = lf = None
    if fused:
        # focal_loss with gamma 0 and alpha -1 is the class-balanced BCE against the flips: fold
        # alpha_t, w_b and 1/N into one weight per (sample, target value).
        frac = _popcount_per_sample(flip).to(torch.float32) / (numel // batch)
        pos, neg = (1 - frac) / numel, frac / numel
        loss = flip_bce_loss(logits, flip, pos * w, neg * w, backend=backend)
        if loss_final == "mean":
            bce_loss = loss.detach()
        else:
            with torch.no_grad():
                bce_loss = flip_bce_loss(logits.detach(), flip, pos, neg, backend=backend)
        with torch.no_grad():
            # [l' > 0] predicts x_0 = 1, i.e. a flip where x_t = 0 iff l > 0 and where x_t = 1
            # iff not l < 0 (l' = -l there); errors = popcount(predicted flips XOR flips).
            gt = pack_bits(logits > 0, backend=backend)
            nlt = ~pack_bits(logits < 0, backend=backend)
            pred = (gt & ~xt_packed) | (nlt & xt_packed)
            errors = _popcount_per_sample(pred ^ flip).sum()
            acc = _fraction(numel - errors, numel)
    else:
        l = logits.to(ft)
        x_t = x_in.to(ft)
        x0 = unpack_bits(x0_packed, channels, ft, backend=backend)
        if predict_flip:
            lf = x_t * (-l) + (1 - x_t) * l  # the official flipped-back logit of x_0
            if focal >= 0:
                y = unpack_bits(flip, channels, ft, backend=backend)  # x_0 XOR x_t
                kl = focal_loss(l, y, alpha=alpha, gamma=focal)
            else:
                kl = F.binary_cross_entropy_with_logits(lf, x0, reduction="none")
        else:
            lf = l
            if focal >= 0:
                kl = focal_loss(l, x0, alpha=alpha, gamma=focal)
            else:
                kl = F.binary_cross_entropy_with_logits(l, x0, reduction="none")
        loss = (_bview(w, nd) * kl).mean()
        bce_loss = kl.detach().mean()
        with torch.no_grad():
            acc = _fraction(((lf > 0) == (x0 > 0)).sum(), numel)

    out = {"loss": loss, "bce_loss": bce_loss, "acc": acc}

    if aux > 0:
        if lf is None:
            l = logits.to(ft)
            x_t = x_in.to(ft)
            x0 = unpack_bits(x0_packed, channels, ft, backend=backend)
            lf = x_t * (-l) + (1 - x_t) * l if predict_flip else l
        aux_loss = _aux_loss(lf, x_t, x0, t, schedule, w, device)
        out["loss"] = aux * aux_loss + loss
        out["aux_loss"] = aux_loss.detach()
    out["t"] = t
    return out


def _aux_loss(lf, x_t, x0, t, schedule, w, device) -> torch.Tensor:
    """The official auxiliary loss, ``mean(w_b * BCE(x_tm1_pred, x_tm1_gt))`` (see training_loss)."""
    ft, nd = lf.dtype, lf.dim()
    sv = lambda table, idx: _bview(table.to(idx.device)[idx].to(device=device, dtype=ft), nd)  # noqa: E731
    k, b, beta = sv(schedule.k, t - 1), sv(schedule.b, t - 1), sv(schedule.beta, t)
    ftr = _bview((t == 1).to(device=device, dtype=ft), nd)
    # one_step([x_t, 1 - x_t], t): q * beta + 0.5 * (1 - beta) on each component
    q1 = x_t * beta + 0.5 * (1 - beta)
    q0 = (1 - x_t) * beta + 0.5 * (1 - beta)

    def posterior(p):  # scheduler([p, 1 - p], t - 1) * q_one_step, normalised with + 1e-6
        u1 = (k * p + b) * q1
        u0 = (k * (1 - p) + b) * q0
        return u1 / ((u1 + u0) + 1e-6)

    p = torch.sigmoid(lf)
    pred = posterior(p) * (1 - ftr) + p * ftr
    gt = posterior(x0)
    bce = F.binary_cross_entropy(pred.clamp(min=1e-6, max=1.0 - 1e-6), gt.clamp(min=0.0, max=1.0), reduction="none")
    return (_bview(w, nd) * bce).mean()
