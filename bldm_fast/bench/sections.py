"""The optional sections of ``bldm-fast bench`` beyond the kernel tables.

Each section is a function ``run(quick: bool, device: str) -> {"rows": [...], "table": str}`` in
its own module, imported only when its flag is given; :data:`SECTIONS` maps the flag's name to the
module, the function and the flag's help.
"""

from __future__ import annotations

import importlib
from typing import Callable

#: name -> (module under bldm_fast.bench, function, help of the ``--<name>`` flag)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "train": ("training", "bench_section",
              "training throughput from a packed dataset against the official online recipe (encoder + "
              "torch.bernoulli + loss), with the autoencoder's share (minutes on a CPU)"),
    "inloop": ("inloop", "bench_section",
               "the step in a loop (after a denoiser forward / a cache flush) at B=1..64 beside the warm time, and "
               "the per-step time outside the denoiser in a real sample() against the official loop"),
    "end_to_end": ("end_to_end", "bench_section",
                   "end-to-end images/s of accelerate() (eager, compile, compile+bf16) against the official sampler "
                   "with the same weights, and the bits bf16 changes (minutes: compiles)"),
}


def section_runner(name: str) -> Callable[[bool, str], dict]:
    """The ``run(quick, device)`` function of section ``name``.

    Raises:
        ValueError: ``name`` is not a section.
    """
    if name not in SECTIONS:
        raise ValueError(f"unknown bench section {name!r}; expected one of {sorted(SECTIONS)}")
    module, attr, _help = SECTIONS[name]
    return getattr(importlib.import_module(f"bldm_fast.bench.{module}"), attr)
