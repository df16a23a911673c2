"""Helpers shared by the test modules (imported as a plain module; conftest puts tests/ on sys.path).

Oracles for packing are numpy.packbits / numpy.unpackbits with bitorder="little"
(DESIGN.md section 2). Nothing here depends on bldm_fast except ``available_backends``.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch

BACKENDS = ["reference", "cpu", "triton", "cuda"]

SKIP_REASONS = {
    "reference": "pure-PyTorch reference backend missing (bldm_fast is broken)",
    "cpu": "C++ extension bldm_fast._C not built (pip install -e . / python setup.py build_ext)",
    "triton": "needs the triton package and a CUDA GPU (or TRITON_INTERPRET=1)",
    "cuda": "needs a CUDA GPU and bldm_fast._C built with CUDA sources",
}

U64_MAX = 2**64 - 1
# logit error bound of the float32 combination (cond + g*(cond - uncond)) * inv_t, in units of
# (2 |g (cond - uncond)| + 3 |cond + g (cond - uncond)|) / T: each of its five roundings costs at
# most 2^-24 of what it rounds; doubled for second-order terms (see test_step.official_reference).
LOGIT_REL_ERR = 2 * 2.0**-24


def available_backends() -> list[str]:
    import bldm_fast as bf

    return list(bf.available_backends())


def device_for(backend: str) -> str:
    """Device of the tensors a backend works on: "cuda" for cuda, and for triton unless Triton
    runs in its interpreter (TRITON_INTERPRET=1, on CPU tensors); else "cpu"."""
    if backend == "triton":
        return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    return "cuda" if backend == "cuda" else "cpu"


def require_backend(backend: str) -> None:
    if backend not in available_backends():
        pytest.skip(f"backend {backend!r} not available: {SKIP_REASONS[backend]}")


def nbytes(channels: int) -> int:
    return (channels + 7) // 8


def np_pack(bits) -> np.ndarray:
    """The packing oracle: numpy.packbits(x != 0, axis=-1, bitorder='little')."""
    return np.packbits(np.asarray(bits) != 0, axis=-1, bitorder="little")


def np_unpack(packed, channels: int) -> np.ndarray:
    """The unpacking oracle (uint8 0/1), padding bits ignored."""
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=channels, bitorder="little")


def to_np(t: torch.Tensor) -> np.ndarray:
    """Tensor -> numpy on the host (bf16 via float32, which is exact)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def random_bits(shape, seed: int = 0, p: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) < p).astype(np.uint8)


def random_logits(shape, seed: int = 0, scale: float = 4.0, dtype=torch.float32,
                  zero_frac: float = 0.02, limit: float = 20.0) -> torch.Tensor:
    """Logits: normal * scale clipped to [-limit, limit], a few exact zeros, in ``dtype``."""
    rng = np.random.default_rng(seed)
    x = np.clip(rng.normal(size=shape) * scale, -limit, limit)
    if zero_frac:
        x[rng.random(shape) < zero_frac] = 0.0
    return torch.from_numpy(x.astype(np.float32)).to(dtype)


# ------------------------------------------------------------------------------------------
# guard-band tally: sampled bits that differ from [u < prob64] inside |u - prob64| <= band
# ------------------------------------------------------------------------------------------
GUARD_TALLY: Counter = Counter()


def record_guard_band(elements: int, in_band: int, mismatches: int) -> None:
    GUARD_TALLY["elements"] += int(elements)
    GUARD_TALLY["in_band"] += int(in_band)
    GUARD_TALLY["mismatches"] += int(mismatches)


def spawn_bounded(worker, args, nprocs: int, deadline_s: float, what: str) -> None:
    """Run ``worker(rank, *args)`` in ``nprocs`` spawned processes; fail the test (and kill the
    processes it started) when they have not finished within ``deadline_s`` seconds."""
    import time

    import torch.multiprocessing as mp

    ctx = mp.start_processes(worker, args=args, nprocs=nprocs, join=False, start_method="spawn")
    deadline = time.monotonic() + deadline_s
    try:
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not finish within {deadline_s} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join(5)
