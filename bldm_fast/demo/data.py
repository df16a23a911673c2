"""The built-in image set: scikit-learn's handwritten digits (UCI ML hand-written digits,
1797 images of 8x8 pixels with 17 grey levels, BSD-3-Clause with scikit-learn), upscaled."""

from __future__ import annotations

IMAGE_SIZE = 16
#: the number of built-in images (``load_digits()``)
NUM_IMAGES = 1797
#: images ``[0, NUM_TRAIN)`` train the models; the rest are held out for the reconstruction error
NUM_TRAIN = 1500


def load_digit_images(image_size: int = IMAGE_SIZE):
    """All 1797 digits as float32 ``(N, 1, image_size, image_size)`` in [0, 1] (ink = 1) and their
    int64 labels ``(N,)``: ``load_digits().images / 16`` upscaled bilinearly (align_corners=False).

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the built-in image set needs scikit-learn: pip install scikit-learn") from exc
    d = load_digits()
    x = torch.from_numpy(np.asarray(d.images, dtype=np.float32) / 16.0).unsqueeze(1)
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0).contiguous(), torch.from_numpy(np.asarray(d.target, dtype=np.int64))
