// sample_step on the CPU: one fused reverse step of DESIGN.md section 5 over (..., C) logits.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <tuple>

#include "bits_cpu.h"
#include "op_checks.h"
#include "cpu_utils.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

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
  const KernelTable& k = kernels();
  const FloatType type = float_type(lc.scalar_type());
  const float inv_temp = sv[kInvTemp], g = sv[kGuidance];
  const StepConstants sc{sv[kKPrev], sv[kBPrev], sv[kQh], sv[kQl]};
  const auto s = static_cast<uint64_t>(st[kSeed]), o = static_cast<uint64_t>(st[kOffset]);
  std::atomic<bool> nan{false};

  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    float* l = scratch<float, 0>(n);
    float* pr = return_probs ? probs.data_ptr<float>() + i0 : scratch<float, 1>(n);
    uint8_t* xt = scratch<uint8_t, 0>(n);
    uint8_t* bit = scratch<uint8_t, 1>(n);
    k.guided_logits(element_ptr(lc, i0), uncond ? element_ptr(uc, i0) : nullptr, type, n, inv_temp, g, l);
    k.unpack_rows(xc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, xt);
    bool tile_nan;
    if (final_step && !return_probs) {
      tile_nan = k.final_bits(l, xt, n, predict_flip, bit);
    } else if (final_step) {
      tile_nan = k.final_probs_bits(l, xt, n, predict_flip, pr, bit);
    } else {
      float* u = scratch<float, 2>(n);
      k.uniform_range(s, o, i0, n, u);
      tile_nan = k.posterior_bits(l, xt, u, n, sc, predict_flip, pr, bit);
    }
    if (tile_nan) nan = true;
    if (mask) {
      uint8_t* m = scratch<uint8_t, 2>(n);
      uint8_t* kn = scratch<uint8_t, 3>(n);
      k.unpack_rows(mc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, m);
      k.unpack_rows(kc.data_ptr<uint8_t>() + r0 * nb, r1 - r0, channels, kn);
      k.select_known(m, kn, n, bit);
    }
    k.pack_rows(bit, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
    if (out_dtype) store_ones(bit, n, unpacked, i0);
  });
  TORCH_CHECK_VALUE(!(check_nan && nan), kNanMessage);
  nan_flag.fill_(nan ? 1 : 0);
  return {packed, probs, unpacked, nan_flag};
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("sample_step", &sample_step); }

}  // namespace bldm_fast::cpu
