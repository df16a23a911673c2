"""One set of argument rules on every backend (issue 16 item 1, issue 13 item 5): numpy and 0-d
tensor ints accepted, bools that are not bools rejected, NaN logits in binarize/quantize_probs
raise, the reciprocal of a temperature must be a finite float32, a thread-safe PhiloxGenerator."""

import threading

import numpy as np
import pytest
import torch

import bldm_fast as bf
from bf_testutil import device_for


def _step_inputs(dev, C=10):
    logits = torch.randn(2, 3, C, device=dev)
    xt = torch.zeros(2, 3, (C + 7) // 8, dtype=torch.uint8, device=dev)
    return logits, xt


@pytest.mark.parametrize("t,t_prev", [(np.int64(5), np.int32(2)), (torch.tensor(5), torch.tensor(2)), (5, 2)])
def test_int_forms_give_the_same_bits(backend, t, t_prev):
    dev = device_for(backend)
    logits, xt = _step_inputs(dev)
    sched = bf.BernoulliSchedule(8)
    want = bf.sample_step(logits, xt, 5, 2, sched, seed=np.uint64(3), offset=np.int64(4), backend=backend)
    got = bf.sample_step(logits, xt, t, t_prev, sched, seed=3, offset=4, backend=backend)
    assert torch.equal(got.packed, want.packed)
    noise = bf.bernoulli_noise(xt, np.int64(3), sched, np.int64(10), seed=1, backend=backend)
    assert torch.equal(noise.packed, bf.bernoulli_noise(xt, 3, sched, 10, seed=1, backend=backend).packed)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(predict_flip="false"), TypeError, "predict_flip must be a bool"),
    (dict(return_probs=1), TypeError, "return_probs must be a bool"),
    (dict(temperature=1e-39), ValueError, "temperature .*reciprocal"),
    (dict(temperature=1e300), ValueError, "temperature .*reciprocal"),
    (dict(temperature=True), TypeError, "temperature must be a number"),
    (dict(guidance=1e39, uncond_logits="same"), ValueError, "guidance must be a finite float32"),
    (dict(t=True), TypeError, "t must be an int"),
    (dict(t=5.0), TypeError, "t must be an int"),
])
def test_step_argument_errors_are_the_same_everywhere(backend, kw, exc, match):
    dev = device_for(backend)
    logits, xt = _step_inputs(dev)
    kw = dict(kw)
    if kw.get("uncond_logits") == "same":
        kw["uncond_logits"] = logits
    t = kw.pop("t", 5)
    with pytest.raises(exc, match=match) as info:
        bf.sample_step(logits, xt, t, 2, bf.BernoulliSchedule(8), seed=0, backend=backend, **kw)
    assert isinstance(info.value, ValueError), "every bad argument is also a ValueError (one-line CLI errors)"
    assert "inv_temp" not in str(info.value)


def test_mask_with_a_half_is_reported_as_mask(backend):
    dev = device_for(backend)
    logits, xt = _step_inputs(dev)
    mask = torch.full((3, 10), 0.5, device=dev)
    with pytest.raises(ValueError, match="^mask .*only 0 or 1"):
        bf.sample_step(logits, xt, 5, 2, bf.BernoulliSchedule(8), seed=0, mask=mask, known=mask.round(),
                       backend=backend)


def test_return_flip_must_be_a_bool(backend):
    xt = torch.zeros(2, 3, 2, dtype=torch.uint8, device=device_for(backend))
    with pytest.raises(TypeError, match="return_flip must be a bool"):
        bf.bernoulli_noise(xt, 3, bf.BernoulliSchedule(8), 10, seed=0, return_flip="yes", backend=backend)


@pytest.mark.parametrize("op", ["binarize", "binarize_bernoulli", "quantize_probs"])
def test_nan_logits_raise_in_binarize_and_quantize(backend, op):
    logits = torch.randn(2, 5, 12, device=device_for(backend))
    logits[1, 3, 7] = float("nan")
    with pytest.raises(ValueError, match="logits contain NaN"):
        if op == "quantize_probs":
            bf.quantize_probs(logits, backend=backend)
        else:
            bf.binarize(logits, "bernoulli" if op.endswith("bernoulli") else "deterministic", seed=1, backend=backend)


def test_flip_bce_weights_requiring_grad_rejected(backend):
    dev = device_for(backend)
    logits = torch.randn(2, 3, 10, device=dev, requires_grad=True)
    target = torch.zeros(2, 3, 2, dtype=torch.uint8, device=dev)
    w = torch.ones(2, device=dev, requires_grad=True)
    with pytest.raises(ValueError, match="pos_weight must not require grad"):
        bf.flip_bce_loss(logits, target, w, w.detach(), backend=backend)


def test_philox_uniform_device_and_numel_errors():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            bf.philox_uniform(1, 0, 8, device="cuda")
    with pytest.raises(ValueError, match="numel"):
        bf.philox_uniform(1, 0, 2**63 - 5)
    with pytest.raises(TypeError, match="device must be"):
        bf.philox_uniform(1, 0, 8, device=3.5)


@pytest.mark.parametrize("numel,exc", [(-4, ValueError), (2.5, TypeError), (True, TypeError)])
def test_next_offset_rejects_bad_numel(numel, exc):
    g = bf.PhiloxGenerator(1, offset=10)
    with pytest.raises(exc, match="numel"):
        g.next_offset(numel)
    assert g.offset == 10


def test_generator_shared_by_threads_hands_out_no_counter_twice():
    g = bf.PhiloxGenerator(7)
    starts = []
    lock = threading.Lock()

    def work():
        mine = [g.next_offset(40) for _ in range(2000)]
        with lock:
            starts.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(starts)) == len(starts) == 8000
    assert g.offset == 8000 * 10 and sorted(starts) == list(range(0, 80000, 10))
