"""``bldm-fast decode CODES --autoencoder PATH --out DIR``: packed codes to PNG images.

``CODES`` is ``sample``'s output folder (or its ``codes.npy``), any ``.npy`` of packed uint8
``(N, L, ceil(C/8))`` codes, or a dataset folder written by ``bldm-fast encode`` (deterministic
codes; ``bernoulli`` datasets: draw ``--draw``; ``probs`` datasets: the likeliest bits, byte >= 128).
``OUT`` receives ``images/<row>.png`` per decoded row, ``grid.png`` and ``decode.json``.

Images are decoded in batches of ``--batch-size`` rows counted from the first selected row, each
pixel ``floor(clamp(x, 0, 1) * 255 + 0.5)`` of the autoencoder's output; ``sample`` decodes the
same way, so decoding its ``codes.npy`` with the same ``--batch-size`` gives its PNGs byte for byte.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

__all__ = ["add_decode_arguments", "decode_codes", "read_codes", "run_decode", "write_images"]

IMAGES_DIR = "images"


# ---------------------------------------------------------------------------------------------
# shared with sample
# ---------------------------------------------------------------------------------------------
def image_name(index: int, count: int) -> str:
    """``images/<index>.png`` with at least 5 digits (enough for every index below ``count``)."""
    return os.path.join(IMAGES_DIR, f"{index:0{max(5, len(str(max(count - 1, 0))))}d}.png")


def decode_codes(ae, packed, latent_hw: tuple[int, int], *, divide: bool = False, batch_size: int = 64,
                 device="cpu", batches=None, progress: bool = False):
    """Decode packed codes into uint8 pixels.

    Args:
        ae: a ``BinaryAutoencoder``.
        packed: uint8 ``(N, L, ceil(C/8))`` (tensor or array), ``L = h * w``.
        latent_hw: ``(h, w)``.
        divide: divide the codes by ``C`` before the embedding, as the official sampler scripts
            do for autoencoders without ``norm_first``.
        batch_size: rows per decoder call; batch ``j`` holds rows ``j * batch_size ..``.
        batches: decode only these batch indices (None: all).
        progress: a tqdm bar.
    Returns:
        ``{batch index: uint8 tensor (n, in_channels, H, W)}``.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..ops import unpack_bits

    C = ae.codebook_size
    h, w = latent_hw
    n = len(packed)
    todo = range(math.ceil(n / batch_size)) if batches is None else batches
    out = {}
    dtype = next(ae.parameters()).dtype
    for j in tqdm(todo, desc="decode", unit="batch", disable=not progress, leave=False):
        rows = torch.from_numpy(np.array(packed[j * batch_size:(j + 1) * batch_size], dtype=np.uint8))
        bits = unpack_bits(rows.to(device), C, torch.float32).to(dtype)  # (b, L, C)
        z = bits.permute(0, 2, 1).reshape(len(rows), C, h, w)
        with torch.inference_mode():
            if divide:
                if ae.use_tanh:
                    z = (z - 0.5) * 2.0
                x = ae.generator(ae.quantize.embed_codes(z / float(C)))
            else:
                x = ae.decode(z)
        out[j] = x.float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu()
    return out


def write_images(folder: str, pixels, indices, count: int, *, nrow: int, padding: int, upscale: int,
                 progress: bool = False) -> None:
    """``images/<index>.png`` for each row of ``pixels`` (uint8 ``(N, C, H, W)``) and ``grid.png``."""
    from tqdm.auto import tqdm

    from .grid import make_grid, save_png, upscale as enlarge

    os.makedirs(os.path.join(folder, IMAGES_DIR), exist_ok=True)
    big = enlarge(pixels, upscale)
    for k, idx in enumerate(tqdm(indices, desc="write PNGs", unit="img", disable=not progress, leave=False)):
        save_png(big[k], os.path.join(folder, image_name(idx, count)))
    save_png(make_grid(big, nrow=nrow, padding=padding), os.path.join(folder, "grid.png"))


# ---------------------------------------------------------------------------------------------
# reading codes
# ---------------------------------------------------------------------------------------------
def _square(L: int, where: str) -> tuple[int, int]:
    side = math.isqrt(L)
    if side * side != L:
        raise ValueError(f"{where}: {L} tokens per row is not a square latent grid")
    return side, side


