// The per-bit binary cross-entropy with logits of the training loss and its gradient, in float32,
// branch-free so the CPU loops vectorise; one definition for the CPU and CUDA kernels.
#pragma once

#include "step_math.h"

namespace bldm_fast {

// log(1 + e) for e in [0, 1], within ~2 ulp: the Cephes logf polynomial on x = e (or, above
// sqrt(2) - 1, on x = (e - 1) / 2 with an exponent of 1). Taking x from e directly, not as
// (1 + e) - 1, keeps e's low bits: forming 1 + e first cost up to 6e-5 relative error at e ~ 1e-3.
BLDM_HD float log1p_unit(float e) {
  const bool big = e > 0.41421356237f;
  const float k = big ? 1.0f : 0.0f;
  const float x = big ? (e - 1.0f) * 0.5f : e;
  const float x2 = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  float y = p * x * x2;
  y = y + k * -2.12194440e-4f;
  y = y - 0.5f * x2;
  return (x + y) + k * 0.693359375f;
}

struct BceTerm {
  float loss;  // max(l, 0) - l * y + log(1 + exp(-|l|))
  float grad;  // d loss / d l = sigmoid(l) - y
};

BLDM_HD BceTerm bce_with_logits(float l, bool y) {
  const float a = l < 0.0f ? -l : l;
  const float e = exp_nonpositive(-a);
  const float hi = 1.0f / (1.0f + e);
  const float sig = l >= 0.0f ? hi : e * hi;
  const float loss = ((l > 0.0f ? l : 0.0f) - (y ? l : 0.0f)) + log1p_unit(e);
  return BceTerm{loss, sig - (y ? 1.0f : 0.0f)};
}

}  // namespace bldm_fast
