"""``bldm-fast inspect DIR``: summary of a good dataset, and a clear error naming a damaged file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bldm_fast.data import PackedLatentWriter
from bldm_fast.data.inspect import format_report, inspect_dataset, main


def _make(root, mode="deterministic", n=40, hw=(4, 4), c=64, k=1, labels=True, seed=0, p_one=0.5):
    rng = np.random.default_rng(seed)
    L = hw[0] * hw[1]
    if mode == "probs":
        lat = rng.integers(0, 256, (n, L, c), dtype=np.uint8)
        bits = lat
    else:
        shape = (n, k, L, c) if mode == "bernoulli" else (n, L, c)
        bits = (rng.random(shape) < p_one).astype(np.uint8)
        bits[..., 0] = 1  # channel 0 always on, channel 1 always off
        bits[..., 1] = 0
        lat = np.packbits(bits, axis=-1, bitorder="little")
    lab = rng.integers(0, 7, n) if labels else None
    w = PackedLatentWriter(root, count=n, latent_hw=hw, channels=c, code_mode=mode, samples_per_image=k,
                           with_labels=labels, chunk_rows=16, meta={"encoder_checkpoint_sha256": "c" * 64,
                                                                    "skipped": [["bad.jpg", "cannot decode"]]})
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e], None if lab is None else lab[s:e])
    w.finalize()
    return bits, lab


def test_report_of_a_good_dataset(tmp_path, capsys):
    bits, lab = _make(tmp_path, hw=(16, 16), p_one=0.3)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    ones = bits.mean()
    for text in ("count        40 images", "code mode    deterministic", "latent       16x16x64 (L=256 tokens",
                 "shape        latents.npy uint8 (40, 256, 8)", "bytes/image  2048 (2.0 KiB; float32: 64.0 KiB, 32x)",
                 "latents.npy 80.1 KiB sha256 ok", "labels.npy", f"bit balance  {ones:.4f} ones",
                 "min 0.0000 at 1, max 1.0000 at 0", f"labels       {len(set(lab.tolist()))} distinct in [0, 6]",
                 "encoder      sha256 " + "c" * 64, "skipped      1 source files"):
        assert text in out, f"{text!r} not in\n{out}"
    info = inspect_dataset(tmp_path)
    assert info["ones_fraction"] == pytest.approx(ones, abs=1e-12)
    assert np.allclose(info["channel_ones"], bits.mean(axis=(0, 1)))
    assert info["bytes_per_image"] == 2048 and info["float32_bytes_per_image"] == 65536


@pytest.mark.parametrize("mode,c,k", [("bernoulli", 13, 3), ("probs", 5, 1), ("deterministic", 12, 1)])
def test_bit_balance_of_every_mode(tmp_path, mode, c, k):
    bits, _ = _make(tmp_path, mode, c=c, k=k, labels=False, p_one=0.8)
    info = inspect_dataset(tmp_path)
    scale = 255.0 if mode == "probs" else 1.0  # probs: the mean probability
    per_channel = bits.reshape(-1, c).mean(axis=0) / scale
    assert np.allclose(info["channel_ones"], per_channel) and info["ones_fraction"] == pytest.approx(per_channel.mean())
    assert info["bytes_per_image"] == (k * 16 * -(-c // 8) if mode != "probs" else 16 * c)
    assert "labels       no" in format_report(info)


def test_json_output(tmp_path, capsys):
    _make(tmp_path)
    assert main([str(tmp_path), "--json", "--no-balance"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["count"] == 40 and got["shape"] == [40, 16, 8] and got["ones_fraction"] is None
    assert got["meta"]["files"]["latents.npy"]["bytes"] == 40 * 16 * 8 + 128


@pytest.mark.parametrize("name", ["latents.npy", "labels.npy"])
def test_flipped_byte_and_truncation_name_the_file(tmp_path, capsys, name):
    _make(tmp_path)
    path = tmp_path / name
    data = path.read_bytes()

    flipped = bytearray(data)
    flipped[-5] ^= 0x04
    path.write_bytes(bytes(flipped))
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bldm-fast inspect: error: {name}: sha256") and "altered" in err
    assert main([str(tmp_path), "--no-verify"]) == 0  # sizes only: a flipped byte passes
    capsys.readouterr()

    path.write_bytes(data[:-7])
    for extra in ([], ["--no-verify"]):
        assert main([str(tmp_path), *extra]) == 1
        err = capsys.readouterr().err
        assert f"error: {name}: {len(data) - 7} bytes, expected {len(data)}; the file is truncated" in err

    path.write_bytes(data)
    assert main([str(tmp_path)]) == 0


def test_missing_or_broken_meta_json(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "error: meta.json: missing" in capsys.readouterr().err
    _make(tmp_path)
    meta = tmp_path / "meta.json"
    meta.write_bytes(meta.read_bytes()[:50])
    assert main([str(tmp_path)]) == 1
    assert "error: meta.json: invalid JSON" in capsys.readouterr().err


def test_cli_subcommand(tmp_path, capsys):
    from bldm_fast import cli

    _make(tmp_path)
    assert cli.main(["inspect", str(tmp_path)]) == 0
    assert "bytes/image  128" in capsys.readouterr().out
    (tmp_path / "labels.npy").write_bytes(b"")
    assert cli.main(["inspect", str(tmp_path)]) == 1
    assert "labels.npy" in capsys.readouterr().err
