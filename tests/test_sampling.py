"""BernoulliDiffusion.sample against a transcription of the official sampling loop.

The transcription (``official_loop``) is ``BinaryDiffusion.sample`` of ZeWang95/BinaryLatentDiffusion
(models/binarylatent.py) written out here with ``torch.bernoulli(p)`` replaced by ``u < p`` on the
contract's uniforms (``bf.philox_uniform``) at the offsets of the sampler's stream layout (region 0:
initial noise, region i + 1: step i, each 2**40 counters; bldm_fast/diffusion/grid.py). It runs in
float64 with the float64 tables (the equivalence policy of DESIGN.md section 5) or in float32 with
the official float32 buffers (the literal official arithmetic).

Checks:
* the free-running sample equals the transcription (tiny shapes: exact equality is the expectation);
* ``check_trajectory`` re-runs every step of a returned trajectory from its own state ("teacher
  forcing") and requires each bit to equal the official float64 draw outside the 1e-5 guard band
  (mismatches inside it are counted in the run summary), the masked bits to equal ``known`` and the
  initial noise to be exactly ``u < 0.5``;
* fused backends equal the reference step by step; batch-size invariance; generator offsets; the
  denoiser's calls (time_steps = t - 1, labels, unconditional call with guidance); bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import bldm_fast as bf
import bldm_fast.diffusion.loss
import official
from bf_testutil import device_for, record_guard_band
from bldm_fast.diffusion import BernoulliDiffusion, sampling_grid
from bldm_fast.diffusion.grid import REGION_COUNTERS

BAND = 1e-5


# ------------------------------------------------------------------------------------------
# a tiny deterministic denoiser with the official forward signature
# ------------------------------------------------------------------------------------------
class StubDenoiser(nn.Module):
    """``forward(x, label=None, time_steps=None) -> (B, L, C)`` float32 logits.

    Mixes channels and tokens of each sample (so a changed bit changes later logits) and depends on
    ``time_steps`` and ``label``. Every weight is a small multiple of 1/16 and the input is +-1, so
    every logit is exact in float32 whatever the summation order: results do not depend on the
    batch size or on the matmul kernel.
    """

    def __init__(self, L: int, C: int, num_classes: int | None = None, seed: int = 0, scale: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q = lambda *s: torch.randint(-scale, scale + 1, s, generator=g).float() / 16  # noqa: E731
        self.w = nn.Parameter(q(C, C))
        self.tok = nn.Parameter(q(L, L))
        self.pos = nn.Parameter(q(L, C) * 4)
        self.time = nn.Parameter(q(C))
        self.cls = nn.Parameter(q(num_classes, C) * 8) if num_classes else None
        self.codebook_size, self.block_size = C, L
        self.calls: list[tuple] = []
        self.record = False

    def forward(self, x, label=None, time_steps=None):
        if self.record:
            self.calls.append((None if label is None else label.clone(), time_steps.clone(), x.clone()))
        h = x.float() * 2 - 1
        out = h @ self.w + (self.tok @ h) / 2 + self.pos + time_steps.float().view(-1, 1, 1) * self.time / 4
        if label is not None:
            out = out + self.cls[label].unsqueeze(1)
        return out


# ------------------------------------------------------------------------------------------
# the official loop, transcribed
# ------------------------------------------------------------------------------------------
def official_grid(T: int, sample_steps: int) -> np.ndarray:
    """The official ``sampling_steps`` (ascending, before the loop reverses it), verbatim."""
    sampling_steps = np.array(range(1, T + 1))
    if sample_steps != T:
        idx = np.linspace(0.0, 1.0, sample_steps)
        idx = np.array(idx * (T - 1), int)
        sampling_steps = sampling_steps[idx]
    return sampling_steps


def official_tables(T: int, kind: str, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tabs = official.tables(T, kind) if dtype == torch.float64 else official.tables_f32(T, kind)
    return tuple(torch.from_numpy(np.asarray(t)).to(dtype) for t in tabs)


def uniforms(seed: int, base: int, region: int, shape) -> torch.Tensor:
    """The contract's uniforms of one region of the sampler's stream, shape ``(B, L, C)``."""
    return bf.philox_uniform(seed, base + region * REGION_COUNTERS, math.prod(shape),
                             backend="reference").view(shape)


def official_logits(denoise, x_t, t: int, dtype, *, temp=1.0, guidance=None, label=None, conditional=False):
    """The official loop's logits before sigmoid: (1 + g) cond/temp - g uncond/temp."""
    b = x_t.shape[0]
    t = torch.full((b,), t, dtype=torch.long)
    xin = x_t.float()
    if conditional:
        lg = denoise(xin, label, time_steps=t - 1).to(dtype) / temp
        if guidance is not None:
            lu = denoise(xin, None, time_steps=t - 1).to(dtype) / temp
            lg = (1 + guidance) * lg - guidance * lu
    else:
        lg = denoise(xin, time_steps=t - 1).to(dtype) / temp
    return lg


