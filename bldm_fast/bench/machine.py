"""The machine a benchmark runs on: CPU model, core and thread counts, library versions, load average,
and the C++ extension (loaded or why not, the torch and ``-march`` it was built with)."""

from __future__ import annotations

import datetime as _dt
import os
import platform

import numpy as np
import torch

__all__ = ["machine_info", "load_average", "native_summary"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(mod_name: str) -> str | None:
    try:
        mod = __import__(mod_name)
    except Exception:
        return None
    v = getattr(mod, "__version__", None)
    if v is None:
        try:
            from importlib.metadata import version

            v = version(mod_name)
        except Exception:
            v = "unknown"
    return str(v)


def load_average() -> float | None:
    """The 1-minute load average, rounded to 2 decimals; None where the OS does not report one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info(device: str = "cpu") -> dict:
    """Machine, library versions and date, as recorded in every report.

    Returns ``{"machine": {...}, "versions": {...}, "native": {...}, "backend_status": {...}, "date": ISO
    8601 string}``: ``machine`` holds the CPU model, core counts, torch threads, CPU capability,
    platform and device (plus ``gpu`` on CUDA); ``versions`` maps python, torch, numpy, bldm_fast and
    triton to a version string (None if absent); ``native`` is :func:`bldm_fast._native.native_info`
    and ``backend_status`` :func:`bldm_fast._native.backend_status` (None or the reason, per backend).
    """
    from .._native import backend_status, native_info

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:
        capability = None
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": capability,
        "platform": platform.platform(),
        "device": str(device),
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "bldm_fast": _version("bldm_fast"),
        "triton": _version("triton"),
    }
    now = _dt.datetime.now(_dt.timezone.utc).astimezone()
    return {"machine": info, "versions": versions, "native": native_info(), "backend_status": backend_status(),
            "date": now.isoformat(timespec="seconds")}


def native_summary(native: dict) -> str:
    """One line on the extension of a :func:`machine_info` ``native`` entry: where it was loaded from and
    what it was built with, or why it did not load."""
    if not native["loaded"]:
        return f"bldm_fast._C not loaded: {native['error']}"
    build = native["build"]
    if build is None:
        return "bldm_fast._C loaded (no build record: built before bldm_fast wrote _C_build.json)"
    arch = "CPU dispatch" if build.get("cpu_arch") == "dispatch" else f"-march={build.get('cpu_arch')}"
    return (f"bldm_fast._C built for torch {build.get('torch')}, {arch}, cpu path {native.get('cpu_capability')}, "
            f"CUDA {build.get('cuda') or 'no'}{', debug build' if build.get('debug') else ''}")
