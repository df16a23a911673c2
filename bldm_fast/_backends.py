"""Which backends this install has, and which one an op call runs on."""

import importlib.util
import os

import torch

from . import _native

KNOWN = ("reference", "cpu", "triton", "cuda")
ENV_VAR = "BLDM_FAST_BACKEND"

# Loading the library registers torch.ops.bldm_fast.*; without it the package runs on the reference
# backend, and the first op that falls back to it warns with this error (bldm_fast._native).
NATIVE_ERROR = _native.LOAD_ERROR


def native_available() -> bool:
    """Whether the C++ extension ``bldm_fast._C`` was built and loaded."""
    return NATIVE_ERROR is None


def triton_interpreting() -> bool:
    """Whether Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``), on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET") == "1"


_HAS_TRITON = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    """Whether the Triton backend can run: the triton package, and a CUDA GPU or the interpreter."""
    return _HAS_TRITON and (torch.cuda.is_available() or triton_interpreting())


# Read once: the registration never changes after import, and torch.compile cannot trace the query.
_CUDA_KERNELS = native_available() and torch._C._dispatch_has_kernel_for_dispatch_key("bldm_fast::sample_step", "CUDA")


def cuda_available() -> bool:
    """Whether the CUDA backend can run: a GPU, and bldm_fast._C built with the CUDA kernels."""
    return _CUDA_KERNELS and torch.cuda.is_available()


def available_backends() -> list[str]:
    """The backends this install can run, e.g. ``["reference", "cpu", "triton"]``."""
    return (["reference"] + (["cpu"] if native_available() else [])
            + (["triton"] if triton_available() else []) + (["cuda"] if cuda_available() else []))


def fused_ops(backend: str):
    """The ``torch.ops`` namespace of a fused backend's ops (``cpu`` and ``cuda`` share the native
    ops, dispatched on the device); all share one schema per op."""
    if backend == "triton":
        from .triton_backend import ops  # noqa: F401  (registers torch.ops.bldm_fast_triton.*)

        return torch.ops.bldm_fast_triton
    register_native_fakes()
    return torch.ops.bldm_fast


def backend_ops(backend: str):
    """The op table of a resolved backend: an object whose attributes ``pack_bits``,
    ``unpack_bits``, ``philox_fill_``, ``bernoulli_noise``, ``sample_step``, ``flip_bce``,
    ``binarize`` and ``quantize_probs`` take the same arguments on every backend (the schemas of
    kernels/ops.cpp; the reference implements them in plain PyTorch)."""
    if backend == "reference":
        from .reference import ops

        return ops
    return fused_ops(backend)


_FAKES_REGISTERED = False


def register_native_fakes() -> None:
    """Register the fakes of ``torch.ops.bldm_fast.*`` the first time an op is needed (not at
    import: torch.library's registration imports torch._dynamo, about 2 s)."""
    global _FAKES_REGISTERED
    if not _FAKES_REGISTERED and native_available():
        from ._ops_fake import register_fakes

        register_fakes("bldm_fast")
        _FAKES_REGISTERED = True


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend an op on tensors of ``device`` runs on.

    ``"auto"`` (overridden by the ``BLDM_FAST_BACKEND`` environment variable) picks the C++
    extension for CPU tensors when it is built, for CUDA tensors the CUDA kernels when built, else
    Triton when available, else the reference.

    Raises:
        ValueError: ``backend`` is not a known name, or names a backend for another device.
        RuntimeError: the backend is known but not available in this install.
    """
    if backend == "auto":
        backend = os.environ.get(ENV_VAR) or _auto(device)
    if backend not in KNOWN:
        raise ValueError(f"backend must be 'auto' or one of {KNOWN}, got {backend!r}")
    if backend not in available_backends():
        raise RuntimeError(f"backend {backend!r} is not available: {_native.backend_status()[backend]}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend 'cpu' runs on CPU tensors, got tensors on {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend 'cuda' runs on CUDA tensors, got tensors on {device}")
    if backend == "triton" and device.type != ("cpu" if triton_interpreting() else "cuda"):
        where = "CPU tensors (interpreter)" if triton_interpreting() else "CUDA tensors"
        raise ValueError(f"backend 'triton' runs on {where}, got tensors on {device}")
    return backend


def _auto(device: torch.device) -> str:
    if device.type == "cpu" and native_available():
        return "cpu"
    if device.type == "cuda" and cuda_available():
        return "cuda"
    if device.type == "cuda" and triton_available():
        return "triton"
    _native.warn_fallback()  # once per process, and only when bldm_fast._C is missing or failed to load
    return "reference"
