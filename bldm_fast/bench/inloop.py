"""The sampling step as it runs inside a loop, not back to back.

Two measurements:

* :func:`step_in_loop`: one non-final ``sample_step`` (16x16x64 latents, writing the next model
  input as the sampler does) and the official eager step chain, each timed three ways at every
  batch size: ``warm`` (back-to-back calls, the figure kernel tables quote), ``after forward``
  (each timed call follows an untimed forward of the small official denoiser on the same batch,
  as in a sampling loop: caches hold the denoiser's data and the thread pool has been busy) and
  ``after flush`` (each timed call follows an untimed write of a 64 MiB buffer).
* :func:`overhead_in_sample`: a real ``BernoulliDiffusion.sample()`` run and the official loop
  (:class:`~bldm_fast.bench.official_sampler.OfficialSampler`) with the same denoiser, whose calls
  are timed; the time outside the denoiser, per step, is the whole call minus the denoiser's time.

Call :func:`inloop`; ``rows`` holds the numbers, ``table`` the formatted text.
"""

from __future__ import annotations

import statistics
import time

import torch

SIDE, C, T, T_STEP, T_PREV = 16, 64, 64, 40, 36
DENOISER = dict(n_embd=128, n_head=4, n_layers=2)  # the small official architecture
FLUSH_BYTES = 64 << 20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _denoiser(device: torch.device, seed: int):
    from ..models import BinaryTransformer

    torch.manual_seed(seed)
    return BinaryTransformer(C, latent_size=SIDE, total_steps=T, **DENOISER).to(device).eval()


def _timed(fn, before, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, each after an untimed ``before()``."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _warm(fn, repeats: int, device: torch.device, calls: int = 10) -> float:
    """Median per-call seconds of ``repeats`` runs of ``calls`` back-to-back calls."""
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


@torch.no_grad()
def step_in_loop(batches=(1, 4, 16, 64), *, repeats: int = 15, device: str = "cpu", backend: str = "auto",
                 seed: int = 0) -> list[dict]:
    """Rows ``dict(batch, impl, warm_s, after_forward_s, after_flush_s)`` for ``bldm_fast`` and the
    official chain (see the module docstring)."""
    import bldm_fast as bf

    from .baselines import official_step, official_tables

    dev = torch.device(device)
    sched = bf.BernoulliSchedule(T, "linear")
    k, b, beta = (x.to(dev) for x in official_tables(sched))
    den = _denoiser(dev, seed)
    scratch = torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=dev)
    rows = []
    for batch in batches:
        g = torch.Generator(device=dev).manual_seed(seed)
        logits = torch.randn(batch, SIDE * SIDE, C, device=dev, generator=g)
        bits = torch.rand(batch, SIDE * SIDE, C, device=dev, generator=g) < 0.5
        xt, xf = bf.pack_bits(bits), bits.float()
        ts = torch.full((batch,), T_STEP - 1, device=dev)
        impls = {
            "bldm_fast": lambda: bf.sample_step(logits, xt, T_STEP, T_PREV, sched, seed=1, offset=0,
                                                out_dtype=torch.float32, backend=backend),
            "official": lambda: official_step(logits, None, xf, T_STEP, T_PREV, k, b, beta),
        }
        befores = {"after_forward_s": lambda: den(xf, time_steps=ts), "after_flush_s": lambda: scratch.add_(1)}
        for name, fn in impls.items():
            fn()
            row = dict(batch=batch, impl=name, warm_s=_warm(fn, repeats, dev))
            for key, before in befores.items():
                row[key] = _timed(fn, before, repeats, dev)
            rows.append(row)
    return rows


class _TimedDenoiser(torch.nn.Module):
    """The denoiser with the seconds of its calls summed in ``seconds``."""

    def __init__(self, inner: torch.nn.Module, device: torch.device):
        super().__init__()
        self.inner = inner
        self.device = device
        self.seconds = 0.0
        self.block_size = getattr(inner, "num_tokens", None)

    def forward(self, *args, **kwargs):
        _sync(self.device)
        t0 = time.perf_counter()
        out = self.inner(*args, **kwargs)
        _sync(self.device)
        self.seconds += time.perf_counter() - t0
        return out


