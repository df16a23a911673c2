"""GPU benchmark of every fused op and GPU backend, run by benchmarks/gpu_check.sh.

For each op at 16M and 64M elements (B x 256 x 64), fp32 and bf16 logits, with and without
guidance: the median time of ``triton.testing.do_bench`` for every GPU backend, the official
eager chain and ``torch.compile`` of it, and the achieved bandwidth (bytes that must move / time)
as a share of a measured device-to-device copy. On a GPU each row also gives its GPU-busy time
(torch.profiler: kernels, copies and memsets alone), which separates the kernels from per-call
host overhead and read-backs. Noising is also compared with the bare Philox
kernel (``philox_uniform``) over the same number of words, and ``philox_uniform`` with
``torch.rand``; each kernel's floor and its ratio to it come from gpu_floors.py. A whole 64-step
sampling loop with the small official denoiser (n_embd 128, 2 layers, B = 16) is timed eager, as
a replayed CUDA graph and as the official sampler.

Writes ``gpu_bench.json`` and ``gpu_bench.md`` under ``--out`` after every case (a run cut short
keeps what it measured) and prints the compact table last. A row whose call raises records the
error and the run goes on; ``--deadline`` stops starting new cases after that many seconds.
``--smoke`` runs tiny sizes on whatever device there is (CPU + TRITON_INTERPRET=1 in CI), to check
the script itself; its numbers mean nothing.
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch

import bldm_fast as bf
import gpu_floors
from bldm_fast.bench import baselines as bl

C, L, T = 64, 256, 256
T_STEP, T_PREV, GUIDANCE, TEMP = 128, 124, 2.0, 0.9


class Timer:
    """``timer(fn)``: median seconds of a call (triton.testing.do_bench on a GPU, perf_counter in
    smoke mode); ``timer.busy(fn)``: its GPU-busy seconds, None in smoke mode."""

    def __init__(self, smoke: bool):
        self.smoke = smoke

    def __call__(self, fn) -> float:
        if not self.smoke:
            from triton.testing import do_bench

            return do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e-3
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def busy(self, fn) -> float | None:
        return None if self.smoke else gpu_busy_seconds(fn)


def copy_bandwidth(device, bench, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / bench(lambda: dst.copy_(src))


def gpu_busy_seconds(fn, iters: int = 20) -> float:
    """GPU time per call of ``fn``: the summed duration of every kernel, copy and memset it ran
    (torch.profiler), without the host-side time between launches that do_bench also counts."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) * 1e-6 / iters


def measured(bench, fn, moved: int, impl: str) -> dict:
    """One table row: the median seconds of ``fn`` (and on a GPU its GPU-busy seconds), or the
    error it raised (the run goes on)."""
    try:
        return dict(impl=impl, seconds=bench(fn), bytes=moved, gpu_seconds=bench.busy(fn))
    except Exception as exc:  # noqa: BLE001  (a failing backend must not hide the others' rows)
        return dict(impl=impl, seconds=None, bytes=moved, error=f"{type(exc).__name__}: {str(exc)[:300]}")


def gpu_backends() -> list[str]:
    return [b for b in ("triton", "cuda") if b in bf.available_backends()]


def step_rows(device, bench, n: int, dtype, guided: bool, compile_ok: bool) -> list[dict]:
    sched = bf.BernoulliSchedule(T, "cos")
    b = n // (L * C)
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(b, L, C, device=device, generator=gen).to(dtype)
    uncond = torch.randn(b, L, C, device=device, generator=gen).to(dtype) if guided else None
    bits = torch.rand(b, L, C, device=device, generator=gen) < 0.5
    xt = bf.pack_bits(bits)
    g = GUIDANCE if guided else 0.0
    moved = n * logits.element_size() * (2 if guided else 1) + 2 * xt.numel()
    rows = []
    for be in gpu_backends():
        fn = lambda be=be: bf.sample_step(logits, xt, T_STEP, T_PREV, sched, seed=1, offset=0, temperature=TEMP,  # noqa: E731
                                          guidance=g, uncond_logits=uncond, backend=be)
        rows.append(measured(bench, fn, moved, be))
    k, bb, beta = (x.to(device) for x in bl.official_tables(sched))
    xf = bits.float()
    official = lambda: bl.official_step(logits, uncond, xf, T_STEP, T_PREV, k, bb, beta, TEMP,  # noqa: E731
                                        GUIDANCE if guided else None)
    rows.append(measured(bench, official, moved, "official eager"))
    if compile_ok:
        compiled = torch.compile(bl.official_step, dynamic=True)
        fn = lambda: compiled(logits, uncond, xf, T_STEP, T_PREV, k, bb, beta, TEMP, GUIDANCE if guided else None)  # noqa: E731
        rows.append(measured(bench, fn, moved, "torch.compile(official)"))
    return rows


