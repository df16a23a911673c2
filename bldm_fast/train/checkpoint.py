"""Crash-safe training checkpoints of a run folder: ``RUN/checkpoints/step_<step>.pt``.

A checkpoint is one ``torch.save`` dict (read back with ``torch.load(weights_only=True)``):
``format``, ``version``, ``step`` (updates done), ``epoch`` and ``batch`` (the data order position
of the next step), ``config`` (:class:`TrainConfig` as a dict), ``dataset`` (its identity),
``world_size``, ``model``, ``ema``, ``optimizer``, ``scaler`` (state dicts), ``lr`` (the schedule
and the last rate) and ``rng``: per rank, torch's CPU (and CUDA) generator states, numpy's and
Python's, so even draws outside the trainer's stateless streams continue exactly.

Writes are atomic: the bytes go to ``step_<step>.pt.tmp-<pid>``, are fsynced, renamed into
place and the folder fsynced; only then are older checkpoints beyond ``keep`` removed, so the
previous checkpoint survives until the new one is durable. A SIGKILL at any moment leaves the
last complete checkpoint (and maybe a stray temporary file, ignored and cleaned up).
"""

from __future__ import annotations

import os
import random
import re

import numpy as np
import torch

from ..data.durable import fsync_dir

FORMAT = "bldm_fast.train_checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(run: str) -> str:
    return os.path.join(run, CHECKPOINT_DIR)


def list_checkpoints(run: str) -> list[tuple[int, str]]:
    """``(step, path)`` of the complete checkpoints of ``run``, oldest first."""
    folder = checkpoint_dir(run)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, n)) for n in os.listdir(folder) if (m := _NAME.match(n))]
    return sorted(found)


def save_checkpoint(run: str, state: dict, keep: int = 2) -> str:
    """Write ``state`` (with ``step``) atomically as ``RUN/checkpoints/step_<step>.pt``; then
    remove all but the ``keep`` newest checkpoints and stray temporary files. Returns the path."""
    folder = checkpoint_dir(run)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{int(state['step'])}.pt")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(folder)
    for _step, old in list_checkpoints(run)[:-keep]:
        os.remove(old)
    for name in os.listdir(folder):
        if ".pt.tmp-" in name:
            os.remove(os.path.join(folder, name))
    return path


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is not a bldm_fast training checkpoint or cannot be read.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: torch raises several types
        raise ValueError(f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a bldm_fast training checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')!r}, this bldm_fast reads {VERSION}")
    return state


def latest_checkpoint(run: str, map_location="cpu") -> dict | None:
    """The newest readable checkpoint of ``run`` (an unreadable newest one falls back to the
    previous), or None when there is none.

    Raises:
        ValueError: checkpoints exist but none is readable.
    """
    found = list_checkpoints(run)
    errors = []
    for _step, path in reversed(found):
        try:
            return load_checkpoint(path, map_location)
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("no readable checkpoint in the run: " + "; ".join(errors))
    return None


# ---------------------------------------------------------------------------------------------
# RNG states
# ---------------------------------------------------------------------------------------------
def rng_state() -> dict:
    """This process's RNG states as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
