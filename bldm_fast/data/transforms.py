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

Autoencoders of one input channel (the bundled digits model) get grey images instead:
``to_channels(img, 1)`` composites any transparency over black (the digits are light strokes on
black) and converts with PIL's ``convert("L")``, the ITU-R 601-2 luma
``L = R * 299/1000 + G * 587/1000 + B * 114/1000``. Three-channel autoencoders keep the official
``convert("RGB")``, which drops an alpha channel as ImageFolder does.

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

__all__ = ["CHANNEL_STEPS", "center_crop", "load_image", "load_rgb", "official_transform", "resize_shorter",
           "to_channels", "to_tensor"]

#: how ``to_channels`` converts an image, per channel count (recorded in datasets' meta.json)
CHANNEL_STEPS = {3: "convert('RGB')",
                 1: "alpha composited over black; convert('L') [ITU-R 601-2 luma: R*299/1000 + G*587/1000 + "
                    "B*114/1000]"}

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


def load_image(source) -> Image.Image:
    """An image file (a path, or its bytes), fully decoded, in its own mode (``RGBA``, ``P``, ...).

    Raises:
        OSError / PIL.UnidentifiedImageError (a subclass of OSError): unreadable or corrupt file.
    """
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(os.fspath(source), "rb")
    with stream, Image.open(stream) as im:
        im.load()
        return im.copy()


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


def to_channels(img: Image.Image, channels: int = 3) -> Image.Image:
    """``img`` as an RGB (``channels=3``: ``convert("RGB")``, as ImageFolder) or grey
    (``channels=1``: transparency composited over black, then ``convert("L")``) image.

    Raises:
        ValueError: ``channels`` is not 1 or 3.
    """
    if channels == 3:
        return img if img.mode == "RGB" else img.convert("RGB")
    if channels != 1:
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if img.mode == "L":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img.convert("L")


def official_transform(img: Image.Image, size: int, channels: int = 3) -> torch.Tensor:
    """``Compose([Resize(size), CenterCrop(size), ToTensor()])`` of an image converted by
    :func:`to_channels` (``convert("RGB")`` for 3 channels, as ImageFolder does).

    Args:
        img: a PIL image of any mode.
        size: the output side in pixels.
        channels: 3 (RGB) or 1 (grey, see :func:`to_channels`).
    Returns:
        float32 ``(channels, size, size)`` in [0, 1].
    Raises:
        ValueError: ``size`` is not a positive int, ``channels`` not 1 or 3.
    """
    size = _check_size(size)
    return to_tensor(center_crop(resize_shorter(to_channels(img, channels), size), size))
