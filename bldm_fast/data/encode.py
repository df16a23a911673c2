"""Encode an image folder once into a packed-latent dataset (DESIGN.md section 7).

``encode_folder`` scans the folder (:mod:`.images`), runs every usable image through the official
preprocessing (:mod:`.transforms`) and the binary autoencoder's encoder, turns the quantizer's
code logits into packed codes (``bf.binarize``) or byte probabilities (``bf.quantize_probs``) and
writes them chunk by chunk with :class:`~bldm_fast.data.writer.PackedLatentWriter`. A run that
stopped part way resumes: only the chunks the writer reports pending are encoded again. Under
``torchrun`` (``torch.distributed`` initialised) every rank encodes its share of the pending
chunks into the one preallocated file and rank 0 finalizes; the result equals one process.

Code modes (``code_mode``):

* ``"deterministic"``: ``[sigmoid(l) > 0.5]``, packed ``(L, ceil(C/8))`` per image.
* ``"bernoulli"``: ``samples_per_image = K`` draws ``[u < sigmoid(l)]``, packed
  ``(K, L, ceil(C/8))`` per image. The uniforms are the Philox stream of DESIGN.md section 4 under
  key ``seed``: image row ``n`` draws a call of ``K*L*C`` elements at counter
  ``n * ceil(K*L*C / 4)``, element ``(k*L + l)*C + c`` for sample ``k``, token ``l``, channel ``c``.
  So the codes depend on ``seed`` and the row only, not on the batch size, the chunking, the
  resumption or the number of ranks.
* ``"probs"``: ``round(sigmoid(l) * 255)`` as uint8 ``(L, C)`` per image, from which training can
  draw a fresh Bernoulli code every epoch.

The official recipe (``train_sampler_online.py``) encodes every batch online with
``bergan(img, code_only=True)``, whose quantizer draws ``torch.bernoulli(sigmoid(l))`` afresh
each step (``H.deterministic`` defaults to False and the released commands never pass
``--deterministic``). ``"probs"`` reproduces that distribution (up to the 1/255 rounding of the
probability); ``"bernoulli"`` freezes ``K`` of those draws; ``"deterministic"`` is the mode of the
distribution, not what the released samplers were trained on.

Only the standard library is imported at module level (torch, numpy, Pillow inside the functions).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["add_encode_arguments", "code_logits", "encode_folder", "run_encode"]

_CLI_CODE_MODES = ("deterministic", "bernoulli", "probs")  # = layout.CODE_MODES (kept literal for a fast CLI)
PHASES = ("decode", "autoencoder", "binarize", "write")


# ---------------------------------------------------------------------------------------------
# the quantizer's output
# ---------------------------------------------------------------------------------------------
def code_logits(autoencoder, images):
    """The quantizer's code logits, channels last.

    Args:
        autoencoder: a ``bf.models.BinaryAutoencoder`` (or the official ``BinaryAutoEncoder``:
            anything with ``encoder`` and ``quantize.proj[0]``, ``quantize.use_tanh``).
        images: float ``(B, 3, H, W)`` in [0, 1].
    Returns:
        float ``(B, h*w, C)`` (tokens row-major, as the sampler takes them) with
        ``sigmoid(logit) = P(bit = 1)``: the input of the quantizer's sigmoid (twice the input of
        its tanh for ``use_tanh`` models, since ``tanh(z)/2 + 1/2 = sigmoid(2z)``).
    """
    z = autoencoder.quantize.proj[0](autoencoder.encoder(images))
    if getattr(autoencoder.quantize, "use_tanh", False):
        z = 2.0 * z
    b, c, h, w = z.shape
    return z.permute(0, 2, 3, 1).reshape(b, h * w, c)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _state_dict_sha256(module) -> str:
    """sha256 over ``name, dtype, shape, bytes`` of every state_dict entry in sorted order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load_autoencoder(autoencoder, device, ema: bool = True):
    import torch

    from ..generate.loading import load_autoencoder

    info = {"checkpoint": None, "checkpoint_sha256": None}
    if autoencoder is None or isinstance(autoencoder, (str, os.PathLike)):
        loaded = load_autoencoder(autoencoder, ema=ema)
        ae = loaded.autoencoder
        entry = loaded.files[0]
        info["checkpoint"], info["checkpoint_sha256"] = entry["path"], entry["sha256"]
        info["source"] = loaded.source
    elif isinstance(autoencoder, torch.nn.Module):
        ae = autoencoder
    else:
        raise TypeError(f"autoencoder must be a module or a checkpoint path, got {type(autoencoder).__name__}")
    for attr in ("encoder", "quantize"):
        if not hasattr(ae, attr):
            raise TypeError(f"autoencoder has no .{attr}: not a binary autoencoder")
    info["class"] = type(ae).__name__
    info["state_dict_sha256"] = _state_dict_sha256(ae)
    info["config"] = ae.config() if hasattr(ae, "config") else None
    ae = ae.to(device).eval()
    return ae, info


