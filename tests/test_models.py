"""bldm_fast.models: the official autoencoder and denoiser, checkpoint loading, time scaling, errors.

Tiny configurations only (16 px images, 4x4 latents). The architectures and key names were
checked bit for bit against the official ZeWang95/BinaryLatentDiffusion modules (released 256 px
C64/C128 autoencoders and 24-layer denoiser) when the package was written; the hand-written
reference forward below pins the denoiser's official formulas in this suite.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from bldm_fast import BernoulliSchedule
from bldm_fast.models import BinaryAutoencoder, BinaryTransformer, find_checkpoint, load_official

AE_KW = dict(nf=32, emb_dim=32, ch_mult=(1, 2), res_blocks=1, img_size=16, attn_resolutions=(8,))
TR_KW = dict(n_embd=32, n_head=2, n_layers=2, latent_size=4, total_steps=8)
C = 8


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


@pytest.fixture(scope="module")
def ae():
    torch.manual_seed(0)
    return _perturb(BinaryAutoencoder(C, **AE_KW), 1, 0.01)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _tr(seed=0, **kw):
    torch.manual_seed(seed)
    return _perturb(BinaryTransformer(C, **{**TR_KW, **kw}), seed + 10)


def _bits(B=2, seed=3):
    return torch.randint(0, 2, (B, 16, C), generator=torch.Generator().manual_seed(seed)).float()


# ---------------------------------------------------------------------------------------------
# autoencoder
# ---------------------------------------------------------------------------------------------
def test_autoencoder_shapes_and_dtypes(ae, images):
    p = ae.encode_probs(images)
    assert p.shape == (2, C, 8, 8) and p.dtype == torch.float32 and 0 <= p.min() and p.max() <= 1
    codes = ae.encode(images, deterministic=True)
    assert codes.shape == (2, C, 8, 8) and codes.dtype == torch.float32
    assert torch.equal(codes, (p > 0.5).float())
    tokens = ae.encode_tokens(images, deterministic=True)
    assert tokens.shape == (2, 64, C) and tokens.is_contiguous()
    assert torch.equal(tokens, codes.reshape(2, C, 64).permute(0, 2, 1))
    with torch.no_grad():
        out = ae.decode(codes)
        assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
        assert torch.equal(ae.decode_tokens(tokens), out)
        assert torch.equal(ae.decode(codes.bool()), out)
        rec, loss, stats = ae(images)
    assert rec.shape == images.shape and loss.dim() == 0 and stats["binary_code"].shape == (2, C, 8, 8)


def test_deterministic_vs_bernoulli_codes(ae, images):
    p = ae.encode_probs(images).detach()
    draw = [ae.encode(images, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])  # same generator seed, same draws
    assert set(draw[0].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(draw[0], (p > 0.5).float())  # a fresh model's p is near 1/2: draws differ
    # the draws are bernoulli(p) (the official torch.bernoulli of the sigmoid output)
    assert torch.equal(draw[0], torch.bernoulli(p, generator=torch.Generator().manual_seed(7)))
    det = BinaryAutoencoder(C, deterministic=True, **AE_KW)
    det.load_state_dict(ae.state_dict())
    assert torch.equal(det.encode(images), (p > 0.5).float())
    assert torch.equal(det(images, code_only=True), (p > 0.5).float())


def test_straight_through_gradient_reaches_encoder(images):
    torch.manual_seed(0)
    model = BinaryAutoencoder(C, deterministic=True, **AE_KW)
    rec, loss, _ = model(images)
    rec.square().mean().backward()
    for p in (model.encoder.blocks[0].weight, model.quantize.proj[0].weight, model.generator.blocks[-1].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # the codebook loss alone also reaches the encoder
    model.zero_grad()
    model(images)[1].backward()
    assert model.encoder.blocks[0].weight.grad.abs().sum() > 0


def test_tanh_variant_uses_plus_minus_one_internally(images):
    torch.manual_seed(0)
    model = BinaryAutoencoder(C, use_tanh=True, deterministic=True, **AE_KW).eval()
    p = model.encode_probs(images)
    z = model.quantize.proj(model.encoder(images))
    assert torch.allclose(p, z * 0.5 + 0.5)
    codes = model.encode(images)
    assert set(codes.unique().tolist()) <= {0.0, 1.0}
    official_code = model(images, code_only=True)  # the official forward returns +-1 codes
    assert torch.equal(official_code, (codes - 0.5) * 2)
    with torch.no_grad():
        assert torch.equal(model.decode(codes), model(None, code=official_code)[0])


def test_autoencoder_bad_input(ae):
    with pytest.raises(ValueError, match="images"):
        ae.encode(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="images"):
        ae.encode(torch.rand(1, 3, 15, 16))
    with pytest.raises(TypeError, match="images"):
        ae.encode(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="codes"):
        ae.decode(torch.zeros(1, C + 1, 8, 8))
    with pytest.raises(ValueError, match="tokens"):
        ae.decode_tokens(torch.zeros(1, 60, C))
    with pytest.raises(ValueError, match="multiples of 32"):
        BinaryAutoencoder(C, **{**AE_KW, "nf": 16})


# ---------------------------------------------------------------------------------------------
# denoiser
# ---------------------------------------------------------------------------------------------
def reference_forward(m: BinaryTransformer, x, t, S, label=None):
    """The official TransformerBD forward, written out with plain tensor ops."""
    L, n, H = x.shape[1], m.n_embd, m.n_head
    h = ((x - 0.5) * 2.0) @ m.tok_emb.weight + m.pos_emb[:, :L]
    half = n // 2
    freq = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    arg = (t / float(S) * 4000.0)[:, None] * freq[None]
    te = m.time_step_embedding
    tt = F.linear(F.silu(F.linear(torch.cat([arg.sin(), arg.cos()], -1), te.l0.weight, te.l0.bias)),
                  te.linear.weight, te.linear.bias)
    seq = [h, tt[:, None]] + ([] if label is None else [m.cls_embedding(label)[:, None]])
    s = torch.cat(seq, 1)
    B, N, _ = s.shape
    for blk in m.blocks:
        qkv = F.linear(F.layer_norm(s, (n,), blk.ln1.weight, blk.ln1.bias), blk.attn.qkv.weight, blk.attn.qkv.bias)
        q, k, v = qkv.reshape(B, N, 3, H, n // H).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(n // H), -1) @ v
        s = s + blk.gamma_1 * F.linear(att.transpose(1, 2).reshape(B, N, n), blk.attn.proj.weight, blk.attn.proj.bias)
        y = F.layer_norm(s, (n,), blk.ln2.weight, blk.ln2.bias)
        y = F.linear(F.gelu(F.linear(y, blk.mlp[0].weight, blk.mlp[0].bias)), blk.mlp[2].weight, blk.mlp[2].bias)
        s = s + blk.gamma_2 * y
    return F.linear(F.layer_norm(s[:, :L], (n,), m.ln_f.weight, m.ln_f.bias), m.head.weight, m.head.bias)


@pytest.mark.parametrize("conditional", [None, "class", "vector"])
def test_transformer_matches_reference_formulas(conditional):
    kw = {"class": dict(num_classes=5), "vector": dict(cond_dim=6)}.get(conditional, {})
    m = _tr(**kw)
    x, t = _bits(), torch.tensor([0, 7])
    label = {"class": torch.tensor([1, 4]), "vector": torch.randn(2, 6)}.get(conditional)
    with torch.no_grad():
        out = m(x, label, time_steps=t)
        assert out.shape == (2, 16, C) and out.dtype == torch.float32
        torch.testing.assert_close(out, reference_forward(m, x, t, 8, label), rtol=1e-5, atol=1e-5)
        if conditional:  # label=None is the unconditional (guidance) branch: no class token
            torch.testing.assert_close(m(x, None, t), reference_forward(m, x, t, 8), rtol=1e-5, atol=1e-5)
        assert torch.equal(m(x.bool(), label, t), out)
        assert torch.equal(m(x, label, torch.tensor(3)), m(x, label, 3))


def test_position_embedding_is_2d_sincos():
    pe = BinaryTransformer(C, **TR_KW).pos_emb[0]  # (16, 32): first half encodes the column, second the row
    omega = 1.0 / 10000 ** (torch.arange(8, dtype=torch.float64) / 8)
    row, col = 2, 3
    want = torch.cat([torch.sin(col * omega), torch.cos(col * omega), torch.sin(row * omega), torch.cos(row * omega)])
    torch.testing.assert_close(pe[row * 4 + col].double(), want, rtol=0, atol=1e-7)


def test_time_scaling_default_and_fix():
    """Official: time input = time_steps / sample_steps * 4000 (sample_steps defaults to total_steps);
    fix_time_scale=True: time_steps / total_steps * 4000 whatever sample_steps is."""
    base = _tr()
    sd = base.state_dict()

    def build(**kw):
        m = BinaryTransformer(C, **{**TR_KW, **kw}).eval()
        m.load_state_dict(sd)
        return m

    official, mis, fixed = build(), build(sample_steps=2), build(sample_steps=2, fix_time_scale=True)
    t = torch.tensor([1, 3])
    assert torch.equal(official.time_input(t), t / 8.0 * 4000.0)
    assert torch.equal(mis.time_input(t), t / 2.0 * 4000.0)
    assert torch.equal(fixed.time_input(t), official.time_input(t))
    x = _bits()
    with torch.no_grad():
        ref = official(x, time_steps=t)
        assert torch.equal(fixed(x, time_steps=t), ref)
        got = mis(x, time_steps=t)
        assert not torch.allclose(got, ref, atol=1e-3)
        # the official mis-scaling is exactly a 4x (= total_steps / sample_steps) larger time
        assert torch.equal(got, official(x, time_steps=t * 4))
        torch.testing.assert_close(got, reference_forward(base, x, t, 2), rtol=1e-5, atol=1e-5)
        # per-call override, and the attribute samplers may set
        assert torch.equal(official(x, time_steps=t, sample_steps=2), got)
        assert torch.equal(fixed(x, time_steps=t, sample_steps=2), ref)
        official.sample_steps = 2
        assert torch.equal(official(x, time_steps=t), got)


def test_transformer_bad_input():
    m, cm = _tr(), _tr(num_classes=5)
    x, t = _bits(), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"^x must have shape \(B, 16, 8\)"):
        m(torch.zeros(2, 9, C), time_steps=t)
    with pytest.raises(ValueError, match="^x must"):
        m(torch.zeros(2, 16, C + 1), time_steps=t)
    with pytest.raises(ValueError, match="^label must be None: this model is unconditional"):
        m(x, torch.tensor([0, 1]), t)
    with pytest.raises(ValueError, match="^time_steps is required"):
        m(x)
    with pytest.raises(ValueError, match="^time_steps must have shape"):
        m(x, time_steps=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^label must be in \[0, 4\]"):
        cm(x, torch.tensor([0, 5]), t)
    with pytest.raises(ValueError, match="^label must be an integer tensor"):
        cm(x, torch.tensor([0.0, 1.0]), t)
    with pytest.raises(ValueError, match="n_embd must be a multiple of n_head"):
        BinaryTransformer(C, **{**TR_KW, "n_head": 3})


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _official_sampler_ckpt(m: BinaryTransformer, kind="cos", ddp=False) -> dict:
    s = BernoulliSchedule(m.total_steps, kind)
    sd = {"_denoise_fn." + k: v for k, v in m.state_dict().items()}
    sd.update({"scheduler.k_final": s.k, "scheduler.b_final": s.b, "scheduler.beta": s.beta,
               "scheduler.cumbeta": torch.cumprod(s.beta, 0)})
    return {("module." + k if ddp else k): v for k, v in sd.items()}


def _official_ae_ckpt(model: BinaryAutoencoder) -> dict:
    sd = {"ae." + k: v for k, v in model.state_dict().items()}
    sd["disc.main.0.weight"] = torch.zeros(4, 3, 4, 4)  # training-only BinaryGAN parts, ignored
    sd["perceptual.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    return sd


def test_autoencoder_state_dict_round_trip(ae, images, tmp_path):
    torch.save(ae.state_dict(), tmp_path / "ae.pt")
    loaded = load_official(tmp_path / "ae.pt", img_size=16, use_tanh=False, deterministic=False)
    assert isinstance(loaded, BinaryAutoencoder) and not loaded.training
    assert loaded.config() == ae.config()
    assert loaded.official_info["kind"] == "autoencoder"
    with torch.no_grad():
        assert torch.equal(loaded.encode(images, deterministic=True), ae.encode(images, deterministic=True))
        codes = ae.encode(images, deterministic=True)
        assert torch.equal(loaded.decode(codes), ae.decode(codes))


def test_autoencoder_official_layout_and_ema(ae, tmp_path):
    other = _perturb(BinaryAutoencoder(C, norm_first=False, gen_mul=2.0, **AE_KW), 5)
    folder = tmp_path / "saved_models"
    folder.mkdir()
    torch.save(_official_ae_ckpt(ae), folder / "binaryae_ema_20.th")
    torch.save(_official_ae_ckpt(other), folder / "binaryae_20.th")
    torch.save(_official_ae_ckpt(other), folder / "binaryae_ema_10.th")
    torch.save({}, folder / "ae_optim_20.th")  # optimiser states are never picked
    kw = dict(img_size=16, use_tanh=False, deterministic=False)
    ema = load_official(tmp_path, **kw)  # the log_dir: EMA weights of the latest step
    info = {k: ema.official_info[k] for k in ("file", "ema", "step", "kind", "log")}
    assert info == {"file": str(folder / "binaryae_ema_20.th"), "ema": True, "step": 20, "kind": "autoencoder",
                    "log": None}
    assert all(torch.equal(v, ae.state_dict()[k]) for k, v in ema.state_dict().items())
    raw = load_official(folder, ema=False, **kw)
    assert raw.config() == {**ae.config(), "norm_first": False, "gen_mul": 2.0}
    assert load_official(folder, step=10, **kw).official_info["step"] == 10
    with pytest.raises(ValueError, match="no EMA autoencoder or sampler checkpoint of step 30"):
        find_checkpoint(folder, step=30)


def test_transformer_state_dict_round_trip(tmp_path):
    m = _tr(num_classes=5)
    torch.save(m.state_dict(), tmp_path / "tr.pt")
    loaded = load_official(tmp_path / "tr.pt", n_head=2, total_steps=8, sample_steps=8)
    assert isinstance(loaded, BinaryTransformer) and loaded.config() == {**m.config(), "sample_steps": 8}
    x, t, y = _bits(), torch.tensor([2, 5]), torch.tensor([0, 3])
    with torch.no_grad():
        assert torch.equal(loaded(x, y, t), m(x, y, t))
    with pytest.raises(ValueError, match=r"total_steps is not stored .* pass total_steps= \(official --total_steps\)"):
        load_official(tmp_path / "tr.pt", n_head=2)
    with pytest.raises(ValueError, match=r"n_head is not stored .* pass n_head= \(official --bert_n_head\)"):
        load_official(tmp_path / "tr.pt", total_steps=8)


@pytest.mark.parametrize("ddp", [False, True])
def test_transformer_official_sampler_checkpoint(tmp_path, ddp):
    m = _tr(cond_dim=6)
    name = "bld_40.th" if ddp else "bld_ema_40.th"
    torch.save(_official_sampler_ckpt(m, "linear", ddp=ddp), tmp_path / name)
    loaded = load_official(tmp_path, ema=not ddp, n_head=2, sample_steps=8)
    info = {k: loaded.official_info[k] for k in ("file", "ema", "step", "kind", "total_steps", "beta_type")}
    assert info == {"file": str(tmp_path / name), "ema": not ddp, "step": 40, "kind": "sampler", "total_steps": 8,
                    "beta_type": "linear"}
    assert loaded.config() == {**m.config(), "sample_steps": 8}
    x, t, y = _bits(), torch.tensor([2, 5]), torch.randn(2, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x, y, t), m(x, y, t))
    fixed = load_official(tmp_path / name, n_head=2, sample_steps=2, fix_time_scale=True)
    assert fixed.sample_steps == 2 and fixed.time_scale_steps() == 8


def test_checkpoint_key_errors(ae, tmp_path):
    sd = _tr().state_dict()
    missing = {k: v for k, v in sd.items() if k != "head.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match=r"does not match BinaryTransformer: missing keys: head\.bias"):
        load_official(tmp_path / "missing.pt", n_head=2, total_steps=8, sample_steps=8)
    torch.save({**sd, "blocks.0.extra": torch.zeros(1)}, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"unexpected keys: blocks\.0\.extra"):
        load_official(tmp_path / "extra.pt", n_head=2, total_steps=8, sample_steps=8)
    ae_sd = _official_ae_ckpt(ae)
    ae_sd["ae.quantize.proj.0.bias"] = torch.zeros(C + 1)
    torch.save(ae_sd, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape mismatches .*quantize\.proj\.0\.bias \(9,\) vs \(8,\)"):
        load_official(tmp_path / "shape.pt", img_size=16, use_tanh=False, deterministic=False)
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "foo.pt")
    with pytest.raises(ValueError, match="neither an autoencoder nor a sampler checkpoint"):
        load_official(tmp_path / "foo.pt")
    torch.save(sd, tmp_path / "tr.pt")
    with pytest.raises(ValueError, match="is a sampler checkpoint, not an autoencoder one"):
        load_official(tmp_path / "tr.pt", kind="autoencoder", n_head=2, total_steps=8)
    with pytest.raises(FileNotFoundError):
        load_official(os.fspath(tmp_path / "nowhere"))
