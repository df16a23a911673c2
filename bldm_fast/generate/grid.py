"""Image grids and PNG files, laid out like ``torchvision.utils.make_grid`` / ``save_image``
(torchvision is not needed).

Layout of ``make_grid(images, nrow, padding, pad_value)`` for ``N`` images ``(C, H, W)``:
``min(nrow, N)`` columns, ``ceil(N / columns)`` rows, every cell ``(H + padding) x (W + padding)``
with the image at offset ``padding`` inside it, plus one more ``padding`` at the right and bottom
edge; cells after the last image stay ``pad_value``. One-channel images become three identical
channels, and a single image is returned as it is (no padding), as torchvision does. Pixels are
``floor(clamp(x, 0, 1) * 255 + 0.5)`` (torchvision's ``mul(255).add_(0.5).clamp_(0, 255)``).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

__all__ = ["make_grid", "save_image_grid", "save_png", "to_uint8", "upscale"]


def _check_images(images) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not (images.is_floating_point() or images.dtype == torch.uint8):
        raise TypeError(f"images must be a floating tensor in [0, 1] or uint8, got {images.dtype}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1 and C 1 or 3, got {tuple(images.shape)}")
    if images.is_floating_point() and torch.isnan(images).any():
        raise ValueError("images hold NaN values")
    return images


def _check_int(v, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    return int(v)


def upscale(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour ``factor`` x enlargement of ``(..., H, W)`` (every pixel a ``factor`` square)."""
    factor = _check_int(factor, "upscale", 1)
    if factor == 1:
        return images
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """The grid of ``images`` (see the module docstring).

    Args:
        images: float ``(N, C, H, W)`` (or one ``(C, H, W)``), C 1 or 3; or uint8 pixels.
        nrow: images per row (>= 1). padding: pixels between and around images (>= 0).
        pad_value: the value of the padding.
    Returns:
        ``(3 or C, rows * (H + padding) + padding, cols * (W + padding) + padding)`` of the input dtype
        (``(C, H, W)`` for one image).
    Raises:
        TypeError: not a floating tensor. ValueError: a bad shape, NaN values, bad nrow/padding.
    """
    images = _check_images(images)
    nrow, padding = _check_int(nrow, "nrow", 1), _check_int(padding, "padding", 0)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[0] == 1:
        return images[0]
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    cell_h, cell_w = h + padding, w + padding
    fill = float(pad_value) if images.is_floating_point() else int(round(min(max(pad_value, 0.0), 1.0) * 255))
    grid = images.new_full((c, rows * cell_h + padding, cols * cell_w + padding), fill)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * cell_h + padding, x * cell_w + padding
        grid[:, top:top + h, left:left + w] = images[k]
    return grid


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` float -> uint8 ``(H, W)`` (C = 1) or ``(H, W, 3)``: ``floor(clamp(x, 0, 1) * 255 + 0.5)``
    (uint8 input is taken as pixels)."""
    if image.dtype == torch.uint8:
        arr = image.detach().cpu()
    else:
        arr = image.detach().float().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def save_png(image: torch.Tensor, path) -> None:
    """One float ``(C, H, W)`` image in [0, 1] (or uint8 pixels) as a PNG (grey for C = 1, RGB for C = 3).

    Raises:
        TypeError / ValueError: as :func:`make_grid`. OSError: the file cannot be written.
    """
    from PIL import Image

    image = _check_images(image)[0]
    Image.fromarray(to_uint8(image)).save(os.fspath(path), format="PNG")


def save_image_grid(images: torch.Tensor, path, nrow: int = 8, padding: int = 2, pad_value: float = 0.0,
                    scale: int = 1) -> None:
    """Save ``images`` as one PNG grid, like ``torchvision.utils.save_image(images, path, nrow, padding)``.

    Args:
        images: float ``(N, C, H, W)`` in [0, 1] (values outside are clamped), C 1 or 3.
        path: the PNG file to write.
        nrow: images per row. padding: pixels between and around the images. pad_value: their value.
        scale: nearest-neighbour enlargement of every image before the grid is laid out (1: none;
            the padding stays ``padding`` pixels).
    Raises:
        TypeError: ``images`` is not a floating tensor. ValueError: a bad shape, NaN values, bad
        ``nrow``/``padding``/``scale``. OSError: the file cannot be written.
    """
    from PIL import Image

    grid = make_grid(upscale(_check_images(images), scale), nrow=nrow, padding=padding, pad_value=pad_value)
    Image.fromarray(to_uint8(grid)).save(os.fspath(path), format="PNG")
