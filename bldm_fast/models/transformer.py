"""The official Bernoulli-diffusion denoiser (``TransformerBD`` of ZeWang95/BinaryLatentDiffusion).

``state_dict`` keys equal the official ``TransformerBD`` ones: ``tok_emb.weight``, ``pos_emb``,
``blocks.{i}.*``, ``ln_f.*``, ``head.*``, ``time_step_embedding.{l0,linear}.*`` and, for
conditional models, ``cls_embedding.*``. (In official sampler checkpoints these sit under
``_denoise_fn.``; ``bldm_fast.models.load_official`` strips that.)

Time scaling (the official ``AdaTkn_Time`` / ``SinusoidalPosEmb``): the time token embeds
``time_steps / S * 4000`` where the official ``S`` is ``H.sample_steps``, the number of *sampling*
steps the denoiser object was built for, while ``time_steps`` (``t - 1``) always lives on the
``total_steps``-step training grid. Training runs used ``sample_steps == total_steps``, so a model
sampled with fewer steps (e.g. the README's ``--sample_steps 16`` for a 64-step model) sees times
scaled ``total_steps / sample_steps`` times too large. ``BinaryTransformer`` reproduces that by
default (``S = sample_steps``, which defaults to ``total_steps``); ``fix_time_scale=True`` always
uses ``S = total_steps``, the scale the model was trained with.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_tensor_range
from .layers import TIME_RESCALE, Block, TimeToken, sincos_pos_embed_2d


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


class BinaryTransformer(nn.Module):
    """Denoiser: 0/1 latents ``(B, L, C)`` + time (+ class) -> per-bit logits ``(B, L, C)``.

    Tokens: ``((x - 0.5) * 2) @ tok_emb.weight + pos_emb`` (``pos_emb`` a parameter initialised to
    the 2-D sin-cos table of a ``latent_size x latent_size`` grid), then the time token, then the
    class token when a label is given; pre-LN blocks; ``head(ln_f(.))`` of the first ``L`` tokens.

    Args:
        codebook_size: C, bits per token (official ``H.codebook_size``; released models: 64).
        n_embd, n_head, n_layers: width, heads, depth (``H.bert_n_emb/bert_n_head/bert_n_layers``).
        latent_size: side of the square latent grid, ``L = latent_size**2`` (``H.latent_shape[-1]``).
        total_steps: T of the diffusion (``H.total_steps``); ``time_steps`` are ``t - 1`` on it.
        sample_steps: the official ``H.sample_steps`` that scales the time embedding; None means
            ``total_steps``. A plain attribute: samplers reproducing an official run with fewer
            steps may set it (or pass ``sample_steps=`` to ``forward``).
        fix_time_scale: False (default, official): the time input is
            ``time_steps / sample_steps * 4000``; True: ``time_steps / total_steps * 4000`` whatever
            ``sample_steps`` is, i.e. the training scale (see the module docstring).
        num_classes: class-conditional model (official ``imagenet*`` datasets): adds
            ``cls_embedding = Embedding(num_classes, n_embd)``; labels are int64 ``(B,)``.
        cond_dim: vector-conditional model (official ``laion`` text-to-image token model,
            ``cond_dim=768``): ``cls_embedding = Linear(cond_dim, n_embd)``; labels float ``(B, cond_dim)``.
        embd_pdrop, resid_pdrop, drop_path: dropout rates (official defaults 0).

    Raises:
        ValueError: bad sizes, ``n_embd`` not a multiple of ``n_head`` and of 4, or both
            ``num_classes`` and ``cond_dim``.
    """

    def __init__(
        self,
        codebook_size: int = 64,
        *,
        n_embd: int = 768,
        n_head: int = 12,
        n_layers: int = 24,
        latent_size: int = 16,
        total_steps: int = 64,
        sample_steps: int | None = None,
        fix_time_scale: bool = False,
        num_classes: int | None = None,
        cond_dim: int | None = None,
        embd_pdrop: float = 0.0,
        resid_pdrop: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        for name, v in (("codebook_size", codebook_size), ("n_embd", n_embd), ("n_head", n_head),
                        ("n_layers", n_layers), ("latent_size", latent_size), ("total_steps", total_steps)):
            _positive_int(v, name)
        if sample_steps is not None:
            _positive_int(sample_steps, "sample_steps")
        if n_embd % n_head or n_embd % 4:
            raise ValueError(f"n_embd must be a multiple of n_head and of 4, got n_embd={n_embd}, n_head={n_head}")
        if num_classes is not None and cond_dim is not None:
            raise ValueError("give at most one of num_classes and cond_dim")
        self.codebook_size = codebook_size
        self.n_embd = n_embd
        self.n_head = n_head
        self.n_layers = n_layers
        self.latent_size = latent_size
        self.num_tokens = latent_size * latent_size
        self.total_steps = total_steps
        self.sample_steps = sample_steps
        self.fix_time_scale = bool(fix_time_scale)
        self.num_classes = None if num_classes is None else _positive_int(num_classes, "num_classes")
        self.cond_dim = None if cond_dim is None else _positive_int(cond_dim, "cond_dim")
        self.dropout = dict(embd_pdrop=embd_pdrop, resid_pdrop=resid_pdrop, drop_path=drop_path)

        self.tok_emb = nn.Embedding(codebook_size, n_embd)
        nn.init.normal_(self.tok_emb.weight, 0.0, 0.02)
        self.drop = nn.Dropout(embd_pdrop)
        if self.num_classes is not None:
            self.cls_embedding = nn.Embedding(self.num_classes, n_embd)
        elif self.cond_dim is not None:
            self.cls_embedding = nn.Linear(self.cond_dim, n_embd)
        dpr = [x.item() for x in torch.linspace(0, drop_path, n_layers)]
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, resid_pdrop, dpr[i]) for i in range(n_layers)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, codebook_size, bias=True)
        self.time_step_embedding = TimeToken(n_embd)
        self.pos_emb = nn.Parameter(sincos_pos_embed_2d(n_embd, latent_size).unsqueeze(0))

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None or self.cond_dim is not None

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this model."""
        return dict(codebook_size=self.codebook_size, n_embd=self.n_embd, n_head=self.n_head,
                    n_layers=self.n_layers, latent_size=self.latent_size, total_steps=self.total_steps,
                    sample_steps=self.sample_steps, fix_time_scale=self.fix_time_scale,
                    num_classes=self.num_classes, cond_dim=self.cond_dim, **self.dropout)

    def time_scale_steps(self, sample_steps: int | None = None) -> int:
        """The ``S`` of the time input ``time_steps / S * 4000``: ``total_steps`` when
        ``fix_time_scale``, else ``sample_steps`` (argument, then attribute), else ``total_steps``."""
        if self.fix_time_scale:
            return self.total_steps
        if sample_steps is None:
            sample_steps = self.sample_steps
        return self.total_steps if sample_steps is None else _positive_int(sample_steps, "sample_steps")

    def time_input(self, time_steps: torch.Tensor, sample_steps: int | None = None) -> torch.Tensor:
        """float32 ``time_steps / S * 4000`` (official order of operations; S: ``time_scale_steps``)."""
        return time_steps / float(self.time_scale_steps(sample_steps)) * TIME_RESCALE

    def _check_inputs(self, x, label, time_steps):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[1] != self.num_tokens or x.shape[2] != self.codebook_size:
            raise ValueError(
                f"x must have shape (B, {self.num_tokens}, {self.codebook_size}) for this model "
                f"(latent_size={self.latent_size}, codebook_size={self.codebook_size}), got {tuple(x.shape)}"
            )
        B = x.shape[0]
        if time_steps is None:
            raise ValueError("time_steps is required: t - 1 for every sample, shape (B,)")
        if isinstance(time_steps, int) and not isinstance(time_steps, bool):
            time_steps = torch.full((B,), time_steps, device=x.device, dtype=torch.long)
        if not isinstance(time_steps, torch.Tensor) or time_steps.dtype == torch.bool:
            raise ValueError(f"time_steps must be an int or a numeric tensor of shape (B,), got {time_steps!r}")
        if time_steps.dim() == 0:
            time_steps = time_steps.expand(B)
        if time_steps.shape != (B,):
            raise ValueError(f"time_steps must have shape ({B},), got {tuple(time_steps.shape)}")
        if label is None:
            return time_steps
        if not self.conditional:
            raise ValueError("label must be None: this model is unconditional (num_classes=None, cond_dim=None)")
        if not isinstance(label, torch.Tensor):
            raise ValueError(f"label must be a tensor or None, got {type(label).__name__}")
        if self.num_classes is not None:
            if label.shape != (B,) or label.is_floating_point() or label.dtype == torch.bool:
                raise ValueError(
                    f"label must be an integer tensor of shape ({B},), got {label.dtype} {tuple(label.shape)}"
                )
            # eager: one read; under torch.compile a device assert instead of a graph break
            check_tensor_range(label, "label", 0, self.num_classes - 1)
        elif label.shape != (B, self.cond_dim) or not label.is_floating_point():
            raise ValueError(f"label must be a floating tensor of shape ({B}, {self.cond_dim}), got "
                             f"{label.dtype} {tuple(label.shape)}")
        return time_steps

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, time_steps: torch.Tensor | None = None,
                *, sample_steps: int | None = None) -> torch.Tensor:
        """Flip logits (with ``p_flip`` training) of every bit.

        Args:
            x: ``(B, L, C)`` 0/1 latents (floating, bool or integer), ``L = latent_size**2``.
            label: None (unconditional, also the guidance branch of conditional models), int64
                class ids ``(B,)`` or float vectors ``(B, cond_dim)``.
            time_steps: ``t - 1`` per sample, ``(B,)`` integer or float tensor, 0-d tensor or int.
            sample_steps: per-call ``sample_steps`` for the official time scaling (see class).
        Returns:
            logits ``(B, L, C)`` in the parameters' dtype.
        Raises:
            TypeError: ``x`` is not a tensor. ValueError: ``x`` has the wrong shape, ``time_steps``
            is missing or mis-shaped, ``label`` is given to an unconditional model or is bad.
        """
        time_steps = self._check_inputs(x, label, time_steps)
        w = self.tok_emb.weight
        h = ((x.to(w.dtype) - 0.5) * 2.0) @ w + self.pos_emb[:, : x.shape[1], :]
        tokens = [h, self.time_step_embedding(self.time_input(time_steps, sample_steps))]
        if label is not None:
            tokens.append(self.cls_embedding(label if self.num_classes is not None else label.to(w.dtype)).unsqueeze(1))
        h = self.blocks(self.drop(torch.cat(tokens, 1)))
        return self.head(self.ln_f(h[:, : x.shape[1], :]))

    def guided_forward(self, x: torch.Tensor, label: torch.Tensor, time_steps: torch.Tensor,
                       *, sample_steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditional and the unconditional logits of classifier-free guidance in one forward
        of ``2B`` sequences: ``(forward(x, label, t), forward(x, None, t))`` within float rounding.

        The unconditional sequence of the official model is one token shorter (no class token);
        here both halves carry ``L + 2`` tokens and the unconditional half's class token (zeros) is
        masked out of every attention as a key, so its other tokens attend to exactly the ``L + 1``
        tokens of the official unconditional call (LayerNorm, MLP and head act per token).

        Args:
            x: ``(B, L, C)`` 0/1 latents. label: ``(B,)`` int64 classes or ``(B, cond_dim)``
                float vectors. time_steps: ``t - 1``, as :meth:`forward`.

        Returns:
            ``(cond, uncond)``, each logits ``(B, L, C)`` in the parameters' dtype.

        Raises:
            ValueError: an unconditional model, ``label`` None, or bad inputs as :meth:`forward`.
            TypeError: ``x`` is not a tensor.
        """
        if not self.conditional:
            raise ValueError("guided_forward needs a conditional model (num_classes or cond_dim set)")
        if label is None:
            raise ValueError("guided_forward needs a label (the conditional half); the unconditional half has none")
        time_steps = self._check_inputs(x, label, time_steps)
        B, L = x.shape[0], x.shape[1]
        w = self.tok_emb.weight
        h = ((x.to(w.dtype) - 0.5) * 2.0) @ w + self.pos_emb[:, :L, :]
        time = self.time_step_embedding(self.time_input(time_steps, sample_steps))
        cls = self.cls_embedding(label if self.num_classes is not None else label.to(w.dtype)).unsqueeze(1)
        cond = torch.cat((h, time, cls), 1)
        uncond = torch.cat((h, time, torch.zeros_like(cls)), 1)
        seq = self.drop(torch.cat((cond, uncond), 0))  # (2B, L + 2, n_embd)
        keep = torch.ones(2 * B, 1, 1, L + 2, dtype=torch.bool, device=x.device)
        keep[B:, ..., L + 1] = False  # the unconditional half has no class token
        for block in self.blocks:
            seq = _masked_block(block, seq, keep)
        logits = self.head(self.ln_f(seq[:, :L, :]))
        return logits[:B], logits[B:]


def _masked_block(block, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``block(x)`` (a :class:`~bldm_fast.models.layers.Block`) with the attention keys limited to
    ``keep`` (bool, broadcast to ``(B, heads, L, L)``); the same operations as ``Block.forward`` and
    ``Attention.forward`` otherwise."""
    attn = block.attn
    B, L, C = x.shape
    qkv = attn.qkv(block.ln1(x)).reshape(B, L, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=keep)  # (B, H, L, D)
    y = attn.proj_drop(attn.proj(y.transpose(1, 2).reshape(B, L, C)))
    x = x + block.drop_path(block.gamma_1 * y)
    return x + block.drop_path(block.gamma_2 * block.mlp(block.ln2(x)))
