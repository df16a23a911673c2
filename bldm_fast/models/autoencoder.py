"""The official binary autoencoder (``BinaryAutoEncoder`` of ZeWang95/BinaryLatentDiffusion).

``state_dict`` keys equal the official ones: ``encoder.blocks.*``, ``quantize.proj.0.*``,
``quantize.embed.weight``, ``generator.blocks.*`` and ``generator.logsigma.*`` (the official
decoder's unused ELBO head, kept so that official checkpoints load strictly).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .layers import AttnBlock, Downsample, ResBlock, Upsample, normalize


def _check_images(x, name: str, channels: int, factor: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(
            f"{name} must have shape (B, {channels}, H, W) with H and W multiples of {factor}, "
            f"got {tuple(x.shape)}"
        )


class BinaryQuantizer(nn.Module):
    """The official ``BinaryQuantizer``: ``proj`` = 1x1 conv + sigmoid (or tanh), ``embed`` codebook.

    ``forward(h, deterministic)`` returns ``(z_q, codebook_loss, {"binary_code": z_b}, z_b)`` like
    the official module: ``z = act(proj(h))``; ``z_b`` is ``[z > 0.5]`` or ``bernoulli(z)``
    (tanh: on ``z/2 + 1/2``, then mapped back to +-1); the straight-through
    ``z_b + z - z.detach()`` is embedded as ``einsum('bnhw,nd->bdhw', ., embed.weight)``;
    ``codebook_loss = mean(sigmoid(z) * (1 - sigmoid(z)))`` (sic: on the activated ``z``).
    """

    def __init__(self, codebook_size: int, emb_dim: int, num_hiddens: int, use_tanh: bool = False):
        super().__init__()
        self.codebook_size = codebook_size
        self.emb_dim = emb_dim
        self.use_tanh = use_tanh
        self.proj = nn.Sequential(nn.Conv2d(num_hiddens, codebook_size, 1), nn.Tanh() if use_tanh else nn.Sigmoid())
        self.embed = nn.Embedding(codebook_size, emb_dim)

    def probs(self, h: torch.Tensor) -> torch.Tensor:
        """P(bit = 1), ``(B, codebook_size, H, W)``."""
        z = self.proj(h)
        return z * 0.5 + 0.5 if self.use_tanh else z

    def quantizer(self, z: torch.Tensor, deterministic: bool, generator=None) -> torch.Tensor:
        p = z * 0.5 + 0.5 if self.use_tanh else z
        bits = (p > 0.5) * 1.0 if deterministic else torch.bernoulli(p, generator=generator)
        return (bits - 0.5) * 2.0 if self.use_tanh else bits

    def embed_codes(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("b n h w, n d -> b d h w", z, self.embed.weight)

    def forward(self, h: torch.Tensor, deterministic: bool = False, generator=None):
        z = self.proj(h)
        s = torch.sigmoid(z)
        codebook_loss = (s * (1 - s)).mean()
        with torch.no_grad():
            z_b = self.quantizer(z, deterministic, generator)
        z_q = self.embed_codes(z_b + z - z.detach())
        return z_q, codebook_loss, {"binary_code": z_b}, z_b


class Encoder(nn.Module):
    """The official ``Encoder`` (``blocks`` ModuleList: conv, per level ResBlocks (+attention at
    ``attn_resolutions``) and a Downsample, then ResBlock-Attn-ResBlock, GroupNorm, conv)."""

    def __init__(self, in_channels, nf, out_channels, ch_mult, num_res_blocks, resolution, attn_resolutions):
        super().__init__()
        curr_res = resolution
        in_ch_mult = (1,) + tuple(ch_mult)
        blocks = [nn.Conv2d(in_channels, nf, kernel_size=3, stride=1, padding=1)]
        block_in = nf
        for i, mult in enumerate(ch_mult):
            block_in = nf * in_ch_mult[i]
            block_out = nf * mult
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    blocks.append(AttnBlock(block_in))
            if i != len(ch_mult) - 1:
                blocks.append(Downsample(block_in))
                curr_res = curr_res // 2
        blocks += [ResBlock(block_in, block_in), AttnBlock(block_in), ResBlock(block_in, block_in)]
        blocks += [normalize(block_in), nn.Conv2d(block_in, out_channels, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Generator(nn.Module):
    """The official ``Generator`` (decoder) including its unused ``logsigma`` head."""

    def __init__(self, emb_dim, nf, out_channels, ch_mult, num_res_blocks, resolution, attn_resolutions, norm_first):
        super().__init__()
        block_in = nf * ch_mult[-1]
        curr_res = resolution // 2 ** (len(ch_mult) - 1)
        blocks = [normalize(emb_dim)] if norm_first else []
        blocks.append(nn.Conv2d(emb_dim, block_in, kernel_size=3, stride=1, padding=1))
        blocks += [ResBlock(block_in, block_in), AttnBlock(block_in), ResBlock(block_in, block_in)]
        for i in reversed(range(len(ch_mult))):
            block_out = nf * ch_mult[i]
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    blocks.append(AttnBlock(block_in))
            if i != 0:
                blocks.append(Upsample(block_in))
                curr_res = curr_res * 2
        blocks += [normalize(block_in), nn.Conv2d(block_in, out_channels, kernel_size=3, stride=1, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.logsigma = nn.Sequential(  # official ELBO head: never used in forward, kept for the keys
            nn.Conv2d(block_in, block_in, kernel_size=3, stride=1, padding=1),
            nn.ReLU(),
            nn.Conv2d(block_in, out_channels, kernel_size=1, stride=1, padding=0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class BinaryAutoencoder(nn.Module):
    """Binary autoencoder: image ``(B, 3, 256, 256)`` <-> bits ``(B, codebook_size, 16, 16)``.

    Arguments mirror the official hparams (``H.codebook_size``, ``H.n_channels``, ``H.nf``,
    ``H.emb_dim``, ``H.ch_mult``, ``H.res_blocks``, ``H.img_size``, ``H.attn_resolutions``,
    ``H.norm_first``, ``H.gen_mul``, ``H.use_tanh``, ``H.deterministic``); the defaults are those of
    the released LAION C64 model (``--codebook_size 64 --norm_first``; C128 is
    ``codebook_size=128, gen_mul=3``). The decoder has ``int(res_blocks * gen_mul)`` ResBlocks per
    level. Every ``nf * ch_mult[i]`` (and ``emb_dim`` when ``norm_first``) must be a multiple of 32
    (GroupNorm with 32 groups).

    Codes in the public methods are float 0/1 (``use_tanh`` models too: their +-1 codes are
    mapped to 0/1 on the way out and back on the way in). ``deterministic`` is the default of
    ``encode``: ``[p > 0.5]`` when True, else Bernoulli draws (the official default, False).

    Raises:
        ValueError: a size argument is not a positive int, or channels are not multiples of 32.
    """

    def __init__(
        self,
        codebook_size: int = 64,
        *,
        in_channels: int = 3,
        nf: int = 128,
        emb_dim: int = 256,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        res_blocks: int = 2,
        img_size: int = 256,
        attn_resolutions: Sequence[int] = (16,),
        norm_first: bool = True,
        gen_mul: float = 1.0,
        use_tanh: bool = False,
        deterministic: bool = False,
    ):
        super().__init__()
        for name, v in (("codebook_size", codebook_size), ("in_channels", in_channels), ("nf", nf),
                        ("emb_dim", emb_dim), ("res_blocks", res_blocks), ("img_size", img_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or min(ch_mult) < 1:
            raise ValueError(f"ch_mult must be a non-empty sequence of positive ints, got {ch_mult!r}")
        gen_blocks = int(res_blocks * gen_mul)
        if gen_blocks < 1:
            raise ValueError(f"int(res_blocks * gen_mul) must be >= 1, got res_blocks={res_blocks}, gen_mul={gen_mul}")
        bad = [nf * m for m in ch_mult if (nf * m) % 32] + ([emb_dim] if norm_first and emb_dim % 32 else [])
        if bad:
            raise ValueError(f"nf * ch_mult[i] (and emb_dim when norm_first) must be multiples of 32, got {bad}")
        self.codebook_size = codebook_size
        self.in_channels = in_channels
        self.nf = nf
        self.emb_dim = emb_dim
        self.ch_mult = ch_mult
        self.res_blocks = res_blocks
        self.img_size = img_size
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.norm_first = bool(norm_first)
        self.gen_mul = gen_mul
        self.use_tanh = bool(use_tanh)
        self.deterministic = bool(deterministic)
        self.downsample_factor = 2 ** (len(ch_mult) - 1)
        self.latent_size = img_size // self.downsample_factor
        self.encoder = Encoder(in_channels, nf, emb_dim, ch_mult, res_blocks, img_size, self.attn_resolutions)
        self.quantize = BinaryQuantizer(codebook_size, emb_dim, emb_dim, use_tanh=self.use_tanh)
        self.generator = Generator(emb_dim, nf, in_channels, ch_mult, gen_blocks, img_size, self.attn_resolutions,
                                   self.norm_first)

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this architecture."""
        return dict(codebook_size=self.codebook_size, in_channels=self.in_channels, nf=self.nf,
                    emb_dim=self.emb_dim, ch_mult=self.ch_mult, res_blocks=self.res_blocks,
                    img_size=self.img_size, attn_resolutions=self.attn_resolutions, norm_first=self.norm_first,
                    gen_mul=self.gen_mul, use_tanh=self.use_tanh, deterministic=self.deterministic)

    # ---- encoding ---------------------------------------------------------------------------
    def encode_probs(self, images: torch.Tensor) -> torch.Tensor:
        """P(bit = 1) of every code bit.

        Args:
            images: floating ``(B, in_channels, H, W)`` (the official models take [0, 1] images),
                H and W multiples of ``2 ** (len(ch_mult) - 1)``.
        Returns:
            float ``(B, codebook_size, H / f, W / f)`` in [0, 1], differentiable.
        Raises:
            TypeError: ``images`` is not a floating tensor. ValueError: its shape is wrong.
        """
        _check_images(images, "images", self.in_channels, self.downsample_factor)
        return self.quantize.probs(self.encoder(images))

    def encode(self, images: torch.Tensor, *, deterministic: bool | None = None, generator=None) -> torch.Tensor:
        """Binary codes, float 0/1 ``(B, codebook_size, h, w)`` (the official ``code_only`` output).

        ``deterministic`` (default ``self.deterministic``): ``[p > 0.5]``; else ``bernoulli(p)``
        drawn with the optional ``torch.Generator``. No gradient (use ``forward`` to train).
        Raises as ``encode_probs``.
        """
        det = self.deterministic if deterministic is None else bool(deterministic)
        with torch.no_grad():
            p = self.encode_probs(images)
            return (p > 0.5).to(p.dtype) if det else torch.bernoulli(p, generator=generator)

    def encode_tokens(self, images: torch.Tensor, *, deterministic: bool | None = None, generator=None) -> torch.Tensor:
        """``encode`` laid out as the sampler takes it: float 0/1 ``(B, h*w, codebook_size)``,
        tokens in row-major order, contiguous (the official ``view(b, c, -1).permute(0, 2, 1)``)."""
        code = self.encode(images, deterministic=deterministic, generator=generator)
        b, c = code.shape[:2]
        return code.reshape(b, c, -1).permute(0, 2, 1).contiguous()

    # ---- decoding ---------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images from 0/1 codes.

        Args:
            codes: ``(B, codebook_size, h, w)``, bool, integer or floating 0/1 (floating values in
                between are embedded linearly, as the official einsum does).
        Returns:
            ``(B, in_channels, h * f, w * f)`` in the model's dtype (not clamped; the official
            scripts clamp to [0, 1] when saving). This is the autoencoder's own path
            ``generator(einsum(code, embed))``; for models trained without ``norm_first`` the
            official sampler scripts also divide the codes by ``codebook_size`` first (the released
            models use ``norm_first``, where the two agree).
        Raises:
            TypeError: ``codes`` is not a tensor. ValueError: its shape is wrong.
        """
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
        if codes.dim() != 4 or codes.shape[1] != self.codebook_size:
            raise ValueError(f"codes must have shape (B, {self.codebook_size}, h, w), got {tuple(codes.shape)}")
        z = codes.to(self.quantize.embed.weight.dtype)
        if self.use_tanh:
            z = (z - 0.5) * 2.0
        return self.generator(self.quantize.embed_codes(z))

    def decode_tokens(self, tokens: torch.Tensor, latent_shape: tuple[int, int] | None = None) -> torch.Tensor:
        """``decode`` of sampler-layout codes ``(B, L, codebook_size)``.

        ``latent_shape`` ``(h, w)`` with ``h * w = L`` (default: square, ``h = w = sqrt(L)``).
        Raises:
            ValueError: ``tokens`` is not ``(B, L, codebook_size)`` or ``L`` does not fit the shape.
        """
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dim() != 3 or tokens.shape[2] != self.codebook_size:
            raise ValueError(f"tokens must have shape (B, L, {self.codebook_size}), got {tuple(tokens.shape)}")
        L = tokens.shape[1]
        if latent_shape is None:
            side = int(round(L**0.5))
            latent_shape = (side, side)
        h, w = latent_shape
        if h * w != L:
            raise ValueError(f"tokens has L = {L} tokens, which is not latent_shape {tuple(latent_shape)}")
        return self.decode(tokens.permute(0, 2, 1).reshape(tokens.shape[0], self.codebook_size, h, w))

    # ---- official forward -------------------------------------------------------------------
    def forward(self, x: torch.Tensor | None, code_only: bool = False, code: torch.Tensor | None = None, *,
                generator=None):
        """The official ``BinaryAutoEncoder.forward``.

        * ``code is None, code_only``: the detached binary code ``(B, codebook_size, h, w)``
          (0/1; +-1 for ``use_tanh`` models, as the official code).
        * ``code is None``: ``(reconstruction, codebook_loss, {"binary_code": code})``, with the
          straight-through gradient from the reconstruction into the encoder.
        * ``code`` given: ``(generator(einsum(code, embed)), None, None)``; ``code`` is used as is
          (+-1 for ``use_tanh`` models, as the official code).
        Raises as ``encode_probs`` / ``decode``.
        """
        if code is None:
            _check_images(x, "x", self.in_channels, self.downsample_factor)
            quant, codebook_loss, stats, binary = self.quantize(self.encoder(x), self.deterministic, generator)
            if code_only:
                return binary
        else:
            if not isinstance(code, torch.Tensor) or code.dim() != 4 or code.shape[1] != self.codebook_size:
                shape = tuple(code.shape) if isinstance(code, torch.Tensor) else type(code).__name__
                raise ValueError(f"code must have shape (B, {self.codebook_size}, h, w), got {shape}")
            quant = self.quantize.embed_codes(code.to(self.quantize.embed.weight.dtype))
            codebook_loss, stats = None, None
        return self.generator(quant), codebook_loss, stats