def noise_rows(device, bench, n: int) -> list[dict]:
    sched = bf.BernoulliSchedule(T, "cos")
    b = n // (L * C)
    x0 = bf.pack_bits(torch.rand(b, L, C, device=device) < 0.5)
    t = torch.randint(1, T + 1, (b,), device=device)
    rows = []
    for be in gpu_backends():
        rows.append(measured(bench, lambda be=be: bf.bernoulli_noise(x0, t, sched, C, seed=1, backend=be),
                             2 * x0.numel(), be))
        rows.append(measured(bench, lambda be=be: bf.philox_uniform(1, 0, n, device=device, backend=be),
                             4 * n, f"{be} bare Philox"))
    return rows


def pack_rows(device, bench, n: int) -> list[dict]:
    bits = (torch.rand(n // C, C, device=device) < 0.5).to(torch.uint8)
    packed = bf.pack_bits(bits)
    rows = []
    for be in gpu_backends():
        rows.append(measured(bench, lambda be=be: bf.pack_bits(bits, backend=be), n + n // 8, f"{be} pack u8"))
        for dt in (torch.bfloat16, torch.float32):
            rows.append(measured(bench, lambda be=be, dt=dt: bf.unpack_bits(packed, C, dt, backend=be),
                                 n // 8 + n * dt.itemsize, f"{be} unpack {str(dt)[6:]}"))
    return rows


def loss_rows(device, bench, n: int, dtype) -> list[dict]:
    """flip_bce_loss forward + backward against the same loss in eager PyTorch (unpack the targets,
    weights, binary_cross_entropy_with_logits, autograd)."""
    b = n // (L * C)
    logits = torch.randn(b, L, C, device=device).to(dtype).requires_grad_(True)
    target = bf.pack_bits(torch.rand(b, L, C, device=device) < 0.5)
    w1, w0 = torch.rand(b, device=device), torch.rand(b, device=device)
    moved = 2 * n * logits.element_size() + n // 8  # logits in, gradient out, packed targets

    def fused(be):
        logits.grad = None
        bf.flip_bce_loss(logits, target, w1, w0, backend=be).backward()

    def eager():
        logits.grad = None
        y = bf.unpack_bits(target, C, torch.float32)
        w = torch.where(y > 0, w1.view(-1, 1, 1), w0.view(-1, 1, 1))
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y, weight=w, reduction="sum").backward()

    rows = [measured(bench, lambda be=be: fused(be), moved, be) for be in gpu_backends()]
    rows.append(measured(bench, eager, moved, "eager BCE"))
    return rows


def binarize_rows(device, bench, n: int) -> list[dict]:
    """The autoencoder-side ops: binarize (threshold and Bernoulli draw) and quantize_probs."""
    logits = torch.randn(n // C, C, device=device)
    rows = []
    for be in gpu_backends():
        for mode in ("deterministic", "bernoulli"):
            rows.append(measured(bench, lambda be=be, mode=mode: bf.binarize(logits, mode, seed=1, backend=be),
                                 4 * n + n // 8, f"{be} binarize {mode}"))
        rows.append(measured(bench, lambda be=be: bf.quantize_probs(logits, backend=be), 5 * n,
                             f"{be} quantize_probs"))
    return rows


LOOP_BATCH, LOOP_STEPS = 16, 64


def loop_rows(device, bench, batch: int, steps: int) -> list[dict]:
    """A whole sampling loop with the small official denoiser (unconditional, T = 64): bldm_fast's
    eager loop, the same loop captured once in a CUDA graph and replayed (GPU only), and the
    official sampler (bldm_fast.bench.official_sampler) with the same weights."""
    from bldm_fast.bench.end_to_end import ARCHS
    from bldm_fast.bench.official_sampler import OfficialSampler
    from bldm_fast.diffusion.diffusion import sample_loop
    from bldm_fast.diffusion.grid import sampling_grid

    torch.manual_seed(0)
    den = bf.models.BinaryTransformer(C, latent_size=16, total_steps=64, **ARCHS["small"]).to(device).eval()
    model = bf.BernoulliDiffusion(den, 64, "linear", latent_shape=(16, 16), channels=C)
    official = OfficialSampler(den, num_timesteps=64, kind="linear", latent_hw=(16, 16), codebook_size=C,
                               dataset="churches").to(device)
    moved = 2 * batch * L * C // 8

    def loop():
        return sample_loop(model.model_fn(None, 0.0), model.schedule, sampling_grid(64, steps), batch_size=batch,
                           length=L, channels=C, device=device, seed=1, base=0, check_nan=False)

    rows = [measured(bench, lambda: model.sample(batch, steps=steps, seed=1, progress=False), moved,
                     "bldm_fast sample() eager")]
    if device.type == "cuda":
        def graph_row():
            with torch.no_grad():
                loop()
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loop()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    loop()
            return graph.replay

        try:
            replay = graph_row()
            rows.append(measured(bench, replay, moved, "bldm_fast loop CUDA graph"))
        except Exception as exc:  # noqa: BLE001  (a failed capture is a result, not the end of the run)
            rows.append(dict(impl="bldm_fast loop CUDA graph", seconds=None, bytes=moved,
                             error=f"{type(exc).__name__}: {str(exc)[:300]}"))
    rows.append(measured(bench, lambda: official.sample(1.0, steps, batch), moved, "official sampler"))
    return rows


def cases(device, bench, sizes: list[int], compile_ok: bool, loop: tuple[int, int] = (LOOP_BATCH, LOOP_STEPS)):
    """(name, thunk) per benchmark case, in the order they run; each thunk returns its rows."""
    for n in sizes:
        for dtype in (torch.float32, torch.bfloat16):
            for guided in (False, True):
                name = f"step {str(dtype)[6:]}{' +guidance' if guided else ''} N={n:,}"
                yield name, (lambda n=n, dtype=dtype, guided=guided:
                             step_rows(device, bench, n, dtype, guided, compile_ok))
        yield f"noise N={n:,}", lambda n=n: noise_rows(device, bench, n)
        yield f"{gpu_floors.RAND_CASE} N={n:,}", lambda n=n: gpu_floors.philox_vs_rand_rows(device, bench, n, measured,
                                                                                          gpu_backends())
        for dtype in (torch.float32, torch.bfloat16):
            yield (f"flip_bce fwd+bwd {str(dtype)[6:]} N={n:,}",
                   lambda n=n, dtype=dtype: loss_rows(device, bench, n, dtype))
        yield f"pack/unpack N={n:,}", lambda n=n: pack_rows(device, bench, n)
        yield f"binarize/quantize_probs N={n:,}", lambda n=n: binarize_rows(device, bench, n)
    batch, steps = loop
    yield (f"sampling loop {steps} steps, small denoiser, B={batch} N={batch * L * C:,}",
           lambda: loop_rows(device, bench, batch, steps))


def run(args, save) -> dict:
    """Measures every case, calling ``save(result)`` after each one."""
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    bench = Timer(args.smoke)
    sizes = [2**14] if args.smoke else [2**24, 2**26]
    copy = copy_bandwidth(device, bench, 2**20 if args.smoke else 2**30)
    result = dict(machine=dict(
        device=torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__, cuda=torch.version.cuda, triton=_triton_version(), bldm_fast=bf.__version__,
        python=platform.python_version()), copy_bytes_per_s=copy, cases=[], skipped=[])
    loop = (1, 4) if args.smoke else (LOOP_BATCH, LOOP_STEPS)
    for name, thunk in cases(device, bench, sizes, not args.no_compile, loop):
        if args.deadline and time.perf_counter() - start > args.deadline:
            result["skipped"].append(name)
            continue
        rows = thunk()
        for row in rows:
            row["share_of_copy"] = row["bytes"] / row["seconds"] / copy if row["seconds"] else None
        result["cases"].append(dict(case=name, rows=rows))
        print(f"[{time.perf_counter() - start:6.1f} s] {name}: "
              + ", ".join(f"{r['impl']} {r['seconds'] * 1e6:.1f} us" if r["seconds"] else f"{r['impl']} FAILED"
                          for r in rows), flush=True)
        save(result)
    return result


def _triton_version():
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"device {m['device']}, torch {m['torch']} (CUDA {m['cuda']}), triton {m['triton']}, "
             f"copy bandwidth {result['copy_bytes_per_s'] / 1e9:.0f} GB/s", "",
             "| case | implementation | time (us) | GPU busy (us) | GB/s | % of copy | speed-up vs eager "
             "| vs compile |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for case in result["cases"]:
        ref = {r["impl"]: r["seconds"] for r in case["rows"]}
        eager = ref.get("official eager", ref.get("eager BCE"))
        comp = ref.get("torch.compile(official)")
        for r in case["rows"]:
            sec = r["seconds"]
            if sec is None:
                lines.append(f"| {case['case']} | {r['impl']} | FAILED: {r['error']} | | | | | |")
                continue
            vs_eager = f"{eager / sec:.1f}x" if eager else ""
            vs_comp = f"{comp / sec:.2f}x" if comp else ""
            busy = f"{r['gpu_seconds'] * 1e6:.1f}" if r.get("gpu_seconds") else ""
            lines.append(f"| {case['case']} | {r['impl']} | {sec * 1e6:.1f} | {busy} | {r['bytes'] / sec / 1e9:.0f}"
                         f" | {100 * r['share_of_copy']:.0f}% | {vs_eager} | {vs_comp} |")
    if result["skipped"]:
        lines += ["", "not measured (past --deadline): " + ", ".join(result["skipped"])]
    return "\n".join(lines + ["", "targets (issue 3/4): " + "; ".join(targets(result)), "",
                              gpu_floors.floors_table(result)])


def targets(result: dict) -> list[str]:
    """The performance targets, met or missed, per GPU backend: step >= 85% of copy bandwidth and
    >= 1.5x torch.compile; noising >= 70% of the bare Philox rate; pack/unpack >= 80% of copy.
    A backend whose row failed counts as FAILED."""
    out = []
    for case in result["cases"]:
        rows = {r["impl"]: r for r in case["rows"]}
        for be in gpu_backends():
            if case["case"].startswith("step") and be in rows:
                r, comp = rows[be], rows.get("torch.compile(official)")
                if r["seconds"] is None:
                    out.append(f"{case['case']} {be}: FAILED")
                    continue
                ok = r["share_of_copy"] >= 0.85 and (comp is None or comp["seconds"] is None
                                                     or comp["seconds"] / r["seconds"] >= 1.5)
                out.append(f"{case['case']} {be}: {'met' if ok else 'MISSED'}")
            elif case["case"].startswith("noise") and be in rows:
                fused, bare = rows[be]["seconds"], rows[f"{be} bare Philox"]["seconds"]
                if fused is None or bare is None:
                    out.append(f"{case['case']} {be}: FAILED")
                    continue
                ratio = bare / fused
                out.append(f"{case['case']} {be}: {ratio:.2f} of Philox rate, {'met' if ratio >= 0.7 else 'MISSED'}")
            elif case["case"].startswith("pack"):
                for name, r in rows.items():
                    if name.startswith(be):
                        ok = r["seconds"] is not None and r["share_of_copy"] >= 0.8
                        out.append(f"{case['case']} {name}: {'met' if ok else 'MISSED' if r['seconds'] else 'FAILED'}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_bench.json and gpu_bench.md")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on any device: checks the script, not the speed")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    p.add_argument("--deadline", type=float, default=0.0,
                   help="start no new case after this many seconds (0: no limit); skipped cases are listed")
    args = p.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        p.error("no CUDA GPU here: the timings need one (--smoke checks the script on the CPU)")
    os.makedirs(args.out, exist_ok=True)

    def save(result: dict) -> None:
        with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
            f.write(table(result) + "\n")

    result = run(args, save)
    save(result)
    print(table(result))
    return 0 if all(r["seconds"] for c in result["cases"] for r in c["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
