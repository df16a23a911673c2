"""The official image preprocessing, in PIL and torch only (no torchvision).

The official code (ZeWang95/BinaryLatentDiffusion, ``utils/data_utils.py::get_datasets``) reads a
custom dataset with ``torchvision.datasets.ImageFolder`` (whose loader is ``Image.open(f)
.convert("RGB")``) and, for ``random=False``, applies

    Compose([Resize(img_size), CenterCrop(img_size), ToTensor()])

with no normalisation: the autoencoder takes RGB images in [0, 1]. ``official_transform`` is that
pipeline operation for operation (torchvision's PIL code path):

* ``Resize(size)`` with an int: the shorter side becomes ``size``, the longer
  ``int(size * long / short)`` (truncated); an image whose shorter side already is ``size`` is
  returned unchanged; otherwise ``PIL.Image.resize((w, h), BILINEAR)`` (PIL's bilinear filter,
  which antialiases when shrinking; torchvision's default interpolation).
* ``CenterCrop(size)``: top ``int(round((h - size) / 2))``, left ``int(round((w - size) / 2))``
  (Python's round, half to even), then ``PIL.Image.crop``; an image smaller than the crop is first
  zero-padded as torchvision does (never the case after the resize).
* ``ToTensor()``: ``uint8 HWC -> float32 CHW``, ``.float().div(255)``.

The official *training* run of the sampler (``train_sampler_online.py``, ``random=True``) instead
augments on the fly with ``Resize(int(1.05 * size)), RandomCrop(size), RandomHorizontalFlip()``;
an offline dataset stores one deterministic view per image, the ``random=False`` one above.
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

try:
    from PIL import Image
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("bldm_fast.data needs Pillow: pip install Pillow") from exc

__all__ = ["center_crop", "load_rgb", "official_transform", "resize_shorter", "to_tensor"]

_BILINEAR = Image.Resampling.BILINEAR


def _check_size(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return size


def resize_shorter(img: Image.Image, size: int, resample=_BILINEAR) -> Image.Image:
    """torchvision ``Resize(size)`` (an int) on a PIL image: the shorter side becomes ``size``.

    Returns:
        the same image object when its shorter side already equals ``size``, else a new image of
        ``(size, int(size * long / short))`` in the input's orientation.
    Raises:
        ValueError: ``size`` is not a positive int.
    """
    size = _check_size(size)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``CenterCrop(size)`` on a PIL image: a ``size x size`` crop at the centre.

    Offsets are ``int(round((h - size) / 2))`` (top) and ``int(round((w - size) / 2))`` (left);
    a side shorter than ``size`` is first zero-padded (left/top get ``(size - side) // 2``).

    Raises:
        ValueError: ``size`` is not a positive int.
    """
    size = _check_size(size)
    w, h = img.size
    if size > w or size > h:
        pad_w, pad_h = max(size - w, 0), max(size - h, 0)
        padded = Image.new(img.mode, (w + pad_w, h + pad_h), 0)
        padded.paste(img, (pad_w // 2, pad_h // 2))
        img = padded
        w, h = img.size
        if (w, h) == (size, size):
            return img
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor()`` of an 8-bit PIL image: float32 ``(channels, H, W)`` in [0, 1],
    computed as ``uint8.float().div(255)``.

    Raises:
        ValueError: the image is not an 8-bit mode (``L``, ``RGB``, ``RGBA``, ...).
    """
    arr = np.array(img)  # a writable copy
    if arr.dtype != np.uint8:
        raise ValueError(f"to_tensor takes 8-bit images, got mode {img.mode!r}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div(255)


def load_rgb(source) -> Image.Image:
    """The ImageFolder loader: ``Image.open(source).convert("RGB")``, fully decoded.

    Args:
        source: a path, or the file's bytes.
    Raises:
        OSError / PIL.UnidentifiedImageError (a subclass of OSError): unreadable or corrupt file.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(os.fspath(source), "rb")
    with stream, Image.open(stream) as im:
        return im.convert("RGB")


def official_transform(img: Image.Image, size: int) -> torch.Tensor:
    """``Compose([Resize(size), CenterCrop(size), ToTensor()])`` of an image converted to RGB.

    Args:
        img: a PIL image of any mode (converted with ``convert("RGB")`` first, as ImageFolder does).
        size: the output side in pixels.
    Returns:
        float32 ``(3, size, size)`` in [0, 1].
    Raises:
        ValueError: ``size`` is not a positive int.
    """
    size = _check_size(size)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return to_tensor(center_crop(resize_shorter(img, size), size))
