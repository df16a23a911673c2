// binarize / quantize_probs on the CPU: the autoencoder quantizer's sigmoid, the threshold or
// Bernoulli draw, and the packing, in one pass over the code logits.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>

#include "bits_cpu.h"
#include "cpu_utils.h"
#include "op_checks.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

at::Tensor binarize(const at::Tensor& logits, bool bernoulli, const at::Tensor& stream) {
  check_logits(logits, "binarize", 1, at::kCPU);
  check_stream(stream, "binarize", at::kCPU);
  const int64_t channels = logits.size(-1), nb = packed_size(channels), rows = logits.numel() / channels;
  at::Tensor packed = at::empty(with_last(leading_dims(logits), nb), logits.options().dtype(at::kByte));
  if (rows == 0) return packed;
  const at::Tensor lc = logits.contiguous();
  const int64_t* st = stream.data_ptr<int64_t>();
  const auto s = static_cast<uint64_t>(st[kSeed]), o = static_cast<uint64_t>(st[kOffset]);
  const KernelTable& k = kernels();
  std::atomic<bool> nan{false};
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    float* u = scratch<float, 1>(n);
    uint8_t* bit = scratch<uint8_t, 0>(n);
    load_floats(lc, i0, n, l);
    if (bernoulli) k.uniform_range(s, o, i0, n, u);
    if (k.binarize_bits(l, u, n, bernoulli, bit)) nan = true;
    k.pack_rows(bit, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
  });
  TORCH_CHECK_VALUE(!nan, kBinarizeNan);
  return packed;
}

at::Tensor quantize_probs(const at::Tensor& logits) {
  check_logits(logits, "quantize_probs", 1, at::kCPU);
  at::Tensor out = at::empty(logits.sizes(), logits.options().dtype(at::kByte));
  const int64_t channels = logits.size(-1), rows = logits.numel() / channels;
  if (rows == 0) return out;
  const at::Tensor lc = logits.contiguous();
  std::atomic<bool> nan{false};
  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    load_floats(lc, i0, n, l);
    if (kernels().quantize(l, n, out.data_ptr<uint8_t>() + i0)) nan = true;
  });
  TORCH_CHECK_VALUE(!nan, kQuantizeNan);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) {
  m.impl("binarize", &binarize);
  m.impl("quantize_probs", &quantize_probs);
}

}  // namespace bldm_fast::cpu
