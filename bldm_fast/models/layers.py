"""Building blocks of the official Binary Latent Diffusion networks (ZeWang95/BinaryLatentDiffusion).

Convolutional blocks of the binary autoencoder (``models/binaryae.py``) and the transformer blocks
and embeddings of the denoiser (``models/transformer_utils.py``), re-implemented with the official
attribute names, so that their ``state_dict`` keys equal the official ones. No timm or einops.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# autoencoder blocks
# ---------------------------------------------------------------------------------------------


def normalize(channels: int) -> nn.GroupNorm:
    """The official ``normalize``: GroupNorm with 32 groups, eps 1e-6 (``channels % 32 == 0``)."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice plus a skip; keys ``norm1 conv1 norm2 conv2 conv_out``.

    As in the official code ``conv_out`` (the 1x1 skip projection) always exists, and is only
    applied when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.norm1 = normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = normalize(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.silu(self.norm1(x_in)))
        x = self.conv2(F.silu(self.norm2(x)))
        if self.in_channels != self.out_channels:
            x_in = self.conv_out(x_in)
        return x + x_in


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv ``q k v proj_out`` and a residual."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.norm = normalize(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # (b, hw, c)
        w = torch.bmm(q, k.reshape(b, c, hh * ww)) * (int(c) ** (-0.5))  # (b, hw_q, hw_k)
        w = F.softmax(w, dim=2)
        out = torch.bmm(v.reshape(b, c, hh * ww), w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv (key ``conv``)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv (key ``conv``)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# ---------------------------------------------------------------------------------------------
# transformer blocks
# ---------------------------------------------------------------------------------------------


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (timm's ``drop_path`` with ``scale_by_keep=True``)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` (bias, zero-initialised), SDPA, ``proj``.

    ``qkv``'s output features are laid out ``(3, heads, head_dim)`` as the official einops pattern
    ``'B L (K H D) -> K B H L D'``. The official ``attn_drop`` module is never applied; it has no
    parameters and is omitted here.
    """

    def __init__(self, n_embd: int, n_head: int, resid_pdrop: float = 0.0):
        super().__init__()
        self.num_heads = n_head
        self.qkv = nn.Linear(n_embd, n_embd * 3, bias=True)
        self.proj = nn.Linear(n_embd, n_embd)
        self.proj_drop = nn.Dropout(resid_pdrop)
        nn.init.zeros_(self.qkv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, L, D)
        y = y.transpose(1, 2).reshape(B, L, C)
        return self.proj_drop(self.proj(y))


class Block(nn.Module):
    """Pre-LN block with layer scales: ``x += gamma_1 * attn(ln1(x)); x += gamma_2 * mlp(ln2(x))``.

    Keys: ``ln1 ln2 attn.qkv attn.proj mlp.0 mlp.2 gamma_1 gamma_2`` (``mlp`` = Linear, GELU,
    Linear, Dropout as the official ``nn.Sequential``).
    """

    def __init__(self, n_embd: int, n_head: int, resid_pdrop: float = 0.0, drop_path_prob: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, resid_pdrop)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(resid_pdrop),
        )
        self.drop_path = DropPath(drop_path_prob) if drop_path_prob > 0.0 else nn.Identity()
        self.gamma_1 = nn.Parameter(torch.ones(n_embd))
        self.gamma_2 = nn.Parameter(torch.ones(n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.ln1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.ln2(x)))


# ---------------------------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------------------------


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=float)
    omega /= dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """The official ``get_2d_sincos_pos_embed``: float32 ``(grid_size**2, dim)``, computed in float64.

    Token ``m = row * grid_size + col``; the first ``dim/2`` features encode ``col``, the last
    ``dim/2`` encode ``row`` (each ``[sin, cos]`` of ``pos / 10000**(2i/(dim/2))``).

    Raises:
        ValueError: ``dim`` is not a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"n_embd must be a multiple of 4 for the 2-D sin-cos embedding, got {dim}")
    g = np.arange(grid_size, dtype=float)
    cols, rows = np.meshgrid(g, g)  # 'xy' indexing: cols varies along the last axis
    emb = np.concatenate([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], axis=1)
    return torch.tensor(emb, dtype=torch.float32)


TIME_RESCALE = 4000.0  # the official SinusoidalPosEmb's rescale_steps


def sinusoidal_time_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The official ``SinusoidalPosEmb`` body after its rescaling: ``(N,) -> (N, dim)`` float32,
    ``[sin(t f), cos(t f)]`` with ``f_i = exp(-i log(10000) / (dim/2 - 1))``."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
    arg = t[:, None] * freq[None, :]
    return torch.cat((arg.sin(), arg.cos()), dim=-1)


class TimeToken(nn.Module):
    """The official ``AdaTkn_Time`` (keys ``l0``, ``linear``): ``linear(silu(l0(features)))``.

    ``forward(t_scaled)`` takes the already rescaled time (``time_steps / steps * 4000``, see
    ``BinaryTransformer.time_input``) and returns the time token ``(N, 1, n_embd)``.
    """

    def __init__(self, n_embd: int):
        super().__init__()
        self.linear = nn.Linear(n_embd, n_embd)
        self.l0 = nn.Linear(n_embd, n_embd)
        self.n_embd = n_embd

    def forward(self, t_scaled: torch.Tensor) -> torch.Tensor:
        feats = sinusoidal_time_features(t_scaled, self.n_embd).to(self.l0.weight.dtype)
        return self.linear(F.silu(self.l0(feats))).unsqueeze(1)
