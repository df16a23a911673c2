"""BernoulliSchedule against the float64 transcription of the official noise_scheduler.

Proves: .k/.b/.beta are exactly the official float32 buffers (official float64 tables rounded
once); .k64/.b64/.beta64 are the official float64 tables to rounding; the table identities of
DESIGN.md section 3; noise_thresholds and step_constants are the specified float32 values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bldm_fast as bf
import official

KINDS = list(official.KINDS)
STEPS = [1, 2, 3, 7, 16, 40, 64, 100, 256, 1000, 1024]


def _f32(x) -> float:
    return float(np.float32(x))


@pytest.fixture(scope="module")
def schedules():
    cache = {}

    def get(T, kind):
        if (T, kind) not in cache:
            cache[(T, kind)] = bf.BernoulliSchedule(T, kind=kind)
        return cache[(T, kind)]

    return get


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
def test_float32_tables_equal_official_buffers(schedules, kind, T):
    """k, b, beta are float32 CPU tensors of length T+1, exactly the official buffers k_final, b_final, beta."""
    s = schedules(T, kind)
    assert s.num_steps == T and s.kind == kind
    k32, b32, beta32 = official.tables_f32(T, kind)
    for name, got, want in (("k", s.k, k32), ("b", s.b, b32), ("beta", s.beta, beta32)):
        assert isinstance(got, torch.Tensor), name
        assert got.dtype == torch.float32, name
        assert got.device.type == "cpu", name
        assert tuple(got.shape) == (T + 1,), name
        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"{kind} T={T} table {name}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", STEPS, ids=lambda T: f"T{T}")
def test_float64_tables_close_to_official(schedules, kind, T):
    """k64, b64, beta64 are float64 tensors equal to the official float64 tables up to float64 rounding."""
    s = schedules(T, kind)
    k, b, beta = official.tables(T, kind)
    for name, got, want in (("k64", s.k64, k), ("b64", s.b64, b), ("beta64", s.beta64, beta)):
        assert got.dtype == torch.float64, name
        assert tuple(got.shape) == (T + 1,), name
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-15, err_msg=f"{kind} T={T} {name}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 5, 64, 1000], ids=lambda T: f"T{T}")
def test_table_identities(schedules, kind, T):
    """k[0]=1, b[0]=0, beta[0]=1; b = (1-k)/2; k[t] = prod_{i<=t} beta[i]; k[T] = 0 (pure noise);
    0 <= k, beta <= 1 and q(x_t=1|x_0=1) = k + b is non-increasing toward 1/2."""
    s = schedules(T, kind)
    k, b, beta = s.k64.numpy(), s.b64.numpy(), s.beta64.numpy()
    assert k[0] == 1 and b[0] == 0 and beta[0] == 1
    assert float(s.k[0]) == 1.0 and float(s.b[0]) == 0.0 and float(s.beta[0]) == 1.0
    np.testing.assert_allclose(b, (1 - k) / 2, rtol=0, atol=1e-14)
    np.testing.assert_allclose(k, np.cumprod(beta), rtol=1e-10, atol=1e-14)
    assert abs(k[-1]) < 1e-12
    assert (k >= 0).all() and (k <= 1).all() and (beta >= 0).all() and (beta <= 1).all()
    assert (np.diff(k + b) <= 1e-15).all()


@pytest.mark.parametrize("T", [1, 4, 40, 1000], ids=lambda T: f"T{T}")
def test_linear_closed_form(schedules, T):
    """linear: beta[i] = 1 - 1/(T-i+1) and k[t] = 1 - t/T (to float64 rounding)."""
    s = schedules(T, "linear")
    t = np.arange(T + 1)
    np.testing.assert_allclose(s.k64.numpy(), 1 - t / T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(s.beta64.numpy()[1:], 1 - 1 / (T - t[1:] + 1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("T", [1, 10, 256], ids=lambda T: f"T{T}")
def test_cos_and_sigmoid_closed_forms(schedules, T):
    """cos: k = 0.5 + 0.5 cos(pi s); sigmoid: k(s) = (sig(3.75) - sig(3.75 s)) / (sig(3.75) - 1/2), s = t/T."""
    s_ = np.linspace(0, 1, T + 1)
    np.testing.assert_allclose(schedules(T, "cos").k64.numpy(), 0.5 + 0.5 * np.cos(np.pi * s_), rtol=0, atol=1e-14)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    want = (sig(3 / 0.8) - sig(s_ * 3 / 0.8)) / (sig(3 / 0.8) - 0.5)
    np.testing.assert_allclose(schedules(T, "sigmoid").k64.numpy(), np.clip(want, 0, 1), rtol=0, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 7, 100, 1000], ids=lambda T: f"T{T}")
def test_noise_thresholds(schedules, kind, T):
    """noise_thresholds(t) = (k32[t] + b32[t] added in float32, b32[t]) as float32 tensors shaped like t
    (not fp32(k64 + b64), which differs in the last bit at many t)."""
    s = schedules(T, kind)
    k32, b32, _ = official.tables_f32(T, kind)
    t = torch.arange(1, T + 1, dtype=torch.int64)  # every step: fp32(k64 + b64) differs from it at many t
    thr1, thr0 = s.noise_thresholds(t)
    assert thr1.dtype == torch.float32 and thr0.dtype == torch.float32
    assert thr1.shape == t.shape and thr0.shape == t.shape
    tn = t.numpy()
    np.testing.assert_array_equal(thr1.numpy(), (k32[tn] + b32[tn]).astype(np.float32))
    np.testing.assert_array_equal(thr0.numpy(), b32[tn])
    assert (thr1.numpy() >= thr0.numpy()).all()


def test_noise_thresholds_int32_and_repeated_t(schedules):
    """t may be int32 and repeat; a 2-D t gives 2-D thresholds (shaped like t)."""
    s = schedules(40, "cos")
    k32, b32, _ = official.tables_f32(40, "cos")
    t = torch.tensor([[3, 3], [40, 1]], dtype=torch.int32)
    thr1, thr0 = s.noise_thresholds(t)
    assert thr1.shape == (2, 2)
    np.testing.assert_array_equal(thr1.numpy(), (k32[t.numpy()] + b32[t.numpy()]).astype(np.float32))
    np.testing.assert_array_equal(thr0.numpy(), b32[t.numpy()])


def _is_nearest_f32(value: float, exact: float) -> bool:
    """value is a float32 nearest to exact (half an ulp, with float64 slack for the order of the product)."""
    v = np.float32(value)
    if float(v) != value:
        return False
    ulp = float(np.spacing(np.float32(abs(exact)))) if exact != 0 else 2.0**-149
    return abs(value - exact) <= 0.5 * ulp * (1 + 1e-6) + 1e-300


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T,t,t_prev", [(1, 1, 0), (10, 10, 9), (10, 10, 0), (40, 33, 5), (40, 2, 1),
                                        (1000, 1000, 937), (1000, 17, 16), (1000, 1000, 1), (64, 64, 0)],
                         ids=lambda v: str(v))
def test_step_constants(schedules, kind, T, t, t_prev):
    """step_constants(t, t_prev) = (k[t_prev], b[t_prev], fp32((1+Bk)/2), fp32((1-Bk)/2)) with
    Bk = prod_{s=t_prev+1..t} beta64[s] — equal to the official one_step iterated from t down to t_prev+1."""
    s = schedules(T, kind)
    k32, b32, _ = official.tables_f32(T, kind)
    _, _, beta64 = official.tables(T, kind)
    k_prev, b_prev, qh, ql = s.step_constants(t, t_prev)
    for v in (k_prev, b_prev, qh, ql):
        assert isinstance(v, float)
    assert k_prev == float(k32[t_prev]) and b_prev == float(b32[t_prev])
    Bk = official.keep_product(beta64, t, t_prev)
    assert _is_nearest_f32(qh, (1 + Bk) / 2), (qh, (1 + Bk) / 2)
    assert _is_nearest_f32(ql, (1 - Bk) / 2), (ql, (1 - Bk) / 2)
    # the official iterated one_step applied to x_t = 1 gives (q1, q0) = ((1+Bk)/2, (1-Bk)/2)
    q1, q0 = 1.0, 0.0
    for s_ in range(t, t_prev, -1):
        q1, q0 = official.one_step(q1, beta64[s_]), official.one_step(q0, beta64[s_])
    assert math.isclose(q1, (1 + Bk) / 2, rel_tol=1e-12) and math.isclose(q0, (1 - Bk) / 2, rel_tol=1e-9, abs_tol=1e-15)


@given(kind=st.sampled_from(KINDS), T=st.integers(1, 300), data=st.data())
def test_step_constants_hypothesis(schedules, kind, T, data):
    """For any 0 <= t_prev < t <= T the step constants are the specified float32 values."""
    t = data.draw(st.integers(1, T), label="t")
    t_prev = data.draw(st.integers(0, t - 1), label="t_prev")
    s = schedules(T, kind)
    k32, b32, _ = official.tables_f32(T, kind)
    _, _, beta64 = official.tables(T, kind)
    k_prev, b_prev, qh, ql = s.step_constants(t, t_prev)
    assert k_prev == float(k32[t_prev]) and b_prev == float(b32[t_prev])
    Bk = official.keep_product(beta64, t, t_prev)
    assert _is_nearest_f32(qh, (1 + Bk) / 2)
    assert _is_nearest_f32(ql, (1 - Bk) / 2)


def test_default_kind_is_linear():
    """BernoulliSchedule(T) defaults to kind='linear'."""
    s = bf.BernoulliSchedule(12)
    assert s.kind == "linear"
    np.testing.assert_array_equal(s.k.numpy(), official.tables_f32(12, "linear")[0])


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_num_steps(bad):
    """num_steps < 1 -> ValueError naming num_steps."""
    with pytest.raises(ValueError, match="num_steps"):
        bf.BernoulliSchedule(bad)


def test_bad_kind():
    """An unknown kind -> ValueError naming kind."""
    with pytest.raises(ValueError, match="kind"):
        bf.BernoulliSchedule(10, kind="quadratic")