@torch.no_grad()
def overhead_in_sample(batches=(4, 16), *, steps: int = 16, repeats: int = 3, device: str = "cpu",
                       backend: str = "auto", seed: int = 0) -> list[dict]:
    """Rows ``dict(batch, impl, per_step_outside_s, denoiser_share)`` of a real ``sample()`` run and
    of the official loop, same denoiser, interleaved (medians of ``repeats``)."""
    import bldm_fast as bf

    from .official_sampler import OfficialSampler

    dev = torch.device(device)
    den = _TimedDenoiser(_denoiser(dev, seed), dev)
    model = bf.BernoulliDiffusion(den, T, "linear", latent_shape=(SIDE, SIDE), channels=C)
    official = OfficialSampler(den, num_timesteps=T, kind="linear", latent_hw=(SIDE, SIDE), codebook_size=C,
                               dataset="churches").to(dev)
    rows = []
    for batch in batches:
        runs = {"bldm_fast sample()": lambda: model.sample(batch, steps=steps, seed=seed, backend=backend,
                                                           progress=False),
                "official loop": lambda: official.sample(1.0, steps, batch)}
        outside = {name: [] for name in runs}
        share = {name: [] for name in runs}
        for r in range(repeats + 1):
            for name, fn in runs.items():
                den.seconds = 0.0
                _sync(dev)
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                total = time.perf_counter() - t0
                if r:  # the first round warms up
                    outside[name].append((total - den.seconds) / steps)
                    share[name].append(den.seconds / total)
        for name in runs:
            rows.append(dict(batch=batch, impl=name, per_step_outside_s=statistics.median(outside[name]),
                             denoiser_share=statistics.median(share[name])))
    return rows


def inloop(batches=(1, 4, 16, 64), sample_batches=(4, 16), *, repeats: int = 15, sample_repeats: int = 3,
           steps: int = 16, device: str = "cpu", backend: str = "auto", seed: int = 0) -> dict:
    """Both measurements of the module docstring.

    Returns:
        dict: ``rows`` (``{"step": [...], "sample": [...]}``, see :func:`step_in_loop` and
        :func:`overhead_in_sample`), ``config`` and ``table`` (text).

    Raises:
        ValueError: a batch size, ``repeats``, ``sample_repeats`` or ``steps`` < 1 (``steps`` > 64).
    """
    from .machine import load_average

    if min((*batches, *sample_batches, repeats, sample_repeats, steps)) < 1 or steps > T:
        raise ValueError(f"batch sizes, repeats and steps must be >= 1 (steps <= {T}), got batches={batches}, "
                         f"sample_batches={sample_batches}, repeats={repeats}, sample_repeats={sample_repeats}, "
                         f"steps={steps}")
    load_before = load_average()
    rows = {"step": step_in_loop(batches, repeats=repeats, device=device, backend=backend, seed=seed),
            "sample": overhead_in_sample(sample_batches, steps=steps, repeats=sample_repeats, device=device,
                                         backend=backend, seed=seed)}
    config = dict(device=device, backend=backend, threads=torch.get_num_threads(), repeats=repeats, steps=steps,
                  load_before=load_before, load_after=load_average())
    return dict(rows=rows, config=config, table=format_table(rows, config))


def _us(s: float) -> str:
    return f"{s * 1e6:,.0f}"


def _load(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_table(rows: dict, config: dict) -> str:
    """The two tables of :func:`inloop` with the configuration above them."""
    lines = [f"the step in a loop, {config['device']} ({config['backend']} backend), 16x16x64, t {T_STEP} -> {T_PREV} "
             f"of {T}, {config['threads']} threads, medians of {config['repeats']}, load average "
             f"{_load(config['load_before'])} -> {_load(config['load_after'])}",
             f"{'B':>4} {'impl':<10} {'warm us':>10} {'after forward us':>17} {'after flush us':>15} "
             f"{'in-loop speed-up':>17}"]
    official = {r["batch"]: r for r in rows["step"] if r["impl"] == "official"}
    for r in rows["step"]:
        ref = official[r["batch"]]
        speed = "" if r["impl"] == "official" else f"{ref['after_forward_s'] / r['after_forward_s']:.1f}x"
        lines.append(f"{r['batch']:>4} {r['impl']:<10} {_us(r['warm_s']):>10} {_us(r['after_forward_s']):>17} "
                     f"{_us(r['after_flush_s']):>15} {speed:>17}")
    lines += ["", f"time outside the denoiser per step in a real sampling run ({config['steps']} steps, small "
                  f"denoiser {DENOISER['n_embd']}/{DENOISER['n_layers']} layers)",
              f"{'B':>4} {'impl':<20} {'us/step outside':>16} {'denoiser share':>15} {'speed-up':>9}"]
    base = {r["batch"]: r for r in rows["sample"] if r["impl"] == "official loop"}
    for r in rows["sample"]:
        speed = base[r["batch"]]["per_step_outside_s"] / r["per_step_outside_s"]
        lines.append(f"{r['batch']:>4} {r['impl']:<20} {_us(r['per_step_outside_s']):>16} "
                     f"{r['denoiser_share']:>14.1%} {speed:>8.1f}x")
    return "\n".join(lines)


def bench_section(quick: bool, device: str) -> dict:
    """``bldm-fast bench --inloop``: :func:`inloop` (``quick``: 7 repeats, B = 1, 4, 16 and one
    sampling batch of 4; else 15 repeats, B = 1, 4, 16, 64 and sampling at B = 4, 16)."""
    if quick:
        res = inloop((1, 4, 16), (4,), repeats=7, sample_repeats=2, device=device)
    else:
        res = inloop(device=device)
    return {"rows": res["rows"], "config": res["config"], "table": res["table"]}
