"""Loading the C++ extension ``bldm_fast._C``: the real reason when it does not load, the torch it
was built for, each backend's availability with the reason it is unavailable, and the one warning
given when an op falls back to the reference because the extension is missing.

``setup.py`` writes ``_C_build.json`` beside the extension (the build's torch version, CUDA,
``-march`` or ``"dispatch"``, whether the binary is stripped); :func:`cpu_capability` says which CPU
path of a dispatching build runs. The extension uses torch's C++ symbols, so it loads only
into the torch it was built for: where the major.minor versions differ it is not loaded at all (a
library built for another torch can crash the process instead of failing to import) and a warning
naming both versions and the rebuild command is given at import.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
import warnings

import torch

MODULE = "bldm_fast._C"
BUILD_INFO_FILE = "_C_build.json"
REBUILD = ("rebuild it against the torch in use: `pip install --no-build-isolation -e .` in a source checkout, "
           "or `pip install --no-build-isolation --no-deps --force-reinstall bldm-fast`")
# Measured on a 2-core AMD EPYC, torch 2.13: one sampling step (B=64, L=256, C=64, fp32, guidance 2)
# takes 8.5 ms on the cpu backend and 1.9 s on the reference (220x); without guidance 12 ms vs 1.66 s.
SLOWDOWN = ("ops fall back to the reference backend, about 100-300x slower (a sampling step at B=64 L=256 C=64: "
            "~2 s instead of ~10 ms)")


def _base_version(version: str) -> str:
    """``"2.13.0+cpu"`` -> ``"2.13.0"``."""
    return version.split("+", 1)[0]


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(_base_version(version).split(".")[:2])


def _read_build_info() -> dict | None:
    """The build record ``_C_build.json`` beside the package, or None where it is absent or unreadable
    (an extension built before the record existed)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), BUILD_INFO_FILE)
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _load() -> tuple[BaseException | None, str | None]:
    """Import the extension; returns ``(error or None, warning to give at import or None)``."""
    build_torch = (BUILD_INFO or {}).get("torch")
    if isinstance(build_torch, str) and _major_minor(build_torch) != _major_minor(torch.__version__):
        msg = (f"{MODULE} was built for torch {build_torch} but this is torch {torch.__version__}, so it was not "
               f"loaded: {SLOWDOWN}; {REBUILD}")
        return ImportError(msg), msg
    if importlib.util.find_spec(MODULE) is None:
        return ModuleNotFoundError(f"{MODULE} is not built (no extension file in {os.path.dirname(__file__)})"), None
    try:
        importlib.import_module(MODULE)  # not `from . import _C`: that turns any failure into "circular import"
    except Exception as exc:  # a corrupt file, missing symbols (another torch), a missing shared library,
        return exc, None      # a registration that torch refused
    return None, None


BUILD_INFO = _read_build_info()
LOAD_ERROR, _IMPORT_WARNING = _load()
_warn_lock = threading.Lock()
_warned = _IMPORT_WARNING is not None
if _IMPORT_WARNING is not None:
    warnings.warn(_IMPORT_WARNING, RuntimeWarning, stacklevel=2)


def native_loaded() -> bool:
    """Whether ``bldm_fast._C`` loaded (its ops are registered as ``torch.ops.bldm_fast.*``)."""
    return LOAD_ERROR is None


def load_error_text() -> str | None:
    """The real reason ``bldm_fast._C`` did not load (``"ExceptionType: message"``), or None if it loaded."""
    return None if LOAD_ERROR is None else f"{type(LOAD_ERROR).__name__}: {LOAD_ERROR}"


def warn_fallback() -> None:
    """Warn (once per process, ``RuntimeWarning``) that an op runs on the reference backend because
    ``bldm_fast._C`` is missing or failed to load: the load error, the slowdown and how to rebuild.
    Does nothing when the extension loaded or the warning was given already."""
    global _warned
    if LOAD_ERROR is None or _warned:
        return
    with _warn_lock:
        if _warned:
            return
        _warned = True
    warnings.warn(f"bldm_fast: {MODULE} did not load ({load_error_text()}): {SLOWDOWN}; {REBUILD}. "
                  "BLDM_FAST_BACKEND=reference chooses the reference explicitly and silences this warning.",
                  RuntimeWarning, stacklevel=3)


def cpu_capability() -> tuple[str | None, list[str]]:
    """The CPU path the C++ kernels run (kernels/cpu/dispatch.cpp) and the paths this CPU can run.

    Returns:
        ``(path, paths)``: ``path`` is ``"avx512"``, ``"avx2"`` or ``"default"`` (the best path this CPU
        runs, or a lower one forced by ``BLDM_FAST_CPU_CAPABILITY``), ``paths`` those of this build that
        this CPU runs, best first. ``(None, [])`` when the extension did not load or predates dispatch.
    """
    if not native_loaded() or not hasattr(torch.ops.bldm_fast, "cpu_capability"):
        return None, []
    return torch.ops.bldm_fast.cpu_capability(), list(torch.ops.bldm_fast.cpu_capabilities())


if LOAD_ERROR is None:
    # Choose the CPU path now and say so where BLDM_FAST_CPU_CAPABILITY names a path this CPU cannot
    # run (or none): the kernels then run the best path.
    if cpu_capability()[0] is not None and torch.ops.bldm_fast.cpu_capability_warning():
        warnings.warn(f"bldm_fast: {torch.ops.bldm_fast.cpu_capability_warning()}", RuntimeWarning, stacklevel=2)


def native_info() -> dict:
    """``{"loaded": bool, "error": load_error_text(), "path": the extension file or None, "build": the
    build record of _C_build.json or None, "cpu_capability": the CPU path in use or None,
    "cpu_capabilities": the paths this CPU runs, best first}`` (JSON-serialisable; see
    :func:`cpu_capability`)."""
    spec = importlib.util.find_spec(MODULE)  # locates the file without loading it
    path = spec.origin if spec is not None else None
    capability, capabilities = cpu_capability()
    return {"loaded": native_loaded(), "error": load_error_text(), "path": path, "build": BUILD_INFO,
            "cpu_capability": capability, "cpu_capabilities": capabilities}


def _has_cuda_kernels() -> bool:
    return native_loaded() and torch._C._dispatch_has_kernel_for_dispatch_key("bldm_fast::sample_step", "CUDA")


def backend_status() -> dict[str, str | None]:
    """Each backend of this install and why it cannot run here.

    Returns:
        ``{"reference": None, "cpu": ..., "triton": ..., "cuda": ...}``: None for a backend that can
        run, else a one-line reason (the real load error of ``bldm_fast._C`` for ``cpu``).
    """
    from ._backends import triton_available

    load = None if native_loaded() else f"{MODULE} did not load ({load_error_text()})"
    if triton_available():
        triton = None
    elif importlib.util.find_spec("triton") is None:
        triton = "the triton package is not installed"
    else:  # the package is there: triton_available() is False only without a GPU and the interpreter
        triton = "no CUDA GPU (TRITON_INTERPRET=1 runs its kernels on CPU tensors in Triton's interpreter)"
    if load is not None:
        cuda = load
    elif not _has_cuda_kernels():
        cuda = (f"{MODULE} was built without the CUDA kernels (torch without CUDA, no CUDA toolkit at build time, "
                "or BLDM_FAST_NO_CUDA=1)")
    elif not torch.cuda.is_available():
        cuda = "no CUDA GPU (torch.cuda.is_available() is False)"
    else:
        cuda = None
    return {"reference": None, "cpu": load, "triton": triton, "cuda": cuda}
