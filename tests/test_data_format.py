"""The packed-latent dataset format (DESIGN.md section 7): PackedLatentWriter, meta.json, verify.

Oracle for packing: numpy.packbits(..., bitorder="little"). The crash test SIGKILLs a real writer
subprocess at seeded random points; whatever the timing, every committed chunk must hold its bytes,
meta.json must not exist before the end, and the finished dataset must equal an uninterrupted run
byte for byte (so the assertions hold for every interleaving and the test cannot flake).
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import time

import numpy as np
import pytest

import bldm_fast.data.writer as writer_module
from bldm_fast.data import CODE_MODES, FORMAT_VERSION, PackedLatentWriter, latents_shape, read_meta, verify
from bldm_fast.data.commits import _record
from bldm_fast.data.layout import COMMITS_DIR, STATE_FILE
from bldm_fast.data.npyfile import read_npy_header

HIDDEN = {STATE_FILE, COMMITS_DIR}


def _codes(mode: str, n: int, hw=(4, 4), c: int = 64, k: int = 1, seed: int = 0) -> np.ndarray:
    """Random latents of ``mode`` for ``n`` images (packed with numpy.packbits for packed modes)."""
    rng = np.random.default_rng(seed)
    L = hw[0] * hw[1]
    if mode == "probs":
        return rng.integers(0, 256, (n, L, c), dtype=np.uint8)
    shape = (n, k, L, c) if mode == "bernoulli" else (n, L, c)
    return np.packbits(rng.integers(0, 2, shape, dtype=np.uint8), axis=-1, bitorder="little")


def _write_all(w: PackedLatentWriter, lat: np.ndarray, labels=None, order=None) -> dict:
    chunks = w.pending_chunks()
    for i in order(chunks) if order else chunks:
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e], None if labels is None else labels[s:e])
    return w.finalize()


CASES = [  # (mode, C, K)
    ("deterministic", 64, 1),
    ("deterministic", 12, 1),  # padding bits in the last byte
    ("bernoulli", 64, 3),
    ("bernoulli", 5, 2),
    ("probs", 64, 1),
    ("probs", 3, 1),
]


@pytest.mark.parametrize("with_labels", [False, True], ids=["nolabels", "labels"])
@pytest.mark.parametrize("mode,c,k", CASES, ids=[f"{m}-C{c}-K{k}" for m, c, k in CASES])
def test_round_trip(tmp_path, mode, c, k, with_labels):
    n, hw = 37, (3, 5)
    lat = _codes(mode, n, hw, c, k, seed=c + k)
    labels = np.random.default_rng(1).integers(-1, 1000, n) if with_labels else None
    w = PackedLatentWriter(tmp_path / "ds", count=n, latent_hw=hw, channels=c, code_mode=mode, samples_per_image=k,
                           with_labels=with_labels, chunk_rows=8, meta={"source_list_digest": "abc", "note": [1, 2]})
    assert w.shape == latents_shape(n, hw, c, mode, k) == lat.shape
    assert w.pending() == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 37)]
    meta = _write_all(w, lat, labels, order=lambda ch: ch[::-1])  # any order
    assert sorted(os.listdir(tmp_path / "ds")) == sorted(["latents.npy", "meta.json"] + ["labels.npy"] * with_labels)

    got = np.load(tmp_path / "ds" / "latents.npy", mmap_mode="r")
    assert got.dtype == np.uint8 and got.shape == lat.shape and np.array_equal(got, lat)
    if with_labels:
        gl = np.load(tmp_path / "ds" / "labels.npy")
        assert gl.dtype == np.int64 and np.array_equal(gl, labels)

    assert meta == read_meta(tmp_path / "ds") == verify(tmp_path / "ds")
    assert meta["format_version"] == FORMAT_VERSION and meta["bit_order"] == "little"
    assert (meta["count"], meta["latent_hw"], meta["channels"], meta["code_mode"]) == (n, list(hw), c, mode)
    assert meta["samples_per_image"] == k and meta["with_labels"] == with_labels
    assert meta["bytes_per_image"] == int(np.prod(lat.shape[1:]))
    assert meta["source_list_digest"] == "abc" and meta["note"] == [1, 2]
    assert meta["encoder_checkpoint_sha256"] is None  # always present
    import hashlib

    for name, entry in meta["files"].items():
        data = (tmp_path / "ds" / name).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_npy_files_are_plain_open_memmap_files(tmp_path):
    """latents.npy is exactly what numpy.lib.format.open_memmap writes (O(1) random access)."""
    lat = _codes("deterministic", 10)
    w = PackedLatentWriter(tmp_path / "a", count=10, latent_hw=(4, 4), channels=64, code_mode="deterministic")
    _write_all(w, lat)
    ref = np.lib.format.open_memmap(tmp_path / "ref.npy", mode="w+", dtype=np.uint8, shape=lat.shape)
    ref[:] = lat
    ref.flush()
    del ref
    assert (tmp_path / "a" / "latents.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_meta_json_absent_until_complete_and_finalize_lists_missing(tmp_path):
    lat = _codes("deterministic", 20)
    w = PackedLatentWriter(tmp_path, count=20, latent_hw=(4, 4), channels=64, code_mode="deterministic", chunk_rows=3)
    assert w.num_chunks == 7
    for i in (0, 1, 5):
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e])
        assert not (tmp_path / "meta.json").exists()
    with pytest.raises(ValueError, match=r"4 of 7 chunks not committed: chunks 2-4, 6 \(rows \[6, 9\)"):
        w.finalize()
    assert not (tmp_path / "meta.json").exists()
    with pytest.raises(ValueError, match="meta.json: missing .*unfinished"):
        read_meta(tmp_path)
    assert w.pending() == [(6, 9), (9, 12), (12, 15), (18, 20)]
    _write_all(w, lat)
    assert (tmp_path / "meta.json").exists() and not HIDDEN & set(os.listdir(tmp_path))


def test_resume_in_process(tmp_path):
    lat = _codes("bernoulli", 30, k=2)
    labels = np.arange(30) * 7
    kw = dict(count=30, latent_hw=(4, 4), channels=64, code_mode="bernoulli", samples_per_image=2, with_labels=True,
              chunk_rows=4, meta={"encoder_checkpoint_sha256": "e" * 64})
    with PackedLatentWriter(tmp_path, **kw) as w:
        for i in (0, 2, 7):
            s, e = w.chunk_range(i)
            w.write_chunk(i, lat[s:e], labels[s:e])
    w2 = PackedLatentWriter(tmp_path, **{**kw, "meta": {**kw["meta"], "skipped": [["x.png", "corrupt"]]}})
    assert w2.pending_chunks() == [1, 3, 4, 5, 6] and w2.committed == 3
    with pytest.raises(ValueError, match="already committed"):
        w2.write_chunk(2, lat[8:12], labels[8:12])
    meta = _write_all(w2, lat, labels)
    assert meta["skipped"] == [["x.png", "corrupt"]]  # non-identity keys: the finalizing writer's
    assert np.array_equal(np.load(tmp_path / "latents.npy"), lat)
    assert np.array_equal(np.load(tmp_path / "labels.npy"), labels)
    # reopening a finished dataset with the same configuration: nothing pending, same meta
    w3 = PackedLatentWriter(tmp_path, **kw)
    assert w3.finalized and w3.pending() == [] and w3.finalize() == meta
    with pytest.raises(ValueError, match="already committed.*finalized"):
        w3.write_chunk(0, lat[:4], labels[:4])


@pytest.mark.parametrize("finished", [False, True], ids=["unfinished", "finished"])
def test_reopen_with_other_configuration_names_the_differences(tmp_path, finished):
    kw = dict(count=8, latent_hw=(4, 4), channels=64, code_mode="deterministic", chunk_rows=4,
              meta={"encoder_checkpoint_sha256": "a" * 64, "source_list_digest": "s1"})
    w = PackedLatentWriter(tmp_path, **kw)
    w.write_chunk(0, _codes("deterministic", 4))
    if finished:
        w.write_chunk(1, _codes("deterministic", 4))
        w.finalize()
    w.close()
    changes = [
        (dict(count=9), r"count 9 != 8"),
        (dict(latent_hw=(2, 8)), r"latent_hw \[2, 8\] != \[4, 4\]"),
        (dict(channels=32), r"channels 32 != 64"),
        (dict(code_mode="probs"), r"code_mode 'probs' != 'deterministic'"),
        (dict(code_mode="bernoulli", samples_per_image=2), r"code_mode .*samples_per_image 2 != 1"),
        (dict(with_labels=True), r"with_labels True != False"),
        (dict(meta={"encoder_checkpoint_sha256": "b" * 64, "source_list_digest": "s1"}),
         r"meta\['encoder_checkpoint_sha256'\] differs"),
        (dict(meta={"encoder_checkpoint_sha256": "a" * 64}), r"meta\['source_list_digest'\] missing now"),
    ]
    if not finished:
        changes.append((dict(chunk_rows=2), r"chunk_rows 2 != 4"))
    for change, pattern in changes:
        with pytest.raises(ValueError, match=pattern):
            PackedLatentWriter(tmp_path, **{**kw, **change})
    # the same configuration still opens
    assert PackedLatentWriter(tmp_path, **kw).pending_chunks() == ([] if finished else [1])


def test_write_chunk_errors(tmp_path):
    w = PackedLatentWriter(tmp_path / "a", count=10, latent_hw=(2, 2), channels=12, code_mode="deterministic",
                           chunk_rows=4, with_labels=True)
    good = _codes("deterministic", 4, (2, 2), 12)
    lab = np.arange(4)
    with pytest.raises(ValueError, match=r"chunk index must be an int in 0..2"):
        w.write_chunk(3, good, lab)
    with pytest.raises(ValueError, match=r"chunk index"):
        w.write_chunk(-1, good, lab)
    with pytest.raises(TypeError, match="latents must be uint8"):
        w.write_chunk(0, good.astype(np.float32), lab)
    with pytest.raises(ValueError, match=r"must have shape \(4, 4, 2\)"):
        w.write_chunk(0, good[:3], lab)
    with pytest.raises(ValueError, match=r"must have shape \(2, 4, 2\)"):
        w.write_chunk(2, good, lab)  # the last chunk is short
    bad = good.copy()
    bad[0, 0, 1] |= 0x10  # channel 12 does not exist
    with pytest.raises(ValueError, match="padding bits"):
        w.write_chunk(0, bad, lab)
    with pytest.raises(ValueError, match="labels are required"):
        w.write_chunk(0, good)
    with pytest.raises(TypeError, match="labels must be an integer array"):
        w.write_chunk(0, good, lab.astype(np.float64))
    with pytest.raises(ValueError, match=r"labels for chunk 0 must have shape \(4,\)"):
        w.write_chunk(0, good, lab[:3])
    assert w.committed == 0
    w.write_chunk(0, good, lab.astype(np.int16))
    import torch

    w.write_chunk(1, torch.from_numpy(good), torch.arange(4))  # CPU tensors are accepted too
    assert w.pending_chunks() == [2]
    w2 = PackedLatentWriter(tmp_path / "b", count=4, latent_hw=(2, 2), channels=12, code_mode="deterministic")
    with pytest.raises(ValueError, match="with_labels=False"):
        w2.write_chunk(0, good, lab)
    w2.close()
    with pytest.raises(ValueError, match="closed"):
        w2.write_chunk(0, good)


def test_constructor_errors(tmp_path):
    kw = dict(count=4, latent_hw=(2, 2), channels=8, code_mode="deterministic")
    for change, exc, pattern in [
        (dict(count=0), ValueError, "count must be >= 1"),
        (dict(count=2.0), TypeError, "count must be an int"),
        (dict(channels=0), ValueError, "channels must be >= 1"),
        (dict(latent_hw=4), ValueError, "latent_hw must be a pair"),
        (dict(code_mode="float"), ValueError, "code_mode must be one of"),
        (dict(samples_per_image=2), ValueError, "samples_per_image must be 1"),
        (dict(chunk_rows=0), ValueError, "chunk_rows must be >= 1"),
        (dict(meta=[1]), TypeError, "meta must be a dict"),
        (dict(meta={"count": 3}), ValueError, r"reserved|sets itself: \['count'\]"),
        (dict(meta={"x": object()}), ValueError, "JSON-serialisable"),
        (dict(meta={"x": float("nan")}), ValueError, "JSON-serialisable"),
    ]:
        with pytest.raises(exc, match=pattern):
            PackedLatentWriter(tmp_path / "x", **{**kw, **change})
    assert CODE_MODES == ("deterministic", "bernoulli", "probs")


def test_refuses_foreign_files(tmp_path):
    np.save(tmp_path / "latents.npy", np.zeros((4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="holds latents.npy but no .writer.json or meta.json.*not overwriting"):
        PackedLatentWriter(tmp_path, count=4, latent_hw=(2, 2), channels=8, code_mode="deterministic")
    assert np.load(tmp_path / "latents.npy").shape == (4, 4, 1)


def test_torn_and_garbled_commit_markers_are_ignored(tmp_path):
    lat = _codes("deterministic", 16, (2, 2), 8)
    kw = dict(count=16, latent_hw=(2, 2), channels=8, code_mode="deterministic", chunk_rows=4)
    w = PackedLatentWriter(tmp_path, **kw)
    w.write_chunk(0, lat[:4])
    w.close()
    commits = tmp_path / COMMITS_DIR
    assert sorted(os.listdir(commits)) == ["00000000"]
    good = (commits / "00000000").read_bytes()
    assert good.startswith(b"C 0 0 4 ") and good.endswith(b"\n") and good.count(b"\n") == 1
    line1 = _record("C", 1, 4, 8, "00000000", "00000000")
    (commits / "00000001").write_bytes(line1[:-9])  # torn: no newline
    (commits / "00000002").write_bytes(_record("C", 2, 8, 12, "00000000", "00000000").replace(b"C 2", b"C 3"))
    (commits / "00000003").write_bytes(_record("C", 2, 8, 12, "00000000", "00000000"))  # another chunk's line
    (commits / "00000001.tmp-1-abcd").write_bytes(line1)  # a temporary that was never renamed
    (commits / "junk").write_bytes(b"\0" * 7)
    w = PackedLatentWriter(tmp_path, **kw)
    assert w.pending_chunks() == [1, 2, 3] and w.ignored_records == 5
    _write_all(w, lat)
    assert np.array_equal(np.load(tmp_path / "latents.npy"), lat)
    assert sorted(os.listdir(tmp_path)) == ["latents.npy", "meta.json"]


def test_several_writers_share_a_folder(tmp_path):
    """As the ranks of a distributed encode: disjoint chunks written through separate writers."""
    lat = _codes("bernoulli", 40, k=2, seed=3)
    labels = np.arange(40) % 7
    kw = dict(count=40, latent_hw=(4, 4), channels=64, code_mode="bernoulli", samples_per_image=2, with_labels=True,
              chunk_rows=4, meta={"encoder_checkpoint_sha256": "f" * 64})
    writers = [PackedLatentWriter(tmp_path / "shared", **kw) for _ in range(3)]
    for i in range(10):  # interleaved: rank i % 3 writes chunk i
        s, e = writers[i % 3].chunk_range(i)
        writers[i % 3].write_chunk(i, lat[s:e], labels[s:e])
    for w in writers[1:]:
        w.close()
    assert writers[0].pending_chunks() == [1, 2, 4, 5, 7, 8]  # its own view ...
    meta = writers[0].finalize()  # ... but finalize reads every writer's commits
    alone = _write_all(PackedLatentWriter(tmp_path / "alone", **kw), lat, labels)
    assert meta == alone
    for name in ("latents.npy", "labels.npy", "meta.json"):
        assert (tmp_path / "shared" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()


def test_finalize_revokes_chunks_changed_after_commit(tmp_path):
    lat = _codes("deterministic", 12, (2, 2), 8)
    labels = np.arange(12)
    kw = dict(count=12, latent_hw=(2, 2), channels=8, code_mode="deterministic", chunk_rows=4, with_labels=True)
    w = PackedLatentWriter(tmp_path, **kw)
    for i in range(3):
        w.write_chunk(i, lat[4 * i:4 * i + 4], labels[4 * i:4 * i + 4])
    w.close()
    _, _, _, off = read_npy_header(str(tmp_path / "latents.npy"))
    with open(tmp_path / "latents.npy", "r+b") as f:  # damage chunk 1 behind the writer's back
        f.seek(off + 5 * 4)
        f.write(b"\xff")
    w = PackedLatentWriter(tmp_path, **kw)
    with pytest.raises(ValueError, match="chunks 1 changed on disk.*pending again"):
        w.finalize()
    assert w.pending_chunks() == [1] and not (tmp_path / "meta.json").exists()
    assert PackedLatentWriter(tmp_path, **kw).pending_chunks() == [1]  # the revocation is durable
    w.write_chunk(1, lat[4:8], labels[4:8])
    w.finalize()
    assert np.array_equal(np.load(tmp_path / "latents.npy"), lat)


def test_interrupted_cleanup_after_meta_json(tmp_path):
    """A crash after meta.json was renamed into place but before the hidden files were removed."""
    lat = _codes("deterministic", 4, (2, 2), 8)
    kw = dict(count=4, latent_hw=(2, 2), channels=8, code_mode="deterministic")
    w = PackedLatentWriter(tmp_path, **kw)
    w.write_chunk(0, lat)
    state = (tmp_path / STATE_FILE).read_bytes()
    marker = (tmp_path / COMMITS_DIR / "00000000").read_bytes()
    meta = w.finalize()
    (tmp_path / STATE_FILE).write_bytes(state)
    (tmp_path / COMMITS_DIR).mkdir()
    (tmp_path / COMMITS_DIR / "00000000").write_bytes(marker)
    (tmp_path / "meta.json.tmp-1").write_bytes(b"{")
    assert verify(tmp_path) == meta  # readers do not care
    w = PackedLatentWriter(tmp_path, **kw)
    assert w.pending() == [] and w.finalize() == meta
    assert sorted(os.listdir(tmp_path)) == ["latents.npy", "meta.json"]


def test_interrupted_creation_restarts_cleanly(tmp_path):
    """State file written, data files missing or short, nothing committed: the writer starts afresh."""
    lat = _codes("deterministic", 6, (2, 2), 8)
    kw = dict(count=6, latent_hw=(2, 2), channels=8, code_mode="deterministic", chunk_rows=3)
    PackedLatentWriter(tmp_path, **kw).close()
    with open(tmp_path / "latents.npy", "r+b") as f:
        f.truncate(40)
    w = PackedLatentWriter(tmp_path, **kw)
    _write_all(w, lat)
    assert np.array_equal(np.load(tmp_path / "latents.npy"), lat)


def test_damaged_data_file_with_commits_is_an_error(tmp_path):
    kw = dict(count=6, latent_hw=(2, 2), channels=8, code_mode="deterministic", chunk_rows=3)
    w = PackedLatentWriter(tmp_path, **kw)
    w.write_chunk(0, _codes("deterministic", 3, (2, 2), 8))
    w.close()
    with open(tmp_path / "latents.npy", "r+b") as f:
        f.truncate(140)  # header 128 + 12 of 24 data bytes
    with pytest.raises(ValueError, match="latents.npy: 140 bytes, expected .*truncated"):
        PackedLatentWriter(tmp_path, **kw)


def test_read_meta_errors(tmp_path):
    with pytest.raises(ValueError, match="meta.json: missing .*not a bldm_fast packed-latent dataset"):
        read_meta(tmp_path)
    w = PackedLatentWriter(tmp_path, count=2, latent_hw=(2, 2), channels=8, code_mode="deterministic")
    w.write_chunk(0, _codes("deterministic", 2, (2, 2), 8))
    meta = w.finalize()
    path = tmp_path / "meta.json"
    for broken, pattern in [
        (b'{"format": ', "meta.json: invalid JSON"),
        (json.dumps({**meta, "format": "other"}).encode(), "meta.json: not a bldm_fast.packed_latents dataset"),
        (json.dumps({**meta, "format_version": 99}).encode(), "meta.json: format version 99 is newer"),
        (json.dumps({k: v for k, v in meta.items() if k != "channels"}).encode(),
         r"meta.json: missing keys \['channels'\]"),
        (json.dumps({**meta, "channels": 16}).encode(), "meta.json: the files entry does not match"),
        (json.dumps({**meta, "bit_order": "big"}).encode(), "meta.json: bit_order 'big'"),
    ]:
        path.write_bytes(broken)
        with pytest.raises(ValueError, match=pattern):
            read_meta(tmp_path)


def test_verify_names_the_altered_file(tmp_path):
    lat = _codes("deterministic", 8, (2, 2), 8)
    w = PackedLatentWriter(tmp_path, count=8, latent_hw=(2, 2), channels=8, code_mode="deterministic",
                           with_labels=True)
    w.write_chunk(0, lat, np.arange(8))
    w.finalize()
    for name in ("latents.npy", "labels.npy"):
        path = tmp_path / name
        data = path.read_bytes()
        flipped = bytearray(data)
        flipped[-3] ^= 0x01
        path.write_bytes(bytes(flipped))
        with pytest.raises(ValueError, match=f"{name}: sha256 .* does not match"):
            verify(tmp_path)
        path.write_bytes(data[:-1])
        with pytest.raises(ValueError, match=f"{name}: {len(data) - 1} bytes, expected {len(data)}; .*truncated"):
            verify(tmp_path)
        path.write_bytes(data[:20])
        with pytest.raises(ValueError, match=f"{name}: not a valid .npy file"):
            verify(tmp_path)
        path.unlink()
        with pytest.raises(ValueError, match=f"{name}: file missing"):
            verify(tmp_path)
        path.write_bytes(data)
        verify(tmp_path)


# ---------------------------------------------------------------------------------------------
# SIGKILL and resume
# ---------------------------------------------------------------------------------------------

# The child loads writer.py and its sibling modules by path under bare parent packages, skipping
# bldm_fast/__init__.py (it needs only numpy), so it starts in ~0.1 s without torch.
# Gated (argv[4] == "1"), it writes a chunk only after reading a line from stdin and finalizes only
# after reading "finalize": it can never run ahead of the parent, whatever the machine's load.
CHILD = r"""
import importlib, os, sys, time, types
import numpy as np

