"""Image folder -> packed-latent dataset: bldm_fast.data.images / transforms / encode.

A few dozen tiny PNG/JPEG/WebP images are generated with PIL in a temporary folder and encoded
with a tiny BinaryAutoencoder; the dataset rows are compared with the codes computed directly
from the same images, decoded back, and the distributed run (2 CPU processes on gloo, spawned,
bounded by DEADLINE_S) is compared byte for byte with one process.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
from datetime import timedelta

import numpy as np
import pytest
import torch

from PIL import Image

import bldm_fast as bf
from bf_testutil import spawn_bounded
from bldm_fast.data import encode as enc
from bldm_fast.data.encode import add_encode_arguments, code_logits, encode_folder, run_encode
from bldm_fast.data.meta import read_meta
from bldm_fast.data.writer import PackedLatentWriter
from bldm_fast.data.images import list_image_files, scan_image_folder, source_digest  # noqa: E402
from bldm_fast.data.transforms import (center_crop, load_rgb, official_transform, resize_shorter,  # noqa: E402
                                       to_tensor)
from bldm_fast.models import BinaryAutoencoder  # noqa: E402

SIZE = 16          # image side fed to the autoencoder
C = 12             # code channels (not a multiple of 8: padding bits are exercised)
WORLD = 2
DEADLINE_S = 180


# ---------------------------------------------------------------------------------------------
# fixtures: images and a tiny autoencoder
# ---------------------------------------------------------------------------------------------
def _picture(rng, w, h, mode):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), (xx + yy) * 7 % 256], -1)
    arr = np.clip(base + rng.randint(-40, 40, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "P":
        return img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return img.convert(mode)


FORMATS = [("png", "PNG", ("RGB", "L", "RGBA", "P")), ("jpg", "JPEG", ("RGB", "L")), ("webp", "WEBP", ("RGB", "RGBA")),
           ("JPEG", "JPEG", ("RGB",))]


def make_image_folder(root, n=30, seed=0):
    """``n`` images in class folders cat/ and dog/ (some nested), PNG/JPEG/WebP, modes RGB/L/RGBA/P,
    sizes 12..40 px (portrait, landscape, square), plus a text file that is no image candidate."""
    rng = np.random.RandomState(seed)
    for i in range(n):
        ext, fmt, modes = FORMATS[i % len(FORMATS)]
        cls = "cat" if i % 3 else "dog"
        sub = os.path.join(cls, "nested") if i % 7 == 3 else cls
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        w, h = int(rng.randint(12, 41)), int(rng.randint(12, 41))
        if i % 5 == 0:
            w = h = SIZE
        img = _picture(rng, w, h, modes[i % len(modes)])
        img.save(os.path.join(root, sub, f"img_{(i * 37) % 101:03d}.{ext}"), fmt)
    with open(os.path.join(root, "cat", "notes.txt"), "w") as f:
        f.write("not an image candidate\n")
    return root


def make_corrupt_folder(root):
    """4 good images, a truncated PNG, a text file named .jpg, an empty .png, a BMP (unsupported)."""
    rng = np.random.RandomState(1)
    os.makedirs(root, exist_ok=True)
    for i in range(4):
        _picture(rng, 20 + i, 18, "RGB").save(os.path.join(root, f"good_{i}.png"), "PNG")
    buf = io.BytesIO()
    Image.fromarray(rng.randint(0, 256, (48, 48, 3)).astype(np.uint8)).save(buf, "PNG")
    with open(os.path.join(root, "truncated.png"), "wb") as f:
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
    with open(os.path.join(root, "text.jpg"), "w") as f:
        f.write("hello, I am not a JPEG\n")
    open(os.path.join(root, "empty.png"), "wb").close()
    Image.new("RGB", (8, 8)).save(os.path.join(root, "old.bmp"), "BMP")
    return root


def tiny_autoencoder(codebook_size=C, img_size=SIZE, seed=0):
    torch.manual_seed(seed)
    ae = BinaryAutoencoder(codebook_size, nf=32, emb_dim=32, ch_mult=(1, 1), res_blocks=1, img_size=img_size,
                           attn_resolutions=(img_size // 2,))
    with torch.no_grad():  # spread the code logits so that both bit values occur often
        ae.quantize.proj[0].weight.mul_(4.0)
    return ae.eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(str(tmp_path_factory.mktemp("images")))


@pytest.fixture(scope="module")
def ae():
    return tiny_autoencoder()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, ae):
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny_ae.th")
    torch.save(ae.state_dict(), path)
    return path


def _images(scan, size=SIZE):
    return torch.stack([official_transform(load_rgb(scan.abspath(i)), size) for i in range(len(scan))])


def _read(out):
    lat = np.load(os.path.join(out, "latents.npy"))
    lab = np.load(os.path.join(out, "labels.npy")) if os.path.exists(os.path.join(out, "labels.npy")) else None
    return lat, lab, read_meta(out)


def _encode(folder, out, ae, **kw):
    kw = {"code_mode": "deterministic", "batch_size": 5, "image_size": SIZE, "chunk_rows": 8, "progress": False,
          **kw}
    return encode_folder(folder, str(out), ae, **kw)


# ---------------------------------------------------------------------------------------------
# transforms
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w,h,size,want", [
    (40, 20, 16, (32, 16)),      # landscape
    (20, 40, 16, (16, 32)),      # portrait
    (33, 17, 16, (31, 16)),      # long side truncated: int(16 * 33 / 17) = 31
    (17, 33, 16, (16, 31)),
    (12, 12, 16, (16, 16)),      # upsampled
    (16, 24, 16, (16, 24)),      # shorter side already 16: unchanged
])
def test_resize_shorter_sizes(w, h, size, want):
    img = Image.new("RGB", (w, h))
    out = resize_shorter(img, size)
    assert out.size == want
    if (w, h) == want:
        assert out is img


def test_center_crop_offsets_round_half_even():
    arr = np.arange(31 * 20 * 3, dtype=np.int64).reshape(20, 31, 3) % 251
    img = Image.fromarray(arr.astype(np.uint8))
    out = np.asarray(center_crop(img, 16))
    # torchvision: left = int(round((31 - 16) / 2)) = round(7.5) = 8 (half to even), top = round(2.0) = 2
    assert np.array_equal(out, arr[2:18, 8:24].astype(np.uint8))
    small = np.asarray(center_crop(Image.fromarray(np.full((4, 6, 3), 9, np.uint8)), 8))
    assert small.shape == (8, 8, 3) and small[2:6, 1:7].min() == 9 and small.sum() == 9 * 4 * 6 * 3


def test_official_transform_matches_pil_pipeline():
    rng = np.random.RandomState(3)
    img = _picture(rng, 37, 23, "RGBA")
    got = official_transform(img, 16)
    rgb = img.convert("RGB").resize((int(16 * 37 / 23), 16), Image.Resampling.BILINEAR)
    left = int(round((rgb.size[0] - 16) / 2))
    want = torch.from_numpy(np.asarray(rgb)[:, left:left + 16].copy()).permute(2, 0, 1).float().div(255)
    assert got.dtype == torch.float32 and got.shape == (3, 16, 16)
    assert torch.equal(got, want)
    assert torch.equal(to_tensor(Image.new("L", (2, 3), 255)), torch.ones(1, 3, 2))
    with pytest.raises(ValueError, match="size"):
        official_transform(img, 0)


# ---------------------------------------------------------------------------------------------
# scanning
# ---------------------------------------------------------------------------------------------
def test_scan_order_labels_and_hashes(folder):
    scan = scan_image_folder(folder, labels=True)
    assert scan.classes == ["cat", "dog"] and len(scan) == 30 and not scan.skipped
    assert all(not f.path.endswith(".txt") for f in scan.files)
    # ImageFolder order: class by class, sorted(os.walk(class dir)), sorted file names
    want = []
    for label, cls in enumerate(scan.classes):
        for dirpath, _, names in sorted(os.walk(os.path.join(folder, cls))):
            rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
            want += [(f"{rel}/{n}", label) for n in sorted(names) if not n.endswith(".txt")]
    assert [(f.path, f.label) for f in scan.files] == want
    for i, f in enumerate(scan.files):
        with open(scan.abspath(i), "rb") as fh:
            assert f.sha256 == hashlib.sha256(fh.read()).hexdigest()
    assert scan.digest == source_digest(scan.files)
    assert scan.meta()["files"][0] == [scan.files[0].path, scan.files[0].sha256, scan.files[0].label]

    flat = scan_image_folder(folder)
    assert flat.classes is None and sorted(f.path for f in flat.files) == sorted(f.path for f in scan.files)
    assert all(f.label is None for f in flat.files) and flat.digest != scan.digest
    assert scan_image_folder(folder, workers=1).files == flat.files  # thread count does not matter


def test_scan_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError):
        scan_image_folder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    with pytest.raises(ValueError, match="class subfolders"):
        scan_image_folder(flat, labels=True)
    (flat / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(flat / "sub" / "b.png")
    cands, classes, outside = list_image_files(flat, labels=True)
    assert cands == [("sub/b.png", 0)] and classes == ["sub"] and outside[0][0] == "a.png"


def test_corrupt_images_skipped_and_listed(tmp_path, ae):
    root = make_corrupt_folder(str(tmp_path / "corrupt"))
    scan = scan_image_folder(root)
    assert [f.path for f in scan.files] == [f"good_{i}.png" for i in range(4)]
    reasons = dict(scan.skipped)
    assert set(reasons) == {"truncated.png", "text.jpg", "empty.png", "old.bmp"}
    assert "truncated" in reasons["truncated.png"] or "cannot decode" in reasons["truncated.png"]
    assert "not a PNG, JPEG or WebP" in reasons["text.jpg"]
    assert reasons["empty.png"] == "empty file" and "unsupported" in reasons["old.bmp"]
    with pytest.raises(ValueError, match="4 unusable") as exc:
        scan_image_folder(root, strict=True)
    assert "text.jpg" in str(exc.value) and "truncated.png" in str(exc.value)

    res = _encode(root, tmp_path / "ds", ae)
    assert res["count"] == 4
    assert sorted(p for p, _ in res["skipped"]) == ["empty.png", "old.bmp", "text.jpg", "truncated.png"]
    lat, _, meta = _read(tmp_path / "ds")
    assert lat.shape[0] == 4 and meta["source"]["skipped"] == [list(s) for s in scan.skipped]
    with pytest.raises(ValueError, match="unusable"):
        _encode(root, tmp_path / "ds_strict", ae, strict=True)
    assert not os.path.exists(tmp_path / "ds_strict" / "latents.npy")
    with pytest.raises(ValueError, match="unusable"):
        _encode(scan, tmp_path / "ds_strict2", ae, strict=True)  # a scan with skipped files, strict


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------
def test_code_logits_are_the_quantizer_input(folder, ae):
    x = _images(scan_image_folder(folder))[:6]
    with torch.no_grad():
        logits = code_logits(ae, x)
        probs = ae.encode_probs(x)
    assert logits.shape == (6, (SIZE // 2) ** 2, C)
    tokens = probs.reshape(6, C, -1).permute(0, 2, 1)
    torch.testing.assert_close(torch.sigmoid(logits), tokens, rtol=0, atol=1e-6)
    assert torch.equal((logits > 0).float(), ae.encode_tokens(x, deterministic=True))


def test_round_trip_deterministic(tmp_path, folder, ae, ckpt):
    res = _encode(folder, tmp_path / "ds", ae, labels=True)
    lat, lab, meta = _read(tmp_path / "ds")
    scan = scan_image_folder(folder, labels=True)
    N, L = len(scan), (SIZE // 2) ** 2
    assert res["count"] == res["encoded"] == N and res["latent_hw"] == (SIZE // 2, SIZE // 2) and res["channels"] == C
    assert lat.shape == (N, L, math.ceil(C / 8)) and lat.dtype == np.uint8
    assert lab.tolist() == [f.label for f in scan.files]

    # the codes computed directly with the model's own encode path
    x = _images(scan)
    direct = ae.encode_tokens(x, deterministic=True)                      # float 0/1 (N, L, C)
    assert np.array_equal(lat, bf.pack_bits(direct).numpy())
    # decoding the dataset equals decoding the direct codes
    with torch.no_grad():
        from_ds = ae.decode_tokens(bf.unpack_bits(torch.from_numpy(lat), C))
        from_direct = ae.decode_tokens(direct)
    assert from_ds.shape == (N, 3, SIZE, SIZE) and torch.equal(from_ds, from_direct)

    # the dataset reader sees the same rows
    from bldm_fast.data import PackedLatentDataset

    item, label = PackedLatentDataset(tmp_path / "ds", verify=True)[3]
    assert torch.equal(item, torch.from_numpy(lat[3])) and label == lab[3]

    # meta: format fields, source list, per-file sha256, encoder identity; no timings
    assert meta["count"] == N and meta["code_mode"] == "deterministic" and meta["bit_order"] == "little"
    assert meta["source_list_digest"] == scan.digest
    assert meta["source"]["files"] == [[f.path, f.sha256, f.label] for f in scan.files]
    assert meta["source"]["classes"] == ["cat", "dog"]
    assert meta["encoder_checkpoint_sha256"] is None and len(meta["encoder_state_dict_sha256"]) == 64
    assert set(res["timings"]) >= {"scan", "decode", "autoencoder", "binarize", "write", "total"}

    # the same from a checkpoint file (bf.load_official), with its sha256 recorded
    _encode(folder, tmp_path / "ds_ckpt", ckpt, labels=True, batch_size=32, chunk_rows=256)
    lat2, _, meta2 = _read(tmp_path / "ds_ckpt")
    assert np.array_equal(lat2, lat)
    with open(ckpt, "rb") as f:
        assert meta2["encoder_checkpoint_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert meta2["encoder_state_dict_sha256"] == meta["encoder_state_dict_sha256"]

    # a finished dataset: nothing to do; another configuration: refused
    again = _encode(folder, tmp_path / "ds", ae, labels=True)
    assert again["encoded"] == 0 and again["meta"]["files"] == meta["files"]
    with pytest.raises(ValueError, match="different configuration"):
        _encode(folder, tmp_path / "ds", ae, labels=True, code_mode="probs")


def _bernoulli_expected(logits, seed, K, first_row):
    """Per row n: bf.binarize of the K-fold logits at counter n * ceil(K*L*C/4), and the float64
    oracle [u < sigmoid(l)] with the guard band |u - p| < 1e-6 excluded."""
    n, L, c = logits.shape
    per = K * L * c
    rows, masks = [], []
    for i in range(n):
        off = (first_row + i) * math.ceil(per / 4)
        u = bf.philox_uniform(seed, off, per).view(K, L, c)
        p = torch.sigmoid(logits[i].double()).expand(K, L, c)
        rows.append(u.double() < p)
        masks.append((u.double() - p).abs() > 1e-6)
    return torch.stack(rows), torch.stack(masks)


@pytest.mark.parametrize("codebook,img,K", [(C, SIZE, 3), (13, 18, 1), (13, 18, 2)],
                         ids=["C12-K3", "C13-L81-K1-odd-stream", "C13-L81-K2"])
def test_bernoulli_codes_follow_the_stream(tmp_path, folder, codebook, img, K):
    model = tiny_autoencoder(codebook, img)
    seed = 2**40 + 7
    a = _encode(folder, tmp_path / "a", model, code_mode="bernoulli", samples_per_image=K, seed=seed,
                image_size=img)
    b = _encode(folder, tmp_path / "b", model, code_mode="bernoulli", samples_per_image=K, seed=seed,
                image_size=img, batch_size=1, chunk_rows=5)
    lat, _, meta = _read(tmp_path / "a")
    lat_b, _, _ = _read(tmp_path / "b")
    L = (img // 2) ** 2
    assert a["count"] == b["count"] == 30 and lat.shape == (30, K, L, math.ceil(codebook / 8))
    assert np.array_equal(lat, lat_b)  # batch size and chunking do not change the codes
    assert meta["samples_per_image"] == K and meta["code_stream"]["seed"] == seed
    scan = scan_image_folder(folder)
    with torch.no_grad():
        logits = code_logits(model, _images(scan, img))
    bits, keep = _bernoulli_expected(logits, seed, K, 0)
    got = bf.unpack_bits(torch.from_numpy(lat), codebook, torch.bool)
    assert torch.equal(got[keep], bits[keep])
    assert keep.float().mean() > 0.999
    assert 0.2 < got.float().mean() < 0.8
    # another seed, other codes
    c = _encode(folder, tmp_path / "c", model, code_mode="bernoulli", samples_per_image=K, seed=seed + 1,
                image_size=img)
    assert c["count"] == 30 and not np.array_equal(_read(tmp_path / "c")[0], lat)


def test_probs_mode(tmp_path, folder, ae):
    res = _encode(folder, tmp_path / "p", ae, code_mode="probs")
    lat, _, meta = _read(tmp_path / "p")
    assert res["count"] == 30 and lat.shape == (30, (SIZE // 2) ** 2, C) and meta["code_mode"] == "probs"
    with torch.no_grad():
        logits = code_logits(ae, _images(scan_image_folder(folder)))
    assert np.array_equal(lat, bf.quantize_probs(logits).numpy())
    want = torch.sigmoid(logits.double()) * 255
    assert (torch.from_numpy(lat).double() - want).abs().max() <= 0.5 + 1e-3
    # the deterministic codes are the probabilities' threshold (away from p = 1/2)
    _encode(folder, tmp_path / "d", ae)
    det = bf.unpack_bits(torch.from_numpy(_read(tmp_path / "d")[0]), C, torch.bool)
    away = (lat != 127) & (lat != 128)
    assert torch.equal(det[torch.from_numpy(away)], torch.from_numpy(lat >= 128)[torch.from_numpy(away)])


def test_bad_arguments(tmp_path, folder, ae):
    with pytest.raises(ValueError, match="code_mode"):
        _encode(folder, tmp_path / "x", ae, code_mode="binary")
    with pytest.raises(ValueError, match="samples_per_image"):
        _encode(folder, tmp_path / "x", ae, samples_per_image=2)
    with pytest.raises(ValueError, match="multiple"):
        _encode(folder, tmp_path / "x", ae, image_size=15)
    with pytest.raises(ValueError, match="batch_size"):
        _encode(folder, tmp_path / "x", ae, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        _encode(folder, tmp_path / "x", ae, seed=-1)
    with pytest.raises(TypeError, match="autoencoder"):
        _encode(folder, tmp_path / "x", 42)
    with pytest.raises(RuntimeError, match="process group"):
        _encode(folder, tmp_path / "x", ae, distributed=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no usable image"):
        _encode(empty, tmp_path / "x", ae)


def test_resume_encodes_pending_chunks_only(tmp_path, folder, ae, monkeypatch):
    ref = _encode(folder, tmp_path / "ref", ae, code_mode="bernoulli", samples_per_image=2, seed=5)
    real = enc._load_row

    def failing(scan, i, size, channels):
        if i >= 13:
            raise RuntimeError("simulated crash")
        return real(scan, i, size, channels)

    monkeypatch.setattr(enc, "_load_row", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _encode(folder, tmp_path / "ds", ae, code_mode="bernoulli", samples_per_image=2, seed=5)
    assert not os.path.exists(tmp_path / "ds" / "meta.json")  # unfinished: no meta.json
    monkeypatch.setattr(enc, "_load_row", real)
    res = _encode(folder, tmp_path / "ds", ae, code_mode="bernoulli", samples_per_image=2, seed=5)
    assert res["encoded"] == 30 - 8  # chunk 0 (rows 0..7) was committed before the crash
    assert np.array_equal(_read(tmp_path / "ds")[0], _read(tmp_path / "ref")[0])
    assert res["meta"]["files"] == ref["meta"]["files"]
    with pytest.raises(ValueError, match="different configuration"):  # another seed: other bytes
        _encode(folder, tmp_path / "ds", ae, code_mode="bernoulli", samples_per_image=2, seed=6)

    # a committed chunk is not encoded again: prove it with a chunk committed by hand
    meta_keys = {k: v for k, v in ref["meta"].items() if k.endswith(("sha256", "digest"))}
    w = PackedLatentWriter(tmp_path / "manual", count=30, latent_hw=(8, 8), channels=C, code_mode="bernoulli",
                           samples_per_image=2, meta=meta_keys, chunk_rows=8)
    w.write_chunk(1, np.zeros((8, 2, 64, 2), np.uint8))
    w.close()
    res = _encode(folder, tmp_path / "manual", ae, code_mode="bernoulli", samples_per_image=2, seed=5)
    got, want = _read(tmp_path / "manual")[0], _read(tmp_path / "ref")[0]
    assert res["encoded"] == 22 and not got[8:16].any()
    assert np.array_equal(got[:8], want[:8]) and np.array_equal(got[16:], want[16:])


# ---------------------------------------------------------------------------------------------
# distributed: 2 CPU processes on gloo equal one process
# ---------------------------------------------------------------------------------------------
def _worker(rank: int, world: int, init_method: str, folder: str, ckpt: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        res = {}
        for name, kw in {"det": dict(labels=True), "bern": dict(code_mode="bernoulli", samples_per_image=2, seed=9,
                                                                chunk_rows=4, batch_size=3)}.items():
            res[name] = _encode(folder, os.path.join(out_dir, name), ckpt, **kw)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({k: {kk: v[kk] for kk in ("count", "encoded", "world_size", "meta", "rank_timings")}
                       for k, v in res.items()}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_equals_single_process(tmp_path, folder, ckpt):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available")
    out = tmp_path / "dist"
    out.mkdir()
    spawn_bounded(_worker, (WORLD, f"file://{tmp_path / 'rendezvous'}", folder, ckpt, str(out)), WORLD, DEADLINE_S,
                  "distributed encoding")
    ranks = [json.load(open(out / f"rank{r}.json")) for r in range(WORLD)]
    assert ranks[0] == ranks[1]  # every rank returns the same summary
    for name, kw in {"det": dict(labels=True), "bern": dict(code_mode="bernoulli", samples_per_image=2, seed=9,
                                                            chunk_rows=4, batch_size=3)}.items():
        single = _encode(folder, tmp_path / "single" / name, ckpt, **kw)
        assert ranks[0][name]["world_size"] == 2 and ranks[0][name]["encoded"] == single["count"] == 30
        assert all(r["rows"] > 0 for r in ranks[0][name]["rank_timings"])  # both ranks did a share
        lat_d, lab_d, meta_d = _read(out / name)
        lat_s, lab_s, meta_s = _read(tmp_path / "single" / name)
        assert np.array_equal(lat_d, lat_s)
        assert (lab_d is None and lab_s is None) or np.array_equal(lab_d, lab_s)
        assert meta_d["files"] == meta_s["files"]  # byte-identical files (sha256)
        assert not [n for n in os.listdir(out / name) if n.startswith(".")]  # writer state cleaned up


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _parse(argv):
    p = argparse.ArgumentParser()
    add_encode_arguments(p)
    return p.parse_args(argv)


def test_cli(tmp_path, folder, ckpt, capsys):
    out = tmp_path / "cli"
    summary = tmp_path / "summary.json"
    rc = run_encode(_parse([folder, str(out), "--autoencoder", ckpt, "--image-size", str(SIZE), "--batch-size", "4",
                            "--code-mode", "bernoulli", "--samples", "2", "--seed", "3", "--labels", "--no-progress",
                            "--json", str(summary)]))
    text = capsys.readouterr().out
    assert rc == 0 and "30 images" in text and "time split" in text and "autoencoder" in text
    meta = read_meta(out)
    assert meta["code_mode"] == "bernoulli" and meta["samples_per_image"] == 2 and meta["with_labels"]
    assert json.load(open(summary))["count"] == 30

    rc = run_encode(_parse([str(tmp_path / "nope"), str(tmp_path / "o2"), "--autoencoder", ckpt, "--no-progress"]))
    assert rc == 1 and "error" in capsys.readouterr().err
    rc = run_encode(_parse([folder, str(tmp_path / "o3"), "--autoencoder", ckpt, "--image-size", "15",
                            "--no-progress"]))
    assert rc == 1 and "multiple" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse([folder, str(out), "--autoencoder", ckpt, "--code-mode", "nope"])
