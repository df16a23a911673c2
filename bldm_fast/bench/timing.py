"""Timing of one case: warm-up (``torch.compile`` within a time budget), calibration and interleaved repeats.

The method is described in :mod:`bldm_fast.bench.report`. Results land in the case's
:class:`~bldm_fast.bench.cases.Impl` rows (``calls``, ``samples``, or ``status`` / ``reason``).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from typing import Callable

import numpy as np
import torch

from .cases import Case, Impl

__all__ = [
    "QUICK",
    "FULL",
    "COMPILE_TIMEOUT_QUICK",
    "COMPILE_TIMEOUT_FULL",
    "timer",
    "warm_up",
    "measure",
    "compiling_in_background",
]

# (repeats, min seconds per sample) of a --quick and of a full run
QUICK = (7, 0.02)
FULL = (11, 0.1)
# torch.compile warm-up budget per case (seconds); past it the row is reported as skipped
COMPILE_TIMEOUT_QUICK = 30.0
COMPILE_TIMEOUT_FULL = 180.0
_MAX_CALLS = 100_000

_BACKGROUND: list = []  # compile threads that outlived their budget


def timer(sync: Callable[[], None] | None) -> Callable[[Callable, int], float]:
    """Returns ``run(fn, calls)``: the seconds ``calls`` back-to-back calls of ``fn`` take, with
    ``sync()`` (e.g. ``torch.cuda.synchronize``; None: nothing) before and after."""

    def run(fn, calls: int) -> float:
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if sync is not None:
            sync()
        return time.perf_counter() - t0

    return run


def compiling_in_background() -> bool:
    """Returns True while a ``torch.compile`` warm-up that exceeded its budget is still compiling."""
    return any(th.is_alive() for th in _BACKGROUND)


def _describe(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"


def _to_cpu_tensor(out):
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(out))
    if isinstance(out, torch.Tensor):
        return out.detach().cpu()
    return None


def _warm_compiled(im: Impl, timeout: float) -> None:
    """First call of a torch.compile'd row (it compiles), in a worker thread bounded by ``timeout``;
    past it the row is skipped and the compilation goes on in the background."""
    box: dict = {}

    def work():
        try:
            t0 = time.perf_counter()
            box["out"] = im.fn()
            box["t"] = time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 - reported in the table
            box["exc"] = exc

    th = threading.Thread(target=work, name=f"warm {im.label}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        im.skip(f"torch.compile warm-up exceeded the {timeout:g}s budget (--compile-timeout)")
        _BACKGROUND.append(th)  # compilation goes on in this daemon thread, sharing the CPU with the timings
    elif "exc" in box:
        im.skip(f"torch.compile failed: {_describe(box['exc'])}", "error")
    else:
        im.out = _to_cpu_tensor(box["out"])
        im.reason = f"compiled in {box['t']:.2f}s (excluded)"


def warm_up(case: Case, compile_timeout: float) -> None:
    """Call every row twice (compiling rows within ``compile_timeout``), then run the case's check on
    the first outputs and append its notes. A row that fails is marked ``error``, not raised."""
    for im in case.impls:
        if im.fn is None:
            continue
        try:
            if im.compile:
                _warm_compiled(im, compile_timeout)
                if im.fn is None:
                    continue
            else:
                im.out = _to_cpu_tensor(im.fn())
            im.fn()  # second warm-up call (allocator, caches, lazy init)
        except Exception as exc:  # noqa: BLE001 - a failing implementation is reported, not fatal
            im.skip(_describe(exc), "error")
    if case.check is not None:
        try:
            case.notes.extend(case.check(case))
        except Exception as exc:  # noqa: BLE001
            case.notes.append(f"check could not run: {type(exc).__name__}: {exc}")
    for im in case.impls:
        im.out = None


def _calibrate(fn, min_time: float, run) -> int:
    """Smallest call count (grown geometrically) whose back-to-back run lasts >= ``min_time``."""
    n = 1
    while n < _MAX_CALLS:
        took = run(fn, n)
        if took >= min_time:
            break
        # aim 20% past min_time, grow at most 10x per try so one lucky fast run cannot overshoot
        n = min(_MAX_CALLS, max(n + 1, min(10 * n, math.ceil(n * 1.2 * min_time / max(took, 1e-9)))))
    return n


def measure(case: Case, repeats: int, min_time: float, run) -> None:
    """Calibrate each live row to samples of >= ``min_time`` seconds, then take ``repeats`` interleaved
    samples of every row with ``run`` (from :func:`timer`) into ``Impl.samples``; gc is off meanwhile."""
    live = [im for im in case.impls if im.fn is not None]
    if not live:
        return
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for im in live:  # calibrate calls per sample (like timeit's autorange, robust to one slow call)
            im.calls = _calibrate(im.fn, min_time, run)
        for r in range(repeats):
            k = r % len(live)
            order = live[k:] + live[:k]
            if r % 2:
                order.reverse()
            for im in order:
                im.samples.append(run(im.fn, im.calls) / im.calls)
    finally:
        if gc_was:
            gc.enable()
