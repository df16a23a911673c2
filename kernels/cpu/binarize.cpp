// binarize / quantize_probs on the CPU: the autoencoder quantizer's sigmoid, the threshold or
// Bernoulli draw, and the packing, in one pass over the code logits.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "bits_cpu.h"
#include "bldm_fast/step_math.h"
#include "cpu_utils.h"
#include "op_checks.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

// bit[j] = bernoulli ? u[j] < sigmoid(l[j]) : l[j] > 0 (the official sigmoid(l) > 0.5).
void binarize_run(const float* __restrict l, const float* __restrict u, int64_t n, bool bernoulli,
                  uint8_t* __restrict bit) {
  if (bernoulli) {
    for (int64_t j = 0; j < n; ++j) bit[j] = u[j] < stable_sigmoid(l[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) bit[j] = l[j] > 0.0f;
  }
}

at::Tensor binarize(const at::Tensor& logits, bool bernoulli, int64_t seed, int64_t offset) {
  check_logits(logits, "binarize", 1, at::kCPU);
  const int64_t channels = logits.size(-1), nb = packed_size(channels), rows = logits.numel() / channels;
  at::Tensor packed = at::empty(with_last(leading_dims(logits), nb), logits.options().dtype(at::kByte));
  if (rows == 0) return packed;
  const at::Tensor lc = logits.contiguous();
  const auto s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    float* u = scratch<float, 1>(n);
    uint8_t* bit = scratch<uint8_t, 0>(n);
    load_floats(lc, i0, n, l);
    if (bernoulli) uniform_range(s, o, i0, n, u);
    binarize_run(l, u, n, bernoulli, bit);
    pack_rows(bit, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
  });
  return packed;
}

at::Tensor quantize_probs(const at::Tensor& logits) {
  check_logits(logits, "quantize_probs", 1, at::kCPU);
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kByte));
  const int64_t channels = logits.size(-1), rows = logits.numel() / channels;
  if (rows == 0) return out;
  const at::Tensor lc = logits.contiguous();
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    load_floats(lc, i0, n, l);
    uint8_t* q = out.data_ptr<uint8_t>() + i0;
    for (int64_t j = 0; j < n; ++j) q[j] = quantize_unit(stable_sigmoid(l[j]));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) {
  m.impl("binarize", &binarize);
  m.impl("quantize_probs", &quantize_probs);
}

}  // namespace bldm_fast::cpu
