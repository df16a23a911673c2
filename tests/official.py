"""Float64 numpy transcription of the official Binary Latent Diffusion formulas.

Source of the math: ZeWang95/BinaryLatentDiffusion, models/binarylatent.py — the
``noise_scheduler`` class (tables, ``one_step``, ``forward``) and the body of
``BinaryDiffusion.sample``. This is an independent re-derivation in float64 numpy, kept in
the same order of operations where that decides the float64 bits of the tables (so that
rounding those tables to float32 reproduces the official float32 buffers exactly):

* tables ``k, b, beta`` of length T+1 with ``k[0] = 1, b[0] = 0, beta[0] = 1``;
  linear: ``beta_i = 1 - 1/(T - i + 1)``, ``k`` and ``b`` by the official recursion
  ``k_i = k_{i-1} beta_i``, ``b_i = beta_i b_{i-1} + (1 - beta_i)/2``;
  cos / sigmoid: ``k`` from the closed form, ``b = (1 - k)/2``, ``beta_i = k_i / k_{i-1}``;
* one reverse step from t to t_prev (the official loop body):
  logits / temperature, guidance ``(1 + g) cond - g uncond``, sigmoid, the p_flip rewrite
  ``p0 = x_t (1 - p) + (1 - x_t) p``; for t_prev > 0 the posterior
  ``[k' p0 + b', k' (1-p0) + b'] * one_step^(t - t_prev)([x_t, 1 - x_t])`` normalised, its
  first component being P(x_{t_prev} = 1); on the final step the threshold ``p0 > 0.5``.

Nothing here imports bldm_fast or torch.
"""

from __future__ import annotations

import numpy as np

KINDS = ("linear", "cos", "sigmoid")


# ----------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------
def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _sigmoid_gamma(s, start, end, tau, clip_min=0.0):
    v_start = _np_sigmoid(start / tau)
    v_end = _np_sigmoid(end / tau)
    out = _np_sigmoid((s * (end - start) + start) / tau)
    out = (v_end - out) / (v_end - v_start)
    return np.clip(out, clip_min, 1.0)


def tables(num_steps: int, kind: str = "linear"):
    """Official float64 tables (k, b, beta), each a float64 array of length T + 1."""
    T = int(num_steps)
    if kind == "linear":
        i = np.arange(1, T + 1)
        beta_steps = 1 - 1 / (T - i + 1)
        k = [1.0]
        b = [0.0]
        for bt in beta_steps:
            k.append(k[-1] * bt)
            b.append(bt * b[-1] + 0.5 * (1 - bt))
        k = np.array(k, dtype=np.float64)
        b = np.array(b, dtype=np.float64)
        beta = np.concatenate([[1.0], beta_steps]).astype(np.float64)
        # k[0], b[0] are the prepended 1, 0 in the official code as well
        return k, b, beta
    if kind == "cos":
        s = np.linspace(0.0, 1.0, T + 1)
        kk = 0.5 + 0.5 * np.cos(s * np.pi)
    elif kind == "sigmoid":
        s = np.linspace(0.0, 1.0, T + 1)
        kk = _sigmoid_gamma(s, 0, 3, 0.8)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}")
    bb = (1 - kk) * 0.5
    beta_steps = np.array([kk[i + 1] / kk[i] for i in range(T)], dtype=np.float64)
    # the official code drops entry 0 of the closed form and prepends exactly 1 / 0 / 1
    k = np.concatenate([[1.0], kk[1:]])
    b = np.concatenate([[0.0], bb[1:]])
    beta = np.concatenate([[1.0], beta_steps])
    return k.astype(np.float64), b.astype(np.float64), beta.astype(np.float64)


def tables_f32(num_steps: int, kind: str = "linear"):
    """The official buffers: the float64 tables rounded once to float32 (torch.Tensor(np64))."""
    return tuple(t.astype(np.float32) for t in tables(num_steps, kind))


def keep_product(beta64, t: int, t_prev: int) -> float:
    """B = prod_{s = t_prev+1 .. t} beta[s], in float64, in the official loop's order (t down)."""
    B = 1.0
    for s in range(t, t_prev, -1):
        B *= float(beta64[s])
    return B


# ----------------------------------------------------------------------------------------
# one reverse step
# ----------------------------------------------------------------------------------------
def guided_logits(cond, temperature=1.0, guidance=0.0, uncond=None):
    """The logit the official loop feeds to sigmoid: cond/temp, or (1+g) cond/temp - g uncond/temp."""
    lc = np.asarray(cond, dtype=np.float64) / float(temperature)
    if guidance is None or uncond is None:
        return lc
    lu = np.asarray(uncond, dtype=np.float64) / float(temperature)
    g = float(guidance)
    return (1 + g) * lc - g * lu


def sigmoid(x):
    """float64 sigmoid, written without overflow warnings (value identical to 1/(1+exp(-x)))."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def x0_prob(l, xt, predict_flip=True):
    """P(x_0 = 1) as the official loop forms it: sigmoid, then the p_flip rewrite."""
    p = sigmoid(l)
    if not predict_flip:
        return p
    xt = np.asarray(xt, dtype=np.float64)
    return xt * (1 - p) + (1 - xt) * p


def one_step(q, beta_s):
    """Official ``noise_scheduler.one_step``: q * beta + 0.5 (1 - beta) (on both components)."""
    return q * beta_s + 0.5 * (1 - beta_s)


def posterior(p0, xt, t: int, t_prev: int, k64, b64, beta64):
    """P(x_{t_prev} = 1 | x_t, p0) by the official formula, float64.

    p_EV = k[t_prev] * [p0, 1-p0] + b[t_prev]; q = [x_t, 1-x_t] pushed through one_step for
    s = t, t-1, ..., t_prev+1; unnormed = p_EV * q; result = unnormed[0] / sum(unnormed).
    """
    assert 0 < t_prev < t
    p0 = np.asarray(p0, dtype=np.float64)
    xt = np.asarray(xt, dtype=np.float64)
    kp, bp = float(k64[t_prev]), float(b64[t_prev])
    ev1 = kp * p0 + bp
    ev0 = kp * (1 - p0) + bp
    q1, q0 = xt, 1 - xt
    for mns in range(t - t_prev):
        s = t - mns
        q1 = one_step(q1, float(beta64[s]))
        q0 = one_step(q0, float(beta64[s]))
    u1 = ev1 * q1
    u0 = ev0 * q0
    return u1 / (u1 + u0)


def step_probs(cond, xt, t: int, t_prev: int, k64, b64, beta64, *, temperature=1.0,
               guidance=0.0, uncond=None, predict_flip=True, logit=None):
    """The per-bit probability the step reports: the posterior for t_prev > 0, p0 when t_prev == 0.

    ``logit`` (float64, already guided) may be given instead of ``cond``/``uncond``.
    """
    if logit is None:
        logit = guided_logits(cond, temperature, guidance if guidance else None, uncond)
    p0 = x0_prob(logit, xt, predict_flip)
    if t_prev == 0:
        return p0
    return posterior(p0, xt, t, t_prev, k64, b64, beta64)


def final_bits(p0):
    """Official last step: x_0 = [p0 > 0.5]."""
    return np.asarray(p0) > 0.5