def _geometry(ae, image_size: int) -> tuple[int, int, int, int]:
    """``(channels, in_channels, latent h, latent w)`` for ``image_size`` inputs."""
    conv = ae.quantize.proj[0]
    factor = getattr(ae, "downsample_factor", None) or 2 ** (len(ae.ch_mult) - 1)
    if image_size % factor:
        raise ValueError(f"image_size must be a multiple of the autoencoder's downsampling factor {factor}, "
                         f"got {image_size}")
    in_channels = ae.encoder.blocks[0].in_channels
    if in_channels not in (1, 3):
        raise ValueError(f"the autoencoder takes {in_channels}-channel images; images convert to RGB (3) or grey (1)")
    return conv.out_channels, in_channels, image_size // factor, image_size // factor


class _Dist:
    """The process group view of a run: ``rank``, ``world`` and error-carrying collectives."""

    def __init__(self, enabled):
        import torch.distributed as dist

        initialised = dist.is_available() and dist.is_initialized()
        if enabled is None:
            enabled = initialised
        if enabled and not initialised:
            raise RuntimeError("distributed=True needs an initialised torch.distributed process group (torchrun)")
        self.on = bool(enabled)
        self.dist = dist if self.on else None
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def agree(self, payload, error: BaseException | None = None) -> list:
        """All-gather ``(payload, error text)``; raise on every rank if any rank failed (the
        failing rank re-raises its own exception). Also a barrier."""
        if not self.on:
            if error is not None:
                raise error
            return [payload]
        got = [None] * self.world
        self.dist.all_gather_object(got, (payload, None if error is None else f"{type(error).__name__}: {error}"))
        if error is not None:
            raise error
        failed = [(r, e) for r, (_, e) in enumerate(got) if e is not None]
        if failed:
            raise RuntimeError("encode failed on " + "; ".join(f"rank {r}: {e}" for r, e in failed))
        return [p for p, _ in got]


