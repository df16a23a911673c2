"""bldm-fast export: hf (Parquet), WebDataset and MDS shards round-trip a packed dataset byte for byte,
read with this package's readers and with each format's own library where it is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bldm_fast.data import PackedLatentDataset, PackedLatentWriter
from bldm_fast.data.export import export_dataset
from bldm_fast.data.formats import read_export_meta
from bldm_fast.data.formats.mds import read_mds
from bldm_fast.data.formats.webdataset import read_webdataset

HW = (4, 4)
L = HW[0] * HW[1]


def make_dataset(root, mode="deterministic", n=50, c=64, k=1, labels=True, seed=0, chunk_rows=16):
    """A dataset in the layout `bldm-fast encode` writes (its writer); returns (latents, labels or None)."""
    rng = np.random.default_rng(seed)
    if mode == "probs":
        lat = rng.integers(0, 256, (n, L, c), dtype=np.uint8)
    else:
        shape = (n, k, L, c) if mode == "bernoulli" else (n, L, c)
        lat = np.packbits(rng.integers(0, 2, shape, dtype=np.uint8), axis=-1, bitorder="little")
    lab = (rng.permutation(n) * 7 + 3).astype(np.int64) if labels else None
    w = PackedLatentWriter(root, count=n, latent_hw=HW, channels=c, code_mode=mode, samples_per_image=k,
                           with_labels=labels, chunk_rows=chunk_rows)
    for i in w.pending_chunks():
        s, e = w.chunk_range(i)
        w.write_chunk(i, lat[s:e], None if lab is None else lab[s:e])
    w.finalize()
    return lat, lab


CASES = [  # (code mode, channels, K, labels)
    pytest.param("deterministic", 64, 1, True, id="deterministic-C64-labels"),
    pytest.param("deterministic", 13, 1, False, id="deterministic-C13-nolabels"),
    pytest.param("bernoulli", 64, 3, True, id="bernoulli-K3-labels"),
    pytest.param("probs", 24, 1, True, id="probs-C24-labels"),
]


def _check_rows(got, lat, lab):
    got = list(got)
    assert len(got) == len(lat)
    for i, (codes, label) in enumerate(got):
        codes = np.asarray(codes)
        assert codes.dtype == np.uint8 and codes.shape == lat.shape[1:]
        assert codes.tobytes() == lat[i].tobytes()
        assert label == (None if lab is None else int(lab[i]))


@pytest.mark.parametrize("mode,c,k,labels", CASES)
@pytest.mark.parametrize("shard_size", [7, 50, 1000])
def test_mds_round_trip(tmp_path, mode, c, k, labels, shard_size):
    lat, lab = make_dataset(tmp_path / "ds", mode, c=c, k=k, labels=labels)
    meta = export_dataset(tmp_path / "ds", tmp_path / "out", "mds", shard_size=shard_size)
    assert [s["rows"] for s in meta["shards"]] == [min(shard_size, 50 - a) for a in range(0, 50, shard_size)]
    _check_rows(read_mds(tmp_path / "out"), lat, lab)


@pytest.mark.parametrize("mode,c,k,labels", CASES)
def test_mds_layout_follows_the_spec(tmp_path, mode, c, k, labels):
    """The MDS bytes, parsed from the documented layout (streaming.base.format.mds): header,
    offsets, the writer config, samples of uint32 size + bytes (+ int64 label)."""
    lat, lab = make_dataset(tmp_path / "ds", mode, c=c, k=k, labels=labels, n=20)
    export_dataset(tmp_path / "ds", tmp_path / "out", "mds", shard_size=8)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["version"] == 2 and [s["raw_data"]["basename"] for s in index["shards"]] == \
        ["shard.00000.mds", "shard.00001.mds", "shard.00002.mds"]
    row = 0
    for entry in index["shards"]:
        assert entry["format"] == "mds" and entry["compression"] is None and entry["zip_data"] is None
        assert entry["column_names"] == (["codes", "label"] if labels else ["codes"])
        assert entry["column_encodings"] == (["bytes", "int"] if labels else ["bytes"])
        data = (tmp_path / "out" / entry["raw_data"]["basename"]).read_bytes()
        assert len(data) == entry["raw_data"]["bytes"]
        n = int.from_bytes(data[:4], "little")
        offsets = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "little") for i in range(n + 1)]
        config = {k2: entry[k2] for k2 in entry if k2 not in ("samples", "raw_data", "zip_data")}
        cfg = json.dumps(config, sort_keys=True).encode()
        assert data[4 + 4 * (n + 1):offsets[0]] == cfg and offsets[-1] == len(data)
        for i in range(n):
            s = data[offsets[i]:offsets[i + 1]]
            size = int.from_bytes(s[:4], "little")
            assert s[4:4 + size] == lat[row].tobytes()
            if labels:
                assert int.from_bytes(s[4 + size:], "little", signed=True) == lab[row]
            row += 1
    assert row == 20


def test_mds_with_the_streaming_library(tmp_path):
    pytest.importorskip("streaming", reason="mosaicml-streaming is not installed (0.13 requires torch 2.14, which "
                                            "would replace this project's torch 2.13; see requirements.txt)")
    from streaming import StreamingDataset

    lat, lab = make_dataset(tmp_path / "ds", n=30)
    export_dataset(tmp_path / "ds", tmp_path / "out", "mds", shard_size=8)
    ds = StreamingDataset(local=str(tmp_path / "out"), shuffle=False, batch_size=1)
    got = [(np.frombuffer(s["codes"], np.uint8).reshape(lat.shape[1:]), s["label"]) for s in ds]
    _check_rows(got, lat, lab)


@pytest.mark.parametrize("mode,c,k,labels", CASES)
@pytest.mark.parametrize("shard_size", [7, 1000])
def test_webdataset_round_trip_standard_library(tmp_path, mode, c, k, labels, shard_size):
    lat, lab = make_dataset(tmp_path / "ds", mode, c=c, k=k, labels=labels)
    meta = export_dataset(tmp_path / "ds", tmp_path / "out", "webdataset", shard_size=shard_size)
    assert [s["file"] for s in meta["shards"]] == [f"shard-{i:06d}.tar" for i in range(len(meta["shards"]))]
    _check_rows(read_webdataset(tmp_path / "out"), lat, lab)


@pytest.mark.parametrize("mode,c,k,labels", CASES)
def test_webdataset_round_trip_with_webdataset(tmp_path, mode, c, k, labels):
    pytest.importorskip("webdataset", reason="webdataset is not installed (pip install 'bldm_fast[formats]')")
    import torch

    from bldm_fast.data.formats.webdataset import wds_dataset

    lat, lab = make_dataset(tmp_path / "ds", mode, c=c, k=k, labels=labels)
    export_dataset(tmp_path / "ds", tmp_path / "out", "webdataset", shard_size=9)
    got = list(wds_dataset(tmp_path / "out"))
    assert all(isinstance(g[0], torch.Tensor) and g[0].dtype == torch.uint8 for g in got)
    _check_rows([(g[0].numpy(), g[1] if labels else None) for g in got], lat, lab)


def test_webdataset_shards_are_deterministic(tmp_path):
    make_dataset(tmp_path / "ds")
    export_dataset(tmp_path / "ds", tmp_path / "a", "webdataset", shard_size=20)
    export_dataset(tmp_path / "ds", tmp_path / "b", "webdataset", shard_size=20)
    for name in ("shard-000000.tar", "shard-000001.tar", "shard-000002.tar"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("mode,c,k,labels", CASES)
def test_hf_round_trip(tmp_path, mode, c, k, labels):
    pytest.importorskip("datasets", reason="datasets is not installed (pip install 'bldm_fast[formats]')")
    import datasets
    import torch

    from bldm_fast.data.formats.hf import load_hf

    lat, lab = make_dataset(tmp_path / "ds", mode, c=c, k=k, labels=labels)
    meta = export_dataset(tmp_path / "ds", tmp_path / "out", "hf", shard_size=16)
    assert [s["file"] for s in meta["shards"]] == [f"data/train-{i:05d}-of-00004.parquet" for i in range(4)]
    ds = load_hf(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert len(ds) == 50
    rows = ds[:]
    assert rows["codes"].dtype == torch.uint8 and rows["codes"].numpy().tobytes() == lat.tobytes()
    assert rows["codes"].shape == lat.shape
    if labels:
        assert rows["label"].tolist() == lab.tolist()
    item = ds[3]
    assert item["codes"].numpy().tobytes() == lat[3].tobytes()
    # datasets' own loader finds the train split in the Hub layout, as stored bytes
    raw = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache2"))
    assert raw.features["codes"] == datasets.Value("binary")
    assert b"".join(raw["codes"]) == lat.tobytes()


@pytest.mark.parametrize("fmt", ["mds", "webdataset"])
def test_export_of_a_sharded_dataset(tmp_path, fmt):
    """Three encode outputs in one parent folder export as one dataset, rows in folder-name order."""
    parts = [make_dataset(tmp_path / "shards" / f"part{i}", n=n, seed=i) for i, n in enumerate((11, 5, 20))]
    lat = np.concatenate([p[0] for p in parts])
    lab = np.concatenate([p[1] for p in parts])
    meta = export_dataset(tmp_path / "shards", tmp_path / "out", fmt, shard_size=8)
    assert meta["count"] == 36 and len(meta["source"]["roots"]) == 3
    reader = read_mds if fmt == "mds" else read_webdataset
    _check_rows(reader(tmp_path / "out"), lat, lab)


def test_bad_arguments(tmp_path):
    make_dataset(tmp_path / "ds", n=4)
    with pytest.raises(ValueError, match="format must be one of"):
        export_dataset(tmp_path / "ds", tmp_path / "o1", "tfrecord")
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        export_dataset(tmp_path / "ds", tmp_path / "o2", "mds", shard_size=0)
    with pytest.raises(TypeError, match="shard_size must be an int"):
        export_dataset(tmp_path / "ds", tmp_path / "o3", "mds", shard_size=2.5)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_dataset(tmp_path / "ds", tmp_path / "full", "mds")
    with pytest.raises(ValueError, match="meta.json"):
        export_dataset(tmp_path / "nothing-here", tmp_path / "o4", "mds")
    export_dataset(tmp_path / "ds", tmp_path / "o5", "mds")
    with pytest.raises(ValueError, match="holds a 'mds' export, not 'webdataset'"):
        next(read_webdataset(tmp_path / "o5"))
    assert not any(p.name.startswith(".o") for p in tmp_path.iterdir())  # no temporary folders left


def _cli(*args, cwd):
    """`bldm-fast export ...` as a subprocess; registers the command if bldm_fast.cli does not yet."""
    code = ("import sys\nfrom bldm_fast import cli\n"
            "if 'export' not in cli.COMMANDS:\n"
            "    from bldm_fast.data.export import add_export_arguments, run_export\n"
            "    cli.register('export', 'export a dataset', add_export_arguments, run_export)\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, "export", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_export_and_errors(tmp_path):
    lat, lab = make_dataset(tmp_path / "ds", n=25)
    r = _cli("ds", "--format", "mds", "--out", "out", "--shard-size", "10", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "exported 25 rows" in r.stdout and "3 shard(s)" in r.stdout
    assert read_export_meta(tmp_path / "out", "mds")["count"] == 25
    _check_rows(read_mds(tmp_path / "out"), lat, lab)
    r = _cli("ds", "--format", "mds", "--out", "out", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"bldm-fast export: error: --out {tmp_path / 'out'} exists and is not an empty folder; choose a new one"]
    r = _cli("ds", "--format", "mds", "--out", "o2", "--shard-size", "0", cwd=tmp_path)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "shard_size must be >= 1" in r.stderr
    assert not os.path.exists(tmp_path / "o2")


def test_multi_folder_dataset_reads_like_the_concatenation(tmp_path):
    parts = [make_dataset(tmp_path / f"p{i}", n=n, seed=i) for i, n in enumerate((9, 4, 13))]
    lat = np.concatenate([p[0] for p in parts])
    lab = np.concatenate([p[1] for p in parts])
    ds = PackedLatentDataset([tmp_path / "p0", tmp_path / "p1", tmp_path / "p2"], verify=True)
    assert len(ds) == 26 and ds.meta["count"] == 26 and len(ds.meta["parts"]) == 3
    for i in (0, 8, 9, 12, 13, 25, -1):
        x, y = ds[i]
        assert x.numpy().tobytes() == lat[i].tobytes() and y == lab[i]
    idx = [7, 8, 9, 10, 25, 0, 12, 13]  # crosses folder borders, contiguous and not
    batch = ds.__getitems__(idx)
    assert [b[0].numpy().tobytes() for b in batch] == [lat[i].tobytes() for i in idx]
    assert [b[1] for b in batch] == [int(lab[i]) for i in idx]
    rows, labels = ds.read_rows(5, 20)
    assert rows.tobytes() == lat[5:20].tobytes() and labels.tolist() == lab[5:20].tolist()


def test_multi_folder_dataset_refuses_folders_that_disagree(tmp_path):
    make_dataset(tmp_path / "a", n=4)
    make_dataset(tmp_path / "b", n=4, c=32)
    with pytest.raises(ValueError, match="channels = 32 differs"):
        PackedLatentDataset([tmp_path / "a", tmp_path / "b"])
    make_dataset(tmp_path / "c", n=4, labels=False)
    with pytest.raises(ValueError, match="with_labels"):
        PackedLatentDataset([tmp_path / "a", tmp_path / "c"])
    with pytest.raises(ValueError, match="empty list"):
        PackedLatentDataset([])