def read_codes(path, *, draw: int = 0) -> dict:
    """The packed codes of ``path`` and what describes them.

    Returns:
        ``{"codes": uint8 array (N, L, nb) (a memmap where possible), "latent_hw", "channels"
        (None when unknown), "kind" ("sample", "npy" or "dataset"), "sample_json" (dict or None),
        "path"}``.
    Raises:
        ValueError: not codes (wrong dtype or rank), an unfinished dataset, ``draw`` out of range.
        FileNotFoundError: ``path`` does not exist.
    """
    import numpy as np

    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"codes {path!r} do not exist")
    sample_json = None
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isfile(os.path.join(folder, "sample.json")) and (os.path.isdir(path) or
                                                                 os.path.basename(path) == "codes.npy"):
        with open(os.path.join(folder, "sample.json")) as f:
            sample_json = json.load(f)
        path = os.path.join(folder, "codes.npy")
    if os.path.isdir(path):
        from ..data.meta import check_files

        meta = check_files(path)
        arr = np.load(os.path.join(path, "latents.npy"), mmap_mode="r")
        if meta["code_mode"] == "bernoulli":
            K = arr.shape[1]
            if not 0 <= draw < K:
                raise ValueError(f"--draw {draw}: the dataset holds {K} draws per image (0..{K - 1})")
            arr = arr[:, draw]
        elif meta["code_mode"] == "probs":
            from ..ops import pack_bits

            arr = pack_bits(__import__("torch").from_numpy(np.asarray(arr) >= 128)).numpy()
        return {"codes": arr, "latent_hw": tuple(meta["latent_hw"]), "channels": int(meta["channels"]),
                "kind": "dataset", "code_mode": meta["code_mode"], "sample_json": None, "path": path}
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"codes {path!r} are not a .npy array ({exc})") from None
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise ValueError(f"codes {path!r} must be packed uint8 (N, L, ceil(C/8)), got {arr.dtype} {arr.shape}")
    hw = tuple(sample_json["model"]["latent_shape"]) if sample_json else _square(arr.shape[1], repr(path))
    channels = sample_json["model"]["channels"] if sample_json else None
    return {"codes": arr, "latent_hw": hw, "channels": channels, "kind": "sample" if sample_json else "npy",
            "sample_json": sample_json, "path": path}


def check_codes(codes, channels: int, where: str) -> None:
    """Raise ValueError when packed codes do not fit ``channels`` (width, padding bits)."""
    import numpy as np

    nb = (channels + 7) // 8
    if codes.shape[-1] != nb:
        raise ValueError(f"codes {where} have {codes.shape[-1]} bytes per token, but the autoencoder has {channels} "
                         f"code channels (ceil({channels}/8) = {nb} bytes): codes of another model")
    if channels % 8 and len(codes):
        pad = np.uint8((0xFF << (channels % 8)) & 0xFF)
        if np.any(np.asarray(codes[..., -1]) & pad):
            raise ValueError(f"codes {where} set padding bits above channel {channels}: codes of another model")


def parse_indices(spec: str | None, n: int) -> list[int]:
    """Row indices from ``"3"``, ``"0,5,7"``, ``"2:10"``, ``":8"`` or combinations (comma-separated)."""
    if spec is None:
        return list(range(n))
    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                lo, _, hi = part.partition(":")
                a, b = int(lo) if lo else 0, int(hi) if hi else n
                if not 0 <= a < b <= n:
                    raise ValueError
                out += range(a, b)
            else:
                i = int(part)
                if not 0 <= i < n:
                    raise ValueError
                out.append(i)
        except ValueError:
            raise ValueError(f"--indices {spec!r}: {part!r} is not a row or range of rows in 0..{n - 1}") from None
    if not out:
        raise ValueError(f"--indices {spec!r} selects no rows")
    return out


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_image_arguments(p: argparse.ArgumentParser) -> None:
    """Output options shared by ``sample`` and ``decode``."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created; must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--batch-size", type=int, default=64, help="rows per model call (default 64)")
    p.add_argument("--device", default="cpu", help="device of the models, e.g. cuda (default cpu)")
    p.add_argument("--nrow", type=int, default=8, help="images per row of grid.png (default 8)")
    p.add_argument("--padding", type=int, default=2, help="pixels between the images of grid.png (default 2)")
    p.add_argument("--upscale", type=int, default=1, help="nearest-neighbour enlargement of the PNGs (default 1)")
    p.add_argument("--no-ema", action="store_true", help="in official log folders, the raw weights, not the EMA copy")
    p.add_argument("--img-size", type=int, default=None, help="official autoencoder's --img_size when no log.txt says")
    tanh = p.add_mutually_exclusive_group()
    tanh.add_argument("--use-tanh", dest="use_tanh", action="store_const", const=True, default=None,
                      help="the official autoencoder was trained with --use_tanh (when no log.txt says)")
    tanh.add_argument("--no-use-tanh", dest="use_tanh", action="store_const", const=False,
                      help="it was not (the official default)")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON ('-': stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no summary")


def check_image_arguments(args) -> None:
    """Refuse bad shared options (ValueError naming the option)."""
    for name, low in (("batch_size", 1), ("nrow", 1), ("padding", 0), ("upscale", 1)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.img_size is not None and args.img_size < 1:
        raise ValueError(f"--img-size must be >= 1, got {args.img_size}")


def add_decode_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``bldm-fast decode`` (standard library only)."""
    p.add_argument("codes", help="sample's output folder or codes.npy, a packed .npy, or an encoded dataset folder")
    p.add_argument("--autoencoder", metavar="PATH", default=None,
                   help="official autoencoder file or log folder, or a bldm_fast bundle folder (default: the one "
                        "sample.json names, else the bundled digits model)")
    p.add_argument("--indices", default=None, help="rows to decode: e.g. 0,5,7 or 0:16 (default all)")
    p.add_argument("--draw", type=int, default=0, help="which draw of a bernoulli dataset (default 0)")
    add_image_arguments(p)


