"""Float math of kernels/include/bldm_fast/step_math.h and bce_math.h as Triton functions,
operation for operation, so Triton rounds like the C++ and CUDA kernels (launch with
``enable_fp_fusion=False``; ``/`` is approximate in Triton, ``div_rn`` is IEEE)."""

import triton
import triton.language as tl


@triton.jit
def exp_nonpositive(x):
    """exp(x) for x <= 0: step_math.h's Cephes expf, operation for operation."""
    x = tl.maximum(x, -87.0)
    t = x * 1.44269504088896341 + 12582912.0
    n = t - 12582912.0
    r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    p = r * 1.9875691500e-4 + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    y = p * (r * r) + r + 1.0
    scale = ((n.to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return y * scale


@triton.jit
def stable_sigmoid(l):
    """sigmoid(l) from one exp without cancellation: step_math.h's stable_sigmoid."""
    e = exp_nonpositive(-tl.abs(l))
    hi = tl.math.div_rn(tl.full(l.shape, 1.0, tl.float32), 1.0 + e)
    return tl.where(l >= 0.0, hi, e * hi)


@triton.jit
def log1p_unit(e):
    """log(1 + e) for e in [0, 1]: bce_math.h's Cephes polynomial on x = e (or (e - 1) / 2)."""
    big = e > 0.41421356237
    k = tl.where(big, 1.0, 0.0)
    x = tl.where(big, (e - 1.0) * 0.5, e)
    x2 = x * x
    p = x * 7.0376836292e-2 - 1.1514610310e-1
    p = p * x + 1.1676998740e-1
    p = p * x - 1.2420140846e-1
    p = p * x + 1.4249322787e-1
    p = p * x - 1.6668057665e-1
    p = p * x + 2.0000714765e-1
    p = p * x - 2.4999993993e-1
    p = p * x + 3.3333331174e-1
    y = p * x * x2
    y = y + k * -2.12194440e-4
    y = y - 0.5 * x2
    return (x + y) + k * 0.693359375


@triton.jit
def bce_with_logits(l, y):
    """(loss, d loss / d l) of binary cross-entropy with logits ``l`` against bool ``y``."""
    e = exp_nonpositive(-tl.abs(l))
    hi = tl.math.div_rn(tl.full(l.shape, 1.0, tl.float32), 1.0 + e)
    sig = tl.where(l >= 0.0, hi, e * hi)
    loss = (tl.maximum(l, 0.0) - tl.where(y, l, 0.0)) + log1p_unit(e)
    return loss, sig - tl.where(y, 1.0, 0.0)