def _guard(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - handed to _Dist.agree, which re-raises it
        return None, exc


def _scan(images, labels, strict, workers, d: _Dist, progress: bool):
    from .images import ImageFolderScan, assemble_scan, check_files, list_image_files

    if isinstance(images, ImageFolderScan):
        if strict and images.skipped:
            assemble_scan(images.root, [], images.classes, images.skipped, [], strict=True)  # raises
        return images
    root = os.path.abspath(os.fspath(images))
    listed, err = _guard(list_image_files, root, labels=labels)
    d.agree(None, err)
    candidates, classes, outside = listed
    paths = [p for p, _ in candidates]
    mine = list(range(d.rank, len(paths), d.world))
    checked_mine, err = _guard(check_files, root, [paths[i] for i in mine], workers=workers,
                               progress=progress and d.rank == 0)
    checked: list = [None] * len(paths)
    if d.on:
        for r, part in enumerate(d.agree(checked_mine, err)):
            for i, res in zip(range(r, len(paths), d.world), part, strict=True):
                checked[i] = res
    elif err is not None:
        raise err
    else:
        checked = checked_mine
    return assemble_scan(root, candidates, classes, outside, checked, strict=strict)


def _load_row(scan, i: int, image_size: int, channels: int = 3):
    from .transforms import load_image, load_rgb, official_transform

    path = scan.abspath(i)
    with open(path, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != scan.files[i].sha256:
        raise RuntimeError(f"{path!r} changed since the folder was scanned (sha256 differs)")
    return official_transform(load_rgb(data) if channels == 3 else load_image(data), image_size, channels)


# ---------------------------------------------------------------------------------------------
# encode_folder
# ---------------------------------------------------------------------------------------------
def encode_folder(images, out, autoencoder=None, *, code_mode: str, samples_per_image: int = 1, batch_size: int = 32,
                  image_size: int | None = 256, labels: bool = False, strict: bool = False, seed: int = 0,
                  backend: str = "auto", device="cpu", chunk_rows: int = 256, workers: int | None = None,
                  ema: bool = True, distributed: bool | None = None, progress: bool = True) -> dict:
    """Encode the images of a folder into the packed-latent dataset ``out`` (or finish one).

    Args:
        images: an image folder, or an :class:`~bldm_fast.data.images.ImageFolderScan`.
        out: the dataset folder (created; an unfinished one with the same configuration resumes).
        autoencoder: a ``BinaryAutoencoder`` module (moved to ``device``, put in eval mode), a
            checkpoint file / official log dir for ``bf.load_official(..., kind="autoencoder", ema=ema)``,
            a bldm_fast bundle folder, or None: the bundled digits autoencoder. Images are converted
            to its channel count (``transforms.to_channels``: RGB, or grey for 1-channel models).
        code_mode: ``"deterministic"``, ``"bernoulli"`` or ``"probs"`` (see the module doc).
        samples_per_image: ``K`` Bernoulli draws per image (``"bernoulli"`` only; else 1).
        batch_size: images per encoder call; batches never cross a chunk (``chunk_rows`` rows),
            so the batches, and thus the floats, do not depend on resumption or ranks.
        image_size: the side of the resized, centre-cropped square (official: 256); None: the
            autoencoder's ``img_size``.
        labels: store class labels from the first-level subfolders (``labels.npy``, int64).
        strict: raise on any unusable image instead of skipping it.
        seed: the Philox key of the ``"bernoulli"`` draws, an int in [0, 2^64).
        backend: backend of the binarize ops (``"auto"``, ``"reference"``, ``"cpu"``, ...).
        device: where the autoencoder runs.
        chunk_rows: rows per committed chunk of the writer (part of the dataset's configuration).
        workers: image decoding threads (default ``min(8, cpu_count)``).
        ema: in an official log dir, load the EMA autoencoder (``binaryae_ema_<step>.th``).
        distributed: None: distributed when ``torch.distributed`` is initialised; True requires it.
        progress: a tqdm bar (rank 0).
    Returns:
        a dict (the same on every rank): ``out``, ``count`` (rows), ``encoded`` (rows encoded by
        this call, all ranks), ``skipped`` (``[path, reason]``), ``code_mode``,
        ``samples_per_image``, ``latent_hw``, ``channels``, ``with_labels``, ``world_size``,
        ``meta`` (what the writer's ``finalize`` returned), ``timings`` (seconds: ``scan`` (list,
        hash, check), ``setup`` (autoencoder loading and hashing, writer), ``decode`` /
        ``autoencoder`` / ``binarize`` / ``write`` summed over ranks, ``finalize``, ``total``
        wall), ``rank_timings`` (per rank, with its ``rows``) and ``images_per_s`` (rows encoded
        by this call / ``total``). Images are decoded on threads one batch ahead, so ``decode``
        is the time the encoder loop waited for them; ``binarize`` includes the copy to the host.
    Raises:
        ValueError: a bad argument, no usable image, unusable images under ``strict``, ``out``
            holds a dataset of another configuration, an unreadable checkpoint, or NaN code logits
            (raised before the chunk holding them is written; earlier chunks stay committed).
        TypeError: ``autoencoder`` is neither a module nor a path.
        FileNotFoundError: the folder or checkpoint is missing.
        RuntimeError: an image changed after the scan; under ``distributed``, any rank's failure
            (raised on every rank), or no initialised process group.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..ops import binarize, quantize_probs

    from ..rng import check_seed_offset
    from .layout import CODE_MODES, latents_shape
    from .transforms import CHANNEL_STEPS
    from .writer import PackedLatentWriter

    t_start = time.perf_counter()
    if code_mode not in CODE_MODES:
        raise ValueError(f"code_mode must be one of {CODE_MODES}, got {code_mode!r}")
    K = _positive_int(samples_per_image, "samples_per_image")
    if code_mode != "bernoulli" and K != 1:
        raise ValueError(f"samples_per_image={K} needs code_mode='bernoulli' (got {code_mode!r})")
    batch_size = _positive_int(batch_size, "batch_size")
    if image_size is not None:
        image_size = _positive_int(image_size, "image_size")
    chunk_rows = _positive_int(chunk_rows, "chunk_rows")
    check_seed_offset(seed, 0, 0)
    device = torch.device(device)
    d = _Dist(distributed)
    timings = {p: 0.0 for p in PHASES}

    # ---- setup: the autoencoder and the scan (shared out between ranks) ----------------------
    t0 = time.perf_counter()
    loaded, err = _guard(_load_autoencoder, autoencoder, device, ema)
    if err is None:
        ae, enc_info = loaded
        if image_size is None:
            image_size = int(getattr(ae, "img_size", 256))
        geo, err = _guard(_geometry, ae, image_size)
    d.agree(None, err)
    C, in_ch, lh, lw = geo
    L = lh * lw
    t1 = time.perf_counter()
    scan = _scan(images, labels, strict, workers, d, progress)  # collective in distributed runs
    t_scan = time.perf_counter() - t1
    N = len(scan)
    with_labels = scan.with_labels
    if N == 0:
        raise ValueError(f"no usable image in {scan.root!r} ({len(scan.skipped)} skipped)")

    source = scan.meta()
    meta = {  # keys ending in sha256/digest identify the data: a resumed run must match them
        "source_list_digest": scan.digest,
        "encoder_checkpoint_sha256": enc_info.pop("checkpoint_sha256"),
        "encoder_state_dict_sha256": enc_info.pop("state_dict_sha256"),
        "encoder": enc_info,
        "source": source,
        "transform": {"image_size": image_size, "steps": CHANNEL_STEPS[in_ch] + "; Resize(image_size) [shorter side, "
                      "PIL bilinear]; CenterCrop(image_size); ToTensor() [float32 in [0, 1]]"},
        "code_stream": ({"seed": seed, "row_counter": f"n * ceil(K*L*C/4) = n * {math.ceil(K * L * C / 4)}",
                         "element": "(k*L + l)*C + c", "rule": "u < sigmoid(logit)"}
                        if code_mode == "bernoulli" else None),
    }
    # what else decides the bytes (preprocessing, Bernoulli stream): a resumed run must match it too
    meta["encode_config_digest"] = hashlib.sha256(json.dumps(
        [meta["transform"], meta["code_stream"]], sort_keys=True).encode()).hexdigest()
    # every rank must describe the same run
    summary = (N, scan.digest, code_mode, K, image_size, seed, C, lh, lw, chunk_rows, with_labels,
               meta["encoder_state_dict_sha256"])
    if len(set(d.agree(summary))) != 1:
        raise ValueError("the ranks disagree on the run (images, autoencoder or options differ between ranks)")

    # ---- the writer: rank 0 creates or resumes it, then the others open it ------------------
    def open_writer():
        return PackedLatentWriter(out, count=N, latent_hw=(lh, lw), channels=C, code_mode=code_mode,
                                  samples_per_image=K, with_labels=with_labels, meta=meta, chunk_rows=chunk_rows)

    writer, pending, err = None, None, None
    if d.rank == 0:
        writer, err = _guard(open_writer)
        if err is None:
            pending, err = _guard(writer.pending)
    pending = d.agree(pending, err)[0]
    if d.rank != 0:
        writer, err = _guard(open_writer)
    d.agree(None, err)  # nobody writes before every rank has opened the writer
    mine = pending[d.rank::d.world]
    t_setup = time.perf_counter() - t0 - t_scan

    # ---- encode my chunks ------------------------------------------------------------------
    per_row = K * L * C
    contiguous_stream = per_row % 4 == 0
    row_counters = math.ceil(per_row / 4)
    batches = [(start, end, b0, min(b0 + batch_size, end)) for start, end in mine
               for b0 in range(start, end, batch_size)]
    dtype = next(ae.parameters()).dtype
    rows_mine = sum(end - start for start, end in mine)
    bar = tqdm(total=rows_mine, unit="img", desc=f"encode {os.path.basename(os.fspath(out))}",
               disable=not progress or d.rank != 0)
    workers = workers or min(8, os.cpu_count() or 1)
    err = None
    pool = ThreadPoolExecutor(workers)

    def submit(i):
        _, _, b0, b1 = batches[i]
        return [pool.submit(_load_row, scan, n, image_size, in_ch) for n in range(b0, b1)]

    try:
        futures = submit(0) if batches else []
        chunk = lab = None
        for j, (start, end, b0, b1) in enumerate(batches):
            if b0 == start:
                shape = latents_shape(end - start, (lh, lw), C, code_mode, K)
                chunk = np.empty(shape, np.uint8)
                lab = np.empty(end - start, np.int64) if with_labels else None
            t = time.perf_counter()
            imgs = [f.result() for f in futures]
            timings["decode"] += time.perf_counter() - t
            if j + 1 < len(batches):
                futures = submit(j + 1)  # decode the next batch while this one is encoded

            t = time.perf_counter()
            with torch.inference_mode():
                logits = code_logits(ae, torch.stack(imgs).to(device=device, dtype=dtype))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings["autoencoder"] += time.perf_counter() - t

            if torch.isnan(logits).any():
                bad = sorted({b0 + int(i) for i in torch.isnan(logits).flatten(1).any(1).nonzero().flatten()})
                raise ValueError(f"the autoencoder produced NaN code logits for {len(bad)} image(s) of rows "
                                 f"{b0}..{b1 - 1} (first: {scan.files[bad[0]].path!r}); its weights or inputs are "
                                 f"broken. Nothing of chunk {start // chunk_rows} (rows {start}..{end - 1}) was "
                                 "written")
            t = time.perf_counter()
            if code_mode == "deterministic":
                codes = binarize(logits, "deterministic", backend=backend)
            elif code_mode == "probs":
                codes = quantize_probs(logits, backend=backend)
            else:
                lk = logits.unsqueeze(1).expand(-1, K, -1, -1).contiguous()
                if contiguous_stream:
                    codes = binarize(lk, "bernoulli", seed=seed, offset=b0 * row_counters, backend=backend)
                else:
                    codes = torch.cat([binarize(lk[i:i + 1], "bernoulli", seed=seed, offset=(b0 + i) * row_counters,
                                                backend=backend) for i in range(b1 - b0)])
            chunk[b0 - start:b1 - start] = codes.cpu().numpy()
            timings["binarize"] += time.perf_counter() - t
            if with_labels:
                lab[b0 - start:b1 - start] = [scan.files[n].label for n in range(b0, b1)]
            bar.update(b1 - b0)

            if b1 == end:
                t = time.perf_counter()
                writer.write_chunk(start // chunk_rows, chunk, lab)
                timings["write"] += time.perf_counter() - t
                bar.set_postfix({p: f"{timings[p]:.1f}s" for p in PHASES}, refresh=False)
    except Exception as exc:  # noqa: BLE001 - re-raised by agree on this rank, reported on the others
        err = exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if writer is not None:
        writer.close()
    all_timings = d.agree(dict(timings, rows=rows_mine), err)

    # ---- finalize on rank 0 ----------------------------------------------------------------
    def finalize():
        w = open_writer()  # a fresh writer reads the commits of every rank from the journal
        try:
            return w.finalize()
        finally:
            w.close()

    t = time.perf_counter()
    final, err = (_guard(finalize) if d.rank == 0 else (None, None))
    final = d.agree(final, err)[0]
    t_final = time.perf_counter() - t

    total = time.perf_counter() - t_start
    encoded = sum(r["rows"] for r in all_timings)
    phase_sum = {p: sum(r[p] for r in all_timings) for p in PHASES}
    return {
        "out": os.path.abspath(os.fspath(out)),
        "count": N,
        "encoded": encoded,
        "image_size": image_size,
        "conversion": CHANNEL_STEPS[in_ch],
        "autoencoder": enc_info.get("checkpoint") or enc_info.get("class"),
        "skipped": [list(s) for s in scan.skipped],
        "code_mode": code_mode,
        "samples_per_image": K,
        "latent_hw": (lh, lw),
        "channels": C,
        "with_labels": with_labels,
        "world_size": d.world,
        "meta": final,
        "timings": dict(scan=t_scan, setup=t_setup, **phase_sum, finalize=t_final, total=total),
        "rank_timings": all_timings,
        "images_per_s": encoded / total if total > 0 else 0.0,
    }


# ---------------------------------------------------------------------------------------------
# CLI: bldm-fast encode IMAGES OUT --autoencoder CKPT [...]
# ---------------------------------------------------------------------------------------------
def add_encode_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast encode`` (standard library only: safe to call while building the parser)."""
    p.add_argument("images", help="image folder (PNG/JPEG/WebP, walked recursively in sorted order)")
    p.add_argument("out", help="dataset folder to create, or an unfinished one to resume")
    p.add_argument("--autoencoder", default=None, metavar="CKPT",
                   help="autoencoder checkpoint file or official log dir (EMA weights unless --no-ema), or a "
                        "bldm_fast bundle folder (default: the bundled digits autoencoder; images become grey)")
    p.add_argument("--no-ema", action="store_true", help="in a log dir, take binaryae_<step>.th, not the EMA copy")
    p.add_argument("--code-mode", choices=_CLI_CODE_MODES, default="deterministic",
                   help="deterministic: [p > 0.5]; bernoulli: K draws [u < p]; probs: round(255 p) bytes, "
                        "fresh draws at training time (closest to the official online training) "
                        "(default: deterministic)")
    p.add_argument("--samples", type=int, default=1, metavar="K", help="Bernoulli draws per image (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="images per autoencoder call (default 32)")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize + centre-crop side (default: the autoencoder's img_size; official models 256)")
    p.add_argument("--labels", action="store_true", help="class labels from the first-level subfolders")
    p.add_argument("--strict", action="store_true", help="fail on any unusable image instead of skipping it")
    p.add_argument("--seed", type=int, default=0, help="Philox key of the Bernoulli draws (default 0)")
    p.add_argument("--backend", default="auto", help="bldm_fast backend of the binarize op (default auto)")
    p.add_argument("--device", default="cpu",
                   help="autoencoder device, e.g. cuda (under torchrun: cuda:LOCAL_RANK) (default cpu)")
    p.add_argument("--chunk-rows", type=int, default=256, help="rows per committed chunk (default 256)")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default min(8, cores))")
    p.add_argument("--json", metavar="PATH", help="also save the summary (timings included) as JSON ('-': stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")


def _print_summary(res: dict, file=None) -> None:
    file = file or sys.stdout
    t = res["timings"]
    print(f"dataset {res['out']}: {res['count']} images, latents {res['latent_hw'][0]}x{res['latent_hw'][1]}x"
          f"{res['channels']} ({res['code_mode']}" + (f", K={res['samples_per_image']}" if
                                                    res["code_mode"] == "bernoulli" else "") + ")", file=file)
    print(f"autoencoder {res['autoencoder']}: {res['image_size']} px images, {res['conversion']}", file=file)
    print(f"encoded {res['encoded']} images this run on {res['world_size']} process(es) in {t['total']:.2f} s "
          f"({res['images_per_s']:.1f} img/s)", file=file)
    busy = sum(t[p] for p in PHASES) or 1.0
    print("time split (summed over processes): " + ", ".join(
        f"{p} {t[p]:.2f} s ({100 * t[p] / busy:.0f}%)" for p in PHASES) +
        f"; scan {t['scan']:.2f} s, finalize {t['finalize']:.2f} s", file=file)
    if res["skipped"]:
        print(f"skipped {len(res['skipped'])} file(s):", file=file)
        for path, reason in res["skipped"][:20]:
            print(f"  {path}: {reason}", file=file)
        if len(res["skipped"]) > 20:
            print(f"  ... ({len(res['skipped']) - 20} more; all in meta.json)", file=file)


def _check_cli(args: argparse.Namespace) -> str:
    """Validate what can be checked before anything is written; returns the device."""
    from ..generate.runtime import check_backend, check_device, check_json_path

    for name in ("samples", "batch_size", "chunk_rows", "workers", "image_size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2^64), got {args.seed}")
    device = check_device(args.device)
    check_backend(args.backend, device)
    check_json_path(args.json)
    return args.device


def run_encode(args: argparse.Namespace) -> int:
    """Run ``bldm-fast encode``; returns 0, or 1 (one line on stderr) when the run failed.

    Every option is checked before anything is written (``--device cuda`` without CUDA,
    ``--backend``, ``--workers``, a ``--json`` folder that does not exist). Under ``torchrun``
    (``WORLD_SIZE`` > 1) it initialises a gloo process group (only small objects travel through it),
    runs on ``cuda:LOCAL_RANK`` when ``--device cuda``, and tears the group down at the end.
    ``--json -`` writes the summary to stdout (the text summary then goes to stderr).
    """
    import torch.distributed as dist

    from ..generate.runtime import cli_warnings, write_json

    try:
        device = _check_cli(args)
    except ValueError as exc:
        print(f"bldm-fast encode: error: {exc}", file=sys.stderr)
        return 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
            created = True
        if device == "cuda":
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        with cli_warnings("encode"):
            res = encode_folder(args.images, args.out, args.autoencoder, code_mode=args.code_mode,
                                samples_per_image=args.samples, batch_size=args.batch_size,
                                image_size=args.image_size, labels=args.labels, strict=args.strict, seed=args.seed,
                                backend=args.backend, device=device, chunk_rows=args.chunk_rows,
                                workers=args.workers, ema=not args.no_ema,
                                progress=not (args.no_progress or args.quiet))
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"bldm-fast encode: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if created:
            dist.destroy_process_group()
    if rank == 0:
        if not args.quiet:
            _print_summary(res, sys.stderr if args.json == "-" else sys.stdout)
        if args.json:
            write_json({k: v for k, v in res.items() if k != "meta"}, args.json)
    return 0
