"""Statistical tests of the random bits: frequencies match probabilities, draws are independent.

Bounds: Bernstein's inequality P(|S - E S| >= eps) <= 2 exp(-eps^2 / (2 (var + eps/3))) for a sum S
of independent Bernoulli draws, solved for a false-alarm rate of 1e-6 per check. It is valid for
every p (also the tiny thresholds of early noising steps, where a normal z-test is not), and at
large counts it is ~5.4 sigma. With ~1e6 draws per test a broken generator (constant words,
reused counters, a uniform stream shifted by 0.01, a flipped comparison) fails by a wide margin:
the self-tests at the bottom feed such broken streams through the same checks and require them
to fail, so these tests can fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bldm_fast as bf
import philox_oracle as po
from bf_testutil import device_for, np_pack, np_unpack, random_bits, random_logits, to_np

FALSE_ALARM = 1e-6


def bernstein_eps(var: float, false_alarm: float = FALSE_ALARM) -> float:
    """eps with 2 exp(-eps^2 / (2 (var + eps/3))) = false_alarm."""
    L = math.log(2 / false_alarm)
    return L / 3 + math.sqrt((L / 3) ** 2 + 2 * var * L)


def exact_p(p) -> np.ndarray:
    """P(u < p) for u uniform on the grid {0, 2^-24, ..., 1 - 2^-24}: ceil(p 2^24) / 2^24 (clipped to [0, 1])."""
    p = np.asarray(p, dtype=np.float64)
    return np.clip(np.ceil(p * 2.0**24) / 2.0**24, 0.0, 1.0)


def assert_count_matches(bits, p, what: str, false_alarm: float = FALSE_ALARM) -> None:
    """sum(bits) is within the Bernstein bound of sum(p) for independent Bernoulli(p) draws."""
    bits = np.asarray(bits, dtype=np.float64).reshape(-1)
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), bits.shape).reshape(-1)
    assert_sum_matches(bits.sum(), bits.size, p.sum(), (p * (1 - p)).sum(), what, false_alarm)


def assert_sum_matches(count, n, mean, var, what: str, false_alarm: float = FALSE_ALARM) -> None:
    eps = bernstein_eps(var, false_alarm)
    assert abs(count - mean) <= eps, (
        f"{what}: {int(count)} ones among {n} draws, expected {mean:.1f} +- {eps:.1f} (sd {math.sqrt(var):.1f})"
    )


def assert_frequencies_by_bucket(bits, probs, what: str, n_buckets: int = 20) -> None:
    """Bucket draws by probability; in every bucket and overall the number of ones matches sum(p)."""
    bits = np.asarray(bits).reshape(-1)
    p = exact_p(np.asarray(probs).reshape(-1))
    edges = np.linspace(0, 1, n_buckets + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_buckets - 1)
    fa = FALSE_ALARM / (n_buckets + 1)  # Bonferroni over the buckets and the total
    for k in range(n_buckets):
        sel = idx == k
        if sel.any():
            assert_count_matches(bits[sel], p[sel], f"{what} bucket [{edges[k]:.2f}, {edges[k + 1]:.2f})", fa)
    assert_count_matches(bits, p, f"{what} overall", fa)


def assert_pairs_independent(bits, p: float, what: str, lags=(1, 2, 3, 4, 5, 8, 64)) -> None:
    """For i.i.d. Bernoulli(p) bits, disjoint pairs (b_i, b_{i+lag}) agree with probability p^2 + (1-p)^2.

    Pairs are disjoint (each bit used once per lag), so agreements are a binomial count. Reused
    counters (lag 4), a word reused in a counter (lags 1-3) or overlapping calls make pairs agree more often.
    """
    bits = np.asarray(bits, dtype=np.int8).reshape(-1)
    q = p * p + (1 - p) * (1 - p)
    fa = FALSE_ALARM / len(lags)
    for lag in lags:
        n = (bits.size // (2 * lag)) * 2 * lag
        blocks = bits[:n].reshape(-1, 2, lag)  # pair column j of half 0 with column j of half 1
        agree = (blocks[:, 0, :] == blocks[:, 1, :]).reshape(-1)
        assert_count_matches(agree, q, f"{what} lag {lag} agreement", fa)


def assert_uniform_histogram(u, what: str, bins: int = 256) -> None:
    """Every one of `bins` equal bins holds its share of the uniforms."""
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    assert u.min() >= 0 and u.max() < 1, what
    counts = np.bincount(np.minimum((u * bins).astype(np.int64), bins - 1), minlength=bins)
    fa = FALSE_ALARM / bins
    p = 1.0 / bins
    for k, c in enumerate(counts):
        assert_sum_matches(c, u.size, u.size * p, u.size * p * (1 - p), f"{what} bin {k}", fa)


# ------------------------------------------------------------------------------------------
# the package's streams
# ------------------------------------------------------------------------------------------
def test_uniform_stream_statistics(backend):
    """2^20 uniforms from philox_uniform fill 256 bins evenly; bits [u < 1/2] are pairwise independent."""
    u = to_np(bf.philox_uniform(2024, 2**32 - 100, 2**20, device=device_for(backend), backend=backend))
    assert_uniform_histogram(u, "philox_uniform")
    assert_pairs_independent(u < 0.5, 0.5, "philox_uniform [u < 1/2]")


def test_noise_frequencies(backend):
    """~1e6 noising draws: for each (sample t, x_0 value) group the fraction of ones is thr(x_0) of the
    schedule (thresholds from ~1e-4 to ~1), and bits are pairwise independent at t = T (p = 1/2)."""
    T = 100
    sched = bf.BernoulliSchedule(T, "cos")
    B, L, C = 8, 256, 512
    t = torch.tensor([1, 3, 10, 25, 50, 75, 99, 100])
    x0 = random_bits((B, L, C), seed=123)
    x0p = torch.from_numpy(np_pack(x0)).to(device_for(backend))
    out = bf.bernoulli_noise(x0p, t, sched, C, seed=987654321, offset=2**32 - 1000, backend=backend).packed
    xt = np_unpack(to_np(out), C)
    thr1, thr0 = (v.numpy().astype(np.float64) for v in sched.noise_thresholds(t))
    n_groups = 2 * B
    for b in range(B):
        for val, thr in ((1, thr1[b]), (0, thr0[b])):
            sel = x0[b] == val
            assert_count_matches(xt[b][sel], exact_p(thr), f"noise t={int(t[b])} x0={val} thr={thr:.3g}",
                                 FALSE_ALARM / n_groups)
    assert_pairs_independent(xt[-1], 0.5, "noise at t=T")


def test_noise_consecutive_generator_calls_independent(backend):
    """Two noising calls that share a PhiloxGenerator draw fresh counters: at t = T their bits agree
    half the time (a reused offset would make them identical)."""
    sched = bf.BernoulliSchedule(10)
    x0p = torch.zeros((4, 256, 64), dtype=torch.uint8, device=device_for(backend))
    g = bf.PhiloxGenerator(5)
    a = np_unpack(to_np(bf.bernoulli_noise(x0p, 10, sched, 512, generator=g, backend=backend).packed), 512)
    b = np_unpack(to_np(bf.bernoulli_noise(x0p, 10, sched, 512, generator=g, backend=backend).packed), 512)
    assert_count_matches(a == b, 0.5, "agreement of consecutive calls")


@pytest.mark.parametrize("t,t_prev", [(50, 49), (50, 30)], ids=["single", "skipped"])
def test_step_frequencies(backend, t, t_prev):
    """~5e5 draws per step pattern: bucketed by the returned prob, the fraction of ones matches prob."""
    shape = (4, 256, 512)
    logits = random_logits(shape, seed=t_prev, scale=3.0, zero_frac=0.0).to(device_for(backend))
    xtp = torch.from_numpy(np_pack(random_bits(shape, seed=t))).to(device_for(backend))
    packed, probs = bf.sample_step(logits, xtp, t, t_prev, bf.BernoulliSchedule(100, "cos"), seed=31337,
                                   offset=7, return_probs=True, backend=backend)[:2]
    bits = np_unpack(to_np(packed), shape[-1])
    p = to_np(probs)
    assert 0.05 < p.mean() < 0.95 and p.std() > 0.1  # the probs do spread over the buckets
    assert_frequencies_by_bucket(bits, p, f"step {t}->{t_prev}")


def test_step_constant_probability_independence(backend):
    """Logits 0 with predict_flip=False and k[t_prev] p0 + b = 1/2, q = 1/2: prob 1/2 everywhere; the bits
    are fair and pairwise independent at lags 1..64."""
    shape = (2, 256, 512)
    logits = torch.zeros(shape, device=device_for(backend))
    xtp = torch.zeros((2, 256, 64), dtype=torch.uint8, device=device_for(backend))
    sched = bf.BernoulliSchedule(10)  # linear: beta[10] = 0, so a step from t=10 has qh = ql = 1/2
    packed, probs = bf.sample_step(logits, xtp, 10, 9, sched, seed=99, offset=0, predict_flip=False,
                                   return_probs=True, backend=backend)[:2]
    p = to_np(probs)
    assert np.allclose(p, 0.5, atol=1e-6)
    bits = np_unpack(to_np(packed), 512)
    assert_count_matches(bits, 0.5, "fair step")
    assert_pairs_independent(bits, 0.5, "fair step")


# ------------------------------------------------------------------------------------------
# the checks can fail: broken streams must be caught
# ------------------------------------------------------------------------------------------
N_SELF = 2**20


@pytest.fixture(scope="module")
def good_u():
    return po.stream_uniform_np(11, 0, N_SELF)


@pytest.fixture(scope="module")
def spread_p():
    rng = np.random.default_rng(0)
    return (1 / (1 + np.exp(-rng.normal(size=N_SELF) * 3))).astype(np.float32)


def test_checks_pass_on_the_oracle_stream(good_u, spread_p):
    """Control: the independent oracle's stream passes every check (so failures below are the breakage)."""
    assert_frequencies_by_bucket(good_u < spread_p, spread_p, "oracle")
    assert_pairs_independent(good_u < 0.5, 0.5, "oracle")
    assert_uniform_histogram(good_u, "oracle")


