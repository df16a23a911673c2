"""meta.json cross-checks: an edited ``channels`` (32 -> 31) or ``latent_hw`` (4x4 -> 2x8), which
leave every file shape unchanged, are caught by ``meta_fields_hash``; fields that disagree with each
other and set padding bits are caught without it; ``bldm-fast inspect`` and
``PackedLatentDataset(verify=True)`` both report them."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from bldm_fast.data import PackedLatentDataset, PackedLatentWriter, read_meta, verify
from bldm_fast.data.inspect import inspect_dataset
from bldm_fast.data.inspect import main as inspect_main
from bldm_fast.data.meta import META_HASH_KEY, meta_fields_hash, seal_meta


def _dataset(root, c=32, hw=(4, 4), mode="deterministic", n=12, seal=True) -> dict:
    """A dataset written by PackedLatentWriter with random codes. ``seal``: meta.json carries
    meta_fields_hash (sealed here with seal_meta if the writer did not); else it is removed, as in a
    dataset written before the hash existed. Returns the meta."""
    rng = np.random.default_rng(c)
    shape = (n, hw[0] * hw[1], c)
    lat = (rng.integers(0, 256, shape, dtype=np.uint8) if mode == "probs"
           else np.packbits(rng.integers(0, 2, shape, dtype=np.uint8), axis=-1, bitorder="little"))
    w = PackedLatentWriter(root, count=n, latent_hw=hw, channels=c, code_mode=mode, chunk_rows=8)
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e])
    meta = w.finalize()
    meta = seal_meta(meta) if seal else {k: v for k, v in meta.items() if k != META_HASH_KEY}
    _write_meta(root, meta)
    return meta


def _write_meta(root, meta: dict) -> None:
    (root / "meta.json").write_text(json.dumps(meta, indent=2))


def _inspect(root, *extra) -> subprocess.CompletedProcess:
    """``bldm-fast inspect ROOT`` as a user runs it."""
    return subprocess.run([sys.executable, "-m", "bldm_fast", "inspect", str(root), *extra], capture_output=True,
                          text=True, timeout=300)


def _assert_one_line_error(res: subprocess.CompletedProcess, text: str) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and res.stdout == "" and len(lines) == 1, res.stderr
    assert lines[0].startswith("bldm-fast inspect: error: meta.json: ") and text in lines[0], lines[0]


def _assert_rejected(root, pattern: str, capsys) -> None:
    """read_meta, verify, PackedLatentDataset (with and without verify=True) and inspect refuse ``root``."""
    for check in (read_meta, verify, lambda r: PackedLatentDataset(r, verify=True), PackedLatentDataset,
                  inspect_dataset):
        with pytest.raises(ValueError, match=pattern):
            check(root)
    assert inspect_main([str(root)]) == 1
    assert re.search(pattern, capsys.readouterr().err)


def test_the_writer_seals_meta_json(tmp_path):
    w = PackedLatentWriter(tmp_path, count=2, latent_hw=(2, 2), channels=8, code_mode="deterministic")
    w.write_chunk(0, np.zeros((2, 4, 1), np.uint8))
    meta = w.finalize()
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk[META_HASH_KEY] == meta_fields_hash(on_disk) == meta[META_HASH_KEY]


@pytest.mark.parametrize("field,value", [("channels", 31), ("latent_hw", [2, 8]), ("count", 11),
                                         ("encoder_checkpoint_sha256", "0" * 64)])
def test_an_edited_field_of_a_sealed_meta_is_detected(tmp_path, capsys, field, value):
    meta = _dataset(tmp_path)
    assert verify(tmp_path)["channels"] == 32 and inspect_main([str(tmp_path)]) == 0
    _write_meta(tmp_path, {**meta, field: value})
    _assert_rejected(tmp_path, "do not match meta_fields_hash" if field != "count" else "meta.json: ", capsys)


def test_the_command_line_reports_the_two_edits_in_one_line(tmp_path):
    """The issue's two edits, through `bldm-fast inspect` in a subprocess."""
    for name, edit in (("c", {"channels": 31}), ("hw", {"latent_hw": [2, 8]})):
        meta = _dataset(tmp_path / name)
        _write_meta(tmp_path / name, {**meta, **edit})
        _assert_one_line_error(_inspect(tmp_path / name), "do not match meta_fields_hash")


def test_hash_survives_json_round_trips_and_key_order():
    meta = {"b": [1, 2.5, None], "a": {"y": "é", "x": True}, "channels": 31}
    sealed = seal_meta(meta)
    again = json.loads(json.dumps(dict(reversed(list(sealed.items()))), indent=3))
    assert meta_fields_hash(again) == sealed[META_HASH_KEY] == meta_fields_hash(sealed)
    assert meta_fields_hash({**meta, "channels": 32}) != sealed[META_HASH_KEY]
    with pytest.raises(ValueError):
        meta_fields_hash({"x": float("nan")})


def test_padding_bits_catch_fewer_channels_without_the_hash(tmp_path, capsys):
    meta = _dataset(tmp_path, c=32, seal=False)
    assert verify(tmp_path) == meta
    assert inspect_main([str(tmp_path)]) == 0 and "no meta_fields_hash" in capsys.readouterr().out
    _write_meta(tmp_path, {**meta, "channels": 31})  # 4 bytes per token either way: the shapes still agree
    pattern = r"channels is 31, but image \d+ of latents.npy has bits set beyond channel 30 "
    with pytest.raises(ValueError, match=pattern):
        verify(tmp_path)
    with pytest.raises(ValueError, match="padding bits must be 0"):
        PackedLatentDataset(tmp_path, verify=True)
    _assert_one_line_error(_inspect(tmp_path), "beyond channel 30")
    assert PackedLatentDataset(tmp_path).meta["channels"] == 31  # headers and sizes only: what verify=True is for


def test_a_dataset_with_padding_passes_and_its_padding_is_checked(tmp_path):
    meta = _dataset(tmp_path, c=12, seal=False)  # 2 bytes per token, bits 12..15 padding
    verify(tmp_path)
    _write_meta(tmp_path, {**meta, "channels": 10})
    with pytest.raises(ValueError, match="beyond channel 9"):
        verify(tmp_path)


@pytest.mark.parametrize("edit,pattern", [
    ({"latent_hw": [2, 8], "tokens": 9}, r"tokens 9 \(latent_hw \[2, 8\] and channels 32 give 16\)"),
    ({"bytes_per_image": 65}, r"bytes_per_image 65 \(latent_hw \[4, 4\] and channels 32 give 64\)"),
    ({"latent_hw": [3, 3]}, "the files entry does not match"),
    ({"latent_hw": [4, 0]}, "latent_hw must be"),
    ({"channels": 31.0}, "must be ints"),
    ({"samples_per_image": 2}, "samples_per_image is 2 but code_mode 'deterministic'"),
    ({"code_mode": "bits"}, "code_mode 'bits'"),
])
def test_fields_that_disagree_are_rejected_without_the_hash(tmp_path, capsys, edit, pattern):
    meta = _dataset(tmp_path, seal=False)
    _write_meta(tmp_path, {**meta, **edit})
    _assert_rejected(tmp_path, pattern, capsys)


def test_probs_mode_channel_edit_changes_the_shape(tmp_path, capsys):
    meta = _dataset(tmp_path, c=5, mode="probs", seal=False)
    verify(tmp_path)
    _write_meta(tmp_path, {**meta, "channels": 4})
    _assert_rejected(tmp_path, "the files entry does not match", capsys)
