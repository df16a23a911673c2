"""End-to-end sampling throughput: ``accelerate()`` against the official sampler, same weights, same run.

One :class:`~bldm_fast.bench.official_sampler.OfficialSampler` (the official ``BinaryDiffusion``
loop, op by op) over a :class:`~bldm_fast.models.BinaryTransformer` with the official
architecture (class-conditional, 1000 classes, the ``imagenet`` call convention), and
``bf.accelerate`` of that same object, sample 16x16x64 latents. Every variant samples the same
batch with the same settings; the variants' calls are interleaved (official, then each fast
variant, repeated), so a change in machine load hits all of them, and the table gives medians,
the load average before and after, the first call's time (``torch.compile`` pays there) and, for
each fast variant, the bits of its samples that differ from the float32 ``accelerate`` samples of
the same seed (a draw moved by rounding changes that sample's later steps, so whole samples
diverge: the count is an upper bound on the bits rounding itself moved).

Call :func:`end_to_end`; ``rows`` holds the numbers, ``table`` the formatted text.
"""

from __future__ import annotations

import statistics
import time

import torch

#: the official architectures compared (n_embd / heads / layers); the released models are 768/12/24
ARCHS = {"small": dict(n_embd=128, n_head=4, n_layers=2), "mid": dict(n_embd=512, n_head=8, n_layers=8)}
#: variant name -> keyword arguments of ``accelerate(...).sample``
VARIANTS = {
    "accelerate": {},
    "accelerate compile": {"compile": True},
    "accelerate compile bf16": {"compile": True, "dtype": torch.bfloat16},
}
TOTAL_STEPS, SIDE, CHANNELS, NUM_CLASSES, GUIDANCE, TEMP = 64, 16, 64, 1000, 2.0, 0.9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _samplers(arch: str, device: torch.device, seed: int):
    from ..diffusion import accelerate
    from ..models import BinaryTransformer
    from .official_sampler import OfficialSampler

    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    torch.manual_seed(seed)
    den = BinaryTransformer(CHANNELS, latent_size=SIDE, total_steps=TOTAL_STEPS, num_classes=NUM_CLASSES,
                            **ARCHS[arch]).to(device).eval()
    official = OfficialSampler(den, num_timesteps=TOTAL_STEPS, kind="linear", latent_hw=(SIDE, SIDE),
                               codebook_size=CHANNELS).to(device)
    return official, accelerate(official)


def _differing_bits(a: torch.Tensor, b: torch.Tensor) -> int:
    return int((a != b).sum())


