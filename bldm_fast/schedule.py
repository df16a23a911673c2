"""Bernoulli noise schedules, equal to the official ``noise_scheduler`` tables (DESIGN.md section 3)."""

import math

import numpy as np
import torch

KINDS = ("linear", "cos", "sigmoid")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sigmoid_k(s: np.ndarray, start=0.0, end=3.0, tau=0.8) -> np.ndarray:
    v_start = _sigmoid(start / tau)
    v_end = _sigmoid(end / tau)
    k = (v_end - _sigmoid((s * (end - start) + start) / tau)) / (v_end - v_start)
    return np.clip(k, 0.0, 1.0)


def _tables64(num_steps: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 ``k, b, beta`` of length T+1, computed in the same order as the official code."""
    T = num_steps
    if kind == "linear":
        beta = 1.0 - 1.0 / (T - np.arange(1, T + 1) + 1)
        k = np.ones(T + 1)
        b = np.zeros(T + 1)
        for i in range(T):
            k[i + 1] = k[i] * beta[i]
            b[i + 1] = beta[i] * b[i] + 0.5 * (1.0 - beta[i])
        return k, b, np.concatenate([[1.0], beta])
    s = np.linspace(0.0, 1.0, T + 1)
    k = 0.5 + 0.5 * np.cos(s * np.pi) if kind == "cos" else _sigmoid_k(s)
    beta = k[1:] / k[:-1]
    k[0] = 1.0
    b = (1.0 - k) * 0.5
    b[0] = 0.0
    return k, b, np.concatenate([[1.0], beta])


class BernoulliSchedule:
    """Bernoulli diffusion tables for ``T = num_steps`` steps, indexed ``t = 0..T`` (0 clean).

    ``q(x_t = 1 | x_0) = k[t] * x_0 + b[t]`` and ``beta[t]`` is the probability that step ``t``
    keeps a bit. ``.k .b .beta`` are float32 CPU tensors of length ``T + 1`` equal to the official
    buffers; ``.k64 .b64 .beta64`` are the float64 tables they were rounded from.

    Raises:
        ValueError: ``num_steps`` is not a positive int, or ``kind`` is not linear/cos/sigmoid.
    """

    def __init__(self, num_steps: int, kind: str = "linear"):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.num_steps = num_steps
        self.kind = kind
        k, b, beta = _tables64(num_steps, kind)
        self.k64 = torch.from_numpy(k)
        self.b64 = torch.from_numpy(b)
        self.beta64 = torch.from_numpy(beta)
        self.k = self.k64.float()
        self.b = self.b64.float()
        self.beta = self.beta64.float()
        self.step_table = self._step_table()
        self.noise_table = torch.stack(self.noise_thresholds(torch.arange(num_steps + 1)), dim=1)
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"BernoulliSchedule(num_steps={self.num_steps}, kind={self.kind!r})"

    def _step_table(self) -> torch.Tensor:
        """float32 ``(T+1, T+1, 5)``: row ``[t, t_prev]`` (``t_prev < t``) holds
        ``(k_prev, b_prev, qh, ql, final)`` of :meth:`step_constants`, ``[t, 0]`` the final step
        ``(0, 0, 0, 0, 1)``; other rows are zero. ``Bk`` is a running float64 product in the order of
        ``math.prod`` (the leading factors 1 are exact), so every entry equals step_constants'."""
        T = self.num_steps
        s = torch.arange(T + 1)
        factors = torch.where(s[None, :] > s[:, None], self.beta64[None, :], torch.ones((), dtype=torch.float64))
        bk = torch.cumprod(factors, dim=1).T  # bk[t, t_prev] = prod(beta[t_prev + 1 .. t])
        table = torch.zeros((T + 1, T + 1, 5), dtype=torch.float32)
        valid = s[:, None] > s[None, :]  # t_prev < t
        table[..., 0] = torch.where(valid, self.k[None, :], 0.0)
        table[..., 1] = torch.where(valid, self.b[None, :], 0.0)
        table[..., 2] = torch.where(valid, ((1.0 + bk) / 2.0).float(), 0.0)
        table[..., 3] = torch.where(valid, ((1.0 - bk) / 2.0).float(), 0.0)
        table[1:, 0, :4] = 0.0
        table[1:, 0, 4] = 1.0
        return table

    def tables_on(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(step_table, noise_table)`` on ``device`` (copied once per device, then cached; under
        torch.compile a missing device copy is made in the graph instead of cached)."""
        device = torch.device(device)
        key = str(device)
        cached = self._on_device.get(key)
        if cached is not None:
            return cached
        tables = (self.step_table.to(device), self.noise_table.to(device))
        if not torch.compiler.is_compiling():
            self._on_device[key] = tables
        return tables

    def noise_thresholds(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample Bernoulli thresholds of the noising op for integer ``t`` (any shape).

        Returns ``(thr1, thr0)``, float32 CPU tensors shaped like ``t``: ``thr1 = k[t] + b[t]``
        (one float32 addition, as the official ``k * x0 + b``), ``thr0 = b[t]``.
        """
        t = t.to(device="cpu", dtype=torch.int64)
        b = self.b[t]
        return self.k[t] + b, b

    def step_constants(self, t: int, t_prev: int) -> tuple[float, float, float, float]:
        """Host scalars of one reverse step from ``t`` to ``t_prev < t`` (DESIGN.md section 5).

        Returns ``(k_prev, b_prev, qh, ql)``, each a Python float holding a float32 value:
        ``k[t_prev]``, ``b[t_prev]``, and ``(1 + Bk) / 2``, ``(1 - Bk) / 2`` each rounded once,
        with ``Bk = prod(beta[t_prev + 1 .. t])`` in float64.
        """
        bk = math.prod(self.beta64[t_prev + 1 : t + 1].tolist())
        f32 = lambda x: float(np.float32(x))  # noqa: E731
        return float(self.k[t_prev]), float(self.b[t_prev]), f32((1.0 + bk) / 2.0), f32((1.0 - bk) / 2.0)
