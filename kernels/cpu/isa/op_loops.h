// The elementwise loops of the step, noise, loss and quantizer ops (DESIGN.md section 5), for one
// path; included once by each isa/*.cpp (see philox_loops.h for the macros). The math itself is
// bldm_fast/step_math.h and bce_math.h, shared with the CUDA kernels.
#pragma once

#include <cstdint>

#include "bldm_fast/bce_math.h"
#include "bldm_fast/step_math.h"
#include "float_loops.h"

namespace bldm_fast::cpu::BLDM_CPU_ISA {
namespace {

// l[j] = guided logit of element j, each input element read as float by to_float.
template <typename T, typename ToFloat>
void guided_loop(const void* cond, const void* uncond, ToFloat to_float, int64_t n, float inv_temp, float g,
                 float* __restrict l) {
  const T* __restrict c = static_cast<const T*>(cond);
  const T* __restrict u = static_cast<const T*>(uncond);
  if (u != nullptr) {
    for (int64_t j = 0; j < n; ++j) l[j] = guided_logit(to_float(c[j]), to_float(u[j]), inv_temp, g);
  } else {
    for (int64_t j = 0; j < n; ++j) l[j] = guided_logit(to_float(c[j]), inv_temp);
  }
}

void guided_logits(const void* cond, const void* uncond, FloatType type, int64_t n, float inv_temp, float g,
                   float* __restrict l) {
  if (type == FloatType::kFloat32) {
    guided_loop<float>(cond, uncond, [](float x) { return x; }, n, inv_temp, g, l);
  } else if (type == FloatType::kFloat16) {
    guided_loop<uint16_t>(cond, uncond, half_to_float, n, inv_temp, g, l);
  } else {
    guided_loop<uint16_t>(cond, uncond, bfloat16_to_float, n, inv_temp, g, l);
  }
}

// The NaN flags below are ints, not bools: gcc 12 does not vectorise a bool OR-reduction.
bool posterior_bits(const float* __restrict l, const uint8_t* __restrict xt, const float* __restrict u, int64_t n,
                    StepConstants s, bool predict_flip, float* __restrict prob, uint8_t* __restrict bit) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    const bool x = xt[j] != 0;
    const float pr = posterior(p0_pair(l[j], x, predict_flip), x, s);
    prob[j] = pr;
    bit[j] = u[j] < pr;
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

bool final_probs_bits(const float* __restrict l, const uint8_t* __restrict xt, int64_t n, bool predict_flip,
                      float* __restrict prob, uint8_t* __restrict bit) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    const bool x = xt[j] != 0;
    prob[j] = p0_pair(l[j], x, predict_flip).p0;
    bit[j] = final_bit(l[j], x, predict_flip);
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

bool final_bits(const float* __restrict l, const uint8_t* __restrict xt, int64_t n, bool predict_flip,
                uint8_t* __restrict bit) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    bit[j] = final_bit(l[j], xt[j] != 0, predict_flip);
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

void select_known(const uint8_t* __restrict mask, const uint8_t* __restrict known, int64_t n,
                  uint8_t* __restrict bit) {
  for (int64_t j = 0; j < n; ++j) bit[j] = mask[j] ? known[j] : bit[j];
}

void noise_bits(const uint8_t* __restrict x0, const float* __restrict u, int64_t n, float thr1, float thr0,
                uint8_t* __restrict xt, uint8_t* __restrict flip) {
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t b = u[j] < (x0[j] ? thr1 : thr0);
    xt[j] = b;
    flip[j] = b ^ x0[j];
  }
}

// The elementwise loop stores the terms and the sum runs over them in 16 lane partials: a single
// float accumulator in the first loop kept it scalar (7.6 ms against 0.42 ms at 1M elements).
float bce_sum(const float* __restrict l, const uint8_t* __restrict y, int64_t n, float w1, float w0,
              float* __restrict grad, float* __restrict term) {
  for (int64_t j = 0; j < n; ++j) {
    const bool t = y[j] != 0;
    const BceTerm b = bce_with_logits(l[j], t);
    const float w = t ? w1 : w0;
    term[j] = w * b.loss;
    grad[j] = w * b.grad;
  }
  constexpr int kLanes = 16;
  float part[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) part[k] += term[j + k];
  float sum = 0.0f;
  for (; j < n; ++j) sum += term[j];
  for (int k = 0; k < kLanes; ++k) sum += part[k];
  return sum;
}

bool binarize_bits(const float* __restrict l, const float* __restrict u, int64_t n, bool bernoulli,
                   uint8_t* __restrict bit) {
  int nan = 0;
  if (bernoulli) {
    for (int64_t j = 0; j < n; ++j) {
      bit[j] = u[j] < stable_sigmoid(l[j]);
      nan |= l[j] != l[j];
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      bit[j] = l[j] > 0.0f;
      nan |= l[j] != l[j];
    }
  }
  return nan != 0;
}

bool quantize(const float* __restrict l, int64_t n, uint8_t* __restrict q) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    q[j] = quantize_unit(stable_sigmoid(l[j]));
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

}  // namespace
}  // namespace bldm_fast::cpu::BLDM_CPU_ISA
