"""From checkpoints to images: ``bldm-fast sample`` and ``bldm-fast decode``, and the image grid.

* :func:`save_image_grid` / :func:`make_grid`: torchvision-like grids without torchvision.
* :mod:`.sample`: ``bldm-fast sample``; :mod:`.decode`: ``bldm-fast decode``.
* :mod:`.loading`: the bundled model, a bundle folder or official files; :mod:`.outputs`: the
  output folder written under a temporary name.
"""

from .grid import make_grid, save_image_grid

__all__ = ["make_grid", "save_image_grid"]
