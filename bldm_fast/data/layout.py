"""The packed-latent dataset layout (DESIGN.md section 7): file names, format constants, shapes.

A dataset is a folder::

    latents.npy   uint8, written with numpy.lib.format.open_memmap (O(1) random access, zero-copy reads)
                  deterministic: (N, L, ceil(C/8))      packed bits, LSB first (bit order "little")
                  bernoulli:     (N, K, L, ceil(C/8))   K packed samples per image
                  probs:         (N, L, C)              round(p * 255) per bit, unpacked
    labels.npy    int64 (N,), optional
    meta.json     format version, latent H, W, C, bit order, code mode, per-file sha256 and size,
                  count, encoder checkpoint sha256, source list digest, plus the writer's ``meta``

``meta.json`` is written last (temporary file, fsync, rename), only once every row is on disk, so
a folder with ``meta.json`` is complete; a folder without one is being written or was interrupted,
and :class:`~bldm_fast.data.writer.PackedLatentWriter` resumes it.

While a dataset is being written the folder also holds hidden entries, removed by
:meth:`~bldm_fast.data.writer.PackedLatentWriter.finalize`:

* ``.writer.json``: the writer's configuration (shapes, code mode, chunk size, digests of the
  identity keys of ``meta``), written atomically before any data file; a writer that reopens the
  folder must match it.
* ``.commits/``: one marker file per committed chunk (see :mod:`bldm_fast.data.commits`).
"""

from __future__ import annotations

FORMAT_VERSION = 1
FORMAT_NAME = "bldm_fast.packed_latents"
CODE_MODES = ("deterministic", "bernoulli", "probs")
BIT_ORDER = "little"

LATENTS_FILE = "latents.npy"
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"
STATE_FILE = ".writer.json"
COMMITS_DIR = ".commits"

#: keys of ``meta.json`` the writer sets itself; a user ``meta`` may not contain them
RESERVED_KEYS = frozenset({
    "format", "format_version", "count", "latent_hw", "channels", "tokens", "bit_order", "code_mode",
    "samples_per_image", "with_labels", "bytes_per_image", "files", "meta_fields_hash",
})
#: user ``meta`` keys that are always present in ``meta.json`` (``None`` when not given)
DEFAULT_META = {"encoder_checkpoint_sha256": None, "source_list_digest": None}


def packed_channels(channels: int) -> int:
    """Bytes per token of packed bits: ``ceil(channels / 8)``."""
    return (channels + 7) // 8


def latents_shape(count: int, latent_hw: tuple[int, int], channels: int, code_mode: str,
                  samples_per_image: int = 1) -> tuple[int, ...]:
    """Shape of ``latents.npy`` (uint8) for a configuration.

    Returns:
        ``(count, L, ceil(C/8))`` for ``"deterministic"``, ``(count, K, L, ceil(C/8))`` for
        ``"bernoulli"`` (``K = samples_per_image``), ``(count, L, C)`` for ``"probs"``; ``L = H * W``.
    """
    h, w = latent_hw
    tokens = h * w
    if code_mode == "deterministic":
        return (count, tokens, packed_channels(channels))
    if code_mode == "bernoulli":
        return (count, samples_per_image, tokens, packed_channels(channels))
    if code_mode == "probs":
        return (count, tokens, channels)
    raise ValueError(f"code_mode must be one of {CODE_MODES}, got {code_mode!r}")
