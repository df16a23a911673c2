// The elementwise math of DESIGN.md section 5, in float32, one definition for every native
// backend. Every operation is written out in the contract's order; the build turns off
// floating-point contraction (gcc -ffp-contract=off, nvcc --fmad=false) so CPU and CUDA round
// identically.
#pragma once

#include "common.h"

namespace bldm_fast {

// exp(x) for x <= 0, within ~2 ulp (Cephes expf: Cody-Waite reduction by ln 2, degree-6
// polynomial). Written branch-free so the CPU loops vectorise and CPU and CUDA agree bit for bit;
// inputs below -87 flush to exp(-87) ~ 1.6e-38, whose effect on a probability is far below 1e-30.
BLDM_HD float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * (r * r) + r + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  return y * bits_to_float(static_cast<uint32_t>(e) << 23);
}

// Temperature and (optional) classifier-free guidance. The official (1 + g) * cond / T - g * uncond / T
// loses up to ~1e-5 of p0 in float32 where the two terms cancel (strong guidance, cond ~ uncond);
// the same value written as (cond + g * (cond - uncond)) * inv_temp rounds the small difference
// instead of the large terms (cond - uncond is exact when they are within a factor 2), which keeps
// every probability within DESIGN.md's tolerance of the float64 official value.
BLDM_HD float guided_logit(float cond, float inv_temp) { return cond * inv_temp; }

BLDM_HD float guided_logit(float cond, float uncond, float inv_temp, float g) {
  const float d = cond - uncond;
  const float gd = g * d;
  const float s = cond + gd;
  return s * inv_temp;
}

struct StepConstants {
  float k_prev, b_prev, qh, ql;
};

// P(x_0 = 1) and P(x_0 = 0) without cancellation: sigmoid(+-|l|) from one exp.
struct P0Pair {
  float p0, p0c;
};

BLDM_HD P0Pair p0_pair(float l, bool xt, bool predict_flip) {
  const float a = l < 0.0f ? -l : l;
  const float e = exp_nonpositive(-a);
  const float hi = 1.0f / (1.0f + e);
  const float lo = e * hi;
  const bool pos = l >= 0.0f;
  const float p = pos ? hi : lo;
  const float pc = pos ? lo : hi;
  const bool flip = predict_flip && xt;
  return P0Pair{flip ? pc : p, flip ? p : pc};
}

// sigmoid(l), without cancellation (the p of p0_pair with no flip).
BLDM_HD float stable_sigmoid(float l) { return p0_pair(l, false, false).p0; }

// A probability quantised to a byte: floor(p * 255 + 0.5), p in [0, 1].
BLDM_HD uint8_t quantize_unit(float p) { return static_cast<uint8_t>(static_cast<int>(p * 255.0f + 0.5f)); }

// Posterior P(x_{t_prev} = 1 | x_t, p0) of a step that skips to t_prev > 0.
BLDM_HD float posterior(P0Pair p, bool xt, const StepConstants& s) {
  const float a1 = s.k_prev * p.p0 + s.b_prev;
  const float a0 = s.k_prev * p.p0c + s.b_prev;
  const float q1 = xt ? s.qh : s.ql;
  const float q0 = xt ? s.ql : s.qh;
  const float n1 = a1 * q1;
  return n1 / (n1 + a0 * q0);
}

// The final step's bit: the official p0 > 0.5, decided on the logit's sign.
BLDM_HD bool final_bit(float l, bool xt, bool predict_flip) {
  const float lf = (predict_flip && xt) ? -l : l;
  return lf > 0.0f;
}

}  // namespace bldm_fast
