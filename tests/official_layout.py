"""Writing checkpoint folders exactly as the official ZeWang95/BinaryLatentDiffusion scripts do.

Read from the official code (not copied): ``utils/log_utils.py`` (``config_log``: logging to
``<log_dir>/log.txt`` with format ``"%(asctime)s - %(message)s"``; ``start_training_log``: the line
``Using following hparams:`` then ``> key: value`` per hparam, keys sorted, ``str(value)``;
``save_model``: ``torch.save(model.state_dict(), <log_dir>/saved_models/<name>_<step>.th)``),
``train_ae_dist.py`` (saves ``binaryae`` = the BinaryGAN without DDP, ``ae_optim``, ``disc_optim``
and with ``--ema`` ``binaryae_ema``), ``train_sampler_online.py`` (saves ``bld`` from the DDP
wrapper: keys ``module.``; ``bld_optim``, ``bld_scaler``; ``bld_ema`` from the bare copy),
``models/sampler.py`` (``self.embedding_weight = embedding_weight``: the autoencoder's
``quantize.embed.weight`` Parameter, registered first), ``models/binarylatent.py``
(``_denoise_fn`` then ``scheduler`` with buffers ``k_final, b_final, beta, cumbeta``, each
``torch.Tensor(float64 numpy)``, ``cumbeta = cumprod(beta)``), ``models/binaryae.py``
(``BinaryGAN``: ``ae``, ``disc`` = a PatchGAN ``main`` Sequential, ``perceptual`` = LPIPS) and the
hparams defaults (``hparams/defaults/*.py``, ``set_up_hparams.py``).

The state dicts are built from this package's models (whose key names equal the official ones),
renamed as the official wrappers name them.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

import official

AE_DEFAULTS = dict(base_lr=4.5e-6, beta=0.25, path_to_data=None, code_weight=0.0, norm_first=False, use_tanh=False,
                   deterministic=False, gen_mul=1.0, batch_size=3, disc_layers=3, disc_weight_max=1,
                   disc_start_step=30001, ndf=64, perceptual_weight=1.0)
TRAINING_ARGS = dict(amp=True, custom_dataset_path=None, dataset="custom", ema_beta=0.995, ema=True, load_dir="test",
                     load_optim=False, load_step=0, lr=None, steps_per_update_ema=10, train_steps=100000000,
                     save_individually=False, steps_per_checkpoint=25000, steps_per_display_output=5000,
                     steps_per_eval=0, steps_per_log=10, steps_per_save_output=5000, visdom_port=8097,
                     visdom_server=None, world_size=1, local_rank=-1, dist_on_itp=False, dist_url="env://",
                     dist_eval=False, horizontal_flip=False, cp_data=False)
SAMPLER_DEFAULTS = dict(total_steps=256, sample_steps=256, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0, temp=1.0,
                        weight_decay=0.0, loss_final="weighted", beta_type="linear", epsilon=0.0, grad_norm=0.0,
                        drop_path=0.0, p_flip=False, focal=0, aux=0.0, use_softmax=False, update_freq=1,
                        load_model_step=-1, load_model_dir="", guidance=False, omega=0.0, root_path="",
                        allow_mismatch=False, cross=False, use_gcc=False, reset_step=False, init_scale=0,
                        optim_eps=1e-8, reset_scaler=False, bert_n_emb=768, bert_n_head=12, bert_n_layers=24,
                        block_size=256, lr=2e-4, warmup_iters=10000, sampler="bld", all_steps=False, cos=False,
                        cls_tkn=False)


def ae_hparams(ae, **kw) -> dict:
    """The hparams ``train_ae_dist.py`` logs for the autoencoder ``ae`` (custom dataset)."""
    lat = ae.img_size // ae.downsample_factor
    H = {**AE_DEFAULTS, **TRAINING_ARGS, "attn_resolutions": list(ae.attn_resolutions), "ch_mult": list(ae.ch_mult),
         "codebook_size": ae.codebook_size, "emb_dim": ae.emb_dim, "img_size": ae.img_size,
         "latent_shape": [1, lat, lat], "n_channels": ae.in_channels, "nf": ae.nf, "res_blocks": ae.res_blocks,
         "norm_first": ae.norm_first, "gen_mul": ae.gen_mul, "use_tanh": ae.use_tanh,
         "deterministic": ae.deterministic, "log_dir": "logs/binaryae_custom"}
    H["lr"] = H["base_lr"] * H["batch_size"]
    H.update(kw)
    return H


def sampler_hparams(ae, den, *, p_flip=True, beta_type="linear", **kw) -> dict:
    """The hparams ``train_sampler_online.py`` logs (the autoencoder's, then the sampler's, then flags)."""
    H = ae_hparams(ae)
    H["vqgan_batch_size"] = H["batch_size"]
    H.update(SAMPLER_DEFAULTS)
    H.update(dict(bert_n_emb=den.n_embd, bert_n_head=den.n_head, bert_n_layers=den.n_layers,
                  block_size=den.num_tokens, total_steps=den.total_steps,
                  sample_steps=den.sample_steps or den.total_steps, p_flip=p_flip, beta_type=beta_type,
                  ae_load_dir="logs/BAE_C64", ae_load_step=8100000, batch_size=64, loss_final="mean",
                  log_dir="logs/bnl_test"))
    if den.num_classes is not None:
        H["dataset"] = "imagenet"
        H["num_classes"] = den.num_classes
    H.update(kw)
    return H


def write_log(log_dir, hparams: dict, title: str, extra_lines=()) -> str:
    """Append a run's ``log.txt`` as ``config_log`` + ``start_training_log`` write it."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, "log.txt")
    stamp = "2023-04-07 12:00:00,000 - "
    lines = ["---------------------------------", title, "Using following hparams:"]
    lines += [f"> {k}: {hparams[k]}" for k in sorted(hparams)]
    lines += ["Sampler params total: 0.1M", "Step: 0  loss: 0.6931  bce_loss: 0.6931  acc: 50  lr: 1.0E-06  ",
              *extra_lines]
    with open(path, "a") as f:
        f.writelines(stamp + line + "\n" for line in lines)
    return path