def official_step_prob(logits, x_t, t: int, t_p: int, tables, p_flip: bool):
    """The official loop body up to the draw: P(x_{t_p} = 1), or P(x_0 = 1) when t == 1 (t_p = 0)."""
    k_final, b_final, beta = tables
    p = torch.sigmoid(logits)
    if p_flip:
        p = x_t * (1 - p) + (1 - x_t) * p
    if t_p == 0:
        return p
    x0l = torch.cat([p.unsqueeze(-1), (1 - p).unsqueeze(-1)], dim=-1)
    xtl = torch.cat([x_t.unsqueeze(-1), (1 - x_t).unsqueeze(-1)], dim=-1)
    p_ev = k_final[t_p] * x0l + b_final[t_p]
    q = xtl
    for mns in range(t - t_p):
        q = q * beta[t - mns] + 0.5 * (1 - beta[t - mns])
    un = p_ev * q
    un = un / un.sum(-1, keepdims=True)
    return un[..., 0]


def official_loop(denoise, T: int, kind: str, *, b: int, L: int, C: int, seed: int, base: int = 0,
                  sample_steps: int | None = None, temp: float = 1.0, guidance=None, p_flip: bool = True,
                  label=None, conditional: bool = False, mask=None, latent=None, return_all: bool = False,
                  dtype=torch.float64) -> torch.Tensor:
    """``BinaryDiffusion.sample`` with ``u < p`` draws; returns bits (B, L, C) or the (S+1, B, L, C)
    trajectory in ``dtype``. ``mask``/``latent``: (L, C) or (B, L, C) float 0/1."""
    sample_steps = T if sample_steps is None else sample_steps
    tables = official_tables(T, kind, dtype)
    shape = (b, L, C)
    x_t = (uniforms(seed, base, 0, shape) < 0.5).to(dtype)
    if mask is not None:
        m, lat = mask.to(dtype), latent.to(dtype)
        x_t = lat * m + x_t * (1 - m)
    sampling_steps = official_grid(T, sample_steps)[::-1]
    x_all = [x_t]
    for i, t in enumerate(sampling_steps):
        t = int(t)
        logits = official_logits(denoise, x_t, t, dtype, temp=temp, guidance=guidance, label=label,
                                 conditional=conditional)
        if t != 1:
            t_p = int(sampling_steps[i + 1])
            probs = official_step_prob(logits, x_t, t, t_p, tables, p_flip)
            x_t = (uniforms(seed, base, i + 1, shape).to(dtype) < probs).to(dtype)
        else:
            p0 = official_step_prob(logits, x_t, t, 0, tables, p_flip)
            x_t = (p0 > 0.5).to(dtype)
        if mask is not None:
            x_t = lat * m + x_t * (1 - m)
        x_all.append(x_t)
    return torch.stack(x_all) if return_all else x_t


