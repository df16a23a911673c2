// sample_step on the CPU: one fused reverse step of DESIGN.md section 5 over (..., C) logits.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <tuple>

#include "bits_cpu.h"
#include "bldm_fast/step_math.h"
#include "op_checks.h"
#include "cpu_utils.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

struct Guidance {
  float inv_temp, g;
  bool on;
};

// l[j] = guided logit of element j, in float32 whatever the input dtype.
template <typename T>
void load_logits(const T* __restrict cond, const T* __restrict uncond, int64_t n, Guidance gd, float* __restrict l) {
  if (gd.on) {
    for (int64_t j = 0; j < n; ++j)
      l[j] = guided_logit(to_float(cond[j]), to_float(uncond[j]), gd.inv_temp, gd.g);
  } else {
    for (int64_t j = 0; j < n; ++j) l[j] = guided_logit(to_float(cond[j]), gd.inv_temp);
  }
}

template <typename T>
void load_tile(const at::Tensor& cond, const at::Tensor& uncond, Guidance gd, int64_t i0, int64_t n, float* l) {
  const T* pu = gd.on ? uncond.data_ptr<T>() + i0 : nullptr;
  load_logits(cond.data_ptr<T>() + i0, pu, n, gd, l);
}

// prob[j] = posterior, bit[j] = u[j] < prob[j]; returns whether any logit is NaN.
bool posterior_run(const float* __restrict l, const uint8_t* __restrict xt, const float* __restrict u, int64_t n,
                   StepConstants s, bool predict_flip, float* __restrict prob, uint8_t* __restrict bit) {
  int nan = 0;  // an int, not a bool: gcc 12 does not vectorise a bool OR-reduction
  for (int64_t j = 0; j < n; ++j) {
    const bool x = xt[j] != 0;
    const float pr = posterior(p0_pair(l[j], x, predict_flip), x, s);
    prob[j] = pr;
    bit[j] = u[j] < pr;
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

// The final step: prob[j] = p0, bit[j] = [l' > 0]; returns whether any logit is NaN.
bool final_run(const float* __restrict l, const uint8_t* __restrict xt, int64_t n, bool predict_flip,
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

// The final step's bits alone (no probabilities asked for): a sign test, no exp.
bool final_bits_run(const float* __restrict l, const uint8_t* __restrict xt, int64_t n, bool predict_flip,
                    uint8_t* __restrict bit) {
  int nan = 0;
  for (int64_t j = 0; j < n; ++j) {
    bit[j] = final_bit(l[j], xt[j] != 0, predict_flip);
    nan |= l[j] != l[j];
  }
  return nan != 0;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample_step(
    const at::Tensor& logits, const std::optional<at::Tensor>& uncond, const at::Tensor& xt_packed,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& known, const at::Tensor& scalars,
    const at::Tensor& stream, bool predict_flip, bool return_probs, std::optional<at::ScalarType> out_dtype,
    bool check_nan) {
  check_step_inputs(logits, uncond, xt_packed, mask, known, scalars, stream, at::kCPU);
  const int64_t channels = logits.size(-1), nb = packed_size(channels);
  at::Tensor packed, probs, unpacked, nan_flag;
  std::tie(packed, probs, unpacked, nan_flag) = step_outputs(logits, xt_packed, return_probs, out_dtype);
  const int64_t rows = logits.numel() / channels;
  if (rows == 0) return {packed, probs, unpacked, nan_flag};

  const float* sv = scalars.data_ptr<float>();
  const int64_t* st = stream.data_ptr<int64_t>();
  const bool final_step = sv[kFinal] != 0.0f;
  const at::Tensor lc = logits.contiguous();
  const at::Tensor uc = uncond ? uncond->contiguous() : at::Tensor();
  const at::Tensor xc = xt_packed.contiguous();
  const at::Tensor mc = mask ? mask->contiguous() : at::Tensor();
  const at::Tensor kc = known ? known->contiguous() : at::Tensor();
  const Guidance gd{sv[kInvTemp], sv[kGuidance], uncond.has_value()};
  const StepConstants sc{sv[kKPrev], sv[kBPrev], sv[kQh], sv[kQl]};
  const auto s = static_cast<uint64_t>(st[kSeed]), o = static_cast<uint64_t>(st[kOffset]);
  std::atomic<bool> nan{false};

  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    float* pr = return_probs ? probs.data_ptr<float>() + i0 : scratch<float, 1>(n);
    uint8_t* xt = scratch<uint8_t, 0>(n);
    uint8_t* bit = scratch<uint8_t, 1>(n);
    BLDM_DISPATCH_LOGITS(lc.scalar_type(), "sample_step", [&] { load_tile<scalar_t>(lc, uc, gd, i0, n, l); });
    unpack_rows(xc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, xt);
    bool tile_nan;
    if (final_step && !return_probs) {
      tile_nan = final_bits_run(l, xt, n, predict_flip, bit);
    } else if (final_step) {
      tile_nan = final_run(l, xt, n, predict_flip, pr, bit);
    } else {
      float* u = scratch<float, 2>(n);
      uniform_range(s, o, i0, n, u);
      tile_nan = posterior_run(l, xt, u, n, sc, predict_flip, pr, bit);
    }
    if (tile_nan) nan = true;
    if (mask) {
      uint8_t* m = scratch<uint8_t, 2>(n);
      uint8_t* k = scratch<uint8_t, 3>(n);
      unpack_rows(mc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, m);
      unpack_rows(kc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, k);
      for (int64_t j = 0; j < n; ++j) bit[j] = m[j] ? k[j] : bit[j];
    }
    pack_rows(bit, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
    if (out_dtype) store_ones(bit, n, unpacked, i0);
  });
  TORCH_CHECK_VALUE(!(check_nan && nan), kNanMessage);
  nan_flag.fill_(nan ? 1 : 0);
  return {packed, probs, unpacked, nan_flag};
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("sample_step", &sample_step); }

}  // namespace bldm_fast::cpu
