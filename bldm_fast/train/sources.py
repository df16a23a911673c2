"""Clean codes ``x_0`` for each training step from a packed-latent dataset, for every code mode.

* ``deterministic``: the stored packed bits.
* ``bernoulli`` (``K`` stored draws per image): each sample of each step uses the stored draw
  :meth:`StepStreams.pick` chooses (only that draw is read from the memmap).
* ``probs`` (bytes ``q = floor(sigmoid(l) * 255 + 0.5)``): a fresh Bernoulli code every step, the
  official online behaviour, drawn and packed by one fused :func:`bldm_fast.binarize` call on
  ``LOGIT_LUT[q]``, the float32 logit of ``q / 255`` (``-inf`` for 0, ``+inf`` for 255). So a bit
  is ``[u < sigmoid(float32(logit(q / 255)))]`` with ``u`` the Philox uniform of DESIGN.md
  section 4 (stream :meth:`StepStreams.philox` ``"code"``): probability ``q / 255`` up to float32
  rounding of the sigmoid (< 1e-7), exactly 0 for ``q = 0`` and 1 for ``q = 255``.

:class:`StepReader` is the DataLoader's dataset: its ``__getitems__`` takes a ``(step, indices)``
key from :class:`StepBatches` and returns the step's raw batch, so the reading (and the choice
of stored draws) runs in DataLoader workers and depends only on the step.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..data.dataset import ContiguousBatchSampler, PackedLatentDataset
from ..ops import binarize
from .streams import StepStreams


def logit_lut() -> torch.Tensor:
    """float32 ``(256,)``: ``logit(q / 255)`` computed in float64 and rounded, ``-inf``/``+inf`` at 0/255."""
    q = torch.arange(256, dtype=torch.float64) / 255
    lut = torch.log(q) - torch.log1p(-q)
    return lut.to(torch.float32)


LOGIT_LUT = logit_lut()


class StepReader(torch.utils.data.Dataset):
    """Reads one step's batch: ``reader.__getitems__((step, indices)) -> (codes, labels, step)``.

    ``codes`` is uint8: ``(B, L, ceil(C/8))`` packed bits (deterministic, bernoulli) or ``(B, L, C)``
    probability bytes (probs); ``labels`` int64 ``(B,)`` or None.

    Args:
        dataset: an open :class:`~bldm_fast.data.PackedLatentDataset`.
        streams: the rank's :class:`StepStreams` (for the bernoulli pick).
        labels: read the labels.
    """

    def __init__(self, dataset: PackedLatentDataset, streams: StepStreams, labels: bool):
        self.dataset = dataset
        self.streams = streams
        self.labels = bool(labels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, key):
        step, indices = key
        idx = np.asarray(indices, dtype=np.int64)
        lat, lab = self.dataset._arrays()
        contiguous = idx.size > 0 and idx[-1] - idx[0] == idx.size - 1 and bool((np.diff(idx) == 1).all())
        rows = slice(int(idx[0]), int(idx[-1]) + 1) if contiguous else idx
        if self.dataset.code_mode == "bernoulli":
            ks = self.streams.pick(step, self.dataset.samples_per_image).numpy()
            block = lat[idx, ks]
        else:
            block = lat[rows]
        codes = torch.from_numpy(np.array(block))
        labels = torch.from_numpy(np.array(lab[rows], dtype=np.int64)) if self.labels and lab is not None else None
        return codes, labels, step


def collate_step(batch):
    """The DataLoader's ``collate_fn``: the reader already returns the whole batch."""
    return batch


class StepBatches:
    """The ``batch_sampler`` of the training DataLoader: ``(step, indices)`` for steps ``start..stop``.

    Step ``s`` (1-based) is batch ``(s - 1) % n`` of epoch ``(s - 1) // n`` of the rank's
    :class:`~bldm_fast.data.ContiguousBatchSampler` (``drop_last``, so every step has ``B``
    samples; ``n = len(sampler)``), so a resumed run continues the data order exactly.
    """

    def __init__(self, sampler: ContiguousBatchSampler, start: int, stop: int):
        self.sampler, self.start, self.stop = sampler, int(start), int(stop)
        self.per_epoch = len(sampler)

    def __len__(self) -> int:
        return max(0, self.stop - self.start + 1)

    def __iter__(self):
        step = self.start
        epoch, skip = divmod(step - 1, self.per_epoch)
        while step <= self.stop:
            self.sampler.set_epoch(epoch)
            for batch in itertools.islice(iter(self.sampler), skip, None):
                if step > self.stop:
                    return
                yield step, batch
                step += 1
            epoch, skip = epoch + 1, 0


def clean_codes(codes: torch.Tensor, code_mode: str, streams: StepStreams, step: int, backend: str = "auto"):
    """Packed clean codes uint8 ``(B, L, ceil(C/8))`` of a step from the raw batch (see the module
    docstring): as stored, or, for ``probs``, one fused Bernoulli draw of ``LOGIT_LUT[codes]``."""
    if code_mode != "probs":
        return codes
    logits = LOGIT_LUT.to(codes.device)[codes.long()]
    return binarize(logits, "bernoulli", generator=streams.philox(step, "code"), backend=backend)