def _patchgan(nc: int, ndf: int, n_layers: int) -> nn.Sequential:
    layers = [nn.Conv2d(nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers + 1):
        prev, mult = mult, min(2 ** n, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=False),
                   nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def binarygan_state_dict(ae) -> OrderedDict:
    """``BinaryGAN(H).state_dict()``: ``ae.*``, then ``disc.main.*``, then LPIPS ``perceptual.*``."""
    sd = OrderedDict(("ae." + k, v) for k, v in ae.state_dict().items())
    torch.manual_seed(5)
    for k, v in _patchgan(ae.in_channels, 8, 2).state_dict().items():
        sd["disc.main." + k] = v
    sd["perceptual.scaling_layer.shift"] = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    sd["perceptual.scaling_layer.scale"] = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    sd["perceptual.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3)
    sd["perceptual.net.slice1.0.bias"] = torch.randn(64)
    sd["perceptual.lin0.model.1.weight"] = torch.rand(1, 64, 1, 1)
    return sd


def scheduler_buffers(T: int, kind: str) -> OrderedDict:
    """``noise_scheduler(T, kind)``'s buffers: the float64 tables rounded once to float32."""
    k, b, beta = (torch.from_numpy(np.asarray(t)) for t in official.tables_f32(T, kind))
    return OrderedDict([("k_final", k), ("b_final", b), ("beta", beta), ("cumbeta", torch.cumprod(beta, 0))])


def binarydiffusion_state_dict(den, embedding_weight: torch.Tensor, kind: str, ddp: bool = False) -> OrderedDict:
    """``BinaryDiffusion(H, den, C, embedding_weight).state_dict()`` (``module.`` keys from DDP)."""
    sd = OrderedDict([("embedding_weight", embedding_weight.detach().clone())])
    sd.update(("_denoise_fn." + k, v) for k, v in den.state_dict().items())
    sd.update(("scheduler." + k, v) for k, v in scheduler_buffers(den.total_steps, kind).items())
    return OrderedDict((("module." + k) if ddp else k, v) for k, v in sd.items())


def write_ae_run(log_dir, ae, step: int = 20, *, log: bool = True, ema_ae=None) -> str:
    """An official autoencoder log folder: ``binaryae_<step>.th`` (raw), ``binaryae_ema_<step>.th``
    (``ema_ae`` or ``ae``), the optimiser files and ``log.txt``; returns the EMA file."""
    models = os.path.join(log_dir, "saved_models")
    os.makedirs(models, exist_ok=True)
    torch.save(binarygan_state_dict(ae), os.path.join(models, f"binaryae_{step}.th"))
    torch.save(torch.optim.Adam(ae.parameters(), lr=1e-4).state_dict(), os.path.join(models, f"ae_optim_{step}.th"))
    torch.save(torch.optim.Adam(ae.parameters(), lr=1e-4).state_dict(), os.path.join(models, f"disc_optim_{step}.th"))
    ema_file = os.path.join(models, f"binaryae_ema_{step}.th")
    torch.save(binarygan_state_dict(ema_ae if ema_ae is not None else ae), ema_file)
    if log:
        write_log(log_dir, ae_hparams(ae), "Setting up training for binaryae on custom",
                  [f"Saving binaryae to binaryae_{step}.th"])
    return ema_file


def write_sampler_run(log_dir, den, ae, step: int = 40, *, kind: str = "linear", p_flip: bool = True,
                      log: bool = True, ema_den=None, **hparams) -> str:
    """An official sampler log folder: ``bld_<step>.th`` (DDP keys), ``bld_ema_<step>.th``,
    ``bld_optim``/``bld_scaler`` files and ``log.txt``; returns the EMA file."""
    models = os.path.join(log_dir, "saved_models")
    os.makedirs(models, exist_ok=True)
    emb = ae.quantize.embed.weight
    torch.save(binarydiffusion_state_dict(den, emb, kind, ddp=True), os.path.join(models, f"bld_{step}.th"))
    torch.save(torch.optim.AdamW(den.parameters()).state_dict(), os.path.join(models, f"bld_optim_{step}.th"))
    torch.save({"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                "_growth_tracker": 0}, os.path.join(models, f"bld_scaler_{step}.th"))
    ema_file = os.path.join(models, f"bld_ema_{step}.th")
    torch.save(binarydiffusion_state_dict(ema_den if ema_den is not None else den, emb, kind), ema_file)
    if log:
        write_log(log_dir, sampler_hparams(ae, den, p_flip=p_flip, beta_type=kind, **hparams),
                  "Setting up training for bld",
                  [f"Saving bld to bld_{step}.th", f"Saving bld_ema to bld_ema_{step}.th"])
    return ema_file
