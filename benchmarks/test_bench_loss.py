"""pytest-benchmark suite: one training-loss evaluation, forward + backward, bldm_fast vs official.

Case: B=64 latents of 16x16 tokens x 64 channels (1M bits), T=256 linear schedule, the common
configuration (predict_flip, focal 0 with its class balancing, loss_final "weighted"), and the same
with the auxiliary loss (aux 0.5). The denoiser is a stub that returns a fixed leaf tensor of
logits, so only the loss is timed: sampling t, noising x_0, the loss and its statistics, and the
backward pass down to the logits.

* ``bldm_fast[<backend>]``: :func:`bldm_fast.diffusion.loss.training_loss` from packed codes
  (uint8 ``(B, L, C/8)``) on a CPU backend;
* ``official_eager``: the official ``_train_loss`` op by op in eager PyTorch from float32 codes
  (``torch.randint``, ``k x_0 + b``, ``torch.bernoulli``, ``focal_loss``, the flip rewrite, the
  weighting, the accuracy; ``one_step`` and the posterior for aux), then ``loss.backward()``.

Run: ``python -m pytest benchmarks/test_bench_loss.py --benchmark-only``.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import bldm_fast as bf
from bldm_fast.diffusion.loss import training_loss

BACKENDS = [b for b in bf.available_backends() if b not in ("triton", "cuda")]  # CPU tensors here
SHAPE = (64, 256, 64)
SHAPE_ID = "B64xL256xC64"
NUM_STEPS = 256
SEED = 1234
IMPLS = [f"bldm_fast[{b}]" for b in BACKENDS] + [pytest.param("official_eager", marks=pytest.mark.baseline)]
VARIANTS = {"flip_focal0_weighted": 0.0, "flip_focal0_weighted_aux": 0.5}


@functools.lru_cache(maxsize=None)
def _inputs():
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, SHAPE, generator=g, dtype=torch.uint8)
    logits = torch.randn(SHAPE, generator=g) * 3.0
    return bits, logits


# ---------------------------------------------------------------------------------------------
# the official loss, op by op (models/binarylatent.py: _train_loss, focal_loss, noise_scheduler)
# ---------------------------------------------------------------------------------------------


def _official_focal(inputs, targets, gamma):
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = 1 - (p * targets + (1 - p) * (1 - targets))
    p_t = p_t.clamp(min=1e-6, max=1 - 1e-6)
    loss = ce_loss * (p_t**gamma)
    neg_weight = (targets.sum((-1, -2)) / targets[0].numel()).view(-1, 1, 1)
    return ((1 - neg_weight) * targets + neg_weight * (1 - targets)) * loss


def official_train_loss(denoise_fn, x_0, k_final, b_final, beta, T, aux=0.0):
    x_0 = x_0 * 1.0
    t = torch.randint(1, T + 1, (x_0.size(0),))
    x_t = k_final[t].view(-1, 1, 1) * x_0 + b_final[t].view(-1, 1, 1)
    x_t_in = torch.bernoulli(x_t)
    logits = denoise_fn(x_t_in, time_steps=t - 1)
    x_0_ = torch.logical_xor(x_0, x_t_in) * 1.0
    kl_loss = _official_focal(logits, x_0_, gamma=0.0)
    logits = x_t_in * (-logits) + (1 - x_t_in) * logits
    weight = (1 - ((t - 1) / T)).view(-1, 1, 1)
    loss = (weight * kl_loss).mean()
    kl_loss = kl_loss.mean()
    with torch.no_grad():
        acc = (((logits > 0.0) * 1.0 == x_0) * 1.0).sum() / float(x_0.numel())
    stats = {"bce_loss": kl_loss, "acc": acc}
    if aux > 0:
        ftr = (((t - 1) == 0) * 1.0).view(-1, 1, 1)
        x_0_l = torch.sigmoid(logits)
        x_0_logits = torch.cat([x_0_l.unsqueeze(-1), (1 - x_0_l).unsqueeze(-1)], dim=-1)
        x_t_logits = torch.cat([x_t_in.unsqueeze(-1), (1 - x_t_in).unsqueeze(-1)], dim=-1)
        kv = lambda tab, s: tab[s].view(-1, 1, 1, 1)  # noqa: E731
        p_ev = kv(k_final, t - 1) * x_0_logits + kv(b_final, t - 1)
        q_one_step = x_t_logits * kv(beta, t) + 0.5 * (1 - kv(beta, t))
        un = p_ev * q_one_step
        un = (un / (un.sum(-1, keepdims=True) + 1e-6))[..., 0]
        x_tm1 = un * (1 - ftr) + x_0_l * ftr
        x_0_gt = torch.cat([x_0.unsqueeze(-1), (1 - x_0).unsqueeze(-1)], dim=-1)
        un_gt = (kv(k_final, t - 1) * x_0_gt + kv(b_final, t - 1)) * q_one_step
        x_tm1_gt = (un_gt / (un_gt.sum(-1, keepdims=True) + 1e-6))[..., 0]
        aux_loss = F.binary_cross_entropy(x_tm1.clamp(min=1e-6, max=1.0 - 1e-6), x_tm1_gt.clamp(min=0.0, max=1.0),
                                          reduction="none")
        aux_loss = (weight * aux_loss).mean()
        loss = aux * aux_loss + loss
        stats["aux_loss"] = aux_loss
    stats["loss"] = loss
    return stats


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_training_loss_fwd_bwd(benchmark, variant, impl):
    aux = VARIANTS[variant]
    bits, logits0 = _inputs()
    B, L, C = SHAPE
    sched = bf.BernoulliSchedule(NUM_STEPS, "linear")
    logits = logits0.clone().requires_grad_(True)
    denoiser = lambda x, time_steps: logits  # noqa: E731  (the stub: a fixed leaf of logits)
    if impl == "official_eager":
        x0 = bits.float()
        k, b, beta = sched.k, sched.b, sched.beta  # equal to the official float32 buffers

        def fn():
            logits.grad = None
            out = official_train_loss(denoiser, x0, k, b, beta, NUM_STEPS, aux=aux)
            out["loss"].backward()
            return out

        nbytes, formula = 4 * bits.numel() + 8 * bits.numel(), "4N (x_0) + 8N (logits, grad)"
    else:
        backend = impl[len("bldm_fast[") : -1]
        x0p = bf.pack_bits(bits)
        gen = bf.PhiloxGenerator(SEED)

        def fn():
            logits.grad = None
            out = training_loss(denoiser, x0p, sched, generator=gen, channels=C, aux=aux, backend=backend)
            out["loss"].backward()
            return out

        nbytes, formula = x0p.numel() + 8 * bits.numel(), "P (packed x_0) + 8N (logits, grad)"
    benchmark.group = f"training loss fwd+bwd {variant} {SHAPE_ID}"
    benchmark.extra_info.update(impl=impl, elements=bits.numel(), bytes=nbytes, formula=formula)
    out = fn()  # warm-up, and a sanity check of what is timed
    assert torch.isfinite(out["loss"]) and logits.grad is not None and logits.grad.shape == SHAPE
    assert ("aux_loss" in out) == (aux > 0)
    benchmark(fn)