data_dir = os.path.dirname(sys.argv[1])
for name, path in (("bldm_fast", os.path.dirname(data_dir)), ("bldm_fast.data", data_dir)):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
writer = importlib.import_module("bldm_fast.data.writer")
assert "torch" not in sys.modules, "the writer must need only numpy and the standard library"
out_dir, slow, gated = sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
COUNT, ROWS, HW, C = 50, 4, (4, 4), 64

def slowed(fn):
    def wrapper(*args, **kwargs):
        time.sleep(slow)
        return fn(*args, **kwargs)
    return wrapper

if slow:  # widen every window between the writer's steps, so kills land everywhere
    for name in ("pwrite", "fdatasync", "fsync", "write", "replace", "ftruncate", "unlink"):
        setattr(os, name, slowed(getattr(os, name)))
    replace = os.replace

    def replace_and_tell(src, dst):  # tells the parent when meta.json is in place
        replace(src, dst)
        if str(dst).endswith("meta.json"):
            print("renamed", flush=True)
            time.sleep(slow)

    os.replace = replace_and_tell

def chunk(start, end):
    lat = np.random.default_rng(start).integers(0, 256, (end - start, HW[0] * HW[1], C // 8), dtype=np.uint8)
    lat[:, 0, :] = np.arange(start, end, dtype="<u8").view(np.uint8).reshape(-1, 8)  # row r says r
    return lat, np.arange(start, end) * 3 + 1

def gate(word):
    while gated:
        line = sys.stdin.readline()
        if not line:
            sys.exit(3)
        if line.strip() == word:
            return

print("start", flush=True)
w = writer.PackedLatentWriter(out_dir, count=COUNT, latent_hw=HW, channels=C, code_mode="deterministic",
                              with_labels=True, chunk_rows=ROWS, meta={"source_list_digest": "d" * 64})
print("ready", flush=True)
for start, end in w.pending():
    gate("next")
    w.write_chunk(start // ROWS, *chunk(start, end))
    print("committed", start // ROWS, flush=True)
gate("finalize")
print("finalizing", flush=True)
w.finalize()
print("done", flush=True)
"""
COUNT, ROWS = 50, 4
WRITER_KW = dict(count=COUNT, latent_hw=(4, 4), channels=64, code_mode="deterministic", with_labels=True,
                 chunk_rows=ROWS, meta={"source_list_digest": "d" * 64})


def _expected_rows(start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    lat = np.random.default_rng(start).integers(0, 256, (end - start, 16, 8), dtype=np.uint8)
    lat[:, 0, :] = np.arange(start, end, dtype="<u8").view(np.uint8).reshape(-1, 8)
    return lat, np.arange(start, end) * 3 + 1


def _wait_for(proc: subprocess.Popen, word: bytes, n: int, timeout: float = 60.0) -> bytes:
    """Read the child's stdout until ``word`` appeared ``n`` times; fail on timeout or early exit."""
    out = b""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while out.count(word) < n:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, remaining))
        if not ready:
            pytest.fail(f"child did not print {word!r} x{n} within {timeout} s; got {out!r}")
        block = os.read(fd, 4096)
        if not block:
            pytest.fail(f"child exited before printing {word!r} x{n}: {out!r} {proc.stderr.read()!r}")
        out += block
    return out


def _check_committed_rows(out_dir) -> int:
    """Every chunk a writer considers committed holds its exact bytes; returns how many."""
    w = PackedLatentWriter(out_dir, **WRITER_KW)
    pending = set(w.pending_chunks())
    w.close()
    done = [i for i in range(w.num_chunks) if i not in pending]
    if done:
        lat = np.load(os.path.join(out_dir, "latents.npy"), mmap_mode="r")
        lab = np.load(os.path.join(out_dir, "labels.npy"), mmap_mode="r")
        for i in done:
            s, e = i * ROWS, min(i * ROWS + ROWS, COUNT)
            want_lat, want_lab = _expected_rows(s, e)
            assert np.array_equal(lat[s:e], want_lat), f"committed chunk {i} lost bytes"
            assert np.array_equal(lab[s:e], want_lab), f"committed chunk {i} lost labels"
    return len(done)


def _kill(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -9


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and select on pipes")
def test_resume_after_sigkill(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ref_dir, out_dir = tmp_path / "reference", tmp_path / "killed"

    def child(out, slow: float, gated: bool) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), writer_module.__file__, str(out), str(slow),
                                 str(int(gated))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)

    ref = subprocess.run([sys.executable, str(script), writer_module.__file__, str(ref_dir), "0", "0"],
                         capture_output=True, timeout=120)
    assert ref.returncode == 0 and ref.stdout.endswith(b"done\n"), ref.stderr.decode()

    rng = random.Random(20240611)  # the same kill schedule every run
    committed, sent = [], 0
    for attempt in range(6):
        proc = child(out_dir, 0.002, gated=True)
        try:
            if attempt == 0:  # during start-up / creation of the files
                _wait_for(proc, b"start", 1)
                time.sleep(rng.uniform(0.0, 0.02))
            else:  # while writing the k-th chunk of this run (or just after its commit)
                k = rng.randint(1, 3)
                sent += k
                _wait_for(proc, b"ready", 1)
                proc.stdin.write(b"next\n" * k)
                _wait_for(proc, b"committed", k - 1)
                time.sleep(rng.uniform(0.0, 0.015))
            _kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
        assert not (out_dir / "meta.json").exists(), "meta.json appeared before the dataset was complete"
        if (out_dir / STATE_FILE).exists():
            committed.append(_check_committed_rows(out_dir))
    assert committed == sorted(committed) and committed[-1] <= sent < 13  # the gate held the child back

    # kill during finalize, before and after meta.json is renamed into place
    for after_rename in (False, True):
        proc = child(out_dir, 0.002, gated=True)
        try:
            _wait_for(proc, b"ready", 1)
            proc.stdin.write(b"next\n" * 13 + b"finalize\n")
            if after_rename:
                _wait_for(proc, b"renamed", 1)
            else:
                _wait_for(proc, b"finalizing", 1)
                time.sleep(rng.uniform(0.0, 0.003))
            proc.kill()
            proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)
        if (out_dir / "meta.json").exists():  # complete and valid, or absent: never half
            verify(out_dir)
        else:
            assert not after_rename and _check_committed_rows(out_dir) == 13

    fin = subprocess.run([sys.executable, str(script), writer_module.__file__, str(out_dir), "0", "0"],
                         capture_output=True, timeout=120)
    assert fin.returncode == 0 and fin.stdout.endswith(b"done\n"), fin.stderr.decode()

    assert sorted(os.listdir(out_dir)) == ["labels.npy", "latents.npy", "meta.json"]
    for name in ("latents.npy", "labels.npy", "meta.json"):
        assert (out_dir / name).read_bytes() == (ref_dir / name).read_bytes(), f"{name} differs from the clean run"
    lat = np.load(out_dir / "latents.npy")
    rows = lat[:, 0, :].copy().view("<u8").ravel()
    assert np.array_equal(rows, np.arange(COUNT)), "a row is missing or duplicated"
    verify(out_dir)