def check_trajectory(traj_packed, denoise, T: int, kind: str, *, C: int, seed: int, base: int = 0,
                     sample_steps=None, temp=1.0, guidance=None, p_flip=True, label=None, conditional=False,
                     mask=None, latent=None, what="") -> int:
    """Teacher-forced check of a packed (S+1, B, L, ceil(C/8)) trajectory against the official
    float64 step from each of its states. Returns the number of guard-band mismatches."""
    traj = bf.unpack_bits(traj_packed.cpu(), C, torch.float64)
    S1, b, L, _ = traj.shape
    grid = official_grid(T, T if sample_steps is None else sample_steps)[::-1]
    assert S1 == len(grid) + 1, f"{what}: trajectory has {S1} states for {len(grid)} steps"
    tables = official_tables(T, kind, torch.float64)
    shape = (b, L, C)
    m = lat = None
    if mask is not None:
        m, lat = mask.to(torch.float64).expand(shape), latent.to(torch.float64).expand(shape)
    x0 = (uniforms(seed, base, 0, shape) < 0.5).to(torch.float64)
    if m is not None:
        x0 = lat * m + x0 * (1 - m)
    assert torch.equal(traj[0], x0), f"{what}: initial noise differs from u < 0.5"
    mismatches = 0
    for i, t in enumerate(grid):
        t = int(t)
        t_p = int(grid[i + 1]) if i + 1 < len(grid) else 0
        x_t, got = traj[i], traj[i + 1]
        logits = official_logits(denoise, x_t, t, torch.float64, temp=temp, guidance=guidance, label=label,
                                 conditional=conditional)
        prob = official_step_prob(logits, x_t, t, t_p, tables, p_flip)
        if t_p == 0:
            expect = (prob > 0.5).to(torch.float64)
            band = (prob - 0.5).abs() <= 1e-6
        else:
            u = uniforms(seed, base, i + 1, shape).to(torch.float64)
            expect = (u < prob).to(torch.float64)
            band = (u - prob).abs() <= BAND
        if m is not None:
            expect = lat * m + expect * (1 - m)
            band = band & (m == 0)
        diff = got != expect
        outside = diff & ~band
        assert not outside.any(), (f"{what}: step {i} (t={t} -> {t_p}): {int(outside.sum())} bits differ from the "
                                   f"official float64 step outside the guard band")
        if t_p:
            record_guard_band(diff.numel(), int(band.sum()), int(diff.sum()))
        mismatches += int(diff.sum())
    return mismatches


# ------------------------------------------------------------------------------------------
# fixtures / helpers
# ------------------------------------------------------------------------------------------
T_SMALL = 12
SHAPE = (2, 2)  # L = 4
L_SMALL = 4


def make_diffusion(C=8, kind="linear", T=T_SMALL, num_classes=None, predict_flip=True, seed=0, **kw):
    den = StubDenoiser(L_SMALL, C, num_classes=num_classes, seed=seed)
    return BernoulliDiffusion(den, T, kind, latent_shape=SHAPE, channels=C, predict_flip=predict_flip,
                              num_classes=num_classes, **kw)


def mask_known(form: str, B: int, L: int, C: int, seed=3):
    g = torch.Generator().manual_seed(seed)
    shape = (L, C) if form.startswith("shared") else (B, L, C)
    m = (torch.rand(shape, generator=g) < 0.4)
    k = (torch.rand(shape, generator=g) < 0.5)
    return m, k


# option combinations: (name, kwargs of the diffusion, kwargs of sample)
CASES = {
    "linear-all-steps": (dict(kind="linear"), dict(batch_size=3)),
    "cos-skip-temp-x0pred": (dict(kind="cos", predict_flip=False), dict(batch_size=3, steps=5, temperature=0.7)),
    "sigmoid-guidance": (dict(kind="sigmoid", num_classes=3), dict(labels=[0, 2, 1], steps=4, temperature=1.3,
                                                                     guidance=2.0)),
    "one-step": (dict(kind="linear"), dict(batch_size=2, steps=1)),
    "cos-mask-shared-C12": (dict(kind="cos", C=12), dict(batch_size=3, steps=6, mask="shared")),
    "linear-mask-per-sample-guidance": (dict(kind="linear", num_classes=3),
                                        dict(labels=1, batch_size=2, guidance=0.5, mask="per-sample")),
    "sigmoid-labels-no-guidance-C5": (dict(kind="sigmoid", num_classes=3, C=5), dict(labels=[2, 0], steps=7)),
}


def run_case(name, backend="reference", seed=1234, return_all=True):
    dkw, skw = CASES[name]
    dkw, skw = dict(dkw), dict(skw)
    d = make_diffusion(**dkw)
    C = d.channels
    B = skw.get("batch_size") or len(skw["labels"])
    mask = latent = None
    if "mask" in skw:
        mask, latent = mask_known(skw.pop("mask"), B, d.length, C)
        skw["mask"], skw["known"] = mask, latent
    dev = device_for(backend)
    if mask is not None:
        skw["mask"], skw["known"] = mask.to(dev), latent.to(dev)
    out = d.to(dev).sample(seed=seed, backend=backend, progress=False, return_all=return_all, **skw)
    d.to("cpu")
    labels = skw.get("labels")
    if labels is not None:
        labels = torch.full((B,), labels) if isinstance(labels, int) else torch.tensor(labels)
    ref_kw = dict(sample_steps=skw.get("steps"), temp=skw.get("temperature", 1.0), guidance=skw.get("guidance"),
                  p_flip=d.predict_flip, label=labels, conditional=d.num_classes is not None,
                  mask=None if mask is None else mask.float(), latent=None if mask is None else latent.float())
    return d, out.cpu(), B, C, ref_kw


