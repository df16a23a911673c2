"""Compile (without running) every Triton kernel variant of a representative set of op calls for
an sm_90 GPU, on a machine with no GPU: run by tests/test_triton_compiles.py in a subprocess.

Triton's CUDA driver is replaced by one that reports an sm_90 target, and every kernel launch
becomes a compile-only warm-up, so Triton's real compiler (ptxas included) sees each variant;
the ops then return unwritten outputs, which nothing here reads. A variant that does not compile
raises out of the op call, and the script exits non-zero. Prints one line per kernel variant.
"""

import os
import sys

os.environ["TRITON_INTERPRET"] = "0"  # before bldm_fast defines its kernels

import torch  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.driver import CudaDriver  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402


class Sm90CompileOnlyDriver(CudaDriver):
    """Triton's CUDA driver, minus the GPU: an sm_90 target, device 0, the null stream."""

    def __init__(self):  # the parent loads libcuda, which this machine lacks
        pass

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


driver.set_active(Sm90CompileOnlyDriver())
_run = JITFunction.run
_compile = JITFunction._do_compile


def _compile_only(self, *args, grid, warmup, **kwargs):
    return _run(self, *args, grid=grid, warmup=True, **kwargs)


def _logged_compile(self, key, signature, device, constexprs, options, attrs, warmup):
    flags = ", ".join(f"{self.arg_names[path[0]]}={value}" for path, value in constexprs.items()
                      if isinstance(value, (bool, int)))
    pointers = ",".join(str(t) for t in signature.values() if str(t).startswith("*"))
    print(f"{self.fn.__name__}[{pointers}]({flags})", flush=True)
    return _compile(self, key, signature, device, constexprs, options, attrs, warmup)


JITFunction.run = _compile_only
JITFunction._do_compile = _logged_compile

import bldm_fast as bf  # noqa: E402
import bldm_fast._backends as backends  # noqa: E402

# The Triton backend on CPU tensors (as under the interpreter), its kernels compiled for the GPU.
backends.triton_available = lambda: True
backends.triton_interpreting = lambda: True


def calls():
    """One call per kernel variant that matters: every constexpr flag both ways, every logit dtype."""
    sched = bf.BernoulliSchedule(16, "cos")
    for c in (64, 12):  # ALIGNED and not
        bits = torch.rand(3, 5, c) < 0.5
        packed = bf.pack_bits(bits, backend="reference")
        t = torch.tensor([1, 9, 16])
        for dtype in (torch.bool, torch.float32, torch.bfloat16):
            bf.pack_bits(bits.to(dtype), backend="triton")
        for dtype in (torch.uint8, torch.float16, torch.float32):
            bf.unpack_bits(packed, c, dtype, backend="triton")
        bf.bernoulli_noise(packed, t, sched, c, seed=1, backend="triton")
        bf.bernoulli_noise(packed, t, sched, c, seed=1, out_dtype=torch.bfloat16, return_flip=True, backend="triton")
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            logits = torch.randn(3, 5, c, dtype=dtype)
            bf.sample_step(logits, packed, 9, 4, sched, seed=1, backend="triton")
            bf.sample_step(logits, packed, 9, 4, sched, seed=1, guidance=1.5, uncond_logits=logits, mask=packed,
                           known=packed, return_probs=True, out_dtype=torch.float32, backend="triton")
            bf.sample_step(logits, packed, 2, 0, sched, seed=1, predict_flip=False, backend="triton")
            bf.flip_bce_loss(logits, packed, torch.rand(3), torch.rand(3), backend="triton")
            bf.binarize(logits, "deterministic", backend="triton")
            bf.binarize(logits, "bernoulli", seed=1, backend="triton")
            bf.quantize_probs(logits, backend="triton")
    bf.philox_uniform(1, 0, 1000, backend="triton")
    bf.philox_words(1, 0, 1000, backend="triton")


if __name__ == "__main__":
    calls()
    sys.exit(0)
