"""Every bad input raises a clear exception naming the argument, on every backend (checks made before
a backend is chosen run once: ``before_dispatch``).

README (API): dtype problems -> TypeError; everything else -> ValueError; each message names the
argument ("logits", "xt_packed", "t", "t_prev", "temperature", "uncond_logits", "mask", "known",
"seed", "offset", "channels", "x0_packed", ...). "meta" tensors stand in for a second device.
NaN logits must raise ValueError mentioning NaN rather than turn silently into bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bldm_fast as bf
from bf_testutil import U64_MAX, device_for, np_pack, random_bits, random_logits

T_WORD = r"\bt\b"  # "t" as a word, not the "t" of "t_prev"

B, L, C = 2, 5, 13
NB = (C + 7) // 8


# The public ops make these checks in Python before they choose a backend (every test marked with
# this passes with backend resolution and the backends' ops replaced by a function that raises), so
# such a test runs once, with backend="auto" on CPU tensors, rather than once per backend. Checks
# made in or after a backend's pass (float values that are not bits, NaN, mask contents, counters
# past 2^64 - 1) still run on every backend.
before_dispatch = pytest.mark.parametrize("backend", ["auto"], ids=["before-dispatch"])


@pytest.fixture
def dev(backend):
    return device_for(backend)


@pytest.fixture
def sched():
    return bf.BernoulliSchedule(20, "cos")


@pytest.fixture
def step_inputs(dev):
    logits = random_logits((B, L, C), seed=1).to(dev)
    xtp = torch.from_numpy(np_pack(random_bits((B, L, C), seed=2))).to(dev)
    return logits, xtp


def _step(step_inputs, sched, backend, **kw):
    logits, xtp = step_inputs
    args = dict(logits=logits, xt_packed=xtp, t=10, t_prev=9)
    for k in list(kw):
        if k in args:
            args[k] = kw.pop(k)
    kw.setdefault("seed", 0)
    kw.setdefault("offset", 0)
    return bf.sample_step(args["logits"], args["xt_packed"], args["t"], args["t_prev"], sched, backend=backend, **kw)


# ------------------------------------------------------------------------------------------
# packing
# ------------------------------------------------------------------------------------------
@before_dispatch
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int8, torch.int16], ids=str)
def test_pack_wrong_dtype(backend, dev, dtype):
    """pack_bits of an integer dtype other than uint8 -> TypeError naming bits."""
    with pytest.raises(TypeError, match="bits"):
        bf.pack_bits(torch.ones(3, 8, dtype=dtype, device=dev), backend=backend)


@pytest.mark.parametrize("value", [0.5, 2.0, -1.0, float("nan"), float("inf")], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_pack_float_not_bit(backend, dev, value, dtype):
    """A float input holding a value other than 0/1 -> ValueError mentioning bits."""
    x = torch.zeros(4, 9, dtype=dtype, device=dev)
    x[2, 7] = value
    with pytest.raises(ValueError, match="bits"):
        bf.pack_bits(x, backend=backend)


@before_dispatch
def test_pack_not_a_tensor(backend):
    """A list or numpy array instead of a tensor -> TypeError naming bits."""
    with pytest.raises(TypeError, match="bits"):
        bf.pack_bits([[0, 1, 1]], backend=backend)


@before_dispatch
def test_pack_zero_dim(backend, dev):
    """A 0-dim tensor has no channel dim -> ValueError naming bits."""
    with pytest.raises(ValueError, match="bits"):
        bf.pack_bits(torch.tensor(True, device=dev), backend=backend)


@before_dispatch
@pytest.mark.parametrize("dtype", [torch.float32, torch.int32, torch.bool], ids=str)
def test_unpack_wrong_dtype(backend, dev, dtype):
    """unpack_bits of a non-uint8 packed tensor -> TypeError naming packed."""
    with pytest.raises(TypeError, match="packed"):
        bf.unpack_bits(torch.zeros(3, 2, dtype=dtype, device=dev), 13, backend=backend)


@before_dispatch
@pytest.mark.parametrize("channels,nbytes", [(13, 1), (13, 3), (8, 2), (9, 1), (1, 2)])
def test_unpack_wrong_last_dim(backend, dev, channels, nbytes):
    """packed.shape[-1] != ceil(channels/8) -> ValueError naming packed."""
    with pytest.raises(ValueError, match="packed"):
        bf.unpack_bits(torch.zeros(3, nbytes, dtype=torch.uint8, device=dev), channels, backend=backend)


@before_dispatch
@pytest.mark.parametrize("channels", [0, -8])
def test_unpack_bad_channels(backend, dev, channels):
    """channels < 1 -> ValueError naming channels."""
    with pytest.raises(ValueError, match="channels"):
        bf.unpack_bits(torch.zeros(3, 1, dtype=torch.uint8, device=dev), channels, backend=backend)


@before_dispatch
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.complex64], ids=str)
def test_unpack_bad_out_dtype(backend, dev, dtype):
    """An unsupported output dtype -> TypeError naming dtype."""
    with pytest.raises(TypeError, match="dtype"):
        bf.unpack_bits(torch.zeros(3, 1, dtype=torch.uint8, device=dev), 8, dtype=dtype, backend=backend)


# ------------------------------------------------------------------------------------------
# backend selection
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["reference", "cpu", "triton", "cuda"])
def test_unavailable_backend_raises(name):
    """Asking for a backend that is not available -> RuntimeError naming it."""
    if name in bf.available_backends():
        pytest.skip(f"{name} is available here")
    with pytest.raises(RuntimeError, match=name):
        bf.pack_bits(torch.ones(2, 8, dtype=torch.bool), backend=name)


def test_env_var_overrides_auto(monkeypatch):
    """BLDM_FAST_BACKEND overrides backend='auto' at call time: 'reference' works; an unavailable name
    raises RuntimeError naming it (so the variable is really read)."""
    x = torch.ones(2, 8, dtype=torch.bool)
    monkeypatch.setenv("BLDM_FAST_BACKEND", "reference")
    assert bf.pack_bits(x).tolist() == [[255], [255]]
    missing = [b for b in ("cuda", "triton", "cpu") if b not in bf.available_backends()]
    if missing:
        monkeypatch.setenv("BLDM_FAST_BACKEND", missing[0])
        with pytest.raises(RuntimeError, match=missing[0]):
            bf.pack_bits(x)


def test_unknown_backend_name():
    """A backend name that does not exist -> an error naming it."""
    with pytest.raises((ValueError, RuntimeError), match="no_such_backend"):
        bf.pack_bits(torch.ones(2, 8, dtype=torch.bool), backend="no_such_backend")


# ------------------------------------------------------------------------------------------
# Philox stream arguments
# ------------------------------------------------------------------------------------------
@before_dispatch
@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "7", None], ids=repr)
def test_philox_bad_seed(backend, dev, seed):
    """seed not an int in [0, 2^64) -> error naming seed (ValueError for range, TypeError/ValueError for type)."""
    exc = ValueError if isinstance(seed, int) else (TypeError, ValueError)
    with pytest.raises(exc, match="seed"):
        bf.philox_uniform(seed, 0, 4, device=dev, backend=backend)


@before_dispatch
@pytest.mark.parametrize("offset", [-1, 2**64, 2.0], ids=repr)
def test_philox_bad_offset(backend, dev, offset):
    """offset not an int in [0, 2^64) -> error naming offset."""
    exc = ValueError if isinstance(offset, int) else (TypeError, ValueError)
    with pytest.raises(exc, match="offset"):
        bf.philox_words(1, offset, 4, device=dev, backend=backend)


@before_dispatch
def test_philox_negative_numel(backend, dev):
    """numel < 0 -> ValueError naming numel."""
    with pytest.raises(ValueError, match="numel"):
        bf.philox_words(1, 0, -1, device=dev, backend=backend)


def test_generator_exhausted():
    """A generator whose next call would pass counter 2^64-1 -> ValueError naming offset."""
    g = bf.PhiloxGenerator(1, offset=U64_MAX)
    g.next_offset(4)  # the last counter
    with pytest.raises(ValueError, match="offset"):
        g.next_offset(1)


# ------------------------------------------------------------------------------------------
# schedule
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_steps", [0, -1])
def test_schedule_bad_steps(num_steps):
    """num_steps < 1 -> ValueError naming num_steps."""
    with pytest.raises(ValueError, match="num_steps"):
        bf.BernoulliSchedule(num_steps)


def test_schedule_bad_kind():
    """An unknown schedule kind -> ValueError naming kind."""
    with pytest.raises(ValueError, match="kind"):
        bf.BernoulliSchedule(10, kind="exp")


# ------------------------------------------------------------------------------------------
# bernoulli_noise
# ------------------------------------------------------------------------------------------
@pytest.fixture
def x0p(dev):
    return torch.from_numpy(np_pack(random_bits((B, L, C), seed=3))).to(dev)


@before_dispatch
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.int32], ids=str)
def test_noise_x0_wrong_dtype(backend, dev, sched, dtype):
    """x0_packed not uint8 -> TypeError naming x0_packed."""
    with pytest.raises(TypeError, match="x0_packed"):
        bf.bernoulli_noise(torch.zeros(B, L, NB, dtype=dtype, device=dev), 3, sched, C, seed=0, backend=backend)


@before_dispatch
@pytest.mark.parametrize("nbytes", [1, 3])
def test_noise_x0_wrong_last_dim(backend, dev, sched, nbytes):
    """x0_packed.shape[-1] != ceil(C/8) -> ValueError naming x0_packed."""
    with pytest.raises(ValueError, match="x0_packed"):
        bf.bernoulli_noise(torch.zeros(B, L, nbytes, dtype=torch.uint8, device=dev), 3, sched, C, seed=0,
                           backend=backend)


@before_dispatch
@pytest.mark.parametrize("t", [0, -1, 21, 1000])
def test_noise_t_out_of_range_int(backend, x0p, sched, t):
    """int t outside 1..T -> ValueError naming t."""
    with pytest.raises(ValueError, match=T_WORD):
        bf.bernoulli_noise(x0p, t, sched, C, seed=0, backend=backend)


@before_dispatch
@pytest.mark.parametrize("tvals", [[0, 3], [3, 21], [-2, 5]], ids=str)
def test_noise_t_out_of_range_tensor(backend, x0p, sched, tvals):
    """A per-sample t tensor with a value outside 1..T -> ValueError naming t."""
    with pytest.raises(ValueError, match=T_WORD):
        bf.bernoulli_noise(x0p, torch.tensor(tvals), sched, C, seed=0, backend=backend)


@before_dispatch
@pytest.mark.parametrize("shape", [(1,), (3,), (2, 1), (0,)], ids=str)
def test_noise_t_wrong_length(backend, x0p, sched, shape):
    """t tensor not of shape (B,) -> ValueError naming t."""
    with pytest.raises(ValueError, match=T_WORD):
        bf.bernoulli_noise(x0p, torch.full(shape, 3), sched, C, seed=0, backend=backend)


@before_dispatch
def test_noise_t_float_tensor(backend, x0p, sched):
    """A floating t tensor -> TypeError naming t."""
    with pytest.raises(TypeError, match=T_WORD):
        bf.bernoulli_noise(x0p, torch.tensor([3.0, 4.0]), sched, C, seed=0, backend=backend)


@before_dispatch
def test_noise_bad_channels(backend, x0p, sched):
    """channels < 1 -> ValueError naming channels."""
    with pytest.raises(ValueError, match="channels"):
        bf.bernoulli_noise(x0p, 3, sched, 0, seed=0, backend=backend)


@before_dispatch
@pytest.mark.parametrize("kw,name", [({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"),
                                     ({"seed": 1, "offset": -1}, "offset"), ({"seed": 1, "offset": 2**64}, "offset"),
                                     ({"seed": 1, "offset": U64_MAX}, "offset")], ids=str)
def test_noise_bad_stream(backend, x0p, sched, kw, name):
    """seed/offset out of range (or running past the last counter) -> ValueError naming it."""
    with pytest.raises(ValueError, match=name):
        bf.bernoulli_noise(x0p, 3, sched, C, backend=backend, **kw)


@before_dispatch
def test_noise_generator_and_seed(backend, x0p, sched):
    """generator together with seed -> ValueError (mentions seed)."""
    with pytest.raises(ValueError, match="seed"):
        bf.bernoulli_noise(x0p, 3, sched, C, generator=bf.PhiloxGenerator(1), seed=2, backend=backend)


@before_dispatch
def test_noise_bad_out_dtype(backend, x0p, sched):
    """An unsupported out_dtype -> TypeError naming out_dtype."""
    with pytest.raises(TypeError, match="out_dtype"):
        bf.bernoulli_noise(x0p, 3, sched, C, seed=0, out_dtype=torch.int32, backend=backend)


# ------------------------------------------------------------------------------------------
# sample_step
# ------------------------------------------------------------------------------------------
@before_dispatch
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool], ids=str)
def test_step_integer_logits(backend, dev, step_inputs, sched, dtype):
    """Integer/bool logits -> TypeError naming logits."""
    with pytest.raises(TypeError, match="logits"):
        _step(step_inputs, sched, backend, logits=torch.zeros(B, L, C, device=dev).to(dtype))


@before_dispatch
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.bool], ids=str)
def test_step_xt_wrong_dtype(backend, dev, step_inputs, sched, dtype):
    """xt_packed not uint8 -> TypeError naming xt_packed."""
    with pytest.raises(TypeError, match="xt_packed"):
        _step(step_inputs, sched, backend, xt_packed=torch.zeros(B, L, NB, device=dev).to(dtype))


@before_dispatch
@pytest.mark.parametrize("shape", [(B, L, 1), (B, L, 3), (B, L + 1, NB), (B + 1, L, NB), (L, NB), (1, L, NB)],
                         ids=str)
def test_step_xt_wrong_shape(backend, dev, step_inputs, sched, shape):
    """xt_packed whose last dim != ceil(C/8) or whose leading dims differ from logits -> ValueError naming xt_packed."""
    with pytest.raises(ValueError, match="xt_packed"):
        _step(step_inputs, sched, backend, xt_packed=torch.zeros(shape, dtype=torch.uint8, device=dev))


@before_dispatch
def test_step_device_mismatch(backend, step_inputs, sched):
    """logits and xt_packed on different devices ("meta" stands in) -> ValueError naming xt_packed."""
    logits, xtp = step_inputs
    with pytest.raises(ValueError, match="xt_packed"):
        _step(step_inputs, sched, backend, xt_packed=xtp.to("meta"))


@before_dispatch
def test_step_uncond_device_mismatch(backend, step_inputs, sched):
    """uncond_logits on another device -> ValueError naming uncond_logits."""
    logits, _ = step_inputs
    with pytest.raises(ValueError, match="uncond_logits"):
        _step(step_inputs, sched, backend, guidance=1.0, uncond_logits=logits.to("meta"))


@before_dispatch
@pytest.mark.parametrize("t,t_prev,name", [(0, 0, T_WORD), (21, 3, T_WORD), (-1, 0, T_WORD), (10, 10, "t_prev"),
                                          (10, 11, "t_prev"), (10, -1, "t_prev"), (1, 1, "t_prev")], ids=str)
def test_step_bad_t(backend, step_inputs, sched, t, t_prev, name):
    """t outside 1..T, t_prev outside 0..t-1 -> ValueError naming t / t_prev."""
    with pytest.raises(ValueError, match=name):
        _step(step_inputs, sched, backend, t=t, t_prev=t_prev)


@before_dispatch
@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), float("nan"), -float("inf")], ids=str)
def test_step_bad_temperature(backend, step_inputs, sched, temperature):
    """temperature <= 0 or non-finite -> ValueError naming temperature."""
    with pytest.raises(ValueError, match="temperature"):
        _step(step_inputs, sched, backend, temperature=temperature)


@before_dispatch
def test_step_guidance_without_uncond(backend, step_inputs, sched):
    """guidance != 0 without uncond_logits -> ValueError naming uncond_logits or guidance."""
    with pytest.raises(ValueError, match="uncond_logits|guidance"):
        _step(step_inputs, sched, backend, guidance=1.5)


@before_dispatch
def test_step_uncond_wrong_shape(backend, dev, step_inputs, sched):
    """uncond_logits of another shape -> ValueError naming uncond_logits."""
    with pytest.raises(ValueError, match="uncond_logits"):
        _step(step_inputs, sched, backend, guidance=1.0, uncond_logits=torch.zeros(B, L, C + 1, device=dev))


@before_dispatch
def test_step_uncond_wrong_dtype(backend, dev, step_inputs, sched):
    """uncond_logits of another dtype than logits -> TypeError naming uncond_logits."""
    with pytest.raises(TypeError, match="uncond_logits"):
        _step(step_inputs, sched, backend, guidance=1.0,
              uncond_logits=torch.zeros(B, L, C, dtype=torch.float16, device=dev))


@pytest.mark.parametrize("where", ["first", "last", "all"])
@pytest.mark.parametrize("final", [False, True], ids=["posterior", "final"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_step_nan_logits(backend, dev, step_inputs, sched, where, final, dtype):
    """NaN in the logits -> ValueError mentioning NaN (never silently turned into bits)."""
    logits = step_inputs[0].to(dtype).clone()
    flat = logits.view(-1)
    if where == "first":
        flat[0] = float("nan")
    elif where == "last":
        flat[-1] = float("nan")
    else:
        flat[:] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _step(step_inputs, sched, backend, logits=logits, t_prev=0 if final else 9)


def test_step_nan_uncond_with_guidance(backend, step_inputs, sched):
    """NaN in uncond_logits used by guidance -> ValueError mentioning NaN."""
    uncond = step_inputs[0].clone()
    uncond[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        _step(step_inputs, sched, backend, guidance=2.0, uncond_logits=uncond)


def test_step_guided_inf_minus_inf_is_nan(backend, step_inputs, sched):
    """cond = uncond = +inf with guidance 1: (1+g) inf - g inf = NaN in the guided logits -> ValueError NaN."""
    logits = step_inputs[0].clone()
    logits[0, 0, 0] = float("inf")
    uncond = step_inputs[0].clone()
    uncond[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN"):
        _step(step_inputs, sched, backend, logits=logits, guidance=1.0, uncond_logits=uncond)


@before_dispatch
@pytest.mark.parametrize("given", ["mask", "known"])
def test_step_mask_without_known(backend, dev, step_inputs, sched, given):
    """mask without known (or known without mask) -> ValueError naming mask/known."""
    cond = torch.ones(L, C, dtype=torch.bool, device=dev)
    with pytest.raises(ValueError, match="mask|known"):
        _step(step_inputs, sched, backend, **{given: cond})


@pytest.mark.parametrize("which", ["mask", "known"])
@pytest.mark.parametrize("shape,dtype", [((L, C + 1), torch.bool), ((3, L, C), torch.float32), ((L + 1, C), torch.bool),
                                         ((L, NB + 1), torch.uint8), ((B, L + 2, NB), torch.uint8)], ids=str)
def test_step_mask_bad_shape(backend, dev, step_inputs, sched, which, shape, dtype):
    """mask/known whose shape does not broadcast to (B, L, C) (or packed (B, L, ceil(C/8))) -> ValueError naming it."""
    good = torch.ones(L, C, dtype=torch.bool, device=dev)
    bad = torch.zeros(shape, dtype=dtype, device=dev)
    kw = {"mask": good, "known": good, which: bad}
    with pytest.raises(ValueError, match=which):
        _step(step_inputs, sched, backend, **kw)


@pytest.mark.parametrize("which", ["mask", "known"])
def test_step_mask_bad_dtype(backend, dev, step_inputs, sched, which):
    """mask/known of an integer dtype other than uint8 -> TypeError naming it."""
    good = torch.ones(L, C, dtype=torch.bool, device=dev)
    kw = {"mask": good, "known": good, which: torch.ones(L, C, dtype=torch.int32, device=dev)}
    with pytest.raises(TypeError, match=which):
        _step(step_inputs, sched, backend, **kw)


@pytest.mark.parametrize("which", ["mask", "known"])
def test_step_mask_other_device(backend, dev, step_inputs, sched, which):
    """mask/known on another device ("meta") -> ValueError naming it."""
    good = torch.ones(L, C, dtype=torch.bool, device=dev)
    kw = {"mask": good, "known": good, which: good.to("meta")}
    with pytest.raises(ValueError, match=which):
        _step(step_inputs, sched, backend, **kw)


@pytest.mark.parametrize("kw,name", [({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"),
                                     ({"offset": -1}, "offset"), ({"offset": 2**64}, "offset"),
                                     ({"offset": U64_MAX}, "offset")], ids=str)
def test_step_bad_stream(backend, step_inputs, sched, kw, name):
    """seed/offset negative or too large (or counters past 2^64-1) -> ValueError naming it."""
    with pytest.raises(ValueError, match=name):
        _step(step_inputs, sched, backend, **kw)


def test_step_generator_and_offset(backend, step_inputs, sched):
    """generator together with seed/offset -> ValueError."""
    logits, xtp = step_inputs
    with pytest.raises(ValueError, match="seed|offset|generator"):
        bf.sample_step(logits, xtp, 10, 9, sched, generator=bf.PhiloxGenerator(1), offset=3, backend=backend)


@before_dispatch
def test_step_bad_out_dtype(backend, step_inputs, sched):
    """An unsupported out_dtype -> TypeError naming out_dtype."""
    with pytest.raises(TypeError, match="out_dtype"):
        _step(step_inputs, sched, backend, out_dtype=torch.int64)


@before_dispatch
def test_errors_leave_generator_untouched_on_validation_failure(backend, step_inputs, sched):
    """A call rejected for a bad argument before drawing (t_prev >= t) does not advance the generator."""
    logits, xtp = step_inputs
    g = bf.PhiloxGenerator(3, offset=10)
    with pytest.raises(ValueError):
        bf.sample_step(logits, xtp, 5, 5, sched, generator=g, backend=backend)
    assert g.offset == 10


def test_nan_message_is_specific(backend, step_inputs, sched):
    """The NaN error is a ValueError whose message says NaN (not a generic assertion)."""
    logits = step_inputs[0].clone()
    logits[0, 1, 2] = math.nan
    with pytest.raises(ValueError) as info:
        _step(step_inputs, sched, backend, logits=logits)
    assert "NaN" in str(info.value)
    assert np.isnan(logits[0, 1, 2].item())  # the input was not modified