def test_check_catches_shifted_uniforms(good_u, spread_p):
    """A uniform stream shifted by 0.01 (u + 0.01) biases every bucket by 1%: the frequency check fails."""
    bad = np.minimum(good_u + 0.01, 1 - 2.0**-24)
    with pytest.raises(AssertionError):
        assert_frequencies_by_bucket(bad < spread_p, spread_p, "shifted")
    with pytest.raises(AssertionError):
        assert_uniform_histogram(bad, "shifted")


def test_check_catches_constant_words(spread_p):
    """Constant words (u = 0.37 for every element) fail the frequency check."""
    bad = np.full(N_SELF, 0.37, dtype=np.float32)
    with pytest.raises(AssertionError):
        assert_frequencies_by_bucket(bad < spread_p, spread_p, "constant")


def test_check_catches_reused_counters(good_u):
    """All 4 elements of a counter taking the same word (i.e. a counter reused 4 times) keeps the
    marginal frequencies right but fails the lag-1..3 independence check."""
    bad = np.repeat(good_u[::4], 4)
    assert_count_matches(bad < 0.5, 0.5, "reused counters marginal")  # marginals alone do not see it
    with pytest.raises(AssertionError):
        assert_pairs_independent(bad < 0.5, 0.5, "reused counters")


def test_check_catches_counter_stride_bug(good_u):
    """Counter n = offset + i // 16 instead of i // 4 (each word used by 4 consecutive counters' worth of
    elements) fails the lag-4 check."""
    w_idx = (np.arange(N_SELF) // 16) * 4 + np.arange(N_SELF) % 4
    bad = good_u[w_idx]
    with pytest.raises(AssertionError):
        assert_pairs_independent(bad < 0.5, 0.5, "stride bug")


def test_check_catches_flipped_comparison(good_u, spread_p):
    """bits = [u >= p] (a flipped comparison) fails the frequency check."""
    with pytest.raises(AssertionError):
        assert_frequencies_by_bucket(good_u >= spread_p, spread_p, "flipped")


def test_check_catches_overlapping_calls(good_u):
    """Two calls that reuse the same offset give identical bits; the agreement check fails."""
    a = good_u[: N_SELF // 2] < 0.5
    with pytest.raises(AssertionError):
        assert_count_matches(a == a, 0.5, "reused offset")
