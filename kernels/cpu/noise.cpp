// bernoulli_noise on the CPU: packed x_0 -> packed x_t (+ unpacked x_t, + packed flip target).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "bits_cpu.h"
#include "op_checks.h"
#include "cpu_utils.h"
#include "philox_cpu.h"

namespace bldm_fast::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> bernoulli_noise(
    const at::Tensor& x0_packed, const at::Tensor& thresholds, int64_t channels, const at::Tensor& stream,
    std::optional<at::ScalarType> out_dtype, bool return_flip) {
  check_noise_inputs(x0_packed, thresholds, channels, stream, at::kCPU);
  const int64_t nb = packed_size(channels), batch = x0_packed.size(0);
  at::Tensor packed, unpacked, flip;
  std::tie(packed, unpacked, flip) = noise_outputs(x0_packed, channels, out_dtype, return_flip);
  const int64_t rows = x0_packed.numel() / nb;
  if (rows == 0) return {packed, unpacked, flip};
  const int64_t rows_per_sample = rows / batch;
  const at::Tensor x0c = x0_packed.contiguous();
  const at::Tensor thr = thresholds.contiguous();
  const uint8_t* px0 = x0c.data_ptr<uint8_t>();
  const float* pthr = thr.data_ptr<float>();
  const int64_t* st = stream.data_ptr<int64_t>();
  const auto s = static_cast<uint64_t>(st[kSeed]), o = static_cast<uint64_t>(st[kOffset]);
  const KernelTable& k = kernels();

  for_row_tiles(rows, channels, [&](int64_t r0, int64_t r1) {
    const int64_t n = (r1 - r0) * channels, i0 = r0 * channels;
    uint8_t* x0 = scratch<uint8_t, 0>(n);
    uint8_t* xt = scratch<uint8_t, 1>(n);
    uint8_t* fl = scratch<uint8_t, 2>(n);
    float* u = scratch<float, 0>(n);
    k.unpack_rows(px0 + r0 * nb, r1 - r0, channels, x0);
    k.uniform_range(s, o, i0, n, u);
    // One run per sample inside the tile: the thresholds change only between samples.
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / rows_per_sample;
      const int64_t r_end = std::min(r1, (b + 1) * rows_per_sample);
      const int64_t j = (r - r0) * channels, m = (r_end - r) * channels;
      k.noise_bits(x0 + j, u + j, m, pthr[2 * b], pthr[2 * b + 1], xt + j, fl + j);
      r = r_end;
    }
    k.pack_rows(xt, r1 - r0, channels, packed.data_ptr<uint8_t>() + r0 * nb);
    if (return_flip) k.pack_rows(fl, r1 - r0, channels, flip.data_ptr<uint8_t>() + r0 * nb);
    if (out_dtype) store_ones(xt, n, unpacked, i0);
  });
  return {packed, unpacked, flip};
}

}  // namespace

TORCH_LIBRARY_IMPL(bldm_fast, CPU, m) { m.impl("bernoulli_noise", &bernoulli_noise); }

}  // namespace bldm_fast::cpu
