"""``bldm-fast demo``: the bundled digits model, sampled with the fused backend and the reference.

1. Load the bundled autoencoder + denoiser (``bldm_fast/assets``, see docs/MODEL_CARD.md).
2. Encode the built-in image set (scikit-learn digits) into a packed-latent dataset
   (``OUT/digits_codes``) with :class:`bldm_fast.data.PackedLatentWriter`, read it back with
   :class:`bldm_fast.data.PackedLatentDataset` and report the reconstruction error.
3. Sample the same seed with the fused backend (``auto``: the C++ kernels when built) and with the
   ``reference`` backend, timing the denoiser apart from the sampler's own work.
4. Check the bits: the whole runs end to end, and step by step (each step of the fused trajectory
   replayed on the reference from the same state: the draws may differ only inside the 1e-5
   guard band of DESIGN.md, and one such draw changes the rest of that sample's trajectory).
5. Decode, write ``OUT/samples.png`` (fused) and ``OUT/samples_reference.png``; print the table.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time


#: the demo's sampling defaults, picked from the quality measurements in docs/MODEL_CARD.md
DEFAULT_STEPS = 32
DEFAULT_TEMPERATURE = 1.0
DEFAULT_GUIDANCE = 0.0


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo", metavar="DIR", help="output folder (default ./demo)")
    p.add_argument("--samples", type=int, default=64, help="images to generate (default 64, an 8x8 grid)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"sampling steps, 1..T (default {DEFAULT_STEPS}, or T if the model has fewer)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                   help=f"sampling temperature (default {DEFAULT_TEMPERATURE:g})")
    p.add_argument("--guidance", type=float, default=None,
                   help=f"classifier-free guidance of a class-conditional model (default {DEFAULT_GUIDANCE:g}; "
                        "the digits 0..9 in turn are asked for)")
    p.add_argument("--backend", default="auto", help="the fused backend (default auto: cpu when built)")
    p.add_argument("--images", type=int, default=None, help="encode only the first N built-in images (1..1797)")
    p.add_argument("--repeats", type=int, default=3, help="timed sampling runs per backend, best kept (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--assets", default=None, metavar="DIR", help="weights folder (default: the bundled ones)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (the table is still printed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (same as --quiet)")


def run_demo(args: argparse.Namespace) -> int:
    res = demo(out=args.out, samples=args.samples, steps=args.steps, seed=args.seed, temperature=args.temperature,
               guidance=args.guidance, backend=args.backend, images=args.images, repeats=args.repeats,
               threads=args.threads, assets=args.assets, progress=not (args.no_progress or args.quiet))
    print(format_table(res))
    return 0 if res["bits_ok"] else 1


class _Timer:
    """Forward hooks that add up the wall time of a module's calls."""

    def __init__(self, module):
        self.total = 0.0
        self.calls = 0
        self._t = 0.0
        self._h = [module.register_forward_pre_hook(self._pre), module.register_forward_hook(self._post)]

    def _pre(self, *_):
        self._t = time.perf_counter()

    def _post(self, *_):
        self.total += time.perf_counter() - self._t
        self.calls += 1

    def reset(self):
        self.total, self.calls = 0.0, 0

    def remove(self):
        for h in self._h:
            h.remove()