# ------------------------------------------------------------------------------------------
# grid
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 2, 3, 10, 64, 100, 256, 1000])
def test_grid_is_official(T):
    for steps in sorted(s for s in {1, 2, 3, T // 3, T // 2, T - 1, T} if 1 <= s <= T):
        g = sampling_grid(T, steps)
        assert g == [int(v) for v in official_grid(T, steps)[::-1]]
        assert g[-1] == 1 and len(g) == steps and all(a > b for a, b in zip(g, g[1:]))
        if steps > 1:
            assert g[0] == T
    assert sampling_grid(T) == list(range(T, 0, -1))


def test_grid_rejects_bad_steps():
    for bad in (0, -1, 11, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            sampling_grid(10, bad)


# ------------------------------------------------------------------------------------------
# equivalence with the official loop
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_sample_matches_official_loop(case):
    d, traj, B, C, kw = run_case(case)
    T, kind = d.num_timesteps, d.kind
    n_mis = check_trajectory(traj, d.denoiser, T, kind, C=C, seed=1234, what=case, **kw)
    ref = official_loop(d.denoiser, T, kind, b=B, L=d.length, C=C, seed=1234, return_all=True, **kw)
    if n_mis == 0:  # tiny shapes: no guard-band event, so the free-running trajectories are equal
        assert torch.equal(bf.unpack_bits(traj, C, torch.float64), ref), case
    # return_all=False returns the last state
    _, final, _, _, _ = run_case(case, return_all=False)
    assert final.shape == (B, d.length, (C + 7) // 8) and final.dtype == torch.uint8
    assert torch.equal(final, traj[-1])


@pytest.mark.parametrize("case", ["linear-all-steps", "cos-skip-temp-x0pred", "sigmoid-labels-no-guidance-C5"])
def test_sample_equals_official_float32_loop(case):
    """The literal float32 official arithmetic gives the same bits on these cases (its ~5e-5
    probability error only matters inside a band no draw of these seeds falls into)."""
    d, traj, B, C, kw = run_case(case, seed=99)
    ref32 = official_loop(d.denoiser, d.num_timesteps, d.kind, b=B, L=d.length, C=C, seed=99, return_all=True,
                          dtype=torch.float32, **kw)
    assert torch.equal(bf.unpack_bits(traj, C, torch.float32), ref32)


@pytest.mark.parametrize("case", list(CASES))
def test_backend_matches_reference_step_by_step(backend, case):
    d, ref_traj, B, C, kw = run_case(case, backend="reference")
    if backend == "reference":  # the baseline itself: deterministic
        assert torch.equal(run_case(case, backend="reference")[1], ref_traj)
        return
    _, traj, _, _, _ = run_case(case, backend=backend)
    assert traj.shape == ref_traj.shape and traj.dtype == torch.uint8
    if not torch.equal(traj, ref_traj):  # only a guard-band draw may differ; every step must still be official
        n = check_trajectory(traj, d.denoiser, d.num_timesteps, d.kind, C=C, seed=1234, what=f"{backend} {case}",
                             **kw)
        assert n > 0


def test_initial_noise_is_half_bernoulli_of_the_stream():
    d = make_diffusion(C=8)
    traj = d.sample(4, steps=2, seed=7, return_all=True, progress=False)
    u = uniforms(7, 0, 0, (4, d.length, 8))
    assert torch.equal(bf.unpack_bits(traj[0], 8, torch.bool), u < 0.5)


# ------------------------------------------------------------------------------------------
# random stream: batch size, generator, offsets
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("C", [8, 5])
def test_batch_size_invariance(backend, C):
    dev = device_for(backend)
    d = make_diffusion(C=C, kind="cos", num_classes=4).to(dev)
    labels = torch.tensor([3, 1, 0, 2, 2])
    kw = dict(steps=5, temperature=0.9, guidance=1.5, seed=2**63 + 5, backend=backend, progress=False)
    full = d.sample(labels=labels, **kw)
    for n in (1, 2, 4):
        part = d.sample(labels=labels[:n], **kw)
        assert torch.equal(part, full[:n]), n


def test_generator_reserves_regions():
    d = make_diffusion()
    S = 4
    gen = bf.PhiloxGenerator(11, offset=5)
    a = d.sample(3, steps=S, generator=gen, progress=False)
    assert gen.offset == 5 + (S + 1) * REGION_COUNTERS
    b = d.sample(3, steps=S, generator=gen, progress=False)
    assert gen.offset == 5 + 2 * (S + 1) * REGION_COUNTERS
    assert torch.equal(a, d.sample(3, steps=S, seed=11, offset=5, progress=False))
    assert torch.equal(b, d.sample(3, steps=S, seed=11, offset=5 + (S + 1) * REGION_COUNTERS, progress=False))
    assert not torch.equal(a, b)


def test_default_seed_follows_torch_manual_seed():
    d = make_diffusion()
    torch.manual_seed(0)
    a = d.sample(2, steps=3, progress=False)
    torch.manual_seed(0)
    assert torch.equal(a, d.sample(2, steps=3, progress=False))


def test_stream_offset_out_of_range():
    d = make_diffusion()
    with pytest.raises(ValueError, match="2\\*\\*64"):
        d.sample(1, steps=3, seed=1, offset=2**64 - 2**41, progress=False)


# ------------------------------------------------------------------------------------------
# the denoiser's calls
# ------------------------------------------------------------------------------------------
def test_denoiser_calls_follow_official_loop():
    d = make_diffusion(num_classes=3, kind="cos")
    den = d.denoiser
    den.record = True
    labels = torch.tensor([2, 0])
    traj = d.sample(labels=labels, steps=4, guidance=1.0, seed=3, return_all=True, progress=False)
    grid = sampling_grid(T_SMALL, 4)
    assert len(den.calls) == 2 * len(grid)
    for i, t in enumerate(grid):
        (lab_c, ts_c, x_c), (lab_u, ts_u, _) = den.calls[2 * i], den.calls[2 * i + 1]
        assert torch.equal(lab_c, labels) and lab_u is None
        assert ts_c.dtype == torch.long and torch.equal(ts_c, torch.full((2,), t - 1)) and torch.equal(ts_u, ts_c)
        assert x_c.dtype == torch.float32 and torch.equal(x_c, bf.unpack_bits(traj[i], 8, torch.float32))
    den.calls.clear()
    d.sample(labels=labels, steps=4, seed=3, progress=False)  # no guidance: one call per step
    assert len(den.calls) == len(grid) and all(c[0] is not None for c in den.calls)


def test_unconditional_model_is_called_without_label():
    seen = []

    class NoLabel(nn.Module):
        def forward(self, x, time_steps=None):
            seen.append(time_steps)
            return torch.zeros_like(x)

    d = BernoulliDiffusion(NoLabel(), 6, latent_shape=(2, 3), channels=4)
    out = d.sample(2, seed=0, progress=False)
    assert out.shape == (2, 6, 1) and [int(t[0]) for t in seen] == [5, 4, 3, 2, 1, 0]


def test_input_dtype_bfloat16():
    d = make_diffusion(input_dtype=torch.bfloat16)
    d.denoiser.record = True
    out = d.sample(2, steps=3, seed=4, progress=False)
    assert all(c[2].dtype == torch.bfloat16 for c in d.denoiser.calls)
    d2 = make_diffusion()
    assert torch.equal(out, d2.sample(2, steps=3, seed=4, progress=False))


def test_packed_and_unpacked_mask_forms_agree():
    d = make_diffusion(C=12)
    m, k = mask_known("per-sample", 3, d.length, 12)
    a = d.sample(3, steps=4, seed=5, mask=m, known=k.float(), progress=False)
    b = d.sample(3, steps=4, seed=5, mask=bf.pack_bits(m), known=bf.pack_bits(k), progress=False)
    assert torch.equal(a, b)
    bits = bf.unpack_bits(a, 12, torch.bool)
    assert torch.equal(bits[m], k[m])


def test_progress_bar(capsys):
    d = make_diffusion()
    d.sample(1, steps=3, seed=0, progress=True)
    assert "sampling" in capsys.readouterr().err


def test_nan_logits_raise():
    class NaNModel(nn.Module):
        def forward(self, x, time_steps=None):
            return torch.full_like(x, float("nan"))

    d = BernoulliDiffusion(NaNModel(), 4, latent_shape=(2, 2), channels=8)
    with pytest.raises(ValueError, match="(?i)nan"):
        d.sample(1, seed=0, progress=False)


def test_loss_delegates_to_training_loss(monkeypatch):
    got = {}

    def training_loss(denoiser, x0_packed, schedule, **kw):
        got.update(denoiser=denoiser, x0=x0_packed, schedule=schedule, **kw)
        return {"loss": torch.tensor(1.0)}

    monkeypatch.setattr(bldm_fast.diffusion.loss, "training_loss", training_loss)
    d = make_diffusion(num_classes=3, focal=1.0, predict_flip=False)
    x0 = torch.zeros(2, 4, 1, dtype=torch.uint8)
    out = d(x0, labels=torch.tensor([0, 1]), aux=0.5, seed=3)
    assert out["loss"].item() == 1.0
    assert got["denoiser"] is d.denoiser and got["x0"] is x0 and got["schedule"] is d.schedule
    assert got["predict_flip"] is False and got["num_classes"] == 3 and got["focal"] == 1.0 and got["aux"] == 0.5
    assert got["seed"] == 3 and got["loss_final"] == "weighted" and got["channels"] == 8
    assert got["input_dtype"] == torch.float32


def test_loss_runs_training_loss():
    d = make_diffusion(num_classes=3, C=12)
    x0 = bf.pack_bits(torch.rand(2, 4, 12, generator=torch.Generator().manual_seed(0)) < 0.5)
    out = d.loss(x0, labels=torch.tensor([0, 2]), seed=1)
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------
def test_wrong_latent_shape_for_model():
    den = StubDenoiser(4, 8)
    with pytest.raises(ValueError, match="latent_shape"):
        BernoulliDiffusion(den, 8, latent_shape=(3, 3), channels=8)
    with pytest.raises(ValueError, match="channels"):
        BernoulliDiffusion(den, 8, latent_shape=(2, 2), channels=16)

    class Fixed(nn.Module):  # no size attributes: the first output gives it away
        def forward(self, x, time_steps=None):
            return torch.zeros(x.shape[0], 4, 8)

    d = BernoulliDiffusion(Fixed(), 8, latent_shape=(3, 3), channels=8)
    with pytest.raises(ValueError, match="latent_shape"):
        d.sample(2, seed=0, progress=False)


def test_bad_arguments_name_themselves():
    unc = make_diffusion()
    cond = make_diffusion(num_classes=3)
    cases = [
        (unc, dict(batch_size=2, labels=torch.tensor([0, 1])), "labels"),
        (unc, dict(batch_size=2, guidance=1.0), "guidance"),
        (cond, dict(batch_size=2, guidance=1.0), "guidance"),  # guidance without labels
        (unc, dict(batch_size=2, steps=T_SMALL + 1), "steps"),
        (unc, dict(batch_size=2, steps=0), "steps"),
        (unc, dict(batch_size=2, temperature=0.0), "temperature"),
        (unc, dict(batch_size=0), "batch_size"),
        (unc, dict(), "batch_size"),
        (cond, dict(batch_size=2, labels=torch.tensor([0, 3])), "labels"),
        (cond, dict(batch_size=3, labels=torch.tensor([0, 1])), "labels"),
        (cond, dict(batch_size=2, labels=torch.tensor([0.0, 1.0])), "labels"),
        (unc, dict(batch_size=2, mask=torch.ones(4, 8, dtype=torch.bool)), "known"),
        (unc, dict(batch_size=2, mask=torch.ones(5, 8), known=torch.ones(5, 8)), "mask"),
        (unc, dict(batch_size=2, mask=torch.ones(3, 4, 8), known=torch.ones(4, 8)), "mask"),
        (unc, dict(batch_size=2, guidance=float("nan")), "guidance"),
    ]
    for d, kw, name in cases:
        with pytest.raises(ValueError, match=name):
            d.sample(seed=0, progress=False, **kw)
    with pytest.raises(TypeError, match="mask"):
        unc.sample(2, mask=torch.ones(4, 8, dtype=torch.int32), known=torch.ones(4, 8), progress=False)
    with pytest.raises(ValueError, match="num_timesteps|num_steps"):
        make_diffusion(T=0)
    with pytest.raises(ValueError, match="kind"):
        make_diffusion(kind="quadratic")
    with pytest.raises(TypeError, match="denoiser"):
        BernoulliDiffusion(lambda x: x, 4)
