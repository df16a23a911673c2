"""Packed-latent datasets (DESIGN.md section 7): write once, train from 2 KiB/image packed codes.

* :class:`PackedLatentWriter`: crash-safe, resumable writer (each chunk committed by a marker
  file renamed into place after its bytes are durable; ``meta.json`` appears only when the data
  is complete).
* :func:`encode_folder` (``bldm-fast encode``): images -> binary autoencoder -> dataset.
* :class:`PackedLatentDataset`: map-style dataset over the ``latents.npy`` memmap, opened lazily
  in each DataLoader worker; :class:`ContiguousBatchSampler` for batches of contiguous rows, split
  across DDP ranks (``num_replicas`` / ``rank``, like ``DistributedSampler``).
* :func:`read_meta`, :func:`verify` (sizes and sha256), :func:`inspect_dataset` (``bldm-fast inspect``).
"""

from .dataset import SAMPLE_MODES, ContiguousBatchSampler, PackedLatentDataset
from .encode import encode_folder
from .inspect import inspect_dataset
from .layout import CODE_MODES, FORMAT_VERSION, latents_shape, packed_channels
from .meta import check_files, read_meta, verify
from .writer import PackedLatentWriter

__all__ = [
    "CODE_MODES",
    "FORMAT_VERSION",
    "SAMPLE_MODES",
    "ContiguousBatchSampler",
    "PackedLatentDataset",
    "PackedLatentWriter",
    "check_files",
    "encode_folder",
    "inspect_dataset",
    "latents_shape",
    "packed_channels",
    "read_meta",
    "verify",
]