def _autoencoder_from_sample(sample_json: dict):
    from .loading import load_autoencoder

    ae_file = next((f for f in sample_json["model"]["files"] if f["role"] == "autoencoder"), None)
    if sample_json["model"]["source"] == "bundled":
        return load_autoencoder(None)
    return load_autoencoder(os.path.dirname(ae_file["path"]) if sample_json["model"]["source"] == "bundle"
                            else ae_file["path"], **sample_json["model"].get("autoencoder_settings", {}))


def run_decode(args: argparse.Namespace) -> int:
    """Run ``bldm-fast decode``; errors are raised as ValueError/OSError (printed as one line by the CLI)."""
    from .loading import load_autoencoder
    from .outputs import OutputDir
    from .runtime import check_device, check_json_path, cli_warnings, versions, write_json

    t0 = time.perf_counter()
    check_image_arguments(args)
    check_json_path(args.json)
    device = check_device(args.device)
    progress = not (args.no_progress or args.quiet)
    with cli_warnings("decode"):
        src = read_codes(args.codes, draw=args.draw)
        indices = parse_indices(args.indices, len(src["codes"]))
        out = OutputDir(args.out, args.overwrite)
        try:
            if args.autoencoder is None and src["sample_json"] is not None:
                models = _autoencoder_from_sample(src["sample_json"])
            else:
                models = load_autoencoder(args.autoencoder, ema=not args.no_ema, img_size=args.img_size,
                                          use_tanh=args.use_tanh)
            ae = models.autoencoder.to(device).eval()
            check_codes(src["codes"], ae.codebook_size, repr(src["path"]))
            if src["channels"] is not None and src["channels"] != ae.codebook_size:
                raise ValueError(f"codes {src['path']!r} have {src['channels']} channels, the autoencoder "
                                 f"{ae.codebook_size}")
            divide = bool(src["sample_json"] and src["sample_json"]["decode"]["divide_by_codebook_size"])
            import numpy as np
            import torch

            rows = np.asarray(src["codes"][indices]) if args.indices else src["codes"]
            parts = decode_codes(ae, rows, src["latent_hw"], divide=divide, batch_size=args.batch_size,
                                 device=device, progress=progress)
            pixels = torch.cat([parts[j] for j in sorted(parts)])
            write_images(out.tmp, pixels, indices, len(src["codes"]), nrow=args.nrow, padding=args.padding,
                         upscale=args.upscale, progress=progress)
            summary = {"command": "decode", "codes": src["path"], "kind": src["kind"], "rows": indices,
                       "count": len(indices), "latent_shape": list(src["latent_hw"]), "batch_size": args.batch_size,
                       "divide_by_codebook_size": divide, "upscale": args.upscale, "nrow": args.nrow,
                       "padding": args.padding, "autoencoder": {"source": models.source, "files": models.files,
                                                                "settings": models.settings},
                       "versions": versions()}
            write_json(summary, out.path("decode.json"))
            out.commit()
        except BaseException:
            out.abort()
            raise
    summary["seconds"] = time.perf_counter() - t0
    if not args.quiet:
        print(f"decoded {len(indices)} row(s) of {src['path']} into {out.out} ({IMAGES_DIR}/*.png, grid.png) in "
              f"{summary['seconds']:.2f} s", file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        write_json(summary, args.json)
    return 0
