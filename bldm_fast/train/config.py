"""The settings of a denoiser training run (:class:`TrainConfig`) and what a resume must match.

Defaults are the official recipe (``train_sampler_online.py`` with the command of the official
``bernoulli-diffusion/README.md``): AdamW betas (0.9, 0.95), weight decay 0, lr 2e-4 with a linear
warm-up from 1e-6 over 10k steps then constant, EMA 0.995 every 10 steps, ``--p_flip``,
``--focal 0`` (class-balanced flip BCE), ``--loss_final mean``, ``--total_steps 64 --beta_type
linear``, batch 64 per process, the 768 x 12 x 24 transformer, label dropout 0.1 for guidance
when the dataset has labels.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

from ..diffusion.loss import LOSS_FINALS
from ..schedule import KINDS

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: settings that a resumed run may change (they do not change the trajectory of the weights)
MUTABLE = frozenset({"steps", "save_every", "sample_every", "sample_count", "num_workers", "log_every", "keep",
                     "export_official", "progress"})


@dataclasses.dataclass
class TrainConfig:
    """Every setting of ``bldm-fast train-denoiser`` (see ``--help`` for each).

    Raises (:meth:`validate`):
        ValueError: a setting out of range, naming it.
    """

    n_embd: int = 768
    n_head: int = 12
    n_layers: int = 24
    total_steps: int = 64
    beta_type: str = "linear"
    p_flip: bool = True
    focal: float = 0.0
    aux: float = 0.0
    loss_final: str = "mean"
    label_dropout: float = 0.1
    unconditional: bool = False
    batch_size: int = 64
    run_length: int | None = None
    lr: float = 2e-4
    warmup_steps: int = 10_000
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    ema_beta: float = 0.995
    ema_every: int = 10
    precision: str = "auto"
    seed: int = 0
    steps: int = 100_000
    save_every: int = 5000
    keep: int = 2
    sample_every: int = 5000
    sample_count: int = 16
    log_every: int = 1
    num_workers: int = 2
    export_official: bool = False
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Check every setting; returns ``self``."""
        for name in ("n_embd", "n_head", "n_layers", "total_steps", "batch_size", "steps", "ema_every", "log_every",
                     "keep", "sample_count"):
            _int(getattr(self, name), name, 1)
        if self.run_length is not None:
            _int(self.run_length, "run_length", 1)
        for name in ("warmup_steps", "save_every", "sample_every", "num_workers"):
            _int(getattr(self, name), name, 0)
        _int(self.seed, "seed", 0)
        if self.seed >= 2**63:
            raise ValueError(f"seed must be < 2**63, got {self.seed}")
        if self.n_embd % self.n_head or self.n_embd % 4:
            raise ValueError(f"n_embd must be a multiple of n_head and of 4, got n_embd={self.n_embd}, "
                             f"n_head={self.n_head}")
        if self.beta_type not in KINDS:
            raise ValueError(f"beta_type must be one of {KINDS}, got {self.beta_type!r}")
        if self.loss_final not in LOSS_FINALS:
            raise ValueError(f"loss_final must be one of {LOSS_FINALS}, got {self.loss_final!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        _num(self.focal, "focal")
        _num(self.aux, "aux", 0.0)
        _num(self.label_dropout, "label_dropout", 0.0, 1.0)
        _num(self.lr, "lr", 0.0)
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        _num(self.weight_decay, "weight_decay", 0.0)
        _num(self.grad_clip, "grad_clip", 0.0)
        _num(self.ema_beta, "ema_beta", 0.0, 1.0)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from :meth:`to_dict` output; unknown keys are an error.

        Raises:
            ValueError: unknown keys (a run written by another bldm_fast version).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**d)


def differing_settings(saved: dict, current: dict) -> list[str]:
    """``"name: saved -> current"`` for each setting that changes the trajectory and differs
    (settings in :data:`MUTABLE` may change on resume)."""
    saved, current = _flat(saved), _flat(current)
    keys = sorted((set(saved) | set(current)) - MUTABLE)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested dicts as ``{"outer.inner": value}``."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _int(v, name: str, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")


def _num(v, name: str, lo: float | None = None, hi: float | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
