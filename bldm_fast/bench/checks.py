"""Correctness checks of a case's warm-up outputs, reported as notes under its table.

A check takes the :class:`~bldm_fast.bench.cases.Case` whose ``Impl.out`` hold the CPU copies of the
warm-up outputs and returns a list of notes: ``"CHECK FAILED: ..."`` where a contract is broken (the
command then exits 1), ``"note: ..."`` for allowed differences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from . import baselines as bl

if TYPE_CHECKING:
    from .cases import Case, Impl

__all__ = ["check_equal_to", "check_noise", "check_step"]


def _differing_bits(a: torch.Tensor, b: torch.Tensor) -> int:
    return int(np.unpackbits((a ^ b).numpy().reshape(-1)).sum())


def check_equal_to(ref_label: str) -> Callable[[Case], list]:
    """Returns a check that every ``bldm_fast`` output equals (after a dtype cast) the row ``ref_label``'s."""

    def check(case: Case) -> list:
        ref = next((im.out for im in case.impls if im.label == ref_label and im.out is not None), None)
        notes = []
        if ref is None:
            return notes
        for im in case.impls:
            if im.kind == "bldm_fast" and im.out is not None:
                got = im.out
                if got.shape != ref.shape or not torch.equal(got.to(ref.dtype), ref):
                    notes.append(f"CHECK FAILED: {im.label} output differs from {ref_label}")
        return notes

    return check


def _agree(rows: list[Impl], elements: int, exact: bool) -> list:
    """Notes on how the packed outputs of ``rows`` (first = reference) differ from the first one."""
    outs = [(im.label, im.out) for im in rows if im.out is not None]
    notes = []
    if len(outs) < 2:
        return notes
    ref_label, ref = outs[0]
    for label, got in outs[1:]:
        if got.shape != ref.shape:
            notes.append(f"CHECK FAILED: {label} shape {tuple(got.shape)} != {ref_label} {tuple(ref.shape)}")
        elif torch.equal(got, ref):
            continue
        elif exact:
            notes.append(f"CHECK FAILED: {label} differs from {ref_label} (contract: bit-exact)")
        else:
            notes.append(
                f"note: {label} and {ref_label} differ in {_differing_bits(got, ref)} of {elements} bits "
                "(allowed only inside the 1e-5 guard band around prob)"
            )
    return notes


def check_noise(case: Case) -> list:
    """Noising and the bare Philox stream are bit-exact across backends (DESIGN.md section 5).

    Returns the notes."""
    notes = _agree([im for im in case.impls if im.kind == "bldm_fast"], case.elements, exact=True)
    philox = [im for im in case.impls if im.kind == "reference_point" and im.out is not None]
    for im in philox[1:]:
        if not torch.equal(im.out, philox[0].out):
            notes.append(f"CHECK FAILED: {im.label} differs from {philox[0].label} (contract: bit-exact)")
    return notes


def check_step(case: Case) -> list:
    """Step outputs agree across backends up to the guard band; the final step (``t_prev == 0``) is
    deterministic, so there they must be bit-exact and are also compared with the official threshold.

    Returns the notes."""
    final = case.params["t_prev"] == 0
    rows = [im for im in case.impls if im.kind == "bldm_fast" and "+" not in im.label]
    notes = _agree(rows, case.elements, exact=final)
    if final:
        off = next((im.out for im in case.impls if im.label == "official eager" and im.out is not None), None)
        if off is not None:
            ref = bl.torch_pack(off.reshape(case.shape))
            for im in rows:
                if im.out is not None and not torch.equal(im.out, ref):
                    nb = _differing_bits(im.out, ref)
                    notes.append(f"note: {im.label} final threshold differs from official in {nb} bits")
    return notes
