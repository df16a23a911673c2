"""training_loss (bldm_fast.diffusion.loss) against a float64 transcription of the official loss.

Oracle: ``official_train_loss64`` below, written from ZeWang95/BinaryLatentDiffusion
``models/binarylatent.py`` (``BinaryDiffusion._train_loss``, ``focal_loss``, ``noise_scheduler``
``forward`` / ``one_step``) in float64 torch, with the official float32 tables (tests/official.py).
The two random draws of the official code are replaced by what training_loss used: ``t`` is passed
explicitly and ``x_t`` is recomputed with ``bf.bernoulli_noise`` on the same Philox stream
(``seed``, offset 0); the guidance coin flip ``np.random.random() < 0.1`` by a ``drop`` flag
(label_dropout 0 or 1 here; its frequency is tested separately).

Covered: every option combination (predict_flip, focal -1/0/2, loss_final, aux, labels / dropped
labels / unconditional) in value and gradient, the fused flip-BCE path on every backend (and
against the reference backend), half-precision logits, gradcheck of the float64 path, the random
streams, a tiny denoiser whose loss falls, and the argument errors.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bldm_fast as bf
import official
from bf_testutil import device_for, random_bits
from bldm_fast.diffusion.loss import training_loss

# ------------------------------------------------------------------------------------------------
# the oracle: the official _train_loss in float64, its random draws replaced by inputs
# ------------------------------------------------------------------------------------------------


class OfficialScheduler:
    """noise_scheduler.forward / one_step over the official float32 buffers, in float64."""

    def __init__(self, T: int, kind: str):
        k, b, beta = official.tables_f32(T, kind)
        self.k_final = torch.from_numpy(k).double()
        self.b_final = torch.from_numpy(b).double()
        self.beta = torch.from_numpy(beta).double()

    def one_step(self, x, t):
        dim = x.ndim - 1
        k = self.beta[t].view(-1, *([1] * dim))
        return x * k + 0.5 * (1 - k)

    def __call__(self, x, t):
        dim = x.ndim - 1
        k = self.k_final[t].view(-1, *([1] * dim))
        b = self.b_final[t].view(-1, *([1] * dim))
        return k * x + b


def official_focal_loss(inputs, targets, alpha=-1, gamma=1):
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    p_t = 1 - p_t
    p_t = p_t.clamp(min=1e-6, max=(1 - 1e-6))
    loss = ce_loss * (p_t**gamma)
    if alpha == -1:
        neg_weight = targets.sum((-1, -2))
        neg_weight = neg_weight / targets[0].numel()
        neg_weight = neg_weight.view(-1, 1, 1)
        alpha_t = (1 - neg_weight) * targets + neg_weight * (1 - targets)
        loss = alpha_t * loss
    elif alpha > 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


def official_train_loss64(denoise_fn, x_0, x_t_in, t, scheduler, T, *, label=None, drop=False,
                          p_flip=True, focal=0.0, loss_final="weighted", aux=0.0):
    """The official _train_loss with t and x_t_in given; all tensors float64 (B, L, C)."""
    x_0 = x_0 * 1.0
    if label is not None:
        if drop:  # the official `self.guidance and np.random.random() < 0.1`
            label = None
        x_0_hat_logits = denoise_fn(x_t_in, label=label, time_steps=t - 1)
    else:
        x_0_hat_logits = denoise_fn(x_t_in, time_steps=t - 1)

    if p_flip:
        if focal >= 0:
            x_0_ = torch.logical_xor(x_0, x_t_in).to(x_0.dtype)  # official `* 1.0` (float32 there)
            kl_loss = official_focal_loss(x_0_hat_logits, x_0_, gamma=focal)
            x_0_hat_logits = x_t_in * (-x_0_hat_logits) + (1 - x_t_in) * x_0_hat_logits
        else:
            x_0_hat_logits = x_t_in * (-x_0_hat_logits) + (1 - x_t_in) * x_0_hat_logits
            kl_loss = F.binary_cross_entropy_with_logits(x_0_hat_logits, x_0, reduction="none")
    else:
        if focal >= 0:
            kl_loss = official_focal_loss(x_0_hat_logits, x_0, focal, gamma=focal)  # alpha = focal!
        else:
            kl_loss = F.binary_cross_entropy_with_logits(x_0_hat_logits, x_0, reduction="none")

    if loss_final == "weighted":
        weight = (1 - ((t - 1).double() / T)).view(-1, 1, 1)
    else:
        weight = 1.0
    loss = (weight * kl_loss).mean()
    kl_loss = kl_loss.mean()
    with torch.no_grad():
        acc = (((x_0_hat_logits > 0.0) * 1.0 == x_0) * 1.0).sum() / float(x_0.numel())

    stats = {}
    if aux > 0:
        ftr = (((t - 1) == 0) * 1.0).view(-1, 1, 1)
        x_0_l = torch.sigmoid(x_0_hat_logits)
        x_0_logits = torch.cat([x_0_l.unsqueeze(-1), (1 - x_0_l).unsqueeze(-1)], dim=-1)
        x_t_logits = torch.cat([x_t_in.unsqueeze(-1), (1 - x_t_in).unsqueeze(-1)], dim=-1)
        p_EV_qxtmin_x0 = scheduler(x_0_logits, t - 1)
        q_one_step = scheduler.one_step(x_t_logits, t)
        unnormed_probs = p_EV_qxtmin_x0 * q_one_step
        unnormed_probs = unnormed_probs / (unnormed_probs.sum(-1, keepdims=True) + 1e-6)
        unnormed_probs = unnormed_probs[..., 0]
        x_tm1_logits = unnormed_probs * (1 - ftr) + x_0_l * ftr
        x_0_gt = torch.cat([x_0.unsqueeze(-1), (1 - x_0).unsqueeze(-1)], dim=-1)
        p_EV_qxtmin_x0_gt = scheduler(x_0_gt, t - 1)
        unnormed_gt = p_EV_qxtmin_x0_gt * q_one_step
        unnormed_gt = unnormed_gt / (unnormed_gt.sum(-1, keepdims=True) + 1e-6)
        x_tm1_gt = unnormed_gt[..., 0]
        aux_loss = F.binary_cross_entropy(x_tm1_logits.clamp(min=1e-6, max=(1.0 - 1e-6)),
                                          x_tm1_gt.clamp(min=0.0, max=1.0), reduction="none")
        aux_loss = (weight * aux_loss).mean()
        loss = aux * aux_loss + loss
        stats["aux_loss"] = aux_loss
    stats.update(loss=loss, bce_loss=kl_loss, acc=acc)
    return stats


# ------------------------------------------------------------------------------------------------
# denoiser stubs
# ------------------------------------------------------------------------------------------------


class StubDenoiser(nn.Module):
    """logits = base + 0.75 (2 x - 1): a leaf parameter to differentiate, plus x_t dependence.

    Records the keyword arguments of every call in ``.calls``.
    """

    def __init__(self, base: torch.Tensor, out_dtype=None, num_classes="absent", conditional="absent"):
        super().__init__()
        self.base = nn.Parameter(base)
        self.out_dtype = out_dtype
        self.calls = []
        if num_classes != "absent":
            self.num_classes = num_classes
        if conditional != "absent":
            self.conditional = conditional

    def forward(self, x, **kwargs):
        self.calls.append(kwargs)
        out = self.base + 0.75 * (2 * x.to(self.base.dtype) - 1)
        return out.to(self.out_dtype) if self.out_dtype is not None else out


def _base(shape, seed, scale=1.5, limit=6.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).clamp(-limit, limit).to(dtype)


def _case(shape=(4, 6, 12), T=10, kind="cos", seed=7, device="cpu", t=None):
    B = shape[0]
    bits = torch.from_numpy(random_bits(shape, seed=seed, p=0.4))
    x0p = bf.pack_bits(bits).to(device)
    sched = bf.BernoulliSchedule(T, kind)
    if t is None:
        t = torch.tensor([1, T, 4, 7, 2, 9, 5, 3][:B] if B <= 8 else np.arange(B) % T + 1, dtype=torch.int64)
    return bits, x0p, sched, t


def _oracle(bits, x0p, sched, t, seed, base, *, labels=None, drop=False, **opts):
    """The float64 oracle on the x_t that training_loss(seed=seed, t=t) draws; returns (stats, grad).

    Latents (B, ..., C) are viewed as the official (B, L, C) (L the product of the middle dims)."""
    shape = bits.shape
    B, C = shape[0], shape[-1]
    _, x_t, _ = bf.bernoulli_noise(x0p.cpu(), t, sched, C, seed=seed, offset=0, out_dtype=torch.float64,
                                   return_flip=True, backend="reference")
    den = StubDenoiser(base.detach().to(torch.float64).cpu().reshape(B, -1, C).clone())
    stats = official_train_loss64(den, bits.double().reshape(B, -1, C), x_t.reshape(B, -1, C), t,
                                  OfficialScheduler(sched.num_steps, sched.kind), sched.num_steps,
                                  label=labels, drop=drop, **opts)
    stats["loss"].backward()
    return stats, den.base.grad.reshape(shape)


def _assert_close_stats(got, want, rtol, atol, keys=("loss", "bce_loss", "acc", "aux_loss")):
    for key in keys:
        if key in want:
            assert key in got, key
            torch.testing.assert_close(got[key].detach().double().cpu(), want[key].detach().double(),
                                       rtol=rtol, atol=atol, msg=lambda m: f"{key}: {m}")
    assert ("aux_loss" in got) == ("aux_loss" in want)


def _assert_close_grad(got, want, rtol):
    scale = float(want.abs().max())
    torch.testing.assert_close(got.detach().double().cpu(), want, rtol=rtol, atol=rtol * scale)


OPTIONS = list(itertools.product([True, False], [-1.0, 0.0, 2.0], ["weighted", "mean"], [0.0, 0.5]))
LABEL_MODES = ["unconditional", "labels", "dropped"]


# ------------------------------------------------------------------------------------------------
# equivalence with the official loss, every option
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_mode", LABEL_MODES)
@pytest.mark.parametrize("predict_flip,focal,loss_final,aux", OPTIONS,
                         ids=[f"flip={p}-focal={f:g}-{lf}-aux={a:g}" for p, f, lf, a in OPTIONS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_matches_official(dtype, predict_flip, focal, loss_final, aux, label_mode):
    """Value of every stat and the gradient equal the float64 official loss (float32 within
    rounding; a float64 denoiser runs the plain path in float64 and matches to 1e-12)."""
    seed = 1234
    bits, x0p, sched, t = _case()
    base = _base(bits.shape, seed=3, dtype=dtype)
    labels = torch.tensor([3, 1, 4, 1]) if label_mode != "unconditional" else None
    drop = label_mode == "dropped"
    den = StubDenoiser(base.clone(), num_classes=10 if labels is not None else "absent")
    opts = dict(predict_flip=predict_flip, focal=focal, loss_final=loss_final, aux=aux)
    got = training_loss(den, x0p, sched, labels=labels, label_dropout=1.0 if drop else 0.0, seed=seed, t=t,
                        channels=bits.shape[-1], **opts)
    got["loss"].backward()
    want, want_grad = _oracle(bits, x0p, sched, t, seed, base, labels=labels, drop=drop, p_flip=predict_flip,
                              focal=focal, loss_final=loss_final, aux=aux)
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    _assert_close_stats(got, want, rtol=rtol, atol=rtol * 0.1)
    _assert_close_grad(den.base.grad, want_grad, rtol=1e-10 if dtype == torch.float64 else 1e-4)
    assert got["loss"].dtype == dtype and got["loss"].requires_grad
    assert torch.equal(got["t"], t)
    # the denoiser call: x_t, time_steps = t - 1, label only for a conditional call
    (call,) = den.calls
    assert torch.equal(call["time_steps"], t - 1)
    if labels is None:
        assert "label" not in call
    else:
        assert call["label"] is None if drop else call["label"] is labels


@pytest.mark.parametrize("kind", ["linear", "sigmoid"])
@pytest.mark.parametrize("predict_flip,focal", [(True, 0.0), (True, -1.0), (False, 0.0), (False, 0.25)])
def test_matches_official_other_schedules(kind, predict_flip, focal):
    """Linear and sigmoid schedules, a larger latent, t near 1 and T, and focal 0.25 (a proper alpha)."""
    seed = 99
    bits, x0p, sched, t = _case(shape=(8, 16, 20), T=32, kind=kind, seed=5)
    t = torch.tensor([1, 2, 3, 16, 30, 31, 32, 8])
    base = _base(bits.shape, seed=11)
    den = StubDenoiser(base.clone())
    got = training_loss(den, x0p, sched, predict_flip=predict_flip, focal=focal, aux=0.3, seed=seed, t=t, channels=20)
    got["loss"].backward()
    want, want_grad = _oracle(bits, x0p, sched, t, seed, base, p_flip=predict_flip, focal=focal, aux=0.3)
    _assert_close_stats(got, want, rtol=2e-5, atol=2e-6)
    _assert_close_grad(den.base.grad, want_grad, rtol=1e-4)


def test_alpha_override():
    """alpha=None is the official choice; an explicit alpha replaces it (here predict_flip=False
    with alpha -1 gives the class-balanced focal loss on x_0, the official predict_flip weighting)."""
    bits, x0p, sched, t = _case()
    base = _base(bits.shape, seed=4)
    kw = dict(seed=5, t=t, channels=12, predict_flip=False, focal=2.0)
    default = training_loss(StubDenoiser(base.clone()), x0p, sched, **kw)
    explicit = training_loss(StubDenoiser(base.clone()), x0p, sched, alpha=2.0, **kw)
    torch.testing.assert_close(default["loss"], explicit["loss"], rtol=0, atol=0)
    balanced = training_loss(StubDenoiser(base.clone()), x0p, sched, alpha=-1, **kw)
    _, x_t, _ = bf.bernoulli_noise(x0p, t, sched, 12, seed=5, offset=0, out_dtype=torch.float64, return_flip=True)
    l = base.double() + 0.75 * (2 * x_t - 1)
    kl = official_focal_loss(l, bits.double(), alpha=-1, gamma=2.0)
    want = ((1 - (t - 1).double() / 10).view(-1, 1, 1) * kl).mean()
    torch.testing.assert_close(balanced["loss"].double(), want, rtol=2e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# the fused flip-BCE path on every backend
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 6, 12), (3, 16, 64), (2, 3, 5, 9)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("loss_final,aux", [("weighted", 0.0), ("mean", 0.0), ("weighted", 0.5)])
def test_fused_path_every_backend(backend, shape, loss_final, aux):
    """predict_flip, focal 0, alpha -1 (the fused flip_bce_loss path): equals the official float64
    loss and the reference backend in value and gradient, and acc exactly."""
    dev = device_for(backend)
    seed = 2024
    B = shape[0]
    bits, x0p, sched, _ = _case(shape=shape, T=16, seed=sum(shape), device=dev)
    t = torch.tensor([1, 16, 9, 4][:B])
    base = _base(shape, seed=8)
    # exact zero logits in sample 0 (the stub adds 0.75 (2 x_t - 1)): acc must count them as official
    x_t = bf.bernoulli_noise(x0p.cpu(), t, sched, shape[-1], seed=seed, offset=0, out_dtype=torch.float32)[1]
    base[0, ..., :3] = -0.75 * (2 * x_t[0, ..., :3] - 1)
    kw = dict(seed=seed, t=t, channels=shape[-1], loss_final=loss_final, aux=aux)
    den = StubDenoiser(base.clone().to(dev))
    got = training_loss(den, x0p, sched, backend=backend, **kw)
    got["loss"].backward()
    den_ref = StubDenoiser(base.clone())
    ref = training_loss(den_ref, x0p.cpu(), sched, backend="reference", **kw)
    ref["loss"].backward()
    want, want_grad = _oracle(bits, x0p, sched, t, seed, base, loss_final=loss_final, aux=aux)
    _assert_close_stats(got, want, rtol=2e-5, atol=2e-6)
    _assert_close_stats(got, ref, rtol=2e-6, atol=1e-7)
    assert float(got["acc"]) == float(want["acc"])
    _assert_close_grad(den.base.grad, want_grad, rtol=1e-4)
    _assert_close_grad(den.base.grad, den_ref.base.grad.double(), rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_path_half_logits(backend, dtype):
    """Half-precision logits: loss and gradient are the official float64 ones of the rounded logits."""
    dev = device_for(backend)
    seed = 31
    bits, x0p, sched, t = _case(shape=(4, 8, 16), T=20, device=dev)
    base = _base(bits.shape, seed=2)
    den = StubDenoiser(base.clone().to(dev), out_dtype=dtype)
    got = training_loss(den, x0p, sched, seed=seed, t=t, channels=16, backend=backend)
    got["loss"].backward()
    _, x_t, _ = bf.bernoulli_noise(x0p.cpu(), t, sched, 16, seed=seed, offset=0, out_dtype=torch.float64,
                                   return_flip=True)
    l = (base + 0.75 * (2 * x_t.float() - 1)).to(dtype).double().requires_grad_(True)
    want = official_train_loss64(lambda x, time_steps: l, bits.double(), x_t, t, OfficialScheduler(20, "cos"), 20)
    want["loss"].backward()
    _assert_close_stats(got, want, rtol=2e-5, atol=2e-6)
    _assert_close_grad(den.base.grad, l.grad, rtol=1e-2)


# ------------------------------------------------------------------------------------------------
# gradcheck of the float64 path
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("predict_flip,focal,aux", list(itertools.product([True, False], [-1.0, 0.0, 2.0], [0.0, 0.5])))
def test_gradcheck_float64(predict_flip, focal, aux):
    """torch.autograd.gradcheck of the whole loss with respect to a float64 denoiser's logits."""
    bits, x0p, sched, _ = _case(shape=(2, 3, 5), T=8, seed=3)
    t = torch.tensor([1, 6])
    base = _base(bits.shape, seed=6, dtype=torch.float64).requires_grad_(True)

    def f(b):
        den = lambda x, time_steps: b + 0.75 * (2 * x - 1)  # noqa: E731
        return training_loss(den, x0p, sched, seed=17, t=t, channels=5, predict_flip=predict_flip,
                             focal=focal, aux=aux, input_dtype=torch.float64)["loss"]

    assert torch.autograd.gradcheck(f, (base,), eps=1e-6, atol=1e-8, rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# random streams
# ------------------------------------------------------------------------------------------------


class SeeingDenoiser(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, label="absent", time_steps=None):
        self.seen.append((x.clone(), time_steps.clone(), label))
        return x * self.w


def test_streams_reproducible():
    """seed=s is reproducible and equals a fresh PhiloxGenerator(s); the generator advances by one
    call's counters; torch.manual_seed makes the default-generator path repeatable."""
    bits, x0p, sched, _ = _case(shape=(6, 8, 16), T=50)
    runs = []
    for kw in (dict(seed=77), dict(seed=77), dict(generator=bf.PhiloxGenerator(77))):
        den = SeeingDenoiser()
        out = training_loss(den, x0p, sched, **kw)
        runs.append((den.seen[0][0], out["t"], out["loss"]))
    for x, t, loss in runs[1:]:
        assert torch.equal(x, runs[0][0]) and torch.equal(t, runs[0][1]) and torch.equal(loss, runs[0][2])
    gen = bf.PhiloxGenerator(77)
    d1, d2 = SeeingDenoiser(), SeeingDenoiser()
    o1 = training_loss(d1, x0p, sched, generator=gen)
    assert gen.offset == (6 * 8 * 16 + 3) // 4
    o2 = training_loss(d2, x0p, sched, generator=gen)
    assert not torch.equal(d1.seen[0][0], d2.seen[0][0])
    assert not torch.equal(o1["t"], o2["t"])  # the torch.Generator is seeded from the offset too
    # x_t is bernoulli_noise on the Philox stream (seed, offset 0) at the sampled t
    x_t = bf.bernoulli_noise(x0p, runs[0][1], sched, 16, seed=77, offset=0, out_dtype=torch.float32)[1]
    assert torch.equal(runs[0][0], x_t)
    outs = []
    for _ in range(2):
        torch.manual_seed(5)
        den = SeeingDenoiser()
        outs.append((training_loss(den, x0p, sched)["t"], den.seen[0][0]))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_t_uniform():
    """Sampled t covers 1..T uniformly (chi-square, 4000 samples, 10 bins)."""
    T = 10
    x0p = bf.pack_bits(torch.zeros(4000, 1, 8, dtype=torch.bool))
    out = training_loss(SeeingDenoiser(), x0p, bf.BernoulliSchedule(T), seed=3)
    t = out["t"]
    assert int(t.min()) == 1 and int(t.max()) == T
    counts = torch.bincount(t, minlength=T + 1)[1:].double()
    chi2 = float(((counts - 400) ** 2 / 400).sum())
    assert chi2 < 35, chi2  # 9 dof: P(chi2 > 35) ~ 6e-5


def test_label_dropout_frequency():
    """label_dropout p drops all labels of a batch with probability p (drawn per call)."""
    x0p = bf.pack_bits(torch.zeros(2, 1, 8, dtype=torch.bool))
    sched = bf.BernoulliSchedule(4)
    labels = torch.tensor([1, 2])
    drops = 0
    n = 400
    for s in range(n):
        den = SeeingDenoiser()
        training_loss(den, x0p, sched, labels=labels, label_dropout=0.25, seed=s)
        label = den.seen[0][2]
        assert label is None or label is labels
        drops += label is None
    assert 0.18 * n < drops < 0.32 * n, drops


# ------------------------------------------------------------------------------------------------
# a tiny denoiser learns
# ------------------------------------------------------------------------------------------------


class TinyDenoiser(nn.Module):
    """Per-token MLP with a time embedding over (B, L, C) 0/1 inputs."""

    def __init__(self, C: int, T: int, hidden: int = 64):
        super().__init__()
        self.inp = nn.Linear(C, hidden)
        self.time = nn.Embedding(T, hidden)
        self.out = nn.Linear(hidden, C)

    def forward(self, x, time_steps):
        h = torch.tanh(self.inp(2 * x - 1) + self.time(time_steps)[:, None, :])
        return self.out(h)


def test_tiny_denoiser_loss_falls():
    """256 codes of 16 tokens, each token one of 4 random 16-bit words: the denoiser learns to snap
    noisy tokens back, so the loss and the accuracy improve within 150 Adam steps (seeded)."""
    torch.manual_seed(0)
    C, L, N, T, B = 16, 16, 256, 16, 32
    g = torch.Generator().manual_seed(0)
    words = torch.randint(0, 2, (4, C), generator=g, dtype=torch.bool)
    codes = bf.pack_bits(words[torch.randint(0, 4, (N, L), generator=g)])
    sched = bf.BernoulliSchedule(T, "cos")
    model = TinyDenoiser(C, T)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = bf.PhiloxGenerator(123)
    losses, accs = [], []
    for step in range(150):
        idx = torch.randint(0, N, (B,), generator=g)
        out = training_loss(model, codes[idx], sched, generator=gen, channels=C)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
        accs.append(float(out["acc"]))
    first, last = np.mean(losses[:15]), np.mean(losses[-15:])
    assert last < 0.85 * first, (first, last)
    assert np.mean(accs[-15:]) > np.mean(accs[:15]) + 0.1, (np.mean(accs[:15]), np.mean(accs[-15:]))


# ------------------------------------------------------------------------------------------------
# argument errors
# ------------------------------------------------------------------------------------------------


def _err_case():
    bits, x0p, sched, t = _case()
    return x0p, sched, StubDenoiser(_base(bits.shape, seed=1))


@pytest.mark.parametrize("kw,exc,match", [
    (dict(loss_final="sum"), ValueError, "loss_final"),
    (dict(t=0), ValueError, r"t must be in \[1, 10\]"),
    (dict(t=torch.tensor([1, 2, 3])), ValueError, "t must"),
    (dict(t=torch.tensor([1.0, 2, 3, 4])), TypeError, "t must"),
    (dict(focal=float("nan")), ValueError, "focal"),
    (dict(aux=-0.5), ValueError, "aux"),
    (dict(label_dropout=1.5), ValueError, "label_dropout"),
    (dict(alpha="x"), ValueError, "alpha"),
    (dict(seed=1, generator=bf.PhiloxGenerator(1)), ValueError, "generator"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(channels=7), ValueError, "channels"),
    (dict(labels=torch.tensor([1, 2, 3]), num_classes=10), ValueError, "labels"),
    (dict(labels=torch.tensor([1, 2, 3, 10]), num_classes=10), ValueError, "labels"),
    (dict(labels=torch.tensor([1.0, 2, 3, 4]), num_classes=10), TypeError, "labels"),
    (dict(labels=torch.tensor([1, 2, 3, 4]), num_classes=0), ValueError, "labels"),
    (dict(num_classes=-2), ValueError, "num_classes"),
])
def test_bad_arguments(kw, exc, match):
    x0p, sched, den = _err_case()
    with pytest.raises(exc, match=match):
        training_loss(den, x0p, sched, **kw)


def test_bad_x0_and_schedule_and_output():
    x0p, sched, den = _err_case()
    with pytest.raises(TypeError, match="x0_packed"):
        training_loss(den, x0p.float(), sched)
    with pytest.raises(TypeError, match="x0_packed"):
        training_loss(den, [1, 2], sched)
    with pytest.raises(ValueError, match="x0_packed"):
        training_loss(den, x0p[0, 0], sched)
    with pytest.raises(ValueError, match="schedule"):
        training_loss(den, x0p, 10)
    with pytest.raises(ValueError, match="denoiser's output"):
        training_loss(lambda x, time_steps: x[..., :-1], x0p, sched, channels=12)
    with pytest.raises(TypeError, match="denoiser's output"):
        training_loss(lambda x, time_steps: x.bool(), x0p, sched, channels=12)


def test_labels_for_unconditional_denoiser():
    """A denoiser with ``conditional = False`` (BinaryTransformer's property) is unconditional:
    labels are an error; one that declares a class count gets its labels checked; without either
    attribute (or with num_classes None: e.g. text embeddings) labels pass unchecked."""
    bits, x0p, sched, t = _case()
    labels = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="labels.*unconditional"):
        training_loss(StubDenoiser(_base(bits.shape, 1), conditional=False), x0p, sched, labels=labels, channels=12)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        training_loss(StubDenoiser(_base(bits.shape, 1), num_classes=3, conditional=True), x0p, sched,
                      labels=labels, channels=12)
    text_model = StubDenoiser(_base(bits.shape, 1), num_classes=None, conditional=True)
    for den in (StubDenoiser(_base(bits.shape, 1)), text_model):
        emb = torch.randn(4, 7)
        training_loss(den, x0p, sched, labels=emb, channels=12)
        assert den.calls[0]["label"] is emb


def test_binary_transformer_denoiser():
    """bldm_fast.models.BinaryTransformer plugs in as the denoiser (class-conditional, with dropout)."""
    models = bf.models
    torch.manual_seed(0)
    model = models.BinaryTransformer(16, n_embd=32, n_head=2, n_layers=1, latent_size=2, total_steps=8, num_classes=5)
    x0p = bf.pack_bits(torch.rand(3, 4, 16) < 0.5)
    sched = bf.BernoulliSchedule(8)
    out = training_loss(model, x0p, sched, labels=torch.tensor([0, 4, 2]), label_dropout=0.5, seed=1, aux=0.1)
    out["loss"].backward()
    assert model.head.weight.grad is not None and torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="labels"):
        training_loss(model, x0p, sched, labels=torch.tensor([0, 5, 2]), seed=1)
    uncond = models.BinaryTransformer(16, n_embd=32, n_head=2, n_layers=1, latent_size=2, total_steps=8)
    with pytest.raises(ValueError, match="labels.*unconditional"):
        training_loss(uncond, x0p, sched, labels=torch.tensor([0, 4, 2]), seed=1)
    assert torch.isfinite(training_loss(uncond, x0p, sched, seed=1)["loss"])
