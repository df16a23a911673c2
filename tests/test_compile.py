"""torch.compile / torch.export of the ops and the model API (issue 16 item 2): new values of t,
t_prev, seed, offset (and an advancing PhiloxGenerator), tensor temperature/guidance, compile
without recompiles (graphs counted with torch._dynamo's CompileCounter) and return the eager bits.
Shapes are small: compiling is slow on two cores. The native (cpu) backend is the one compiled;
without it these tests are skipped, saying so."""

import pytest
import torch

import bldm_fast as bf
from bf_testutil import random_bits, random_logits

pytestmark = pytest.mark.skipif(not bf.native_available(), reason="needs the C++ extension bldm_fast._C (cpu backend)")

B, L, C = 2, 4, 12
T = 20


def _counter():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    return CompileCounter()


def _inputs():
    logits = random_logits((B, L, C), seed=1)
    uncond = random_logits((B, L, C), seed=2)
    xt = bf.pack_bits(torch.from_numpy(random_bits((B, L, C), seed=3)))
    return logits, uncond, xt


def test_sample_step_new_t_seed_offset_compile_once_and_match_eager():
    """A fullgraph-compiled step called with a new (t, t_prev, seed, offset) every time, the final
    threshold step included, compiles at most 2 graphs (the first call specialises on its Python
    ints, the second makes them symbolic) and returns the eager bits every call. (Python ints of
    2^63 and more are not SymInts: such seeds/offsets specialise; their bits are tested eagerly.)"""
    sched = bf.BernoulliSchedule(T, "cos")
    logits, uncond, xt = _inputs()
    cnt = _counter()

    def step(lg, x, t, t_prev, seed, offset):
        return bf.sample_step(lg, x, t, t_prev, sched, seed=seed, offset=offset, temperature=0.9, guidance=1.5,
                              uncond_logits=uncond, return_probs=True, out_dtype=torch.float32)

    compiled = torch.compile(step, backend=cnt, fullgraph=True)
    calls = [(20, 17, 5, 0), (17, 11, 6, 2**40), (11, 6, 7, 3 * 2**40 + 5), (6, 3, 2**62 + 9, 2**63 - 100),
             (3, 1, 9, 12), (1, 0, 10, 77)]
    for t, t_prev, seed, offset in calls:
        got, want = compiled(logits, xt, t, t_prev, seed, offset), step(logits, xt, t, t_prev, seed, offset)
        assert all(torch.equal(g, w) for g, w in zip(got, want)), (t, t_prev)
    assert cnt.frame_count <= 2, f"{cnt.frame_count} graphs for {len(calls)} calls"


def test_sample_step_advancing_generator_and_tensor_scalars():
    """t and t_prev as 0-d tensors, temperature and guidance as tensors, and a PhiloxGenerator that
    advances every call: one graph, eager bits, and the generator ends where eager ends."""
    sched = bf.BernoulliSchedule(T)
    logits, uncond, xt = _inputs()
    cnt = _counter()

    def step(t, t_prev, temp, g, gen):
        return bf.sample_step(logits, xt, t, t_prev, sched, generator=gen, temperature=temp, guidance=g,
                              uncond_logits=uncond).packed

    compiled = torch.compile(step, backend=cnt, fullgraph=True)
    g_eager, g_comp = bf.PhiloxGenerator(3), bf.PhiloxGenerator(3)
    for t, t_prev in ((20, 15), (15, 9), (9, 0)):
        args = (torch.tensor(t), torch.tensor(t_prev), torch.tensor(0.7), torch.tensor(2.0))
        assert torch.equal(compiled(*args, g_comp), step(*args, g_eager))
    assert g_comp.offset == g_eager.offset == 3 * (B * L * C // 4)
    assert cnt.frame_count <= 2


def test_bernoulli_noise_per_sample_t_compiles_once():
    sched = bf.BernoulliSchedule(T)
    x0 = bf.pack_bits(torch.from_numpy(random_bits((B, L, C), seed=4)))
    cnt = _counter()

    def noise(t, seed, offset):
        return bf.bernoulli_noise(x0, t, sched, C, seed=seed, offset=offset, out_dtype=torch.float32,
                                  return_flip=True)

    compiled = torch.compile(noise, backend=cnt, fullgraph=True)
    for i in range(4):
        t = torch.randint(1, T + 1, (B,))
        got, want = compiled(t, 100 + i, 7 * i), noise(t, 100 + i, 7 * i)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert cnt.frame_count <= 2


class _Ops(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sched = bf.BernoulliSchedule(T)

    def forward(self, logits, xt, x0, t, weights):
        step = bf.sample_step(logits, xt, 9, 4, self.sched, seed=1, offset=2, out_dtype=torch.float32)
        noise = bf.bernoulli_noise(x0, t, self.sched, C, seed=3, offset=4, return_flip=True)
        packed = bf.pack_bits(step.model_input)
        loss = bf.flip_bce_loss(logits, noise.flip, weights, weights)
        return step.packed, noise.packed, packed, loss


def test_torch_export_of_the_ops_runs_like_eager():
    logits, _, xt = _inputs()
    x0 = bf.pack_bits(torch.from_numpy(random_bits((B, L, C), seed=5)))
    t = torch.tensor([3, 17])
    w = torch.full((B,), 0.01)
    module = _Ops()
    exported = torch.export.export(module, (logits, xt, x0, t, w))
    for got, want in zip(exported.module()(logits, xt, x0, t, w), module(logits, xt, x0, t, w)):
        assert torch.equal(got, want)


def _tiny_model(conditional: bool):
    den = bf.models.BinaryTransformer(codebook_size=C, n_embd=16, n_head=2, n_layers=1, latent_size=2,
                                      total_steps=T, num_classes=3 if conditional else None)
    return bf.BernoulliDiffusion(den.eval(), T, "cos", latent_shape=(2, 2), channels=C,
                                 num_classes=3 if conditional else None)


def test_bernoulli_diffusion_sample_fullgraph_matches_eager():
    model = _tiny_model(conditional=True)
    labels = torch.tensor([0, 2])
    cnt = _counter()

    def run(seed):
        return model.sample(B, labels=labels, steps=5, guidance=1.0, temperature=0.8, seed=seed, progress=False)

    compiled = torch.compile(run, backend=cnt, fullgraph=True)
    for seed in (11, 12):
        assert torch.equal(compiled(seed), run(seed))
    assert cnt.frame_count <= 2


def test_bernoulli_diffusion_loss_per_sample_t_fullgraph():
    model = _tiny_model(conditional=False)
    x0 = bf.pack_bits(torch.from_numpy(random_bits((B, L, C), seed=6)))
    cnt = _counter()

    def loss(t, seed):
        return model.loss(x0, t=t, seed=seed)["loss"]

    compiled = torch.compile(loss, backend=cnt, fullgraph=True)
    for seed in (1, 2, 3):
        t = torch.randint(1, T + 1, (B,))
        torch.testing.assert_close(compiled(t, seed), loss(t, seed), rtol=1e-5, atol=1e-6)
    assert cnt.frame_count <= 2