def end_to_end(*, archs=("small", "mid"), steps=(16, 64), guidance=(False, True), batch: int = 4,
               repeats: int = 3, variants: dict | None = None, device: str = "cpu", seed: int = 0,
               progress: bool = False) -> dict:
    """Images/s of the official sampler and of each ``accelerate`` variant (see the module docstring).

    Args:
        archs: keys of :data:`ARCHS`. steps: sampling steps (of T = 64). guidance: False (one
            conditional pass per step) and/or True (guidance 2.0: two passes). batch: images per call.
        repeats: timed calls per variant (after one untimed first call). variants: name ->
            ``accelerate(...).sample`` keyword arguments (default :data:`VARIANTS`).
        device: where the models run. seed: weights and sampling seed.

    Returns:
        dict: ``rows`` (per configuration and variant: ``arch, steps, guided, variant,
        seconds`` (median), ``first_s``, ``images_per_s``, ``speedup`` vs official, ``bits_differ``
        and ``bits`` (vs float32 accelerate; None for the official row), ``config`` (batch, device,
        threads, ``load_before`` / ``load_after``) and ``table`` (text).

    Raises:
        ValueError: an unknown arch, ``batch`` or ``repeats`` < 1, or steps outside 1..64.
    """
    from tqdm.auto import tqdm

    from .machine import load_average

    if batch < 1 or repeats < 1:
        raise ValueError(f"batch and repeats must be >= 1, got {batch}, {repeats}")
    bad = [s for s in steps if not 1 <= s <= TOTAL_STEPS]
    if bad:
        raise ValueError(f"steps must be in 1..{TOTAL_STEPS}, got {bad}")
    variants = dict(VARIANTS if variants is None else variants)
    dev = torch.device(device)
    load_before = load_average()
    configs = [(a, s, g) for a in archs for s in steps for g in guidance]
    rows = []
    bar = tqdm(total=len(configs) * (repeats + 1) * (len(variants) + 1), desc="end to end", unit="call",
               disable=not progress)
    for arch, n_steps, guided in configs:
        official, fast = _samplers(arch, dev, seed)
        g = GUIDANCE if guided else None
        calls = {"official": lambda: official.sample(TEMP, n_steps, batch, guidance=g)}
        for name, kw in variants.items():
            calls[name] = lambda kw=kw: fast.sample(TEMP, n_steps, batch, guidance=g, seed=seed, **kw)
        times = {name: [] for name in calls}
        first, outputs = {}, {}
        for r in range(repeats + 1):
            for name, fn in calls.items():
                _sync(dev)
                t0 = time.perf_counter()
                outputs[name] = fn()
                _sync(dev)
                elapsed = time.perf_counter() - t0
                if r:
                    times[name].append(elapsed)
                else:
                    first[name] = elapsed
                bar.update(1)
        base = statistics.median(times["official"])
        ref = outputs.get("accelerate")
        for name in calls:
            sec = statistics.median(times[name])
            differ = None if name == "official" or ref is None else _differing_bits(outputs[name], ref)
            rows.append(dict(arch=arch, steps=n_steps, guided=guided, variant=name, seconds=sec, first_s=first[name],
                             images_per_s=batch / sec, speedup=base / sec, bits_differ=differ,
                             bits=None if differ is None else ref.numel()))
    bar.close()
    config = dict(batch=batch, device=str(dev), threads=torch.get_num_threads(), repeats=repeats,
                  load_before=load_before, load_after=load_average(), latent=f"{SIDE}x{SIDE}x{CHANNELS}",
                  total_steps=TOTAL_STEPS, guidance=GUIDANCE, temperature=TEMP)
    return dict(rows=rows, config=config, table=format_table(rows, config))


def _load(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def format_table(rows: list[dict], config: dict) -> str:
    """The rows as a text table with the configuration above it."""
    head = (f"end-to-end sampling, {config['device']}, B={config['batch']}, latents {config['latent']}, "
            f"T={config['total_steps']}, guidance {config['guidance']} where guided, {config['threads']} threads, "
            f"median of {config['repeats']} interleaved calls, load average {_load(config['load_before'])} -> "
            f"{_load(config['load_after'])}")
    lines = [head, f"{'model':<6} {'steps':>5} {'guided':>6}  {'variant':<26} {'s/call':>8} {'first s':>8} "
                   f"{'images/s':>9} {'vs official':>11} {'bits != fp32':>14}"]
    for r in rows:
        arch = f"{r['arch']}"
        differ = "" if r["bits_differ"] is None else f"{r['bits_differ'] / r['bits']:.2%}"
        lines.append(f"{arch:<6} {r['steps']:>5} {'yes' if r['guided'] else 'no':>6}  {r['variant']:<26} "
                     f"{r['seconds']:>8.3f} {r['first_s']:>8.1f} {r['images_per_s']:>9.2f} {r['speedup']:>10.2f}x "
                     f"{differ:>14}")
    lines.append("models: " + ", ".join(f"{k} = {v['n_embd']} wide, {v['n_head']} heads, {v['n_layers']} layers"
                                        for k, v in ARCHS.items()))
    return "\n".join(lines)


def bench_section(quick: bool, device: str) -> dict:
    """``bldm-fast bench --end-to-end``: :func:`end_to_end`; ``quick``: the small model, 16 steps,
    B=2, 2 repeats (minutes on a CPU, the compile included); else every configuration at B=4."""
    if quick:
        res = end_to_end(archs=("small",), steps=(16,), batch=2, repeats=2, device=device, progress=True)
    else:
        res = end_to_end(device=device, progress=True)
    return {"rows": res["rows"], "config": res["config"], "table": res["table"]}