def save_grid(images, path: str, nrow: int | None = None, scale: int = 4, pad: int = 1) -> None:
    """Write float ``(N, 1|3, H, W)`` images in [0, 1] as a PNG grid (white ink on black, as the
    digits are stored: ink = 1), each pixel ``scale`` x ``scale``."""
    import numpy as np
    from PIL import Image

    x = images.detach().clamp(0, 1).cpu().numpy()
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    H, W = ncol * (h + pad) + pad, nrow * (w + pad) + pad
    grid = np.full((H, W, c), 0.35, dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = \
            x[i].transpose(1, 2, 0)
    img = (grid * 255 + 0.5).astype(np.uint8)
    img = img[..., 0] if c == 1 else img
    im = Image.fromarray(img)
    if scale > 1:
        im = im.resize((W * scale, H * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    im.save(path)


def decode_codes(ae, codes_packed):
    """Images ``(B, 1, 16, 16)`` in [0, 1] from packed codes ``(B, L, ceil(C/8))``."""
    import torch

    from ..ops import unpack_bits

    with torch.no_grad():
        tok = unpack_bits(codes_packed, ae.codebook_size, torch.float32)
        return ae.decode_tokens(tok).clamp(0, 1)


def stepwise_check(model, traj, seed: int, steps: int | None, temperature: float, backend: str, *,
                   labels=None, guidance: float = 0.0) -> dict:
    """Replay every step of the fused trajectory ``traj`` (packed ``(S + 1, B, L, ceil(C/8))``) on
    the reference backend from the same state and stream offsets, with the denoiser calls of
    ``model.model_fn(labels, guidance)``; count the bits that differ and how many of them lie in
    the guard band (the reference probability within 1e-5 of the uniform drawn)."""
    import torch

    from ..diffusion.grid import region_offset, reserve_stream, sampling_grid, step_pairs
    from ..ops import philox_uniform, sample_step, unpack_bits

    grid = sampling_grid(model.num_timesteps, steps)
    pairs = step_pairs(grid)
    _, base = reserve_stream(None, seed, None, len(grid))
    C = model.channels
    call = model.model_fn(labels, guidance)
    diff = in_band = draws = 0
    with torch.no_grad():
        for i, (t, t_prev) in enumerate(pairs):
            xt = traj[i]
            logits, uncond = call(unpack_bits(xt, C, torch.float32), t)
            off = region_offset(base, i + 1)
            ref, probs, _ = sample_step(logits, xt, t, t_prev, model.schedule, seed=seed, offset=off,
                                        temperature=temperature, guidance=guidance if uncond is not None else 0.0,
                                        uncond_logits=uncond, return_probs=True, backend="reference")
            bad = unpack_bits(ref ^ traj[i + 1], C, torch.bool)
            n_bad = int(bad.sum())
            draws += bad.numel()
            diff += n_bad
            if n_bad:  # a draw compares the probability with its uniform; the final threshold with 0.5
                last = i + 1 == len(pairs)
                u = 0.5 if last else philox_uniform(seed, off, bad.numel()).reshape(bad.shape).double()
                in_band += int(((probs.double() - u).abs()[bad] < 1e-5).sum())
    return dict(draws=draws, differing=diff, in_guard_band=in_band)


def check_demo_arguments(*, out, samples, steps, seed, temperature, guidance, images, repeats, threads) -> None:
    """Every argument of :func:`demo` that needs no model, checked before anything is loaded or
    written. Raises ``ValueError`` / ``TypeError`` naming the argument."""
    from .args import check_float, check_int
    from .data import NUM_IMAGES

    check_int(samples, "samples")
    if steps is not None:
        check_int(steps, "steps")
    check_int(seed, "seed", 0, 2**63 - 1)
    check_float(temperature, "temperature")
    if guidance is not None:
        check_float(guidance, "guidance", low=0.0, low_open=False)
    if images is not None:
        check_int(images, "images", 1, NUM_IMAGES)
    check_int(repeats, "repeats")
    if threads is not None:
        check_int(threads, "threads")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder path, got {type(out).__name__}")


def demo(out: str = "demo", *, samples: int = 64, steps: int | None = None, seed: int = 0,
         temperature: float = DEFAULT_TEMPERATURE, guidance: float | None = None, backend: str = "auto",
         images: int | None = None, repeats: int = 3, threads: int | None = None, assets: str | None = None,
         progress: bool = True) -> dict:
    """Run the demo (see the module doc); returns every number of the table (a dict).

    Args:
        out: output folder (created; ``digits_codes/``, ``samples.png``, ``samples_reference.png``,
            ``data.png`` are written there).
        samples: images to generate, >= 1. steps: sampling steps ``1..T`` (default
            ``min(DEFAULT_STEPS, T)``). seed: >= 0. temperature: > 0.
        guidance: classifier-free guidance >= 0 for a class-conditional model, which is then asked
            for the digits ``0, 1, ..., 9, 0, ...`` in turn (default ``DEFAULT_GUIDANCE``); must be
            None or 0 for an unconditional one.
        backend: the fused backend. images: encode the first ``1..1797`` built-in images (default all).
        repeats: timed runs per backend, >= 1. threads: torch threads, >= 1 (default torch's).
        assets: weights folder (default the bundled ``bldm_fast/assets``).

    Returns:
        dict with the timings, the bit checks (``bits_ok``), the quality scores (``quality``: the
        dict of :func:`bldm_fast.quality.quality_report`), ``images`` float ``(samples, 1, 16, 16)``...

    Raises:
        TypeError / ValueError: a bad argument (before anything is written), missing or unreadable
            weights, an unknown backend, an ``out`` that is a file or not writable.
        RuntimeError: a backend that is not available in this install.
    """
    from .bundle import cpu_settings

    check_demo_arguments(out=out, samples=samples, steps=steps, seed=seed, temperature=temperature,
                         guidance=guidance, images=images, repeats=repeats, threads=threads)
    with cpu_settings(threads):
        return _run(out, samples, steps, seed, temperature, guidance, backend, images, repeats, assets, progress)


def _run(out, samples, steps, seed, temperature, guidance, backend, images, repeats, assets, progress) -> dict:
    import numpy as np
    import torch

    from .._backends import resolve_backend
    from ..data import PackedLatentDataset
    from ..quality import quality_report
    from .args import check_out_dir
    from .bundle import load_bundled
    from .data import IMAGE_SIZE, load_digit_images
    from .train import encode_packed

    t0 = time.perf_counter()
    ae, model, meta = load_bundled(assets)
    T = model.num_timesteps
    steps_n = min(DEFAULT_STEPS, T) if steps is None else steps
    if steps_n > T:
        raise ValueError(f"steps must be in 1..{T} (the model's T), got {steps_n}")
    labels = None
    if model.num_classes is not None:
        guidance = DEFAULT_GUIDANCE if guidance is None else guidance
        labels = torch.arange(samples) % model.num_classes
    elif guidance:
        raise ValueError(f"guidance needs a class-conditional model; the one in {assets or 'bldm_fast/assets'} "
                         "is unconditional")
    else:
        guidance = 0.0
    fused = resolve_backend(backend, torch.device("cpu"))
    out = check_out_dir(out, "out")

    # ---- encode the built-in images to a packed dataset --------------------------------------
    imgs, digit_labels = load_digit_images(meta["data"]["image_size"] if meta else IMAGE_SIZE)
    if images:
        imgs, digit_labels = imgs[:images], digit_labels[:images]
    codes_dir = os.path.join(out, "digits_codes")
    shutil.rmtree(codes_dir, ignore_errors=True)
    t = time.perf_counter()
    encode_packed(ae, imgs, codes_dir, labels=digit_labels, progress=progress)
    t_encode = time.perf_counter() - t
    ds = PackedLatentDataset(codes_dir, verify=True)
    codes = torch.from_numpy(np.stack([np.asarray(ds[i][0]) for i in range(len(ds))]))
    with torch.no_grad():
        rec_err = float((decode_codes(ae, codes) - imgs).abs().mean())
    bytes_per_latent = int(codes[0].numel())

    # ---- sample with both backends -----------------------------------------------------------
    kw = dict(batch_size=samples, labels=labels, guidance=guidance, seed=seed)
    timer = _Timer(model.denoiser)
    timings = {}
    results = {}
    try:
        for be in (fused, "reference"):  # warm-up (first calls allocate and dispatch), untimed
            model.sample(steps=min(2, steps_n), backend=be, progress=False, **kw)
        for name, be in (("fused", fused), ("reference", "reference")):
            best = None
            for r in range(repeats):
                timer.reset()
                t = time.perf_counter()
                x = model.sample(steps=steps_n, temperature=temperature, backend=be, progress=progress and r == 0,
                                 **kw)
                total = time.perf_counter() - t
                if best is None or total < best[0]:
                    best = (total, timer.total)
                results[name] = x
            timings[name] = dict(total_s=best[0], denoiser_s=best[1], sampler_s=best[0] - best[1])
    finally:
        timer.remove()
    same = (results["fused"] == results["reference"]).flatten(1).all(1)
    traj = model.sample(steps=steps_n, temperature=temperature, backend=fused, return_all=True, progress=False, **kw)
    step_check = stepwise_check(model, traj, seed, steps_n, temperature, fused, labels=labels, guidance=guidance)
    bits_ok = bool(torch.equal(traj[-1], results["fused"])) and step_check["differing"] == step_check["in_guard_band"]

    # ---- images and their quality --------------------------------------------------------------
    gen_f = decode_codes(ae, results["fused"])
    gen_r = decode_codes(ae, results["reference"])
    quality = quality_report(gen_f)
    nrow = max(1, int(math.ceil(math.sqrt(samples))))
    path_f = os.path.join(out, "samples.png")
    path_r = os.path.join(out, "samples_reference.png")
    save_grid(gen_f, path_f, nrow)
    save_grid(gen_r, path_r, nrow)
    save_grid(imgs[:samples], os.path.join(out, "data.png"), nrow)

    per = lambda d: {k: v / steps_n for k, v in d.items()}
    res = dict(
        out=out, samples_png=path_f, reference_png=path_r, backend=fused, samples=samples,
        steps=steps_n, seed=seed, temperature=temperature, guidance=guidance, conditional=labels is not None,
        num_images=int(imgs.shape[0]), encode_s=t_encode, recon_mae=rec_err,
        bytes_per_latent=bytes_per_latent, float32_bytes_per_latent=model.length * model.channels * 4,
        per_step={k: per(v) for k, v in timings.items()}, timings=timings,
        speedup_sampler=timings["reference"]["sampler_s"] / max(timings["fused"]["sampler_s"], 1e-12),
        speedup_total=timings["reference"]["total_s"] / max(timings["fused"]["total_s"], 1e-12),
        identical_samples=int(same.sum()), stepwise=step_check, bits_ok=bits_ok, quality=quality,
        images=gen_f, images_reference=gen_r, codes=results["fused"], total_s=time.perf_counter() - t0,
    )
    return res


def format_table(res: dict) -> str:
    """The demo's printed report: timings, bytes, the quality scores and the bit checks."""
    from ..quality import format_quality

    f, r = res["per_step"]["fused"], res["per_step"]["reference"]
    sc = res["stepwise"]
    how = f"temperature {res['temperature']:g}"
    if res["conditional"]:
        how += f", digits 0..9 in turn, guidance {res['guidance']:g}"
    lines = [
        f"bldm-fast demo: {res['samples']} digits, {res['steps']} steps, seed {res['seed']}, {how} "
        f"(fused backend: {res['backend']})",
        f"encoded {res['num_images']} built-in images to {res['out']}/digits_codes in {res['encode_s']:.2f} s; "
        f"reconstruction MAE {res['recon_mae']:.4f}",
        "",
        f"{'':34}{'fused':>12}{'reference':>12}{'speed-up':>10}",
        f"{'time per step, sampler ops':34}{f['sampler_s'] * 1e3:>10.3f}ms{r['sampler_s'] * 1e3:>10.3f}ms"
        f"{res['speedup_sampler']:>9.1f}x",
        f"{'time per step, denoiser':34}{f['denoiser_s'] * 1e3:>10.3f}ms{r['denoiser_s'] * 1e3:>10.3f}ms",
        f"{'time per step, total':34}{f['total_s'] * 1e3:>10.3f}ms{r['total_s'] * 1e3:>10.3f}ms"
        f"{res['speedup_total']:>9.2f}x",
        f"{'bytes per latent (packed/float32)':34}{res['bytes_per_latent']:>12}{res['float32_bytes_per_latent']:>12}"
        f"{res['float32_bytes_per_latent'] / res['bytes_per_latent']:>9.0f}x",
        "",
        *format_quality(res["quality"]),
        "",
        f"same bits, end to end: {res['identical_samples']}/{res['samples']} samples identical",
        f"same bits, step by step (reference replayed on the fused trajectory): {sc['differing']} of "
        f"{sc['draws']} draws differ, {sc['in_guard_band']} of them inside the 1e-5 guard band -> "
        f"{'OK' if res['bits_ok'] else 'MISMATCH'}",
        f"wrote {res['samples_png']} and {res['reference_png']} ({res['total_s']:.1f} s in all)",
    ]
    return "\n".join(lines)
