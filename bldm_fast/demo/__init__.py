"""The built-in model and demo (``bldm-fast train``, ``bldm-fast demo``).

A small binary autoencoder and BinaryTransformer trained on scikit-learn's 8x8 handwritten digits
(BSD-3-Clause, shipped inside the scikit-learn wheel), upscaled to 16x16 grayscale. The weights
ship in ``bldm_fast/assets``; see ``docs/MODEL_CARD.md``.

* :mod:`.data`: the built-in image set; :mod:`.bundle`: building and loading the bundled models.
* :mod:`.train`: ``add_train_arguments`` / ``run_train`` / :func:`train`.
* :mod:`.demo`: ``add_demo_arguments`` / ``run_demo`` / :func:`demo`.
"""

from .bundle import ASSETS_DIR, build_autoencoder, build_denoiser, build_diffusion, load_bundled
from .data import load_digit_images

__all__ = ["ASSETS_DIR", "build_autoencoder", "build_denoiser", "build_diffusion", "load_bundled",
           "load_digit_images"]
