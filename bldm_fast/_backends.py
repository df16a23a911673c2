"""Which backends this install has, and which one an op call runs on."""

import os

import torch

KNOWN = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "BLDM_FAST_BACKEND"

try:
    from . import _C  # noqa: F401  (loading the library registers torch.ops.bldm_fast.*)

    NATIVE_ERROR = None
except ImportError as exc:  # the package works on the reference backend without it
    NATIVE_ERROR = exc


def native_available() -> bool:
    """Whether the C++ extension ``bldm_fast._C`` was built and loaded."""
    return NATIVE_ERROR is None


_MISSING = {
    "cpu": "the C++ extension bldm_fast._C is not built (pip install --no-build-isolation -e . builds it)",
    "triton": "the Triton backend is not part of this release yet",
    "cuda": "the CUDA backend is not part of this release yet",
}


def available_backends() -> list[str]:
    """The backends this install can run, e.g. ``["reference", "cpu"]``."""
    return ["reference"] + (["cpu"] if native_available() else [])


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend an op on tensors of ``device`` runs on.

    ``"auto"`` (overridden by the ``BLDM_FAST_BACKEND`` environment variable) picks the C++
    extension for CPU tensors when it is built, else the reference.

    Raises:
        ValueError: ``backend`` is not a known name, or names a backend for another device.
        RuntimeError: the backend is known but not available in this install.
    """
    if backend == "auto":
        backend = os.environ.get(ENV_VAR) or ("cpu" if device.type == "cpu" and native_available() else "reference")
    if backend not in KNOWN:
        raise ValueError(f"backend must be 'auto' or one of {KNOWN}, got {backend!r}")
    if backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not available: {_MISSING[backend]}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend 'cpu' runs on CPU tensors, got tensors on {device}")
    return backend
