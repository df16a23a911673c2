"""benchmarks/gpu_floors.py: the floor arithmetic on made-up timings (expected values worked out
by hand below), and the philox_uniform / torch.rand rows on this machine's backends."""

import pathlib
import sys

import pytest
import torch

import bldm_fast as bf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_floors  # noqa: E402

N = 1_000_000
COPY = 1e12  # bytes/s


def _row(impl, busy, nbytes, seconds=1.0):
    return dict(impl=impl, seconds=seconds, gpu_seconds=busy, bytes=nbytes)


def _result():
    step_bytes = 4 * N + 2 * (N // 8)  # float32 logits in, packed x_t in, packed x_{t-1} out
    return dict(copy_bytes_per_s=COPY, cases=[
        dict(case=f"step float32 N={N:,}", rows=[_row("cuda", 5e-6, step_bytes), _row("triton", 7e-6, step_bytes),
                                                 _row("official eager", 1e-3, step_bytes)]),
        dict(case=f"noise N={N:,}", rows=[_row("cuda", 2e-6, 2 * (N // 8)), _row("triton", 4e-6, 2 * (N // 8)),
                                          _row("cuda bare Philox", 6e-6, 4 * N)]),
        dict(case=f"flip_bce fwd+bwd float32 N={N:,}", rows=[_row("cuda", 10e-6, 8 * N + N // 8),
                                                             _row("triton", 11e-6, 8 * N + N // 8)]),
        dict(case=f"philox vs torch.rand N={N:,}", rows=[_row("torch.rand", 3e-6, 4 * N),
                                                         _row("cuda philox_uniform", 2.5e-6, 4 * N),
                                                         _row("triton philox_uniform", 4e-6, 4 * N)]),
        dict(case=f"pack/unpack N={N:,}", rows=[_row("cuda pack u8", None, N + N // 8, seconds=2.25e-6),
                                                dict(impl="triton pack u8", seconds=None, bytes=N, error="boom")]),
    ])


def _by_key(result):
    return {(r["case"].split(" N=")[0], r["impl"]): r for r in gpu_floors.floor_rows(result)}


def test_philox_rate_is_the_fastest_noise_kernel():
    # cuda noise: 1e6 words in 2 us = 5e11 words/s (the triton one takes 4 us; bare Philox is not a noise kernel)
    assert gpu_floors.philox_rate(_result(), N) == pytest.approx(5e11)
    assert gpu_floors.philox_rate(_result(), 2 * N) is None


def test_floors_ratios_and_targets_by_hand():
    rows = _by_key(_result())
    # step float32: bytes 4.25e6 at 1e12 B/s = 4.25 us > Philox 1e6 / 5e11 = 2 us, so the bytes bound it
    cuda = rows[("step float32", "cuda")]
    assert cuda["bytes_floor_s"] == pytest.approx(4.25e-6) and cuda["philox_floor_s"] == pytest.approx(2e-6)
    assert cuda["bound"] == "bytes" and cuda["floor_s"] == pytest.approx(4.25e-6)
    assert cuda["ratio"] == pytest.approx(5 / 4.25) and cuda["target"] == 1.25 and cuda["met"] is True
    triton = rows[("step float32", "triton")]
    assert triton["ratio"] == pytest.approx(7 / 4.25) and triton["target"] == 1.5 and triton["met"] is False
    assert ("step float32", "official eager") not in rows  # only the GPU backends have floors
    # noise: 0.25 us of bytes < 2 us of Philox; cuda is the rate itself (1.0x), triton 2.0x
    assert rows[("noise", "cuda")]["bound"] == "Philox" and rows[("noise", "cuda")]["ratio"] == pytest.approx(1.0)
    assert rows[("noise", "triton")]["ratio"] == pytest.approx(2.0) and rows[("noise", "triton")]["met"] is False
    bare = rows[("noise", "cuda bare Philox")]  # 4e6 bytes = 4 us > 2 us of Philox; no target of its own
    assert bare["floor_s"] == pytest.approx(4e-6) and bare["ratio"] == pytest.approx(1.5) and bare["met"] is None
    # flip_bce: no Philox words; 8.125e6 bytes = 8.125 us
    bce = rows[("flip_bce fwd+bwd float32", "cuda")]
    assert bce["philox_floor_s"] is None and bce["floor_s"] == pytest.approx(8.125e-6)
    assert bce["ratio"] == pytest.approx(10 / 8.125) and bce["met"] is True
    assert rows[("flip_bce fwd+bwd float32", "triton")]["ratio"] == pytest.approx(11 / 8.125)
    assert rows[("flip_bce fwd+bwd float32", "triton")]["met"] is False
    # philox_uniform against torch.rand's 3 us
    assert rows[("philox vs torch.rand", "cuda philox_uniform")]["ratio"] == pytest.approx(2.5 / 3)
    assert rows[("philox vs torch.rand", "cuda philox_uniform")]["met"] is True
    assert rows[("philox vs torch.rand", "triton philox_uniform")]["met"] is False
    # no GPU-busy time: the wall time is used; a failed row has none
    pack = rows[("pack/unpack", "cuda pack u8")]
    assert pack["ratio"] == pytest.approx(2.25 / 1.125) and pack["target"] is None
    assert ("pack/unpack", "triton pack u8") not in rows


def test_floors_table_lists_every_row_with_its_verdict():
    text = gpu_floors.floors_table(_result())
    assert "N=1,000,000: 500 G words/s" in text and "1000 GB/s" in text
    body = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(body) == len(gpu_floors.floor_rows(_result()))
    assert sum(ln.endswith("| pass |") for ln in body) == 4 and sum(ln.endswith("| MISS |") for ln in body) == 4
    assert any("| 1.18x | <= 1.25x | pass |" in ln for ln in body)


def test_bad_results_raise_value_error():
    with pytest.raises(ValueError, match="copy_bytes_per_s"):
        gpu_floors.floor_rows(dict(copy_bytes_per_s=0, cases=[]))
    with pytest.raises(ValueError, match="N=<count>"):
        gpu_floors.floor_rows(dict(copy_bytes_per_s=COPY, cases=[dict(case="step float32", rows=[])]))


def test_philox_vs_rand_rows_measure_the_same_element_count():
    outputs = {}

    def measured(bench, fn, moved, impl):
        outputs[impl] = fn()
        return dict(impl=impl, seconds=1.0, bytes=moved, gpu_seconds=None)

    rows = gpu_floors.philox_vs_rand_rows("cpu", None, 1000, measured, ["reference"])
    assert [r["impl"] for r in rows] == ["torch.rand", "reference philox_uniform"]
    assert all(r["bytes"] == 4000 for r in rows)
    assert all(o.shape == (1000,) and o.dtype == torch.float32 for o in outputs.values())
    assert torch.equal(outputs["reference philox_uniform"], bf.philox_uniform(1, 0, 1000, backend="reference"))
